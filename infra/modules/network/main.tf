module "naming" {
  source = "../../lib/naming"

  environment = var.environment
  component   = "network"
  names       = ["vpc", "subnet", "psa", "conn"]
  labels      = var.labels
}

locals {
  names = module.naming.names

  # Ranges the serverless connector's health checks come from (Google documented).
  serverless_health_ranges = ["35.199.224.0/19", "107.178.230.64/26", "130.211.0.0/22", "35.191.0.0/16"]

  # private.googleapis.com, for Private Google Access.
  private_google_apis_range = "199.36.153.8/30"

  private_service_access_cidr = "${google_compute_global_address.private_services.address}/${var.private_service_access_prefix_length}"
}

# One VPC per environment: no peering between environments, no default network.
resource "google_compute_network" "vpc" {
  project                         = var.project_id
  name                            = local.names["vpc"]
  description                     = "fintrail ${var.environment} VPC (isolated per environment)"
  auto_create_subnetworks         = false
  routing_mode                    = "REGIONAL"
  delete_default_routes_on_create = false
}

resource "google_compute_subnetwork" "main" {
  project                  = var.project_id
  name                     = local.names["subnet"]
  region                   = var.region
  network                  = google_compute_network.vpc.id
  ip_cidr_range            = var.subnet_cidr
  private_ip_google_access = true

  log_config {
    aggregation_interval = "INTERVAL_5_SEC"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

# Private service access: Cloud SQL and Memorystore get private IPs only.
resource "google_compute_global_address" "private_services" {
  project       = var.project_id
  name          = local.names["psa"]
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  prefix_length = var.private_service_access_prefix_length
  network       = google_compute_network.vpc.id
  labels        = module.naming.labels
}

resource "google_service_networking_connection" "private_services" {
  network                 = google_compute_network.vpc.id
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.private_services.name]
}

# Cloud Run reaches the private IPs through this connector (private ranges only).
resource "google_vpc_access_connector" "serverless" {
  project       = var.project_id
  name          = local.names["conn"]
  region        = var.region
  network       = google_compute_network.vpc.name
  ip_cidr_range = var.connector_cidr
  min_instances = var.connector_min_instances
  max_instances = var.connector_max_instances
}

# Firewall: deny by default in both directions, then allow only what is named.
resource "google_compute_firewall" "deny_all_ingress" {
  project     = var.project_id
  name        = "${local.names["vpc"]}-deny-all-ingress"
  network     = google_compute_network.vpc.id
  description = "Default deny: no ingress unless a higher-priority rule allows it."
  direction   = "INGRESS"
  priority    = 65534

  deny {
    protocol = "all"
  }

  source_ranges = ["0.0.0.0/0"]

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_firewall" "deny_all_egress" {
  project            = var.project_id
  name               = "${local.names["vpc"]}-deny-all-egress"
  network            = google_compute_network.vpc.id
  description        = "Default deny: no egress unless a higher-priority rule allows it."
  direction          = "EGRESS"
  priority           = 65534
  destination_ranges = ["0.0.0.0/0"]

  deny {
    protocol = "all"
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_firewall" "allow_egress_private_services" {
  project            = var.project_id
  name               = "${local.names["vpc"]}-allow-egress-private-services"
  network            = google_compute_network.vpc.id
  description        = "Egress to Cloud SQL (5432) and Memorystore with TLS (6378) over private service access."
  direction          = "EGRESS"
  priority           = 1000
  destination_ranges = [local.private_service_access_cidr]

  allow {
    protocol = "tcp"
    ports    = ["5432", "6378"]
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_firewall" "allow_egress_google_apis" {
  project            = var.project_id
  name               = "${local.names["vpc"]}-allow-egress-google-apis"
  network            = google_compute_network.vpc.id
  description        = "Egress to Google APIs through Private Google Access only."
  direction          = "EGRESS"
  priority           = 1000
  destination_ranges = [local.private_google_apis_range]

  allow {
    protocol = "tcp"
    ports    = ["443"]
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_firewall" "allow_ingress_connector_health" {
  project       = var.project_id
  name          = "${local.names["vpc"]}-allow-connector-health"
  network       = google_compute_network.vpc.id
  description   = "Health checks of the serverless VPC connector (Google documented ranges), to the connector only."
  direction     = "INGRESS"
  priority      = 1000
  source_ranges = local.serverless_health_ranges
  target_tags   = ["vpc-connector"]

  allow {
    protocol = "tcp"
    ports    = ["667"]
  }

  allow {
    protocol = "udp"
    ports    = ["665-666"]
  }

  allow {
    protocol = "icmp"
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}
