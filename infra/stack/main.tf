# The one composition of an environment. envs/<env>/ are thin roots that call this module with
# their terraform.tfvars (`env`); every environment is this code with other settings.

module "settings" {
  source = "./settings"

  project_id                   = lookup(var.env, "project_id", null)
  project_number               = lookup(var.env, "project_number", null)
  environment                  = lookup(var.env, "environment", null)
  region                       = lookup(var.env, "region", null)
  labels                       = lookup(var.env, "labels", null)
  cdc_mode                     = lookup(var.env, "cdc_mode", null)
  network                      = lookup(var.env, "network", null)
  sql                          = lookup(var.env, "sql", null)
  redis                        = lookup(var.env, "redis", null)
  log_retention_days           = lookup(var.env, "log_retention_days", null)
  log_location                 = lookup(var.env, "log_location", null)
  bigquery_location            = lookup(var.env, "bigquery_location", null)
  media                        = lookup(var.env, "media", null)
  images                       = lookup(var.env, "images", null)
  api_scaling                  = lookup(var.env, "api_scaling", null)
  analysts_group               = lookup(var.env, "analysts_group", null)
  deploy_service_account_email = lookup(var.env, "deploy_service_account_email", null)
  state_bucket                 = lookup(var.env, "state_bucket", null)
  github                       = lookup(var.env, "github", null)
  allowed_customer_ids         = lookup(var.env, "allowed_customer_ids", null)
  drs_exceptions               = lookup(var.env, "drs_exceptions", null)
  deletion_protection          = lookup(var.env, "deletion_protection", null)
  views_enabled                = lookup(var.env, "views_enabled", null)
}

locals {
  env = module.settings.env
}

data "google_project" "this" {
  project_id = local.env.project_id
}

# The project number is a bootstrap fact (terraform.tfvars), so every member built from it is
# the same in code review, in `fintrail iam check` and in the plan; the plan says so if the
# project disagrees.
check "api_uri" {
  assert {
    condition     = contains(module.api.urls, local.api_uri)
    error_message = "The API's deterministic URL is not ${local.api_uri}: the scheduler's OIDC audience would not match."
  }
}

# The environments name a digest from the first build on; until then (all zeros) the services
# have nothing to run.
check "fintrail_image_released" {
  assert {
    condition     = !endswith(local.env.images.fintrail, "@sha256:${format("%064d", 0)}")
    error_message = "images.fintrail names no build yet (sha256 all zeros): put the digest the image build on main printed."
  }
}

check "project_number" {
  assert {
    condition     = data.google_project.this.number == local.env.project_number
    error_message = "project_number in terraform.tfvars is not the number of ${local.env.project_id}."
  }
}

