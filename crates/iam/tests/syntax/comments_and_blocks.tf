/* block comment */
// line comment
# hash comment
terraform {
  required_version = ">= 1.5"
}

resource "null_resource" "r" {
  for_each = toset(["a"])
  triggers = {
    k = each.key # trailing
  }
  lifecycle {
    ignore_changes = [triggers]
    precondition {
      condition     = each.key != ""
      error_message = "empty"
    }
  }
}

moved {
  from = null_resource.old
  to   = null_resource.r
}

import {
  to = null_resource.r["a"]
  id = "a"
}

check "health" {
  assert {
    condition     = true
    error_message = "never"
  }
}
