module "naming" {
  source = "../../lib/naming"

  environment = var.environment
  component   = "storage"
  names       = [var.name]
  labels      = var.labels
}

module "access" {
  source = "../iam/bindings"

  scope = "resource"
  roles = var.iam
}

resource "google_storage_bucket" "this" {
  project       = var.project_id
  name          = "${module.naming.names[var.name]}-${substr(sha256(var.project_id), 0, 6)}"
  location      = var.location
  storage_class = "STANDARD"
  force_destroy = var.force_destroy
  labels        = module.naming.labels

  # No ACLs, no public access: only IAM, and only the signer identity.
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  enable_object_retention = var.object_retention

  versioning {
    enabled = true
  }

  soft_delete_policy {
    retention_duration_seconds = var.soft_delete_days * 86400
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_days
      with_state                 = "ARCHIVED"
    }

    action {
      type = "Delete"
    }
  }

  dynamic "cors" {
    for_each = length(var.cors_origins) > 0 ? [1] : []

    content {
      origin          = var.cors_origins
      method          = ["GET", "PUT"]
      response_header = ["Content-Type"]
      max_age_seconds = 900
    }
  }
}

resource "google_storage_bucket_iam_member" "this" {
  for_each = module.access.by_key

  bucket = google_storage_bucket.this.name
  role   = each.value.role
  member = each.value.member
}
