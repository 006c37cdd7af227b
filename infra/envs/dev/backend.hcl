# Partial backend configuration: tofu init -backend-config=backend.hcl
bucket = "fintrail-dev-tfstate"
prefix = "envs/dev"
