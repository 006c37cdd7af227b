variable "environment" {
  type        = string
  description = "Environment name: dev, staging or prod."

  validation {
    condition     = contains(["dev", "staging", "prod"], var.environment)
    error_message = "The environment must be one of dev, staging, prod."
  }
}

variable "component" {
  type        = string
  description = "Component (module) the names and labels are for, e.g. cloud_sql. Lower case, digits and underscores."

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{1,30}$", var.component))
    error_message = "The component must match ^[a-z][a-z0-9_]{1,30}$."
  }
}

variable "names" {
  type        = list(string)
  description = "Short resource names to expand, e.g. [\"pg\", \"media\"]. Lower case, digits and hyphens."
  default     = []

  validation {
    condition     = alltrue([for n in var.names : can(regex("^[a-z][a-z0-9-]{0,30}[a-z0-9]$", n))])
    error_message = "Every name must match ^[a-z][a-z0-9-]{0,30}[a-z0-9]$."
  }
}

variable "labels" {
  type        = map(string)
  description = "Extra labels merged under the mandatory ones (managed_by, system, environment, component win)."
  default     = {}

  validation {
    condition = alltrue([
      for k, v in var.labels :
      can(regex("^[a-z][a-z0-9_-]{0,62}$", k)) && can(regex("^[a-z0-9_-]{0,63}$", v))
    ])
    error_message = "Label keys must match ^[a-z][a-z0-9_-]{0,62}$ and values ^[a-z0-9_-]{0,63}$ (GCP label rules)."
  }

  validation {
    condition     = length(var.labels) <= 56
    error_message = "At most 56 extra labels (GCP allows 64 per resource; 4 are mandatory and some services add their own)."
  }
}
