output "stream_id" {
  description = "Id of the Datastream stream."
  value       = google_datastream_stream.this.id
}

output "replicated_tables" {
  description = "The replication policy as applied: table -> replicated columns."
  value       = var.tables
}

output "private_connection_id" {
  description = "Id of the Datastream private connection."
  value       = google_datastream_private_connection.this.id
}
