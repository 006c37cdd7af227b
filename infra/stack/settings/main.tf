# Provider-free: this module only types and validates an environment's settings (its
# variables.tf); infra/stack passes terraform.tfvars' `env` object through it.