locals {
  datastream = local.env.cdc_mode == "datastream"

  # Google-managed identity of Datastream in this project.
  datastream_agent = "serviceAccount:service-${local.env.project_number}@gcp-sa-datastream.iam.gserviceaccount.com"
  # Google-managed identity that pulls the services' images (Cloud Run service agent).
  cloud_run_agent = "serviceAccount:service-${local.env.project_number}@serverless-robot-prod.iam.gserviceaccount.com"
  deploy_member   = "serviceAccount:${local.env.deploy_service_account_email}"

  # ---------------------------------------------------------------- identities
  service_accounts = merge(
    {
      api          = { display_name = "fintrail API", description = "Runs fintrail serve on Cloud Run." }
      superset     = { display_name = "fintrail Superset", description = "Runs Apache Superset; reads the analytics views only." }
      media-signer = { display_name = "fintrail media signer", description = "Signs V4 URLs for the media bucket; holds object create/get/delete and set-retention on that bucket only. Never attached to a workload." }
      scheduler    = { display_name = "fintrail scheduler", description = "OIDC identity of the Cloud Scheduler jobs; holds no role." }
      plan         = { display_name = "fintrail plan (read-only)", description = "Runs tofu plan on pull requests (Cloud Build, GitHub Actions): read-only." }
      build        = { display_name = "fintrail image build", description = "Builds the fintrail image on merge to main (Cloud Build) and pushes it to the image repository; nothing else." }
    },
    local.datastream ? {} : {
      cdc = { display_name = "fintrail CDC", description = "Runs fintrail cdc run; the only writer of the replica dataset." }
    },
  )

  # Identities the deploy identity attaches to workloads (actAs on each, one by one).
  attached_accounts = concat(["api", "superset", "scheduler", "plan", "build"], local.datastream ? [] : ["cdc"])

  # The one identity that writes replicated rows.
  cdc_writer = local.datastream ? local.datastream_agent : lookup(module.iam.members, "cdc", "")

  # ------------------------------------------------------------- custom roles
  custom_roles = {
    log_write = {
      title       = "fintrail log write"
      description = "Write structured log entries."
      permissions = ["logging.logEntries.create"]
    }
    metric_write = {
      title       = "fintrail metric write"
      description = "Write custom metrics (CDC lag, request latency)."
      permissions = ["monitoring.timeSeries.create"]
    }
    bigquery_jobs_create = {
      title       = "fintrail BigQuery jobs"
      description = "Run query and load jobs (data access is granted per dataset)."
      permissions = ["bigquery.jobs.create"]
    }
    bq_replica_write = {
      title       = "fintrail replica write"
      description = "What a CDC sink needs on the replica dataset: create and evolve tables, write and merge rows."
      permissions = ["bigquery.datasets.get", "bigquery.tables.create", "bigquery.tables.get", "bigquery.tables.getData", "bigquery.tables.update", "bigquery.tables.updateData"]
    }
    bq_view_read = {
      title       = "fintrail view read"
      description = "Read the analytics views (reads data: not read_only, which means metadata only)."
      permissions = ["bigquery.datasets.get", "bigquery.tables.get", "bigquery.tables.getData", "bigquery.tables.list"]
    }
    media_object_create = {
      title       = "fintrail media create"
      description = "Create media objects (through signed PUT URLs)."
      permissions = ["storage.objects.create"]
    }
    media_object_delete = {
      title       = "fintrail media delete"
      description = "Delete a media object whose database row was refused (upload compensation, through signed DELETE URLs); retained objects stay protected by Object Retention Lock."
      permissions = ["storage.objects.delete"]
    }
    media_object_set_retention = {
      title       = "fintrail media retention"
      description = "Set the retention of media objects (the bucket has Object Retention Lock on)."
      permissions = ["storage.objects.setRetention"]
    }
    media_object_get = {
      title       = "fintrail media get"
      description = "Read media objects (through signed GET URLs)."
      permissions = ["storage.objects.get"]
    }
    sign_blob = {
      title       = "fintrail sign blob"
      description = "Sign bytes as one service account (V4 signed URLs)."
      permissions = ["iam.serviceAccounts.signBlob"]
    }
    image_push = {
      title       = "fintrail image push"
      description = "What docker push of one image needs on its repository: check the layers it has, upload the others, create the tag."
      permissions = ["artifactregistry.repositories.downloadArtifacts", "artifactregistry.repositories.uploadArtifacts", "artifactregistry.tags.create"]
    }
    image_pull = {
      title       = "fintrail image pull"
      description = "Pull images from one repository."
      permissions = ["artifactregistry.repositories.downloadArtifacts"]
    }
    run_invoke = {
      title       = "fintrail run invoke"
      description = "Invoke one Cloud Run service."
      permissions = ["run.routes.invoke"]
    }
    state_object_get = {
      title       = "fintrail state get"
      description = "Read the OpenTofu state object."
      permissions = ["storage.objects.get"]
    }
    state_object_list = {
      title       = "fintrail state list"
      description = "List the OpenTofu state objects."
      permissions = ["storage.objects.list"]
    }
    plan_reader = {
      title       = "fintrail plan reader"
      description = "Refresh every resource of this root for tofu plan: get, list and getIamPolicy only; no secret values."
      read_only   = true
      permissions = [
        "artifactregistry.repositories.get",
        "artifactregistry.repositories.getIamPolicy",
        "bigquery.datasets.get",
        "bigquery.datasets.getIamPolicy",
        "bigquery.tables.get",
        "cloudbuild.builds.get",
        "cloudscheduler.jobs.get",
        "cloudsql.databases.get",
        "cloudsql.instances.get",
        "compute.firewalls.get",
        "compute.globalAddresses.get",
        "compute.networks.get",
        "compute.subnetworks.get",
        "datastream.connectionProfiles.get",
        "datastream.privateConnections.get",
        "datastream.streams.get",
        "iam.roles.get",
        "iam.serviceAccounts.get",
        "iam.serviceAccounts.getIamPolicy",
        "iam.workloadIdentityPoolProviders.get",
        "iam.workloadIdentityPools.get",
        "logging.buckets.get",
        "logging.sinks.get",
        "orgpolicy.policy.get",
        "redis.instances.get",
        "resourcemanager.projects.get",
        "resourcemanager.projects.getIamPolicy",
        "resourcemanager.tagKeys.get",
        "resourcemanager.tagValueBindings.list",
        "resourcemanager.tagValues.get",
        "run.services.get",
        "run.services.getIamPolicy",
        "secretmanager.secrets.get",
        "secretmanager.secrets.getIamPolicy",
        "servicenetworking.services.get",
        "storage.buckets.get",
        "storage.buckets.getIamPolicy",
        "vpcaccess.connectors.get",
      ]
    }
  }

  # ------------------------------------------------------------ the data path
  # Datastream's column list (staging, prod): the `keep` columns of the replication policy
  # fintrail cdc enforces (analytics/replication.toml), listed in analytics/datastream.json;
  # crates/cdc/tests/datastream_policy.rs proves the two agree. Default deny: nothing else leaves.
  replicated_tables = jsondecode(file("${path.module}/../../analytics/datastream.json")).tables

  # Table and column names are those of crates/db/migrations (one name per concept).
  views = {
    daily_transfer_volume = {
      description = "Transfers and volume (minor units) per day and currency."
      query       = "SELECT DATE(created_at) AS day, currency, COUNT(*) AS transfers, SUM(amount_minor) AS volume_minor FROM `{replica}.{table_prefix}transfers` GROUP BY day, currency"
    }
    kyc_funnel = {
      description = "KYC cases per state."
      query       = "SELECT state, COUNT(*) AS cases FROM `{replica}.{table_prefix}kyc_cases` GROUP BY state"
    }
    screening_outcomes = {
      description = "Organizations (KYB) per screening state."
      query       = "SELECT state, COUNT(*) AS organizations FROM `{replica}.{table_prefix}organizations` GROUP BY state"
    }
  }

  # The API's deterministic Cloud Run URL, known at plan (the service's own `uri` output is
  # not: it cannot feed the service's env, nor for_each). It is the OIDC audience the
  # scheduler's tokens carry and the API checks; the `api_uri` check compares it after apply.
  api_uri = "https://fintrail-${local.env.environment}-api-${local.env.project_number}.${local.env.region}.run.app"
}

