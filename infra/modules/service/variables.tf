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
  description = "Short service name: api, cdc or superset. The service is named fintrail-<env>-<name>."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}[a-z0-9]$", var.name))
    error_message = "The name must be 3-22 lower-case letters, digits or hyphens."
  }
}

variable "image" {
  type        = string
  description = "Container image: <name>@sha256:<64 hex> (a digest: what was built and reviewed is what runs), or a version tag for a third-party image without a repository here (never :latest)."

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9._/-]*(:[0-9][A-Za-z0-9._-]*|@sha256:[0-9a-f]{64})$", var.image)) && !endswith(var.image, ":latest")
    error_message = "The image must be pinned: <name>@sha256:<64 hex> or <name>:<version>, never :latest."
  }
}

variable "image_repository" {
  type        = string
  description = "Artifact Registry repository (<location>-docker.pkg.dev/<project>/<repository>) the image must come from, by digest; null for a third-party image."
  default     = null
}

variable "command" {
  type        = list(string)
  description = "Entrypoint override (empty keeps the image's)."
  default     = []
}

variable "args" {
  type        = list(string)
  description = "Arguments, e.g. [\"serve\"] or [\"cdc\", \"run\"] for the fintrail image."
  default     = []
}

variable "port" {
  type        = number
  description = "Container port."
  default     = 8080

  validation {
    condition     = var.port > 0 && var.port < 65536
    error_message = "The port must be between 1 and 65535."
  }
}

variable "service_account_email" {
  type        = string
  description = "Runtime identity (one dedicated service account per service)."
}

variable "env" {
  type        = map(string)
  description = "Plain environment variables (no secrets here)."
  default     = {}
}

variable "secret_env" {
  type = map(object({
    secret  = string
    version = optional(string, "latest")
  }))
  description = "Environment variables read from Secret Manager: map name -> { secret (secret_id), version }. The runtime identity must be an accessor of that secret."
  default     = {}
}

variable "vpc_connector" {
  type        = string
  description = "Serverless VPC Access connector id; traffic to private ranges only goes through it."
}

variable "ingress" {
  type        = string
  description = "INGRESS_TRAFFIC_ALL, INGRESS_TRAFFIC_INTERNAL_ONLY or INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER."
  default     = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"

  validation {
    condition     = contains(["INGRESS_TRAFFIC_ALL", "INGRESS_TRAFFIC_INTERNAL_ONLY", "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"], var.ingress)
    error_message = "Unknown ingress setting."
  }
}

variable "min_instances" {
  type        = number
  description = "Minimum instances (1 keeps a long-running worker such as fintrail cdc alive)."
  default     = 0

  validation {
    condition     = var.min_instances >= 0 && var.min_instances <= 100
    error_message = "min_instances must be between 0 and 100."
  }
}

variable "max_instances" {
  type        = number
  description = "Maximum instances (1 for a singleton such as fintrail cdc: one replication slot, one writer)."
  default     = 10

  validation {
    condition     = var.max_instances >= 1 && var.max_instances <= 1000
    error_message = "max_instances must be between 1 and 1000."
  }
}

variable "cpu" {
  type        = string
  description = "CPU limit, e.g. 1 or 2."
  default     = "1"
}

variable "memory" {
  type        = string
  description = "Memory limit, e.g. 512Mi or 2Gi."
  default     = "512Mi"

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.memory))
    error_message = "Memory must look like 512Mi or 2Gi."
  }
}

variable "always_on_cpu" {
  type        = bool
  description = "Keep CPU allocated outside requests (needed by background workers such as fintrail cdc)."
  default     = false
}

variable "public" {
  type        = bool
  description = "Public endpoint whose callers authenticate in the application (fintrail serve's bearer tokens, OIDC-verified scheduler calls): turns the Cloud Run IAM invoker check off instead of granting allUsers, which Domain Restricted Sharing forbids."
  default     = false
}

variable "invokers" {
  type        = list(string)
  description = "Members allowed to invoke the service (no allUsers: every request is authenticated)."
  default     = []
}

variable "invoker_role" {
  type        = string
  description = "Role granted to the invokers: the single-permission custom role run.routes.invoke."
  default     = ""
}

variable "deletion_protection" {
  type        = bool
  description = "Protect the service from deletion."
  default     = true
}
