module "naming" {
  source = "../../lib/naming"

  environment = var.environment
  component   = "service"
  names       = [var.name]
  labels      = merge(var.labels, { service = var.name })
}

module "invokers" {
  source = "../iam/bindings"

  scope = "resource"
  roles = { for r in(length(var.invokers) == 0 ? [] : [var.invoker_role]) : r => var.invokers }
}

resource "google_cloud_run_v2_service" "this" {
  project              = var.project_id
  name                 = module.naming.names[var.name]
  location             = var.region
  ingress              = var.ingress
  deletion_protection  = var.deletion_protection
  invoker_iam_disabled = var.public
  labels               = module.naming.labels

  template {
    service_account = var.service_account_email
    labels          = module.naming.labels

    scaling {
      min_instance_count = var.min_instances
      max_instance_count = var.max_instances
    }

    vpc_access {
      connector = var.vpc_connector
      egress    = "PRIVATE_RANGES_ONLY"
    }

    containers {
      image   = var.image
      command = var.command
      args    = var.args

      ports {
        container_port = var.port
      }

      resources {
        limits = {
          cpu    = var.cpu
          memory = var.memory
        }
        cpu_idle = !var.always_on_cpu
      }

      env {
        name  = "FINTRAIL_ENVIRONMENT"
        value = var.environment
      }

      dynamic "env" {
        for_each = var.env

        content {
          name  = env.key
          value = env.value
        }
      }

      dynamic "env" {
        for_each = var.secret_env

        content {
          name = env.key

          value_source {
            secret_key_ref {
              secret  = env.value.secret
              version = env.value.version
            }
          }
        }
      }
    }
  }

  lifecycle {
    precondition {
      condition     = var.image_repository == null || can(regex("^[a-z0-9._-]+@sha256:[0-9a-f]{64}$", trimprefix(var.image, "${coalesce(var.image_repository, "-")}/")))
      error_message = "The image must be deployed by digest from ${coalesce(var.image_repository, "-")}: <repository>/<image>@sha256:<64 hex>, not a tag."
    }

    precondition {
      condition     = length(var.invokers) == 0 || var.invoker_role != ""
      error_message = "invoker_role is required when invokers are given."
    }

    precondition {
      condition     = !(var.public && length(var.invokers) > 0)
      error_message = "A public service has no IAM invokers: pick one model."
    }
  }
}

resource "google_cloud_run_v2_service_iam_member" "invoker" {
  for_each = module.invokers.by_key

  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.this.name
  role     = each.value.role
  member   = each.value.member
}
