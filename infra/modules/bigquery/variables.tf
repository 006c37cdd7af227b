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

variable "location" {
  type        = string
  description = "BigQuery location (EU, US or a region); the same for both datasets."

  validation {
    condition     = contains(["EU", "US"], var.location) || can(regex("^[a-z]+-[a-z]+[0-9]+$", var.location))
    error_message = "The location must be EU, US or a region such as europe-west1."
  }
}

variable "replica_writers" {
  type        = list(string)
  description = "Members that write replicated rows into the replica dataset: exactly the CDC writer identity of the environment (fintrail cdc's service account or the Datastream service agent)."

  validation {
    condition     = length(var.replica_writers) == 1
    error_message = "Exactly one identity writes the replica dataset: the CDC writer."
  }
}

variable "replica_writer_role" {
  type        = string
  description = "Custom role (projects/P/roles/ID) the CDC writer gets on the replica dataset only."
}

variable "view_readers" {
  type        = list(string)
  description = "Members that read the analytics views (analysts group, Superset). They get nothing on the replica dataset."
}

variable "view_reader_role" {
  type        = string
  description = "Custom role (projects/P/roles/ID) the readers get on the views dataset only."
}

variable "views" {
  type = map(object({
    description = string
    query       = string
  }))
  description = "Map view name -> standard SQL. {replica} is replaced with `project.dataset` of the replica dataset and {table_prefix} with replica_table_prefix."

  validation {
    condition     = alltrue([for k, _ in var.views : can(regex("^[a-z][a-z0-9_]{0,62}$", k))])
    error_message = "View names must be lower-case identifiers."
  }
}

variable "replica_table_prefix" {
  type        = string
  description = "Prefix of the replicated table names: empty for fintrail cdc, the source schema plus underscore (fintrail_) for Datastream."
  default     = ""
}

variable "delete_contents_on_destroy" {
  type        = bool
  description = "Allow destroying datasets that still hold tables (dev only)."
  default     = false
}
