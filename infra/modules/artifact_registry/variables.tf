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
  description = "Region of the repository (the services' region, so pulls stay in it), e.g. europe-west1."

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.location))
    error_message = "The location must be a region such as europe-west1."
  }
}

variable "labels" {
  type        = map(string)
  description = "Extra labels; merged with the mandatory managed_by, system, environment and component labels."
  default     = {}
}

variable "name" {
  type        = string
  description = "Short repository name; the repository is named fintrail-<env>-<name>."
  default     = "images"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,20}[a-z0-9]$", var.name))
    error_message = "The name must be 2-22 lower-case letters, digits or hyphens."
  }
}

variable "description" {
  type        = string
  description = "What the repository holds."
  default     = "fintrail container images, built on merge to main, deployed by digest."
}

variable "iam" {
  type        = map(list(string))
  description = "Repository-level bindings: map role (custom role name) -> members (push for the build identity, pull for the Cloud Run service agent)."
  default     = {}
}
