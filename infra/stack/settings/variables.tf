variable "project_id" {
  type        = string
  description = "Google Cloud project of the environment (one project per environment)."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "The project id must be 6-30 lower-case letters, digits or hyphens."
  }
}

variable "project_number" {
  type        = string
  description = "Number of the project (from the bootstrap): names Google-managed identities and the workload identity pool."

  validation {
    condition     = can(regex("^[1-9][0-9]{5,18}$", var.project_number))
    error_message = "A project number is a decimal number."
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
  description = "Region of every regional resource."

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "The region must look like europe-west1."
  }
}

variable "labels" {
  type        = map(string)
  description = "Extra labels for every labelable resource (merged under the mandatory ones)."
  default     = {}
  nullable    = false
}

variable "cdc_mode" {
  type        = string
  description = "Who writes the replica dataset: fintrail (the fintrail cdc run Cloud Run service, with pseudonymization) or datastream (managed Datastream stream)."

  validation {
    condition     = contains(["fintrail", "datastream"], var.cdc_mode)
    error_message = "cdc_mode must be fintrail or datastream."
  }
}

variable "network" {
  type = object({
    subnet_cidr             = string
    connector_cidr          = string
    datastream_cidr         = string
    connector_min_instances = number
    connector_max_instances = number
  })
  description = "Address plan of the environment's VPC (ranges must not overlap between environments)."
}

variable "sql" {
  type = object({
    tier                           = string
    availability_type              = string
    disk_size_gb                   = number
    backup_retention_count         = number
    transaction_log_retention_days = number
    superset_tier                  = string
  })
  description = "Cloud SQL sizing and backups for the primary (pg) and Superset's metadata instance."
}

variable "redis" {
  type = object({
    tier           = string
    memory_size_gb = number
  })
  description = "Memorystore sizing."
}

variable "log_retention_days" {
  type        = map(number)
  description = "Retention per log class: audit (>= 1825), app, access."
}

variable "log_location" {
  type        = string
  description = "Location of the log buckets (global or a region)."
  default     = "global"
  nullable    = false
}

variable "bigquery_location" {
  type        = string
  description = "Location of the BigQuery datasets."
}

variable "media" {
  type = object({
    location                = string
    soft_delete_days        = number
    noncurrent_version_days = number
    cors_origins            = list(string)
  })
  description = "Media bucket settings."
}

variable "images" {
  type = object({
    fintrail = string
    superset = string
  })
  description = "Container images: fintrail (serve, cdc run) by digest from this environment's repository, <region>-docker.pkg.dev/<project>/fintrail-<env>-images/fintrail@sha256:<64 hex> (the digest the image build printed); Apache Superset by version tag or digest."

  validation {
    # What runs is what was built and reviewed: a digest, never a tag someone can move.
    condition     = can(regex("^[a-z0-9-]+-docker\\.pkg\\.dev/[a-z][a-z0-9-]+/fintrail-[a-z]+-images/fintrail@sha256:[0-9a-f]{64}$", var.images.fintrail))
    error_message = "Deployed by digest, not by tag: images.fintrail must be <region>-docker.pkg.dev/<project>/fintrail-<env>-images/fintrail@sha256:<64 hex>."
  }

  validation {
    # A moving tag deploys whatever was pushed last.
    condition     = !endswith(var.images.superset, ":latest") && can(regex("(:[0-9][A-Za-z0-9._-]*|@sha256:[0-9a-f]{64})$", var.images.superset))
    error_message = "images.superset must be pinned to a version tag or a sha256 digest, never :latest."
  }
}

variable "api_scaling" {
  type = object({
    min_instances = number
    max_instances = number
  })
  description = "Scaling of the API service."
}

variable "analysts_group" {
  type        = string
  description = "Google group of analysts (group:...): they read the analytics views and use Superset, nothing else."

  validation {
    condition     = startswith(var.analysts_group, "group:")
    error_message = "analysts_group must be a group:... member."
  }
}

variable "deploy_service_account_email" {
  type        = string
  description = "The deploy identity that runs tofu apply (created at bootstrap, not by this root, so it never manages its own grants)."

  validation {
    condition     = endswith(var.deploy_service_account_email, ".iam.gserviceaccount.com")
    error_message = "The deploy identity must be a service account."
  }
}

variable "state_bucket" {
  type        = string
  description = "GCS bucket of this environment's state (same as in backend.hcl)."
}

variable "github" {
  type = object({
    owner      = string
    repository = string
  })
  description = "GitHub repository whose pull requests are planned."
}

variable "allowed_customer_ids" {
  type        = list(string)
  description = "Customer ids allowed by Domain Restricted Sharing."
}

variable "drs_exceptions" {
  type = list(object({
    name                 = string
    resource             = string
    location             = string
    allowed_customer_ids = list(string)
    justification        = string
    ticket               = string
    expires              = string
  }))
  description = "Per-resource Domain Restricted Sharing exceptions (mirrored in infra/policy/exceptions.toml). Empty by design."
  default     = []
  nullable    = false
}

variable "deletion_protection" {
  type        = bool
  description = "Deletion protection on Cloud SQL and Cloud Run; off only where an environment is disposable."
}

variable "views_enabled" {
  type        = bool
  description = "Create the analytics views. BigQuery validates a view's query at creation, so on a brand-new environment the views can only be created once the first replication has created the replica tables."
  default     = true
  nullable    = false
}
