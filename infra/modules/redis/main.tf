module "naming" {
  source = "../../lib/naming"

  environment = var.environment
  component   = "redis"
  names       = [var.name]
  labels      = var.labels
}

resource "google_redis_instance" "this" {
  project            = var.project_id
  name               = module.naming.names[var.name]
  display_name       = "fintrail ${var.environment} ${var.name}"
  region             = var.region
  tier               = var.tier
  memory_size_gb     = var.memory_size_gb
  redis_version      = var.redis_version
  authorized_network = var.authorized_network
  connect_mode       = "PRIVATE_SERVICE_ACCESS"
  reserved_ip_range  = var.reserved_ip_range
  labels             = module.naming.labels

  # AUTH is required and traffic is TLS (server authentication, port 6378).
  auth_enabled            = true
  transit_encryption_mode = "SERVER_AUTHENTICATION"

  maintenance_policy {
    weekly_maintenance_window {
      day = "SUNDAY"

      start_time {
        hours   = 3
        minutes = 0
      }
    }
  }
}
