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

variable "build_service_account_email" {
  type        = string
  description = "Email of the image build identity: runs the image trigger, may push to the image repository only. Differs from the plan and deploy identities."
}

variable "image_repository" {
  type        = string
  description = "Docker address of the image repository (artifact_registry's url): <location>-docker.pkg.dev/<project>/<repository>."

  validation {
    condition     = can(regex("^[a-z0-9-]+-docker\\.pkg\\.dev/[a-z][a-z0-9-]+/[a-z][a-z0-9-]+$", var.image_repository))
    error_message = "image_repository must look like europe-west1-docker.pkg.dev/<project>/<repository>."
  }
}

variable "docker_builder_image" {
  type        = string
  description = "The Cloud Build step image that runs docker build, pinned by digest."
  default     = "gcr.io/cloud-builders/docker@sha256:3d00b6c1a9b862621c30fc74d4f2abfc62bcbdee631ed3febd31e7edbdf6252c"

  validation {
    condition     = can(regex("@sha256:[0-9a-f]{64}$", var.docker_builder_image))
    error_message = "docker_builder_image must be pinned by digest (@sha256:<64 hex>)."
  }
}

variable "image_build_machine_type" {
  type        = string
  description = "Cloud Build machine of the image build (a release build of the workspace: about 10 minutes on 2 cores)."
  default     = "E2_HIGHCPU_8"

  validation {
    condition     = contains(["UNSPECIFIED", "E2_MEDIUM", "E2_HIGHCPU_8", "E2_HIGHCPU_32"], var.image_build_machine_type)
    error_message = "image_build_machine_type must be UNSPECIFIED, E2_MEDIUM, E2_HIGHCPU_8 or E2_HIGHCPU_32."
  }
}
