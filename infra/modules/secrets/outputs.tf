output "ids" {
  description = "Map short name -> secret id (projects/P/secrets/NAME)."
  value       = { for k, s in google_secret_manager_secret.this : k => s.id }
}

output "secret_ids" {
  description = "Map short name -> secret_id (fintrail-<env>-<name>), as Cloud Run secret references expect."
  value       = module.naming.names
  depends_on  = [google_secret_manager_secret.this]
}

output "accessors" {
  description = "Map short name -> members allowed to read it (who can read which secret)."
  value       = { for k, s in var.secrets : k => sort(distinct(s.accessors)) }
}
