output "job_names" {
  description = "Map job short name -> full job name."
  value       = { for k, j in google_cloud_scheduler_job.this : k => j.name }
}

output "service_account_email" {
  description = "The identity all jobs run as."
  value       = var.service_account_email
}
