locals {
  parent     = "projects/${var.project_id}"
  exceptions = { for e in var.drs_exceptions : e.name => e }
}

# Domain Restricted Sharing on the environment's project. It inherits the
# organization's policy and adds nothing for the project as a whole: the only
# extra customer ids are allowed under a condition that matches one tagged
# resource. The organization-level policy is never touched from here.
resource "google_org_policy_policy" "domain_restricted_sharing" {
  name   = "${local.parent}/policies/iam.allowedPolicyMemberDomains"
  parent = local.parent

  spec {
    inherit_from_parent = true

    rules {
      values {
        allowed_values = var.allowed_customer_ids
      }
    }

    dynamic "rules" {
      for_each = local.exceptions

      content {
        condition {
          title       = "drs-exception-${rules.key}"
          description = "${rules.value.justification} (ticket ${rules.value.ticket}, expires ${rules.value.expires})"
          expression  = "resource.matchTagId('${google_tags_tag_key.drs_exception[0].id}', '${google_tags_tag_value.drs_exception[rules.key].id}')"
        }

        values {
          allowed_values = concat(var.allowed_customer_ids, rules.value.allowed_customer_ids)
        }
      }
    }
  }
}

resource "google_org_policy_policy" "boolean" {
  for_each = toset(var.enforced_boolean_constraints)

  name   = "${local.parent}/policies/${each.value}"
  parent = local.parent

  spec {
    rules {
      enforce = "TRUE"
    }
  }
}

# Exception plumbing, only when an exception exists: a tag key, one tag value
# per exception, bound to exactly one resource.
resource "google_tags_tag_key" "drs_exception" {
  count = length(var.drs_exceptions) > 0 ? 1 : 0

  parent      = local.parent
  short_name  = "fintrail-drs-exception"
  description = "fintrail ${var.environment}: marks the single resource a Domain Restricted Sharing exception applies to."
}

resource "google_tags_tag_value" "drs_exception" {
  for_each = local.exceptions

  parent      = google_tags_tag_key.drs_exception[0].id
  short_name  = each.key
  description = "${each.value.justification} (ticket ${each.value.ticket}, expires ${each.value.expires})"
}

resource "google_tags_location_tag_binding" "drs_exception" {
  for_each = local.exceptions

  parent    = each.value.resource
  tag_value = google_tags_tag_value.drs_exception[each.key].id
  location  = each.value.location
}
