output "api_uri" {
  description = "URI of the API (fintrail serve)."
  value       = module.api.uri
}

output "superset_uri" {
  description = "URI of Superset (analysts group only)."
  value       = module.superset.uri
}

output "cdc_mode" {
  description = "Who writes the replica dataset: fintrail (Cloud Run fintrail cdc run) or datastream."
  value       = local.env.cdc_mode
}

output "service_accounts" {
  description = "Map identity -> service account email."
  value       = module.iam.emails
}

output "who_reads_what" {
  description = "The declared data path: replica writer, view readers, authorized views, secret accessors, media access."
  value = {
    bigquery = module.bigquery.who_reads_what
    secrets  = module.secrets.accessors
    media    = module.media.members_by_role
    project  = module.iam.project_members_by_role
  }
}

output "log_buckets" {
  description = "Map log class -> { bucket, retention_days, locked }."
  value = {
    for c, b in module.logging.buckets : c => {
      bucket         = b
      retention_days = module.logging.retention_days[c]
      locked         = module.logging.locked[c]
    }
  }
}

output "workload_identity_provider" {
  description = "Workload identity provider for the GitHub Actions plan workflow."
  value       = module.cloud_build.workload_identity_provider
}

output "plan_service_account_email" {
  description = "The read-only plan identity (Cloud Build trigger and GitHub Actions)."
  value       = module.cloud_build.plan_service_account_email
}
