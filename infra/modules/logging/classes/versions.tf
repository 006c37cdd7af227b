# Provider-free module: pure locals, variables and outputs. It needs no
# provider, which is what lets `terraform test` run it offline in CI.
terraform {
  required_version = ">= 1.6.0"
}
