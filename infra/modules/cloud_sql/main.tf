module "naming" {
  source = "../../lib/naming"

  environment = var.environment
  component   = "cloud_sql"
  names       = [var.name]
  labels      = var.labels
}

locals {
  flags = merge(
    {
      # Every connection and disconnection is logged (who connected, from where).
      "log_connections"    = "on"
      "log_disconnections" = "on"
      # Statements changing the schema are logged.
      "log_statement" = "ddl"
    },
    var.logical_decoding ? {
      # pgoutput logical replication for fintrail cdc / Datastream.
      "cloudsql.logical_decoding" = "on"
    } : {}
  )
}

resource "google_sql_database_instance" "this" {
  project             = var.project_id
  name                = module.naming.names[var.name]
  region              = var.region
  database_version    = var.database_version
  deletion_protection = var.deletion_protection

  settings {
    tier                        = var.tier
    edition                     = var.edition
    availability_type           = var.availability_type
    disk_type                   = "PD_SSD"
    disk_size                   = var.disk_size_gb
    disk_autoresize             = true
    deletion_protection_enabled = var.deletion_protection
    user_labels                 = module.naming.labels

    ip_configuration {
      # Private IP only: no public address, TLS required.
      ipv4_enabled    = false
      private_network = var.private_network
      ssl_mode        = "ENCRYPTED_ONLY"
    }

    backup_configuration {
      enabled                        = true
      start_time                     = var.backup_start_time
      point_in_time_recovery_enabled = true
      transaction_log_retention_days = var.transaction_log_retention_days

      backup_retention_settings {
        retained_backups = var.backup_retention_count
        retention_unit   = "COUNT"
      }
    }

    maintenance_window {
      day          = 7
      hour         = 3
      update_track = "stable"
    }

    insights_config {
      query_insights_enabled  = true
      record_application_tags = true
      record_client_address   = true
    }

    dynamic "database_flags" {
      for_each = local.flags

      content {
        name  = database_flags.key
        value = database_flags.value
      }
    }
  }
}

resource "google_sql_database" "this" {
  for_each = toset(var.databases)

  project  = var.project_id
  instance = google_sql_database_instance.this.name
  name     = each.value
}
