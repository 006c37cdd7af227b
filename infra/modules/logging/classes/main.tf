locals {
  # The application writes one structured JSON line per event with a
  # `log_class` field: audit, app or access. One bucket and one sink per class.
  classes = ["audit", "app", "access"]

  class_filter = { for c in local.classes : c => "jsonPayload.log_class=\"${c}\"" }

  # Only the API (fintrail serve, which also runs the jobs) writes audit events: an audit line
  # from any other workload (Superset, the CDC) is not audit and must never reach the locked
  # bucket, so the audit sink admits the API's own Cloud Run stdout only.
  audit_writer = "fintrail-${var.environment}-api"
  audit_own = join(" AND ", [
    local.class_filter["audit"],
    "resource.type=\"cloud_run_revision\"",
    "resource.labels.service_name=\"${local.audit_writer}\"",
    "logName:\"run.googleapis.com%2Fstdout\"",
  ])

  filters = {
    audit = var.include_cloud_audit_logs ? "(${local.audit_own}) OR logName:\"cloudaudit.googleapis.com\"" : local.audit_own
    app   = local.class_filter["app"]
    # Access logs: the application's own access lines plus the Cloud Run
    # request logs (which carry no log_class).
    access = "(${local.class_filter["access"]}) OR logName:\"run.googleapis.com%2Frequests\""
  }

  buckets = {
    for c in local.classes : c => {
      bucket_id      = "fintrail-${c}"
      sink_name      = "fintrail-${var.environment}-${c}"
      retention_days = var.retention_days[c]
      # Audit is locked in prod: retention can then never be shortened and
      # the bucket cannot be deleted before its logs expire.
      locked      = c == "audit" && var.environment == "prod"
      filter      = local.filters[c]
      description = "fintrail ${c} logs (${var.environment}), kept ${var.retention_days[c]} days"
    }
  }
}
