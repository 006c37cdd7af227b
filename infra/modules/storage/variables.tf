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

variable "labels" {
  type        = map(string)
  description = "Extra labels; merged with the mandatory managed_by, system, environment and component labels."
  default     = {}
}

variable "name" {
  type        = string
  description = "Short bucket name, e.g. media. The bucket is named fintrail-<env>-<name>-<6 hex of sha256(project_id)> to stay globally unique."
  default     = "media"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,20}[a-z0-9]$", var.name))
    error_message = "The name must be 2-22 lower-case letters, digits or hyphens."
  }
}

variable "location" {
  type        = string
  description = "Bucket location (region or multi-region)."
}

variable "soft_delete_days" {
  type        = number
  description = "Days a deleted object stays restorable (soft delete): 0, or 7 to 90."
  default     = 7

  validation {
    condition     = var.soft_delete_days == 0 || (var.soft_delete_days >= 7 && var.soft_delete_days <= 90)
    error_message = "Soft delete retention is 0 (off) or between 7 and 90 days."
  }
}

variable "noncurrent_version_days" {
  type        = number
  description = "Days after which a noncurrent object version is deleted."
  default     = 30

  validation {
    condition     = var.noncurrent_version_days >= 1 && var.noncurrent_version_days <= 3650
    error_message = "noncurrent_version_days must be between 1 and 3650."
  }
}

variable "object_retention" {
  type        = bool
  description = "Enable Object Retention Lock: the writer sets a retain-until time per object (KYC documents), which works with versioning (a bucket retention policy does not)."
  default     = true
}

variable "cors_origins" {
  type        = list(string)
  description = "Origins allowed to PUT/GET through signed URLs from a browser."
  default     = []

  validation {
    condition     = alltrue([for o in var.cors_origins : startswith(o, "https://")])
    error_message = "CORS origins must be https."
  }
}

variable "iam" {
  type        = map(list(string))
  description = "Bucket-level bindings: map role (custom role name) -> members."
  default     = {}
}

variable "force_destroy" {
  type        = bool
  description = "Allow destroying a non-empty bucket (dev only)."
  default     = false
}
