variable "environment" {
  type        = string
  description = "Environment name: dev, staging or prod. In prod the audit bucket is locked."

  validation {
    condition     = contains(["dev", "staging", "prod"], var.environment)
    error_message = "The environment must be one of dev, staging, prod."
  }
}

variable "retention_days" {
  type        = map(number)
  description = "Retention per log class: exactly the keys audit, app and access. Audit is kept >= 1825 days (5 years); app and access 1..3650 days and shorter than audit."

  validation {
    condition     = length(setsubtract(keys(var.retention_days), ["audit", "app", "access"])) == 0 && length(setsubtract(["audit", "app", "access"], keys(var.retention_days))) == 0
    error_message = "retention_days must have exactly the keys audit, app and access (the log_class values the application emits)."
  }

  validation {
    condition     = lookup(var.retention_days, "audit", 0) >= 1825 && lookup(var.retention_days, "audit", 0) <= 3650
    error_message = "Audit logs are kept at least 5 years (1825 days) and at most 3650 days (Cloud Logging maximum)."
  }

  validation {
    condition     = alltrue([for c in ["app", "access"] : lookup(var.retention_days, c, 0) >= 1 && lookup(var.retention_days, c, 0) <= 3650 && floor(lookup(var.retention_days, c, 0)) == lookup(var.retention_days, c, 0)])
    error_message = "App and access retention must be whole days between 1 and 3650."
  }

  validation {
    condition     = alltrue([for c in ["app", "access"] : lookup(var.retention_days, c, 0) < lookup(var.retention_days, "audit", 0)])
    error_message = "App and access logs must be kept for less time than audit logs (differentiated retention)."
  }
}

variable "include_cloud_audit_logs" {
  type        = bool
  description = "Also route Google Cloud Audit Logs (admin activity, data access) into the audit bucket."
  default     = true
}
