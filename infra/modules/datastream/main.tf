module "naming" {
  source = "../../lib/naming"

  environment = var.environment
  component   = "datastream"
  names       = ["ds-private", "ds-source", "ds-bigquery", "ds-stream"]
  labels      = var.labels
}

# Datastream reaches Cloud SQL's private IP through a Private Service Connect interface in this
# VPC: VPC peering would not work, because private service access (Cloud SQL's own peering) is
# not transitive. The interface takes an address in this subnet; from there the VPC's egress
# rule to the private service access range on 5432 (module network) is the path to Cloud SQL,
# and the VPC's default deny covers everything else.
resource "google_compute_subnetwork" "attachment" {
  project                  = var.project_id
  region                   = var.region
  name                     = module.naming.names["ds-private"]
  network                  = var.network_id
  ip_cidr_range            = var.private_connection_cidr
  private_ip_google_access = false

  log_config {
    aggregation_interval = "INTERVAL_5_SEC"
    flow_sampling        = 1.0
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_network_attachment" "this" {
  project               = var.project_id
  region                = var.region
  name                  = module.naming.names["ds-private"]
  description           = "PSC interface of Datastream (${var.environment}) into this VPC"
  subnetworks           = [google_compute_subnetwork.attachment.self_link]
  connection_preference = length(var.datastream_tenant_projects) > 0 ? "ACCEPT_MANUAL" : "ACCEPT_AUTOMATIC"
  producer_accept_lists = var.datastream_tenant_projects
}

resource "google_datastream_private_connection" "this" {
  project               = var.project_id
  location              = var.region
  private_connection_id = module.naming.names["ds-private"]
  display_name          = module.naming.names["ds-private"]
  labels                = module.naming.labels

  psc_interface_config {
    network_attachment = google_compute_network_attachment.this.id
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
