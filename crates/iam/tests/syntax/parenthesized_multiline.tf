locals {
  binary_log_enabled = (
    local.is_mysql
    ? var.backup || local.has_replicas
    : null
  )
  nested = {
    for k, v in var.m : k => (
      v == null ? "none" : v
    )
  }
  splat   = var.list[*].id
  legacy  = var.list.*.id
  heredoc = <<-EOT
    hello ${var.name}
    %{for x in var.list}${x}%{endfor}
  EOT
  grouped = { for k, v in var.m : v.group => k... }
}