# ----------------------------------------------------------------------- APIs
# Every API this root uses, enabled in the same apply (never disabled on destroy: other
# projects' data may depend on them). Every module below waits for them.
resource "google_project_service" "apis" {
  for_each = toset([
    "artifactregistry.googleapis.com", "bigquery.googleapis.com", "cloudbuild.googleapis.com", "cloudkms.googleapis.com",
    "cloudresourcemanager.googleapis.com", "cloudscheduler.googleapis.com", "compute.googleapis.com",
    "datastream.googleapis.com", "iam.googleapis.com", "iamcredentials.googleapis.com",
    "logging.googleapis.com", "orgpolicy.googleapis.com", "redis.googleapis.com", "run.googleapis.com",
    "secretmanager.googleapis.com", "servicenetworking.googleapis.com", "sqladmin.googleapis.com",
    "storage.googleapis.com", "sts.googleapis.com", "vpcaccess.googleapis.com",
  ])

  project            = local.env.project_id
  service            = each.value
  disable_on_destroy = false
}

# ------------------------------------------------------------------ guardrails
module "org_policy" {
  source     = "../modules/org_policy"
  depends_on = [google_project_service.apis]

  project_id           = local.env.project_id
  environment          = local.env.environment
  allowed_customer_ids = local.env.allowed_customer_ids
  drs_exceptions       = local.env.drs_exceptions
}

