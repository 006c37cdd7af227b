locals {
  # One prefix per environment: every GCP name starts with it.
  prefix = "fintrail-${var.environment}"

  # BigQuery dataset ids and custom role ids cannot contain hyphens.
  id_prefix = "fintrail_${var.environment}"

  mandatory_labels = {
    managed_by  = "opentofu"
    system      = "fintrail"
    environment = var.environment
    component   = var.component
  }

  # Mandatory labels are merged last so a caller cannot override them.
  labels = merge(var.labels, local.mandatory_labels)

  names = { for n in var.names : n => "${local.prefix}-${n}" }
  ids   = { for n in var.names : n => "${local.id_prefix}_${replace(n, "-", "_")}" }
}
