output "bindings" {
  description = "Flat list of bindings: one object { key, role, member, condition } per (role, member)."
  value       = local.bindings

  precondition {
    condition     = length(local.misplaced_impersonation) == 0
    error_message = "Token creator / service account user / workload identity user may only be granted on one specific service account (scope = service_account), found: ${join(", ", local.misplaced_impersonation)}."
  }

  precondition {
    condition     = length(local.unknown_condition_roles) == 0
    error_message = "Conditions given for roles that are not bound: ${join(", ", local.unknown_condition_roles)}."
  }
}

output "by_key" {
  description = "The same bindings as a map keyed by \"<role> <member>\", ready for for_each."
  value       = local.by_key

  precondition {
    condition     = length(local.misplaced_impersonation) == 0
    error_message = "Token creator / service account user / workload identity user may only be granted on one specific service account (scope = service_account), found: ${join(", ", local.misplaced_impersonation)}."
  }
}

output "members_by_role" {
  description = "Map role -> sorted distinct members (who holds what), for documentation and audits."
  value       = { for role, members in var.roles : role => sort(distinct(members)) }
}
