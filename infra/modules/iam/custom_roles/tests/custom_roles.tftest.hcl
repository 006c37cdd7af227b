variables {
  project_id = "fintrail-prod"
  id_prefix  = "fintrail_prod"
  roles = {
    cloudsql_connect = {
      title       = "Cloud SQL connect"
      description = "Connect to Cloud SQL through the connector."
      permissions = ["cloudsql.instances.connect"]
    }
    plan_reader = {
      title       = "Plan reader"
      description = "Read-only refresh for tofu plan."
      permissions = ["storage.buckets.get", "storage.buckets.getIamPolicy", "compute.networks.get"]
      read_only   = true
    }
  }
}

run "names_roles" {
  command = plan

  assert {
    condition     = output.names["cloudsql_connect"] == "projects/fintrail-prod/roles/fintrail_prod_cloudsql_connect"
    error_message = "role names must be projects/P/roles/fintrail_<env>_<name>"
  }

  assert {
    condition     = output.single_permission_count == 1
    error_message = "exactly one single-permission role in this input"
  }

  assert {
    condition     = output.roles["plan_reader"].read_only && !output.roles["plan_reader"].single
    error_message = "plan reader is read-only and multi-permission"
  }
}

run "rejects_set_iam_policy" {
  command = plan

  variables {
    roles = {
      sneaky = {
        title       = "Sneaky"
        description = "Would let its holder grant itself anything."
        permissions = ["resourcemanager.projects.setIamPolicy"]
      }
    }
  }

  expect_failures = [var.roles]
}

run "rejects_key_creation" {
  command = plan

  variables {
    roles = {
      keys = {
        title       = "Keys"
        description = "Service account keys are forbidden."
        permissions = ["iam.serviceAccountKeys.create"]
      }
    }
  }

  expect_failures = [var.roles]
}

run "rejects_write_in_read_only_role" {
  command = plan

  variables {
    roles = {
      plan_reader = {
        title       = "Plan reader"
        description = "Must stay read-only."
        permissions = ["storage.objects.create"]
        read_only   = true
      }
    }
  }

  expect_failures = [var.roles]
}

run "rejects_bad_prefix" {
  command = plan

  variables {
    id_prefix = "acme_prod"
  }

  expect_failures = [var.id_prefix]
}
