output "name" {
  description = "Repository id (fintrail-<env>-<name>)."
  value       = google_artifact_registry_repository.this.repository_id
}

output "url" {
  description = "Docker address of the repository, <location>-docker.pkg.dev/<project>/<repository>: images are <url>/<image>@sha256:<digest>. Built from known values, so it is known at plan."
  value       = "${var.location}-docker.pkg.dev/${var.project_id}/${module.naming.names[var.name]}"
}

output "members_by_role" {
  description = "Who may do what on the repository (role -> members)."
  value       = module.access.members_by_role
}
