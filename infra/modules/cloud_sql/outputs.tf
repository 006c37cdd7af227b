output "instance_name" {
  description = "Name of the Cloud SQL instance."
  value       = google_sql_database_instance.this.name
}

output "connection_name" {
  description = "Connection name project:region:instance."
  value       = google_sql_database_instance.this.connection_name
}

output "private_ip_address" {
  description = "Private IP address of the instance (the only address it has)."
  value       = google_sql_database_instance.this.private_ip_address
}

output "databases" {
  description = "Names of the databases created on the instance."
  value       = sort([for d in google_sql_database.this : d.name])
}

output "logical_decoding" {
  description = "Whether cloudsql.logical_decoding is on."
  value       = var.logical_decoding
}
