# Partial backend configuration: tofu init -backend-config=backend.hcl
bucket = "fintrail-prod-tfstate"
prefix = "envs/prod"
