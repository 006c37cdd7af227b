variables {
  environment    = "prod"
  retention_days = { audit = 2555, app = 90, access = 400 }
}

run "prod_audit_is_locked_and_long" {
  command = plan

  assert {
    condition     = output.buckets["audit"].locked && output.buckets["audit"].retention_days >= 1825
    error_message = "prod audit bucket must be locked and kept >= 5 years"
  }

  assert {
    condition     = !output.buckets["app"].locked && !output.buckets["access"].locked
    error_message = "only the audit bucket is locked"
  }

  assert {
    condition     = strcontains(output.buckets["audit"].filter, "jsonPayload.log_class=\"audit\"") && strcontains(output.buckets["audit"].filter, "cloudaudit.googleapis.com")
    error_message = "audit sink must take log_class=audit lines and Cloud Audit Logs"
  }

  assert {
    condition     = output.buckets["app"].filter == "jsonPayload.log_class=\"app\""
    error_message = "app sink filters on log_class=app"
  }

  assert {
    condition     = output.buckets["access"].sink_name == "fintrail-prod-access"
    error_message = "sink names are fintrail-<env>-<class>"
  }
}

run "audit_sink_admits_only_the_api" {
  command = plan

  assert {
    condition     = strcontains(output.buckets["audit"].filter, "resource.labels.service_name=\"fintrail-prod-api\"") && strcontains(output.buckets["audit"].filter, "logName:\"run.googleapis.com%2Fstdout\"")
    error_message = "audit lines are taken from the API's own Cloud Run stdout only (no other workload can forge them)"
  }
}

run "dev_audit_not_locked" {
  command = plan

  variables {
    environment    = "dev"
    retention_days = { audit = 1825, app = 7, access = 14 }
  }

  assert {
    condition     = !output.buckets["audit"].locked
    error_message = "dev audit bucket is not locked (it can be torn down)"
  }
}

run "rejects_short_audit_retention" {
  command = plan

  variables {
    retention_days = { audit = 365, app = 30, access = 30 }
  }

  expect_failures = [var.retention_days]
}

run "rejects_unknown_class" {
  command = plan

  variables {
    # Every other rule holds (audit, app and access are valid): only the key rule can reject it.
    retention_days = { audit = 1825, app = 30, access = 30, debug = 30 }
  }

  expect_failures = [var.retention_days]
}

run "rejects_app_kept_longer_than_audit" {
  command = plan

  variables {
    retention_days = { audit = 1825, app = 3650, access = 30 }
  }

  expect_failures = [var.retention_days]
}

run "rejects_invalid_environment" {
  command = plan

  variables {
    environment = "qa"
  }

  expect_failures = [var.environment]
}
