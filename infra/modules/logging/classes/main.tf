locals {
  # The application writes one structured JSON line per event with a
  # `log_class` field: audit, app or access. One bucket and one sink per class.
  classes = ["audit", "app", "access"]

  class_filter = { for c in local.classes : c => "jsonPayload.log_class=\"${c}\"" }

  filters = {
    audit = var.include_cloud_audit_logs ? "(${local.class_filter["audit"]}) OR logName:\"cloudaudit.googleapis.com\"" : local.class_filter["audit"]
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
