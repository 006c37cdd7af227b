variable "scope" {
  type        = string
  description = "Where the bindings are applied: project, service_account (one specific service account) or resource (a bucket, secret, dataset, service...)."

  validation {
    condition     = contains(["project", "service_account", "resource"], var.scope)
    error_message = "The scope must be one of project, service_account, resource."
  }
}

variable "roles" {
  type        = map(list(string))
  description = "Map role -> members, e.g. { \"projects/p/roles/fintrail_prod_cloudsql_connect\" = [\"serviceAccount:a@p.iam.gserviceaccount.com\"] }."

  validation {
    # Basic roles are never allowed, at any scope.
    condition = alltrue([
      # Spelled as "roles/" + name so that no .tf file holds a basic role literal.
      for role in keys(var.roles) : !contains([for basic in ["owner", "editor", "viewer"] : "roles/${basic}"], role)
    ])
    error_message = "Basic roles (owner, editor, viewer) are forbidden: use a custom role with the fewest permissions."
  }

  validation {
    # Admin roles that carry setIamPolicy would let an identity grant itself more.
    condition = alltrue([
      for role in keys(var.roles) : !contains([
        "roles/resourcemanager.projectIamAdmin",
        "roles/iam.securityAdmin",
        "roles/iam.serviceAccountAdmin",
        "roles/iam.roleAdmin",
        "roles/iam.organizationRoleAdmin",
        "roles/iam.serviceAccountKeyAdmin",
        "roles/orgpolicy.policyAdmin",
        "roles/storage.admin",
        "roles/secretmanager.admin",
        "roles/bigquery.admin",
        "roles/run.admin",
      ], role)
    ])
    error_message = "Roles that carry setIamPolicy or key creation are forbidden: no identity may hold a grant that controls grants."
  }

  validation {
    condition = alltrue([
      for role in keys(var.roles) :
      can(regex("^(roles/[a-zA-Z0-9_.]+|projects/[a-z0-9-]+/roles/[a-zA-Z0-9_.]+|organizations/[0-9]+/roles/[a-zA-Z0-9_.]+)$", role))
    ])
    error_message = "Roles must be roles/NAME, projects/PROJECT/roles/NAME or organizations/ID/roles/NAME."
  }

  validation {
    condition = alltrue(flatten([
      for role, members in var.roles : [
        for m in members : can(regex("^(serviceAccount|group|user|domain|principal|principalSet):.+$", m))
      ]
    ]))
    error_message = "Members must be typed (serviceAccount:, group:, user:, domain:, principal:, principalSet:); allUsers and allAuthenticatedUsers are forbidden."
  }
}

variable "conditions" {
  type = map(object({
    title       = string
    description = optional(string, "")
    expression  = string
  }))
  description = "Optional IAM condition per role (same keys as roles), e.g. to restrict a project-level Cloud SQL grant to one instance."
  default     = {}
}
