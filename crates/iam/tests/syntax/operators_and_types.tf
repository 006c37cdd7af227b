variable "x" {
  type = object({
    a = optional(string, "d")
    b = optional(list(map(number)), [])
  })
  default = null
  validation {
    condition     = var.x == null || length(var.x.a) > 0 && !(var.x.a == "z")
    error_message = "bad."
  }
}

locals {
  a = -1 + 2 * 3 / 4 % 5
  b = true && false || !true
  c = [for i, v in ["a", "b"] : "${i}-${v}"]
  d = { "quoted key" = 1, (local.a) = 2, plain = 3 }
  e = try(var.x.a, null) != null ? 1 : 0
  f = <<EOT
raw ${local.a}
EOT
}
