output "name" {
  description = "Bucket name."
  value       = google_storage_bucket.this.name
}

output "url" {
  description = "gs:// URL of the bucket."
  value       = google_storage_bucket.this.url
}

output "members_by_role" {
  description = "Who may do what on the bucket (role -> members)."
  value       = module.access.members_by_role
}