module "network" {
  source     = "../modules/network"
  depends_on = [google_project_service.apis]

  project_id              = local.env.project_id
  environment             = local.env.environment
  region                  = local.env.region
  subnet_cidr             = local.env.network.subnet_cidr
  connector_cidr          = local.env.network.connector_cidr
  connector_min_instances = local.env.network.connector_min_instances
  connector_max_instances = local.env.network.connector_max_instances
  labels                  = local.env.labels
}

module "iam" {
  source     = "../modules/iam"
  depends_on = [google_project_service.apis]

  project_id       = local.env.project_id
  environment      = local.env.environment
  service_accounts = local.service_accounts
  custom_roles     = local.custom_roles

  project_bindings = {
    # Cloud Run collects stdout without it: only the API (which writes audit lines) and the
    # plan and build identities (Cloud Build logs) write log entries through the API.
    log_write            = ["sa:api", "sa:plan", "sa:build"]
    metric_write         = concat(["sa:api"], local.datastream ? [] : ["sa:cdc"])
    bigquery_jobs_create = concat(["sa:superset", local.env.analysts_group], local.datastream ? [] : ["sa:cdc"])
    plan_reader          = ["sa:plan"]
  }

  service_account_bindings = merge(
    # The deploy identity may attach each runtime identity to its workload;
    # granted on each account, never on the project.
    { for sa in local.attached_accounts : sa => { "roles/iam.serviceAccountUser" = [local.deploy_member] } },
    # The API may sign URLs as the media signer, and do nothing else with it.
    { media-signer = { sign_blob = ["sa:api"] } },
  )
}

module "logging" {
  source     = "../modules/logging"
  depends_on = [google_project_service.apis]

  project_id     = local.env.project_id
  environment    = local.env.environment
  location       = local.env.log_location
  retention_days = local.env.log_retention_days
}

# ------------------------------------------------------------------- secrets
module "secrets" {
  source     = "../modules/secrets"
  depends_on = [google_project_service.apis]

  project_id  = local.env.project_id
  environment = local.env.environment
  region      = local.env.region
  labels      = local.env.labels

  secrets = merge(
    {
      db-app-password = {
        description = "Password of the fintrail_app database role."
        accessors   = [module.iam.members["api"]]
      }
      db-sequencer-password = {
        description = "Password of the fintrail_sequencer database role: the audit sequencer and checkpoint writer inside the API (the app role may not write the chain)."
        accessors   = [module.iam.members["api"]]
      }
      db-replicator-password = {
        description = "Password of the fintrail_replicator database role (read by the CDC writer only)."
        accessors   = [local.cdc_writer]
      }
      # One key for every API instance and restart: checkpoints signed by one are verified by all.
      audit-checkpoint-key = {
        description = "HMAC key of the signed audit checkpoints (64 hex digits), read by the API alone."
        accessors   = [module.iam.members["api"]]
      }
      # One key for every API instance: a download URL one instance signed is checked by all.
      media-url-key = {
        description = "HMAC key of the API's own signed media download URLs (64 hex digits), read by the API alone."
        accessors   = [module.iam.members["api"]]
      }
      superset-secret-key = {
        description = "Superset SECRET_KEY."
        accessors   = [module.iam.members["superset"]]
      }
      superset-db-password = {
        description = "Password of Superset's metadata database user."
        accessors   = [module.iam.members["superset"]]
      }
      redis-auth = {
        description = "Memorystore AUTH string (copied from the instance out of band)."
        accessors   = [module.iam.members["superset"]]
      }
    },
    local.datastream ? {} : {
      # fintrail cdc's pseudonyms stay the same across restarts only with one key (dev).
      cdc-pseudonymize-key = {
        description = "Pseudonymization key of fintrail cdc (64 hex digits), read by the CDC writer alone."
        accessors   = [local.cdc_writer]
      }
    },
  )
}

