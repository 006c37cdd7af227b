output "classes" {
  description = "The log classes, as the application emits them in the log_class field."
  value       = local.classes
}

output "buckets" {
  description = "Map log class -> { bucket_id, sink_name, retention_days, locked, filter, description }."
  value       = local.buckets
}
