terraform {
  required_version = ">= 1.6.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "8.7.0"
    }
  }

  # Partial configuration: bucket and prefix come from backend.hcl
  # (tofu init -backend-config=backend.hcl), one state per environment.
  backend "gcs" {}
}

provider "google" {
  project = var.project_id
  region  = var.region
}