# --------------------------------------------------------------------- data
module "cloud_sql" {
  source     = "../modules/cloud_sql"
  depends_on = [google_project_service.apis]

  project_id                     = local.env.project_id
  environment                    = local.env.environment
  region                         = local.env.region
  name                           = "pg"
  tier                           = local.env.sql.tier
  availability_type              = local.env.sql.availability_type
  disk_size_gb                   = local.env.sql.disk_size_gb
  backup_retention_count         = local.env.sql.backup_retention_count
  transaction_log_retention_days = local.env.sql.transaction_log_retention_days
  private_network                = module.network.network_id
  logical_decoding               = true
  databases                      = ["fintrail"]
  deletion_protection            = local.env.deletion_protection
  labels                         = local.env.labels
}

# Superset's metadata never lives on the transactional primary.
module "superset_sql" {
  source     = "../modules/cloud_sql"
  depends_on = [google_project_service.apis]

  project_id                     = local.env.project_id
  environment                    = local.env.environment
  region                         = local.env.region
  name                           = "superset"
  tier                           = local.env.sql.superset_tier
  availability_type              = "ZONAL"
  backup_retention_count         = local.env.sql.backup_retention_count
  transaction_log_retention_days = local.env.sql.transaction_log_retention_days
  private_network                = module.network.network_id
  logical_decoding               = false
  databases                      = ["superset"]
  deletion_protection            = local.env.deletion_protection
  labels                         = local.env.labels
}

module "redis" {
  source     = "../modules/redis"
  depends_on = [google_project_service.apis]

  project_id         = local.env.project_id
  environment        = local.env.environment
  region             = local.env.region
  tier               = local.env.redis.tier
  memory_size_gb     = local.env.redis.memory_size_gb
  authorized_network = module.network.network_id
  reserved_ip_range  = module.network.private_service_access_range_name
  labels             = local.env.labels
}

module "media" {
  source     = "../modules/storage"
  depends_on = [google_project_service.apis]

  project_id              = local.env.project_id
  environment             = local.env.environment
  name                    = "media"
  location                = local.env.media.location
  soft_delete_days        = local.env.media.soft_delete_days
  noncurrent_version_days = local.env.media.noncurrent_version_days
  cors_origins            = local.env.media.cors_origins
  force_destroy           = !local.env.deletion_protection
  labels                  = local.env.labels

  iam = {
    (module.iam.custom_role_names["media_object_create"])        = [module.iam.members["media-signer"]]
    (module.iam.custom_role_names["media_object_get"])           = [module.iam.members["media-signer"]]
    (module.iam.custom_role_names["media_object_delete"])        = [module.iam.members["media-signer"]]
    (module.iam.custom_role_names["media_object_set_retention"]) = [module.iam.members["media-signer"]]
  }
}

module "bigquery" {
  source     = "../modules/bigquery"
  depends_on = [google_project_service.apis]

  project_id                 = local.env.project_id
  environment                = local.env.environment
  location                   = local.env.bigquery_location
  replica_writers            = [local.cdc_writer]
  replica_writer_role        = module.iam.custom_role_names["bq_replica_write"]
  view_readers               = [local.env.analysts_group, module.iam.members["superset"]]
  view_reader_role           = module.iam.custom_role_names["bq_view_read"]
  views                      = local.env.views_enabled ? local.views : {}
  replica_table_prefix       = local.datastream ? "fintrail_" : ""
  delete_contents_on_destroy = !local.env.deletion_protection
  labels                     = local.env.labels
}

# Managed CDC (cdc_mode = "datastream"); otherwise fintrail cdc runs on Cloud Run.
module "datastream" {
  source     = "../modules/datastream"
  depends_on = [google_project_service.apis]
  count      = local.datastream ? 1 : 0

