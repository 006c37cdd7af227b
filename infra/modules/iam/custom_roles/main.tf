locals {
  roles = {
    for k, r in var.roles : k => {
      role_id     = "${var.id_prefix}_${k}"
      name        = "projects/${var.project_id}/roles/${var.id_prefix}_${k}"
      title       = r.title
      description = r.description
      permissions = sort(r.permissions)
      single      = length(r.permissions) == 1
      read_only   = r.read_only
    }
  }
}
