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
  description = "Short instance name, e.g. cache."
  default     = "cache"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,20}[a-z0-9]$", var.name))
    error_message = "The name must be 2-22 lower-case letters, digits or hyphens."
  }
}

variable "tier" {
  type        = string
  description = "BASIC (no replica) or STANDARD_HA."
  default     = "BASIC"

  validation {
    condition     = contains(["BASIC", "STANDARD_HA"], var.tier)
    error_message = "The tier must be BASIC or STANDARD_HA."
  }
}

variable "memory_size_gb" {
  type        = number
  description = "Memory size in GB."
  default     = 1

  validation {
    condition     = var.memory_size_gb >= 1 && var.memory_size_gb <= 300
    error_message = "Memory size must be between 1 and 300 GB."
  }
}

variable "redis_version" {
  type        = string
  description = "Redis version."
  default     = "REDIS_7_2"
}

variable "authorized_network" {
  type        = string
  description = "Id of the VPC the instance is reachable from (network module output network_id)."
}

variable "reserved_ip_range" {
  type        = string
  description = "Name of the private service access range (network module output private_service_access_range_name)."
}
