module "naming" {
  source = "../../lib/naming"

  environment = var.environment
  component   = "scheduler"
  names       = keys(var.jobs)
}

# Cloud Scheduler jobs take no labels; the naming prefix identifies them.
resource "google_cloud_scheduler_job" "this" {
  for_each = var.jobs

  project     = var.project_id
  region      = var.region
  name        = module.naming.names[each.key]
  description = each.value.description
  schedule    = each.value.schedule
  time_zone   = var.time_zone

  retry_config {
    retry_count          = 3
    min_backoff_duration = "30s"
    max_backoff_duration = "600s"
  }

  http_target {
    uri         = each.value.uri
    http_method = each.value.http_method
    body        = base64encode(each.value.body)

    headers = {
      "Content-Type" = "application/json"
    }

    oidc_token {
      service_account_email = var.service_account_email
      audience              = each.value.audience
    }
  }
}
