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

variable "service_accounts" {
  type = map(object({
    display_name = string
    description  = string
  }))
  description = "Map short name -> service account. The account id becomes fintrail-<env>-<short name>."

  validation {
    condition     = alltrue([for k, _ in var.service_accounts : can(regex("^[a-z][a-z0-9-]{1,11}[a-z0-9]$", k))])
    error_message = "Service account short names must be 3-13 lower-case letters, digits or hyphens (account ids are at most 30 characters)."
  }
}

variable "custom_roles" {
  type = map(object({
    title       = string
    description = string
    permissions = list(string)
    read_only   = optional(bool, false)
  }))
  description = "Map short name -> custom role (validated by ./custom_roles: single permission by default, never setIamPolicy, keys or actAs)."
}

variable "project_bindings" {
  type        = map(list(string))
  description = "Project-level bindings: map role -> members. A role is a custom role short name or roles/NAME; a member is sa:<short name> (a service account of this module) or a typed member (group:, serviceAccount:...)."
  default     = {}
}

variable "project_binding_conditions" {
  type = map(object({
    title       = string
    description = optional(string, "")
    expression  = string
  }))
  description = "Optional IAM condition per project-level role (same keys as project_bindings)."
  default     = {}
}

variable "service_account_bindings" {
  type        = map(map(list(string)))
  description = "Bindings on one specific service account: map service account short name -> role -> members (same role and member shorthand as project_bindings). The only place token creator and service account user may appear."
  default     = {}
}
