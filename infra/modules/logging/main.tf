# Retention, lock and filter per log class are computed and validated by a
# provider-free module (tested offline).
module "classes" {
  source = "./classes"

  environment              = var.environment
  retention_days           = var.retention_days
  include_cloud_audit_logs = var.include_cloud_audit_logs
}

resource "google_logging_project_bucket_config" "this" {
  for_each = module.classes.buckets

  project        = var.project_id
  location       = var.location
  bucket_id      = each.value.bucket_id
  retention_days = each.value.retention_days
  locked         = each.value.locked
  description    = each.value.description
}

# One sink per log class: the application writes log_class = audit | app | access.
resource "google_logging_project_sink" "this" {
  for_each = module.classes.buckets

  project                = var.project_id
  name                   = each.value.sink_name
  description            = "Routes ${each.key} logs to their own bucket"
  destination            = "logging.googleapis.com/${google_logging_project_bucket_config.this[each.key].id}"
  filter                 = each.value.filter
  unique_writer_identity = true
}

# The _Default sink keeps no copy of a class that has its own bucket: audit entries live only
# in the (locked, in prod) audit bucket, not 30 more days in _Default.
resource "google_logging_project_exclusion" "from_default" {
  for_each = module.classes.buckets

  project     = var.project_id
  name        = "fintrail-${var.environment}-${each.key}-not-in-default"
  description = "Routed to ${each.value.bucket_id} by ${each.value.sink_name}: no copy in _Default"
  filter      = each.value.filter
}

# Data Access audit logs: every read of a secret, object or table is recorded.
resource "google_project_iam_audit_config" "data_access" {
  for_each = toset(var.data_access_audit_services)

  project = var.project_id
  service = each.value

  audit_log_config {
    log_type = "ADMIN_READ"
  }

  audit_log_config {
    log_type = "DATA_READ"
  }

  audit_log_config {
    log_type = "DATA_WRITE"
  }
}
