output "roles" {
  description = "Map short name -> { role_id, name (projects/P/roles/ID), title, description, permissions, single, read_only }."
  value       = local.roles
}

output "names" {
  description = "Map short name -> full role name usable in bindings (projects/P/roles/ID)."
  value       = { for k, r in local.roles : k => r.name }
}

output "single_permission_count" {
  description = "How many of the roles hold exactly one permission."
  value       = length([for r in values(local.roles) : r if r.single])
}
