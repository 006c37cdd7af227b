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

output "server_ca_cert" {
  description = "PEM of the instance's server CA: the services verify the server against it (FINTRAIL_DB_SSLMODE=verify-ca; the certificate names the instance, not the private IP). Public, not a secret."
  value       = google_sql_database_instance.this.server_ca_cert[0].cert
}
