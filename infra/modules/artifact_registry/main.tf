module "naming" {
  source = "../../lib/naming"

  environment = var.environment
  component   = "artifact_registry"
  names       = [var.name]
  labels      = var.labels
}

module "access" {
  source = "../iam/bindings"

  scope = "resource"
  roles = var.iam
}

# The image repository. Tags are immutable: a tag names one build forever, and deployments
# name a digest anyway (infra/modules/service); nothing is ever deleted automatically, so a
# digest that a revision runs stays pullable.
resource "google_artifact_registry_repository" "this" {
  project       = var.project_id
  location      = var.location
  repository_id = module.naming.names[var.name]
  description   = var.description
  format        = "DOCKER"
  mode          = "STANDARD_REPOSITORY"
  labels        = module.naming.labels

  docker_config {
    immutable_tags = true
  }
}

resource "google_artifact_registry_repository_iam_member" "this" {
  for_each = module.access.by_key

  project    = var.project_id
  location   = var.location
  repository = google_artifact_registry_repository.this.repository_id
  role       = each.value.role
  member     = each.value.member
}
