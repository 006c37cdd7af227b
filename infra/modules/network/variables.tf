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

variable "subnet_cidr" {
  type        = string
  description = "Primary range of the environment's only subnet."

  validation {
    condition     = can(cidrhost(var.subnet_cidr, 0)) && tonumber(split("/", var.subnet_cidr)[1]) <= 24
    error_message = "subnet_cidr must be a valid CIDR block of /24 or larger."
  }
}

variable "connector_cidr" {
  type        = string
  description = "The /28 range of the Serverless VPC Access connector."

  validation {
    condition     = can(cidrhost(var.connector_cidr, 0)) && endswith(var.connector_cidr, "/28")
    error_message = "connector_cidr must be a /28 CIDR block."
  }
}

variable "private_service_access_prefix_length" {
  type        = number
  description = "Prefix length of the range reserved for private service access (Cloud SQL, Memorystore)."
  default     = 20

  validation {
    condition     = var.private_service_access_prefix_length >= 16 && var.private_service_access_prefix_length <= 24
    error_message = "The private service access prefix length must be between 16 and 24."
  }
}

variable "connector_min_instances" {
  type        = number
  description = "Minimum instances of the serverless connector."
  default     = 2

  validation {
    condition     = var.connector_min_instances >= 2 && var.connector_min_instances <= 9
    error_message = "The connector needs between 2 and 9 minimum instances."
  }
}

variable "connector_max_instances" {
  type        = number
  description = "Maximum instances of the serverless connector."
  default     = 3

  validation {
    condition     = var.connector_max_instances >= 3 && var.connector_max_instances <= 10
    error_message = "The connector allows between 3 and 10 maximum instances."
  }
}
