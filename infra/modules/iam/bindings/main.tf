locals {
  # Roles that let a principal act as, or mint credentials for, a service
  # account. They are only acceptable on one specific service account.
  impersonation_roles = [
    "roles/iam.serviceAccountTokenCreator",
    "roles/iam.serviceAccountUser",
    "roles/iam.workloadIdentityUser",
    "roles/iam.serviceAccountOpenIdTokenCreator",
  ]

  # role -> members map flattened into one binding per (role, member), keyed
  # stably so for_each never re-creates a binding when another one changes.
  bindings = flatten([
    for role in sort(keys(var.roles)) : [
      for member in sort(distinct(var.roles[role])) : {
        key       = "${role} ${member}"
        role      = role
        member    = member
        condition = lookup(var.conditions, role, null)
      }
    ]
  ])

  by_key = { for b in local.bindings : b.key => b }

  misplaced_impersonation = [
    for b in local.bindings : b.key
    if var.scope != "service_account" && contains(local.impersonation_roles, b.role)
  ]

  unknown_condition_roles = [for r in keys(var.conditions) : r if !contains(keys(var.roles), r)]
}
