locals {
  # The periodic jobs of `fintrail jobs` (crates/jobs: `JOBS`), one Cloud Scheduler job each,
  # calling POST <service_uri>/internal/jobs/<name> with an OIDC token whose audience is the
  # service URL. jobs.json is checked against the Rust table by the jobs crate's tests, so the
  # names and schedules here cannot drift from what `fintrail up` runs locally.
  # Keyed by jobs.json alone, so for_each is known at plan whatever the URL.
  fintrail_jobs = {
    for name, j in jsondecode(file("${path.module}/jobs.json")) : name => {
      description = j.description
      schedule    = j.schedule
      uri         = "${var.service_uri}/internal/jobs/${name}"
      audience    = var.service_uri
      http_method = "POST"
      body        = "{}"
    }
  }
  jobs = merge(local.fintrail_jobs, var.jobs)
}

module "naming" {
  source = "../../lib/naming"

  environment = var.environment
  component   = "scheduler"
  names       = keys(local.jobs)
}

# Cloud Scheduler jobs take no labels; the naming prefix identifies them.
resource "google_cloud_scheduler_job" "this" {
  for_each = local.jobs

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
