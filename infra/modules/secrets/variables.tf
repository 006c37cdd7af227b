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

variable "region" {
  type        = string
  description = "Region secrets are replicated to (user-managed replication keeps the data in one region)."

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "The region must look like europe-west1."
  }
}

variable "secrets" {
  type = map(object({
    description = string
    accessors   = list(string)
  }))
  description = "Map short name -> secret. The secret id becomes fintrail-<env>-<short name>; each accessor (a typed member) gets secretAccessor on this one secret only."

  validation {
    condition     = alltrue([for k, _ in var.secrets : can(regex("^[a-z][a-z0-9-]{1,40}[a-z0-9]$", k))])
    error_message = "Secret short names must be lower-case letters, digits or hyphens."
  }
}
