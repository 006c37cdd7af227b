output "domain_restricted_sharing" {
  description = "Name of the project's Domain Restricted Sharing policy."
  value       = google_org_policy_policy.domain_restricted_sharing.name
}

output "enforced_boolean_constraints" {
  description = "Boolean constraints enforced on the project."
  value       = sort(var.enforced_boolean_constraints)
}

output "drs_exceptions" {
  description = "Map exception name -> the one resource it applies to."
  value       = { for k, e in local.exceptions : k => e.resource }
}
