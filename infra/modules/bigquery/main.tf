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
  labels                     = merge(module.naming.labels, { data_class = "replica" })
}

# Analytical views: the only thing analysts and Superset can read.
resource "google_bigquery_dataset" "analytics" {
  project                    = var.project_id
  dataset_id                 = module.naming.ids["analytics"]
  friendly_name              = "fintrail ${var.environment} analytics"
  description                = "Analytical views over the replica (authorized views). Readers get the views, never the replica."
  location                   = var.location
  delete_contents_on_destroy = var.delete_contents_on_destroy
  labels                     = merge(module.naming.labels, { data_class = "analytics" })
}

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

# Dataset-level IAM (non-authoritative members, so the authorized-view entries stay).
resource "google_bigquery_dataset_iam_member" "replica_writer" {
  for_each = module.replica_access.by_key

  project    = var.project_id
  dataset_id = google_bigquery_dataset.replica.dataset_id
  role       = each.value.role
  member     = each.value.member
}

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

# Authorized views: each view (not its readers) may read the replica dataset.
resource "google_bigquery_dataset_access" "authorized_view" {
  for_each = var.views

  project    = var.project_id
  dataset_id = google_bigquery_dataset.replica.dataset_id

  view {
    project_id = var.project_id
    dataset_id = google_bigquery_dataset.analytics.dataset_id
    table_id   = google_bigquery_table.view[each.key].table_id
  }
}
