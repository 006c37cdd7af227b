output "network_id" {
  description = "Id of the environment's VPC, available once private service access is connected (Cloud SQL and Redis need it)."
  value       = google_compute_network.vpc.id
  depends_on  = [google_service_networking_connection.private_services]
}

output "network_name" {
  description = "Name of the environment's VPC."
  value       = google_compute_network.vpc.name
}

output "subnet_id" {
  description = "Id of the environment's subnet."
  value       = google_compute_subnetwork.main.id
}

output "private_service_access_range_name" {
  description = "Name of the range reserved for private service access."
  value       = google_compute_global_address.private_services.name
}

output "private_service_access_cidr" {
  description = "CIDR of the range reserved for private service access."
  value       = local.private_service_access_cidr
}

output "connector_id" {
  description = "Id of the Serverless VPC Access connector Cloud Run services use."
  value       = google_vpc_access_connector.serverless.id
}
