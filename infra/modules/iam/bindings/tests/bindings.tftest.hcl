variables {
  scope = "project"
  roles = {
    "projects/fintrail-prod/roles/fintrail_prod_cloudsql_connect" = [
      "serviceAccount:fintrail-prod-api@fintrail-prod.iam.gserviceaccount.com",
      "serviceAccount:fintrail-prod-cdc@fintrail-prod.iam.gserviceaccount.com",
    ]
    "projects/fintrail-prod/roles/fintrail_prod_bigquery_jobs_create" = [
      "group:fintrail-analysts@example.com",
      "group:fintrail-analysts@example.com",
    ]
  }
  conditions = {
    "projects/fintrail-prod/roles/fintrail_prod_cloudsql_connect" = {
      title      = "only-fintrail-prod-pg"
      expression = "resource.name == \"projects/fintrail-prod/instances/fintrail-prod-pg\""
    }
  }
}

run "flattens_role_members_map" {
  command = plan

  assert {
    condition     = length(output.bindings) == 3
    error_message = "two members + one de-duplicated member must give three bindings"
  }

  assert {
    condition     = output.by_key["projects/fintrail-prod/roles/fintrail_prod_cloudsql_connect serviceAccount:fintrail-prod-api@fintrail-prod.iam.gserviceaccount.com"].condition.title == "only-fintrail-prod-pg"
    error_message = "the condition must follow its role"
  }

  assert {
    condition     = output.by_key["projects/fintrail-prod/roles/fintrail_prod_bigquery_jobs_create group:fintrail-analysts@example.com"].condition == null
    error_message = "roles without a condition get none"
  }

  assert {
    condition     = length(output.members_by_role["projects/fintrail-prod/roles/fintrail_prod_bigquery_jobs_create"]) == 1
    error_message = "members must be de-duplicated"
  }
}

run "token_creator_allowed_on_one_service_account" {
  command = plan

  variables {
    scope      = "service_account"
    conditions = {}
    roles = {
      "roles/iam.serviceAccountUser" = ["serviceAccount:fintrail-prod-deploy@fintrail-prod.iam.gserviceaccount.com"]
    }
  }

  assert {
    condition     = output.bindings[0].role == "roles/iam.serviceAccountUser"
    error_message = "service account user is fine on one service account"
  }
}

run "rejects_basic_role" {
  command = plan

  variables {
    conditions = {}
    roles      = { "roles/editor" = ["user:someone@example.com"] }
  }

  expect_failures = [var.roles]
}

run "rejects_owner_on_a_resource_too" {
  command = plan

  variables {
    scope      = "resource"
    conditions = {}
    roles      = { "roles/owner" = ["group:admins@example.com"] }
  }

  expect_failures = [var.roles]
}

run "rejects_set_iam_policy_admin_role" {
  command = plan

  variables {
    conditions = {}
    roles      = { "roles/resourcemanager.projectIamAdmin" = ["serviceAccount:x@p.iam.gserviceaccount.com"] }
  }

  expect_failures = [var.roles]
}

run "rejects_public_members" {
  command = plan

  variables {
    scope      = "resource"
    conditions = {}
    roles      = { "roles/storage.objectViewer" = ["allUsers"] }
  }

  expect_failures = [var.roles]
}

run "rejects_project_wide_token_creator" {
  command = plan

  variables {
    conditions = {}
    roles      = { "roles/iam.serviceAccountTokenCreator" = ["serviceAccount:x@p.iam.gserviceaccount.com"] }
  }

  expect_failures = [output.bindings, output.by_key]
}

run "rejects_project_wide_service_account_user" {
  command = plan

  variables {
    conditions = {}
    roles      = { "roles/iam.serviceAccountUser" = ["serviceAccount:x@p.iam.gserviceaccount.com"] }
  }

  expect_failures = [output.bindings, output.by_key]
}

run "rejects_invalid_scope" {
  command = plan

  variables {
    scope = "organization"
  }

  expect_failures = [var.scope]
}
