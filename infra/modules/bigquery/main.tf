module "naming" {
  source = "../../lib/naming"

  environment = var.environment
  component   = "bigquery"
  names       = ["replica", "analytics"]
  labels      = var.labels
}

locals {
  replica_ref = "${var.project_id}.${module.naming.ids["replica"]}"

  view_queries = {
    for name, v in var.views :
    name => replace(replace(v.query, "{replica}", local.replica_ref), "{table_prefix}", var.replica_table_prefix)
  }
}

# Replicated rows from PostgreSQL (written by the CDC writer only).
resource "google_bigquery_dataset" "replica" {
  project                    = var.project_id
  dataset_id                 = module.naming.ids["replica"]
  friendly_name              = "fintrail ${var.environment} replica"
  description                = "Rows replicated from the transactional database by the CDC writer. Nobody else reads it; views read it as authorized views."
  location                   = var.location
  delete_contents_on_destroy = var.delete_contents_on_destroy
  # Where contents are kept on destroy (staging, prod), the dataset itself cannot be deleted.
  deletion_policy = var.delete_contents_on_destroy ? "DELETE" : "PREVENT"
  labels          = merge(module.naming.labels, { data_class = "replica" })

  # The whole ACL, authoritative: BigQuery's default entries (project owners, writers and
  # readers) are gone, so nobody reads replicated rows through a basic role. Only the CDC
  # writer, and the views of the analytics dataset (an authorized dataset: the deploy identity
  # alone creates tables there), have access. No google_bigquery_dataset_iam_* or
  # google_bigquery_dataset_access resource touches this dataset: the provider's dataset IAM
  # updater rewrites `access` and would drop these entries.
  dynamic "access" {
    for_each = toset(var.replica_writers)
    content {
      role          = var.replica_writer_role
      user_by_email = trimprefix(access.value, "serviceAccount:")
    }
  }

  access {
    dataset {
      dataset {
        project_id = var.project_id
        dataset_id = google_bigquery_dataset.analytics.dataset_id
      }
      target_types = ["VIEWS"]
    }
  }

  lifecycle {
    precondition {
      condition     = alltrue([for w in var.replica_writers : startswith(w, "serviceAccount:")])
      error_message = "Replica writers are service accounts (the CDC writer)."
    }
  }
}

# Analytical views: the only thing analysts and Superset can read.
resource "google_bigquery_dataset" "analytics" {
  project                    = var.project_id
  dataset_id                 = module.naming.ids["analytics"]
  friendly_name              = "fintrail ${var.environment} analytics"
  description                = "Analytical views over the replica (authorized views). Readers get the views, never the replica."
  location                   = var.location
  delete_contents_on_destroy = var.delete_contents_on_destroy
  # Where contents are kept on destroy (staging, prod), the dataset itself cannot be deleted.
  deletion_policy = var.delete_contents_on_destroy ? "DELETE" : "PREVENT"
  labels          = merge(module.naming.labels, { data_class = "analytics" })
}

# Who writes the replica, as a role -> members map (for the outputs; the grant is in `access`).
module "replica_access" {
  source = "../iam/bindings"

  scope = "resource"
  roles = { (var.replica_writer_role) = var.replica_writers }
}

module "analytics_access" {
  source = "../iam/bindings"

  scope = "resource"
  roles = { (var.view_reader_role) = var.view_readers }
}

# Dataset-level IAM on the analytics dataset only.
resource "google_bigquery_dataset_iam_member" "view_reader" {
  for_each = module.analytics_access.by_key

  project    = var.project_id
  dataset_id = google_bigquery_dataset.analytics.dataset_id
  role       = each.value.role
  member     = each.value.member
}

resource "google_bigquery_table" "view" {
  for_each = var.views

  project             = var.project_id
  dataset_id          = google_bigquery_dataset.analytics.dataset_id
  table_id            = each.key
  description         = each.value.description
  deletion_protection = false
  labels              = merge(module.naming.labels, { data_class = "analytics" })

  view {
    query          = local.view_queries[each.key]
    use_legacy_sql = false
  }
}
