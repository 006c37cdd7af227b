variable "project_id" {
  type        = string
  description = "Google Cloud project of the environment."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "The project id must be 6-30 lower-case letters, digits or hyphens, starting with a letter."
  }
}

variable "environment" {
  type        = string
  description = "Environment name: dev, staging or prod."

  validation {
    condition     = contains(["dev", "staging", "prod"], var.environment)
    error_message = "The environment must be one of dev, staging, prod."
  }
}

variable "location" {
  type        = string
  description = "Location of the log buckets: global or a region (data residency)."
  default     = "global"

  validation {
    condition     = var.location == "global" || can(regex("^[a-z]+-[a-z]+[0-9]+$", var.location))
    error_message = "The location must be global or a region such as europe-west1."
  }
}

variable "retention_days" {
  type        = map(number)
  description = "Retention per log class (keys audit, app, access). Checked by ./classes: audit >= 1825 days, the others shorter."
}

variable "include_cloud_audit_logs" {
  type        = bool
  description = "Also route Google Cloud Audit Logs into the audit bucket."
  default     = true
}

variable "data_access_audit_services" {
  type        = list(string)
  description = "Services whose Data Access audit logs (DATA_READ, DATA_WRITE) are turned on: who read which secret, object, table."
  default     = ["secretmanager.googleapis.com", "storage.googleapis.com", "bigquery.googleapis.com", "cloudsql.googleapis.com", "iam.googleapis.com"]

  validation {
    condition     = alltrue([for s in var.data_access_audit_services : endswith(s, ".googleapis.com")])
    error_message = "Services are API names such as storage.googleapis.com."
  }
}
