module "naming" {
  source = "../../lib/naming"

  environment = var.environment
  component   = "iam"
  names       = keys(var.service_accounts)
}

# Custom roles are validated by a provider-free module (tested offline).
module "custom_roles" {
  source = "./custom_roles"

  project_id = var.project_id
  id_prefix  = module.naming.id_prefix
  roles      = var.custom_roles
}

locals {
  emails = {
    for k, _ in var.service_accounts :
    k => "${module.naming.names[k]}@${var.project_id}.iam.gserviceaccount.com"
  }

  # Member shorthand sa:<name> -> serviceAccount:<email>.
  resolve_member = { for k, e in local.emails : "sa:${k}" => "serviceAccount:${e}" }

  # Role shorthand: custom role short name -> projects/P/roles/ID.
  custom_role_names = module.custom_roles.names

  project_roles = {
    for role, members in var.project_bindings :
    lookup(local.custom_role_names, role, role) => [for m in members : lookup(local.resolve_member, m, m)]
  }

  project_conditions = {
    for role, c in var.project_binding_conditions : lookup(local.custom_role_names, role, role) => c
  }

  service_account_roles = {
    for sa, roles in var.service_account_bindings : sa => {
      for role, members in roles :
      lookup(local.custom_role_names, role, role) => [for m in members : lookup(local.resolve_member, m, m)]
    }
  }
}

# Flatten and check the bindings offline: no basic roles, no admin roles that
# carry setIamPolicy, no project-wide token creator / service account user.
module "project_bindings" {
  source = "./bindings"

  scope      = "project"
  roles      = local.project_roles
  conditions = local.project_conditions
}

module "service_account_bindings" {
  source   = "./bindings"
  for_each = local.service_account_roles

  scope = "service_account"
  roles = each.value
}

resource "google_service_account" "this" {
  for_each = var.service_accounts

  project      = var.project_id
  account_id   = module.naming.names[each.key]
  display_name = each.value.display_name
  description  = each.value.description
}

resource "google_project_iam_custom_role" "this" {
  for_each = module.custom_roles.roles

  project     = var.project_id
  role_id     = each.value.role_id
  title       = each.value.title
  description = each.value.description
  permissions = each.value.permissions
  stage       = "GA"
}

resource "google_project_iam_member" "this" {
  for_each = module.project_bindings.by_key

  project = var.project_id
  role    = each.value.role
  member  = each.value.member

  dynamic "condition" {
    for_each = each.value.condition == null ? [] : [each.value.condition]

    content {
      title       = condition.value.title
      description = condition.value.description
      expression  = condition.value.expression
    }
  }

  depends_on = [google_project_iam_custom_role.this, google_service_account.this]
}

resource "google_service_account_iam_member" "this" {
  for_each = merge([
    for sa, m in module.service_account_bindings : {
      for key, b in m.by_key : "${sa} ${key}" => merge(b, { service_account = sa })
    }
  ]...)

  # Built from the email (known at plan, as the account's `name` is not), so a plan shows which
  # account each grant is on; depends_on keeps the order the reference gave.
  service_account_id = "projects/${var.project_id}/serviceAccounts/${local.emails[each.value.service_account]}"
  role               = each.value.role
  member             = each.value.member

  depends_on = [google_project_iam_custom_role.this, google_service_account.this]
}
