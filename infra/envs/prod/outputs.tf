output "stack" {
  description = "The environment's outputs (api_uri, who_reads_what, ...): see infra/stack/outputs.tf."
  value       = module.stack
}
