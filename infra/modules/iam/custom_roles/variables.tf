variable "project_id" {
  type        = string
  description = "Project that holds the custom roles."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "The project id must be 6-30 lower-case letters, digits or hyphens."
  }
}

variable "id_prefix" {
  type        = string
  description = "Prefix of every role id, e.g. fintrail_prod (from lib/naming)."

  validation {
    condition     = can(regex("^fintrail_(dev|staging|prod)$", var.id_prefix))
    error_message = "The role id prefix must be fintrail_<environment>."
  }
}

variable "roles" {
  type = map(object({
    title       = string
    description = string
    permissions = list(string)
    read_only   = optional(bool, false)
  }))
  description = "Map short role name -> role. One permission per role unless the role is read_only (the plan reader) or a documented set that one API call needs."

  validation {
    condition     = alltrue([for k, _ in var.roles : can(regex("^[a-z][a-z0-9_]{2,40}$", k))])
    error_message = "Role short names must match ^[a-z][a-z0-9_]{2,40}$."
  }

  validation {
    condition = alltrue(flatten([
      for _, r in var.roles : [for p in r.permissions : can(regex("^[a-z][a-zA-Z0-9]*(\\.[a-zA-Z0-9]+){2}$", p))]
    ]))
    error_message = "Permissions must look like service.resource.verb."
  }

  validation {
    condition     = alltrue([for _, r in var.roles : length(r.permissions) >= 1 && length(r.permissions) == length(distinct(r.permissions))])
    error_message = "Every role needs at least one permission and no duplicates."
  }

  validation {
    # No custom role may control grants or credentials: that is how an
    # identity would grant itself more.
    condition = alltrue(flatten([
      for _, r in var.roles : [
        for p in r.permissions :
        !endswith(p, ".setIamPolicy") &&
        !startswith(p, "iam.serviceAccountKeys.") &&
        !can(regex("^iam\\.roles\\.(create|update|delete|undelete)$", p)) &&
        !contains(["iam.serviceAccounts.actAs", "iam.serviceAccounts.getAccessToken", "iam.serviceAccounts.implicitDelegation", "orgpolicy.policy.set", "resourcemanager.projects.delete"], p)
      ]
    ]))
    error_message = "Custom roles must not carry setIamPolicy, service-account key, role-administration, actAs, getAccessToken or org-policy-set permissions."
  }

  validation {
    condition = alltrue(flatten([
      for _, r in var.roles : [
        for p in r.permissions : !r.read_only || can(regex("\\.(get|list|getIamPolicy|getMetadata)$", p))
      ]
    ]))
    error_message = "A read_only role may only hold get, list, getIamPolicy or getMetadata permissions."
  }

  validation {
    condition     = alltrue([for _, r in var.roles : r.read_only || length(r.permissions) <= 6])
    error_message = "A non-read-only role holds at most 6 permissions: split it into single-permission roles."
  }
}
