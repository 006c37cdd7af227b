variables {
  environment = "prod"
  component   = "cloud_sql"
  names       = ["pg", "media-signer"]
  labels = {
    team        = "platform"
    environment = "spoofed"
  }
}

run "names_and_labels" {
  command = plan

  assert {
    condition     = output.prefix == "fintrail-prod"
    error_message = "prefix must be fintrail-<env>"
  }

  assert {
    condition     = output.names["media-signer"] == "fintrail-prod-media-signer"
    error_message = "hyphenated names must be prefixed"
  }

  assert {
    condition     = output.ids["media-signer"] == "fintrail_prod_media_signer"
    error_message = "ids must use underscores"
  }

  assert {
    condition     = output.labels["environment"] == "prod" && output.labels["managed_by"] == "opentofu" && output.labels["system"] == "fintrail"
    error_message = "mandatory labels must win over caller labels"
  }

  assert {
    condition     = output.labels["team"] == "platform" && output.labels["component"] == "cloud_sql"
    error_message = "caller labels and component must be kept"
  }
}

run "rejects_unknown_environment" {
  command = plan

  variables {
    environment = "production"
  }

  expect_failures = [var.environment]
}

run "rejects_bad_label" {
  command = plan

  variables {
    labels = { "Team" = "Platform" }
  }

  expect_failures = [var.labels]
}

run "rejects_bad_name" {
  command = plan

  variables {
    names = ["Bad_Name"]
  }

  expect_failures = [var.names]
}