  project_id              = local.env.project_id
  environment             = local.env.environment
  region                  = local.env.region
  network_id              = module.network.network_id
  private_connection_cidr = local.env.network.datastream_cidr
  source_host             = module.cloud_sql.private_ip_address
  password_secret_version = "${module.secrets.ids["db-replicator-password"]}/versions/latest"
  tables                  = local.replicated_tables
  destination_dataset     = module.bigquery.replica_dataset_id
  labels                  = local.env.labels
}

# ------------------------------------------------------------ the image
# The fintrail image, built on every merge to main by module.cloud_build's image trigger and
# deployed by digest (images.fintrail). Cloud Run's service agent pulls it for the services.
module "images" {
  source     = "../modules/artifact_registry"
  depends_on = [google_project_service.apis]

  project_id  = local.env.project_id
  environment = local.env.environment
  location    = local.env.region
  labels      = local.env.labels

  iam = {
    (module.iam.custom_role_names["image_push"]) = [module.iam.members["build"]]
    (module.iam.custom_role_names["image_pull"]) = [local.cloud_run_agent]
  }
}

# ---------------------------------------------------------- Cloud Run services
module "api" {
  source     = "../modules/service"
  depends_on = [google_project_service.apis, module.secrets, module.iam, module.images]

  project_id            = local.env.project_id
  environment           = local.env.environment
  region                = local.env.region
  name                  = "api"
  image                 = local.env.images.fintrail
  image_repository      = module.images.url
  args                  = ["serve"]
  service_account_email = module.iam.emails["api"]
  vpc_connector         = module.network.connector_id
  ingress               = "INGRESS_TRAFFIC_ALL"
  public                = true
  min_instances         = local.env.api_scaling.min_instances
  max_instances         = local.env.api_scaling.max_instances
  deletion_protection   = local.env.deletion_protection
  labels                = local.env.labels

  env = {
    FINTRAIL_DATABASE_HOST = module.cloud_sql.private_ip_address
    FINTRAIL_DATABASE_NAME = "fintrail"
    FINTRAIL_DATABASE_USER = "fintrail_app"
    # TLS verified against the instance's own CA (Cloud SQL is ENCRYPTED_ONLY).
    FINTRAIL_DB_SSLMODE         = "verify-ca"
    FINTRAIL_DB_SSLROOTCERT_PEM = module.cloud_sql.server_ca_cert
    # Media in GCS (a bucket set selects it), URLs signed by the signer's signBlob.
    FINTRAIL_MEDIA_BUCKET = module.media.name
    FINTRAIL_MEDIA_SIGNER = module.iam.emails["media-signer"]
    FINTRAIL_JOBS_INVOKER = module.iam.emails["scheduler"]
    # The audience of the scheduler's OIDC tokens (issue #15): this service's own URL.
    FINTRAIL_JOBS_OIDC_AUDIENCE = local.api_uri
    FINTRAIL_LOG_FORMAT         = "json"
  }

  secret_env = {
    FINTRAIL_DATABASE_PASSWORD = { secret = module.secrets.secret_ids["db-app-password"] }
    # The audit sequencer runs in the API under its own role (migration 0034).
    FINTRAIL_SEQUENCER_PASSWORD   = { secret = module.secrets.secret_ids["db-sequencer-password"] }
    FINTRAIL_AUDIT_CHECKPOINT_KEY = { secret = module.secrets.secret_ids["audit-checkpoint-key"] }
    FINTRAIL_MEDIA_URL_KEY        = { secret = module.secrets.secret_ids["media-url-key"] }
  }
}

module "cdc" {
  source     = "../modules/service"
  depends_on = [google_project_service.apis, module.secrets, module.iam, module.images]
  count      = local.datastream ? 0 : 1

  project_id            = local.env.project_id
  environment           = local.env.environment
  region                = local.env.region
  name                  = "cdc"
  image                 = local.env.images.fintrail
  image_repository      = module.images.url
  args                  = ["cdc", "run"]
  service_account_email = lookup(module.iam.emails, "cdc", "")
  vpc_connector         = module.network.connector_id
  ingress               = "INGRESS_TRAFFIC_INTERNAL_ONLY"
  min_instances         = 1
  max_instances         = 1
  always_on_cpu         = true
  deletion_protection   = local.env.deletion_protection
  labels                = local.env.labels

