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

variable "region" {
  type        = string
  description = "Google Cloud region, e.g. europe-west1."

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "The region must look like europe-west1."
  }
}

variable "service_account_email" {
  type        = string
  description = "Dedicated service account every job runs as (OIDC token); the called service verifies that identity."
}

variable "time_zone" {
  type        = string
  description = "Time zone of the schedules."
  default     = "Etc/UTC"
}

variable "service_uri" {
  type        = string
  description = "URL of the fintrail API (Cloud Run): every job of jobs.json is scheduled against it, with this URL as the OIDC audience. Pass the deterministic URL (known at plan), not the service's output."

  validation {
    condition     = can(regex("^https://[^/]+$", var.service_uri))
    error_message = "service_uri is an https origin without a trailing slash or path."
  }
}

variable "jobs" {
  type = map(object({
    description = string
    schedule    = string
    uri         = string
    audience    = string
    http_method = optional(string, "POST")
    body        = optional(string, "{}")
  }))
  description = "Map job name -> HTTP job calling a Cloud Run endpoint with an OIDC token for audience (added to, and overriding, the jobs of jobs.json)."
  default     = {}

  validation {
    condition     = alltrue([for k, j in var.jobs : can(regex("^[a-z][a-z0-9-]{1,40}$", k)) && startswith(j.uri, "https://")])
    error_message = "Job names are lower-case with hyphens and every URI is https."
  }

  validation {
    condition     = alltrue([for _, j in var.jobs : contains(["POST", "GET", "PUT"], j.http_method)])
    error_message = "http_method must be POST, GET or PUT."
  }
}
