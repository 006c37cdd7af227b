variable "env" {
  type        = any
  description = "The environment's settings (envs/<env>/terraform.tfvars): typed and validated by ./settings."

  validation {
    # A misspelled setting would otherwise be ignored and its default used.
    condition     = alltrue([for k in keys(var.env) : contains(["project_id", "project_number", "environment", "region", "labels", "cdc_mode", "network", "sql", "redis", "log_retention_days", "log_location", "bigquery_location", "media", "images", "api_scaling", "analysts_group", "deploy_service_account_email", "state_bucket", "github", "allowed_customer_ids", "drs_exceptions", "deletion_protection", "views_enabled"], k)])
    error_message = "Unknown setting in env: every key must be a variable of infra/stack/settings."
  }
}
