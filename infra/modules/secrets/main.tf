module "naming" {
  source = "../../lib/naming"

  environment = var.environment
  component   = "secrets"
  names       = keys(var.secrets)
  labels      = var.labels
}

# Access is declared per secret and per member; the provider-free bindings
# module flattens and checks it (no basic roles, typed members only).
module "access" {
  source   = "../iam/bindings"
  for_each = var.secrets

  scope = "resource"
  roles = { "roles/secretmanager.secretAccessor" = each.value.accessors }
}

resource "google_secret_manager_secret" "this" {
  for_each = var.secrets

  project   = var.project_id
  secret_id = module.naming.names[each.key]
  labels    = module.naming.labels

  annotations = {
    description = each.value.description
  }

  replication {
    user_managed {
      replicas {
        location = var.region
      }
    }
  }
}

resource "google_secret_manager_secret_iam_member" "accessor" {
  for_each = merge([
    for s, m in module.access : {
      for key, b in m.by_key : "${s} ${key}" => merge(b, { secret = s })
    }
  ]...)

  project   = var.project_id
  secret_id = google_secret_manager_secret.this[each.value.secret].secret_id
  role      = each.value.role
  member    = each.value.member
}
