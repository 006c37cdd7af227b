variable "env" {
  type        = any
  description = "This environment's settings (terraform.tfvars), typed and validated by infra/stack."
}