  env = {
    FINTRAIL_DATABASE_HOST = module.cloud_sql.private_ip_address
    FINTRAIL_DATABASE_NAME = "fintrail"
    FINTRAIL_DATABASE_USER = "fintrail_replicator"
    # TLS verified against the instance's own CA, as for the API.
    FINTRAIL_DB_SSLMODE         = "verify-ca"
    FINTRAIL_DB_SSLROOTCERT_PEM = module.cloud_sql.server_ca_cert
    FINTRAIL_CDC_SINK           = "bigquery"
    FINTRAIL_BIGQUERY_PROJECT   = local.env.project_id
    FINTRAIL_BIGQUERY_DATASET   = module.bigquery.replica_dataset_id
    FINTRAIL_LOG_FORMAT         = "json"
  }

  secret_env = {
    FINTRAIL_DATABASE_PASSWORD = { secret = module.secrets.secret_ids["db-replicator-password"] }
    FINTRAIL_PSEUDONYMIZE_KEY  = { secret = module.secrets.secret_ids["cdc-pseudonymize-key"] }
  }
}

module "superset" {
  source     = "../modules/service"
  depends_on = [google_project_service.apis, module.secrets, module.iam]

  project_id            = local.env.project_id
  environment           = local.env.environment
  region                = local.env.region
  name                  = "superset"
  image                 = local.env.images.superset
  port                  = 8088
  cpu                   = "2"
  memory                = "2Gi"
  service_account_email = module.iam.emails["superset"]
  vpc_connector         = module.network.connector_id
  ingress               = "INGRESS_TRAFFIC_ALL"
  min_instances         = 0
  max_instances         = 3
  deletion_protection   = local.env.deletion_protection
  labels                = local.env.labels
  invokers              = [local.env.analysts_group]
  invoker_role          = module.iam.custom_role_names["run_invoke"]

  env = {
    SUPERSET_DATABASE_HOST = module.superset_sql.private_ip_address
    SUPERSET_DATABASE_NAME = "superset"
    REDIS_HOST             = module.redis.host
    REDIS_PORT             = tostring(module.redis.port)
    REDIS_TLS              = "true"
    BIGQUERY_PROJECT       = local.env.project_id
    BIGQUERY_DATASET       = module.bigquery.analytics_dataset_id
  }

  secret_env = {
    SUPERSET_SECRET_KEY        = { secret = module.secrets.secret_ids["superset-secret-key"] }
    SUPERSET_DATABASE_PASSWORD = { secret = module.secrets.secret_ids["superset-db-password"] }
    REDIS_PASSWORD             = { secret = module.secrets.secret_ids["redis-auth"] }
  }
}

module "scheduler" {
  source     = "../modules/scheduler"
  depends_on = [google_project_service.apis]

  project_id            = local.env.project_id
  environment           = local.env.environment
  region                = local.env.region
  service_account_email = module.iam.emails["scheduler"]

  # One Cloud Scheduler job per `fintrail jobs` job (the module's jobs.json, tested against
  # crates/jobs JOBS), each POSTing to /internal/jobs/<name> with an OIDC token for this URL.
  service_uri = local.api_uri
}

# ------------------------------------------------- plan and image pipelines
module "cloud_build" {
  source     = "../modules/cloud_build"
  depends_on = [google_project_service.apis]

  project_id                   = local.env.project_id
  project_number               = local.env.project_number
  environment                  = local.env.environment
  plan_service_account_email   = module.iam.emails["plan"]
  deploy_service_account_email = local.env.deploy_service_account_email
  github_owner                 = local.env.github.owner
  github_repository            = local.env.github.repository
  state_bucket                 = local.env.state_bucket
  state_reader_roles           = [module.iam.custom_role_names["state_object_get"], module.iam.custom_role_names["state_object_list"]]
  build_service_account_email  = module.iam.emails["build"]
  image_repository             = module.images.url
}
