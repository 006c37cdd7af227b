variable "project_id" {
  type        = string
  description = "Google Cloud project of the environment."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "The project id must be 6-30 lower-case letters, digits or hyphens, starting with a letter."
  }
}

variable "project_number" {
  type        = string
  description = "Number of the project (data.google_project.number): names the workload identity pool in principal sets."
}

variable "environment" {
  type        = string
  description = "Environment name: dev, staging or prod."

  validation {
    condition     = contains(["dev", "staging", "prod"], var.environment)
    error_message = "The environment must be one of dev, staging, prod."
  }
}

variable "plan_service_account_email" {
  type        = string
  description = "Email of the plan-only service account (iam module, read-only custom role)."
}

variable "deploy_service_account_email" {
  type        = string
  description = "Email of the deploy identity that runs tofu apply. Must differ from the plan identity."
}

variable "github_owner" {
  type        = string
  description = "GitHub organization or user owning the repository."

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9-]{0,38}$", var.github_owner))
    error_message = "Not a valid GitHub owner name."
  }
}

variable "github_repository" {
  type        = string
  description = "GitHub repository name (without the owner)."

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]{1,100}$", var.github_repository))
    error_message = "Not a valid GitHub repository name."
  }
}

variable "state_bucket" {
  type        = string
  description = "GCS bucket holding this environment's OpenTofu state (created at bootstrap, see infra/README.md)."
}

variable "state_reader_roles" {
  type        = list(string)
  description = "Custom roles (single permission each: storage.objects.get, storage.objects.list) the plan identity gets on the state bucket only. The plan runs with -lock=false, so it never writes."
}

variable "tofu_version" {
  type        = string
  description = "OpenTofu container image tag used by the plan build."
  default     = "1.9.1"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.tofu_version))
    error_message = "tofu_version must be a semantic version such as 1.9.1."
  }
}
