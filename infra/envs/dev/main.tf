# One environment = one `tofu apply` of this root: infra/stack with this folder's settings.
module "stack" {
  source = "../../stack"
  env    = var.env
}
