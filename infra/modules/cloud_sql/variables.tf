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

variable "labels" {
  type        = map(string)
  description = "Extra labels; merged with the mandatory managed_by, system, environment and component labels."
  default     = {}
}

variable "name" {
  type        = string
  description = "Short instance name, e.g. pg (the transactional primary) or superset (Superset's metadata)."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,20}[a-z0-9]$", var.name))
    error_message = "The name must be 2-22 lower-case letters, digits or hyphens."
  }
}

variable "database_version" {
  type        = string
  description = "Cloud SQL PostgreSQL version."
  default     = "POSTGRES_16"

  validation {
    condition     = can(regex("^POSTGRES_(14|15|16|17)$", var.database_version))
    error_message = "Only PostgreSQL 14 to 17 are supported."
  }
}

variable "tier" {
  type        = string
  description = "Machine tier, e.g. db-custom-2-7680."
}

variable "edition" {
  type        = string
  description = "Cloud SQL edition: ENTERPRISE or ENTERPRISE_PLUS."
  default     = "ENTERPRISE"

  validation {
    condition     = contains(["ENTERPRISE", "ENTERPRISE_PLUS"], var.edition)
    error_message = "The edition must be ENTERPRISE or ENTERPRISE_PLUS."
  }
}

variable "availability_type" {
  type        = string
  description = "ZONAL or REGIONAL (high availability)."
  default     = "ZONAL"

  validation {
    condition     = contains(["ZONAL", "REGIONAL"], var.availability_type)
    error_message = "The availability type must be ZONAL or REGIONAL."
  }
}

variable "disk_size_gb" {
  type        = number
  description = "Initial disk size in GB (the disk grows automatically)."
  default     = 20

  validation {
    condition     = var.disk_size_gb >= 10 && var.disk_size_gb <= 65536
    error_message = "The disk size must be between 10 and 65536 GB."
  }
}

variable "private_network" {
  type        = string
  description = "Id of the VPC the instance gets its private IP in (network module output network_id)."
}

variable "logical_decoding" {
  type        = bool
  description = "Turn cloudsql.logical_decoding on (needed by fintrail cdc and Datastream on the transactional primary)."
  default     = false
}

variable "databases" {
  type        = list(string)
  description = "Databases to create on the instance, e.g. [\"fintrail\"]."

  validation {
    condition     = alltrue([for d in var.databases : can(regex("^[a-z][a-z0-9_]{0,62}$", d))])
    error_message = "Database names must be lower-case identifiers."
  }
}

variable "backup_retention_count" {
  type        = number
  description = "How many daily backups to keep."
  default     = 7

  validation {
    condition     = var.backup_retention_count >= 1 && var.backup_retention_count <= 365
    error_message = "Keep between 1 and 365 backups."
  }
}

variable "transaction_log_retention_days" {
  type        = number
  description = "Days of write-ahead log kept for point-in-time recovery."
  default     = 7

  validation {
    condition     = var.transaction_log_retention_days >= 1 && var.transaction_log_retention_days <= 7
    error_message = "Point-in-time recovery keeps between 1 and 7 days of logs (ENTERPRISE edition)."
  }
}

variable "backup_start_time" {
  type        = string
  description = "UTC start of the daily backup window, HH:MM."
  default     = "02:00"

  validation {
    condition     = can(regex("^([01][0-9]|2[0-3]):[0-5][0-9]$", var.backup_start_time))
    error_message = "The backup start time must be HH:MM."
  }
}

variable "deletion_protection" {
  type        = bool
  description = "Protect the instance from deletion (both in OpenTofu and in the Cloud SQL API)."
  default     = true
}
