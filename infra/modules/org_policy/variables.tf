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

variable "allowed_customer_ids" {
  type        = list(string)
  description = "Google Workspace / Cloud Identity customer ids whose principals may be granted IAM roles (Domain Restricted Sharing). Normally only the company's own."

  validation {
    condition     = length(var.allowed_customer_ids) > 0 && alltrue([for c in var.allowed_customer_ids : can(regex("^C[0-9a-z]{5,}$", c))])
    error_message = "Give at least one customer id, each like C01abcd23."
  }
}

variable "enforced_boolean_constraints" {
  type        = list(string)
  description = "Boolean constraints enforced on the project."
  default = [
    "iam.disableServiceAccountKeyCreation",
    "iam.disableServiceAccountKeyUpload",
    "sql.restrictPublicIp",
    "storage.uniformBucketLevelAccess",
    "storage.publicAccessPrevention",
  ]

  validation {
    condition     = alltrue([for c in var.enforced_boolean_constraints : can(regex("^[a-z]+\\.[A-Za-z]+$", c))])
    error_message = "Constraints look like service.constraintName."
  }
}

variable "drs_exceptions" {
  type = list(object({
    name                 = string
    resource             = string
    location             = string
    allowed_customer_ids = list(string)
    justification        = string
    ticket               = string
    expires              = string
  }))
  description = "Domain Restricted Sharing exceptions, one per resource: the resource gets a tag and the policy allows the extra customer ids only where that tag is bound. Each must also be recorded in infra/policy/exceptions.toml."
  default     = []

  validation {
    condition = alltrue([
      for e in var.drs_exceptions :
      can(regex("^[a-z][a-z0-9-]{1,40}$", e.name)) &&
      startswith(e.resource, "//") &&
      length(e.allowed_customer_ids) > 0 &&
      length(trimspace(e.justification)) > 0 &&
      length(trimspace(e.ticket)) > 0 &&
      can(regex("^[0-9]{4}-[0-9]{2}-[0-9]{2}$", e.expires))
    ])
    error_message = "Each exception needs a name, one full resource name (//service.googleapis.com/...), customer ids, a justification, a ticket and an expiry date YYYY-MM-DD."
  }

  validation {
    condition     = length(distinct([for e in var.drs_exceptions : e.name])) == length(var.drs_exceptions)
    error_message = "Exception names must be unique."
  }
}
