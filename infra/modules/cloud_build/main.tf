module "naming" {
  source = "../../lib/naming"

  environment = var.environment
  component   = "cloud_build"
  names       = ["tofu-plan", "image-build"]
}

locals {
  plan_member = "serviceAccount:${var.plan_service_account_email}"
  repository  = "${var.github_owner}/${var.github_repository}"
  env_dir     = "infra/envs/${var.environment}"
  tofu_image  = "ghcr.io/opentofu/opentofu:${var.tofu_version}"
  # Tagged with the commit it was built from; deployed by the digest the build records.
  fintrail_image = "${var.image_repository}/fintrail"
  pool_id        = "fintrail-github"
  # Built from the project number (known at plan), not from the pool's computed name, so the
  # binding's for_each key is known before apply.
  github_subject = "principalSet://iam.googleapis.com/projects/${var.project_number}/locations/global/workloadIdentityPools/${local.pool_id}/attribute.repository/${local.repository}"
}

# Checked offline: workload identity user on the plan account only, and the
# state bucket roles are custom roles without a basic role in sight.
module "plan_account_access" {
  source = "../iam/bindings"

  scope = "service_account"
  roles = { "roles/iam.workloadIdentityUser" = [local.github_subject] }
}

module "state_access" {
  source = "../iam/bindings"

  scope = "resource"
  roles = { for r in var.state_reader_roles : r => [local.plan_member] }
}

# Read-only plan of this environment on every pull request. Runs as the plan
# identity; only the plan step receives the GitHub token.
resource "google_cloudbuild_trigger" "plan" {
  project         = var.project_id
  location        = "global"
  name            = module.naming.names["tofu-plan"]
  description     = "tofu plan (read-only, -lock=false) of ${var.environment} on every pull request"
  service_account = "projects/${var.project_id}/serviceAccounts/${var.plan_service_account_email}"
  included_files  = ["infra/**"]
  tags            = ["fintrail", var.environment, "plan"]

  github {
    owner = var.github_owner
    name  = var.github_repository

    pull_request {
      branch          = "^main$"
      comment_control = "COMMENTS_ENABLED_FOR_EXTERNAL_CONTRIBUTORS_ONLY"
    }
  }

  build {
    step {
      id         = "init"
      name       = local.tofu_image
      dir        = local.env_dir
      entrypoint = "tofu"
      args       = ["init", "-input=false", "-lock=false", "-backend-config=backend.hcl"]
    }

    step {
      id         = "validate"
      name       = local.tofu_image
      dir        = local.env_dir
      entrypoint = "tofu"
      args       = ["validate", "-no-color"]
    }

    # The plan runs tofu itself, not a script from the pull request's tree, and no step holds
    # any credential but the plan identity's own (no GitHub token: plans are posted by the
    # GitHub workflow with its own short-lived token).
    step {
      id         = "plan"
      name       = local.tofu_image
      dir        = local.env_dir
      entrypoint = "tofu"
      args       = ["plan", "-input=false", "-lock=false", "-no-color", "-out=/workspace/plan.tfplan"]
    }

    options {
      logging = "CLOUD_LOGGING_ONLY"
    }
  }

  lifecycle {
    precondition {
      condition     = var.plan_service_account_email != var.deploy_service_account_email
      error_message = "The plan identity and the deploy identity must be different service accounts."
    }
  }
}

# The fintrail image, on every merge to main: the Dockerfile at the repository root, built as
# the build identity (which may push to the image repository and do nothing else) and pushed
# as <repository>/fintrail:<commit>. Cloud Build records the pushed digest and its provenance
# (VERIFIED); a release puts that digest into images.fintrail. Tags are immutable and nothing
# here deploys: what runs changes only through a reviewed tofu apply.
resource "google_cloudbuild_trigger" "image" {
  project         = var.project_id
  location        = "global"
  name            = module.naming.names["image-build"]
  description     = "Builds the fintrail image on every merge to main and pushes it to ${var.image_repository} (deployed by digest)"
  service_account = "projects/${var.project_id}/serviceAccounts/${var.build_service_account_email}"
  included_files  = ["Dockerfile", ".dockerignore", "Cargo.toml", "Cargo.lock", "rustfmt.toml", "crates/**", "analytics/**"]
  tags            = ["fintrail", var.environment, "image"]

  github {
    owner = var.github_owner
    name  = var.github_repository

    push {
      branch = "^main$"
    }
  }

  build {
    step {
      id   = "build"
      name = var.docker_builder_image
      env  = ["DOCKER_BUILDKIT=1"]
      args = [
        "build", "--pull", "--file=Dockerfile",
        "--label=org.opencontainers.image.revision=$COMMIT_SHA",
        "--tag=${local.fintrail_image}:$COMMIT_SHA", ".",
      ]
    }

    # Pushed by Cloud Build after the steps: the digest lands in the build's results.
    images  = ["${local.fintrail_image}:$COMMIT_SHA"]
    timeout = "3600s"

    options {
      logging                 = "CLOUD_LOGGING_ONLY"
      machine_type            = var.image_build_machine_type
      requested_verify_option = "VERIFIED"
    }
  }

  lifecycle {
    precondition {
      condition     = !contains([var.plan_service_account_email, var.deploy_service_account_email], var.build_service_account_email)
      error_message = "The image build identity must differ from the plan and deploy identities."
    }
  }
}

# GitHub Actions (.github/workflows/infra-plan.yml) gets the same plan identity
# through workload identity federation: no key ever exists.
resource "google_iam_workload_identity_pool" "github" {
  project                   = var.project_id
  workload_identity_pool_id = local.pool_id
  display_name              = "fintrail GitHub Actions"
  description               = "GitHub Actions OIDC tokens of ${local.repository} (plan only)"
}

resource "google_iam_workload_identity_pool_provider" "github" {
  project                            = var.project_id
  workload_identity_pool_id          = google_iam_workload_identity_pool.github.workload_identity_pool_id
  workload_identity_pool_provider_id = "github"
  display_name                       = "GitHub OIDC"
  # Only a job of this repository running in the GitHub environment named after this one (whose
  # protection rules require a reviewer and allow only main's workflow, see infra/README.md)
  # gets a token: a workflow on any other branch or environment cannot become this identity.
  attribute_condition = "assertion.repository == \"${local.repository}\" && assertion.environment == \"${var.environment}\""

  attribute_mapping = {
    "google.subject"       = "assertion.sub"
    "attribute.repository" = "assertion.repository"
    "attribute.ref"        = "assertion.ref"
  }

  oidc {
    issuer_uri = "https://token.actions.githubusercontent.com"
  }
}

resource "google_service_account_iam_member" "github_plan" {
  for_each = module.plan_account_access.by_key

  service_account_id = "projects/${var.project_id}/serviceAccounts/${var.plan_service_account_email}"
  role               = each.value.role
  member             = each.value.member
}

resource "google_storage_bucket_iam_member" "state_reader" {
  for_each = module.state_access.by_key

  bucket = var.state_bucket
  role   = each.value.role
  member = each.value.member
}
