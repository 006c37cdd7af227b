module "naming" {
  source = "../../lib/naming"

  environment = var.environment
  component   = "datastream"
  names       = ["ds-private", "ds-source", "ds-bigquery", "ds-stream"]
  labels      = var.labels
}

resource "google_datastream_private_connection" "this" {
  project               = var.project_id
  location              = var.region
  private_connection_id = module.naming.names["ds-private"]
  display_name          = module.naming.names["ds-private"]
  labels                = module.naming.labels

  vpc_peering_config {
    vpc    = var.network_id
    subnet = var.private_connection_cidr
  }
}

resource "google_datastream_connection_profile" "source" {
  project               = var.project_id
  location              = var.region
  connection_profile_id = module.naming.names["ds-source"]
  display_name          = "fintrail ${var.environment} PostgreSQL (replicator role)"
  labels                = module.naming.labels

  postgresql_profile {
    hostname                       = var.source_host
    port                           = var.source_port
    username                       = var.username
    database                       = var.database
    secret_manager_stored_password = var.password_secret_version
  }

  private_connectivity {
    private_connection = google_datastream_private_connection.this.id
  }
}

resource "google_datastream_connection_profile" "destination" {
  project               = var.project_id
  location              = var.region
  connection_profile_id = module.naming.names["ds-bigquery"]
  display_name          = "fintrail ${var.environment} BigQuery"
  labels                = module.naming.labels

  bigquery_profile {}
}

resource "google_datastream_stream" "this" {
  project       = var.project_id
  location      = var.region
  stream_id     = module.naming.names["ds-stream"]
  display_name  = "fintrail ${var.environment} PostgreSQL -> BigQuery"
  desired_state = "RUNNING"
  labels        = module.naming.labels

  source_config {
    source_connection_profile = google_datastream_connection_profile.source.id

    postgresql_source_config {
      publication      = var.publication
      replication_slot = var.replication_slot

      # Default deny: only the listed tables and columns are replicated.
      include_objects {
        postgresql_schemas {
          schema = var.schema

          dynamic "postgresql_tables" {
            for_each = var.tables

            content {
              table = postgresql_tables.key

              dynamic "postgresql_columns" {
                for_each = postgresql_tables.value

                content {
                  column = postgresql_columns.value
                }
              }
            }
          }
        }
      }
    }
  }

  destination_config {
    destination_connection_profile = google_datastream_connection_profile.destination.id

    bigquery_destination_config {
      data_freshness = "${var.data_freshness_seconds}s"

      single_target_dataset {
        dataset_id = "${var.project_id}:${var.destination_dataset}"
      }
    }
  }

  backfill_all {}
}
