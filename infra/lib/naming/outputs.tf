output "prefix" {
  description = "Name prefix for the environment, e.g. fintrail-prod."
  value       = local.prefix
}

output "id_prefix" {
  description = "Identifier prefix for resources that forbid hyphens (BigQuery datasets, custom roles), e.g. fintrail_prod."
  value       = local.id_prefix
}

output "labels" {
  description = "Labels to put on every labelable resource: the caller's labels merged with the mandatory ones."
  value       = local.labels
}

output "names" {
  description = "Map short name -> full hyphenated name (fintrail-<env>-<name>)."
  value       = local.names
}

output "ids" {
  description = "Map short name -> full underscored identifier (fintrail_<env>_<name>)."
  value       = local.ids
}
