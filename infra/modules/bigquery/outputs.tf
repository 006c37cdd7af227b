output "replica_dataset_id" {
  description = "Dataset id of the replica (written by the CDC writer only)."
  value       = google_bigquery_dataset.replica.dataset_id
}

output "analytics_dataset_id" {
  description = "Dataset id of the analytics views (read by the view readers)."
  value       = google_bigquery_dataset.analytics.dataset_id
}

output "views" {
  description = "Names of the authorized views."
  value       = sort(keys(var.views))
}

output "who_reads_what" {
  description = "The declared data path: who writes the replica, who reads the views, which views are authorized on the replica."
  value = {
    replica_writers  = module.replica_access.members_by_role
    view_readers     = module.analytics_access.members_by_role
    authorized_views = [for v in sort(keys(var.views)) : "${var.project_id}.${module.naming.ids["analytics"]}.${v}"]
  }
}
