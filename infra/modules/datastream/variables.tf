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

variable "network_id" {
  type        = string
  description = "Id of the environment's VPC, where Datastream's PSC interface lives (private connectivity, no public IP)."
}

variable "private_connection_cidr" {
  type        = string
  description = "A free /29 range: the subnet of Datastream's Private Service Connect interface."

  validation {
    condition     = can(cidrhost(var.private_connection_cidr, 0)) && endswith(var.private_connection_cidr, "/29")
    error_message = "private_connection_cidr must be a /29 CIDR block."
  }
}

variable "datastream_tenant_projects" {
  type        = list(string)
  description = "Datastream's tenant project(s) allowed to attach (ACCEPT_MANUAL). Empty until known: the attachment then accepts automatically, and the subnet's only path is Cloud SQL on 5432 (see infra/README.md known limits)."
  default     = []
}

variable "source_host" {
  type        = string
  description = "Host Datastream connects to: the private IP of the Cloud SQL primary (or of a reverse proxy in the VPC, see README)."
}

variable "source_port" {
  type        = number
  description = "PostgreSQL port."
  default     = 5432
}

variable "database" {
  type        = string
  description = "Source database."
  default     = "fintrail"
}

variable "username" {
  type        = string
  description = "Replication role Datastream logs in as."
  default     = "fintrail_replicator"
}

variable "password_secret_version" {
  type        = string
  description = "Secret Manager secret (version) holding the replicator password: projects/P/secrets/NAME/versions/latest. The password never enters OpenTofu state."
}

variable "publication" {
  type        = string
  description = "PostgreSQL publication: the one `fintrail cdc setup` keeps equal to analytics/replication.toml."
  default     = "fintrail_analytics"
}

variable "replication_slot" {
  type        = string
  description = "Logical replication slot (pgoutput) reserved for Datastream."
  default     = "fintrail_datastream"
}

variable "schema" {
  type        = string
  description = "Source schema."
  default     = "fintrail"
}

variable "tables" {
  type        = map(list(string))
  description = "Replication policy, default deny: map table -> columns that may leave the transactional database. A column not listed is not replicated (Datastream cannot pseudonymize: pseudonymized columns are simply not listed)."

  validation {
    condition     = length(var.tables) > 0 && alltrue([for t, cols in var.tables : length(cols) > 0])
    error_message = "List at least one table, each with at least one column (default deny)."
  }
}

variable "destination_dataset" {
  type        = string
  description = "Dataset id of the replica dataset (bigquery module) the stream writes into."
}

variable "data_freshness_seconds" {
  type        = number
  description = "Maximum staleness BigQuery may show, in seconds."
  default     = 900

  validation {
    condition     = var.data_freshness_seconds >= 0 && var.data_freshness_seconds <= 86400
    error_message = "Data freshness must be between 0 and 86400 seconds."
  }
}
