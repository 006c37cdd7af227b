# Emails and members are computed from names (known at plan time, so other
# modules can use them in for_each keys) and wait for the accounts to exist.
output "emails" {
  description = "Map service account short name -> email."
  value       = local.emails
  depends_on  = [google_service_account.this]
}

output "members" {
  description = "Map service account short name -> IAM member string (serviceAccount:<email>)."
  value       = { for k, e in local.emails : k => "serviceAccount:${e}" }
  depends_on  = [google_service_account.this]
}

output "ids" {
  description = "Map service account short name -> fully qualified service account id (projects/P/serviceAccounts/EMAIL)."
  value       = { for k, sa in google_service_account.this : k => sa.id }
}

output "custom_role_names" {
  description = "Map custom role short name -> role name (projects/P/roles/ID), for bindings in other modules."
  value       = module.custom_roles.names
  depends_on  = [google_project_iam_custom_role.this]
}

output "project_members_by_role" {
  description = "Who holds which role on the project (role -> members), as declared."
  value       = module.project_bindings.members_by_role
}

output "service_account_members_by_role" {
  description = "Who holds which role on which service account (service account -> role -> members), as declared."
  value       = { for sa, m in module.service_account_bindings : sa => m.members_by_role }
}
