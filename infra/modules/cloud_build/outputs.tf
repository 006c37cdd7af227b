output "trigger_id" {
  description = "Id of the pull-request plan trigger."
  value       = google_cloudbuild_trigger.plan.trigger_id
}

output "workload_identity_provider" {
  description = "Full name of the workload identity provider, for google-github-actions/auth."
  value       = google_iam_workload_identity_pool_provider.github.name
}

output "plan_service_account_email" {
  description = "The identity every plan runs as (Cloud Build and GitHub Actions)."
  value       = var.plan_service_account_email
}

output "image_trigger_id" {
  description = "Id of the image build trigger (every merge to main)."
  value       = google_cloudbuild_trigger.image.trigger_id
}
