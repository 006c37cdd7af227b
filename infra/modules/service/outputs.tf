output "name" {
  description = "Name of the Cloud Run service."
  value       = google_cloud_run_v2_service.this.name
}

output "uri" {
  description = "HTTPS URI of the service."
  value       = google_cloud_run_v2_service.this.uri
}

output "urls" {
  description = "Every HTTPS URL of the service (the deterministic one, https://<name>-<project number>.<region>.run.app, among them)."
  value       = google_cloud_run_v2_service.this.urls
}

output "service_account_email" {
  description = "Runtime identity of the service."
  value       = var.service_account_email
}

output "invokers" {
  description = "Who may invoke the service (role -> members)."
  value       = module.invokers.members_by_role
}
