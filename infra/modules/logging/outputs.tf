output "buckets" {
  description = "Map log class -> log bucket id."
  value       = { for c, b in google_logging_project_bucket_config.this : c => b.id }
}

output "retention_days" {
  description = "Map log class -> retention in days."
  value       = { for c, b in module.classes.buckets : c => b.retention_days }
}

output "locked" {
  description = "Map log class -> whether the bucket is locked (audit in prod)."
  value       = { for c, b in module.classes.buckets : c => b.locked }
}

output "sink_writer_identities" {
  description = "Map log class -> writer identity of the sink."
  value       = { for c, s in google_logging_project_sink.this : c => s.writer_identity }
}
