# Partial backend configuration: tofu init -backend-config=backend.hcl
bucket = "fintrail-staging-tfstate"
prefix = "envs/staging"
