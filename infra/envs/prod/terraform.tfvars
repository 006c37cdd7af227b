# This environment's settings: the variables of infra/stack/settings.
env = {
  project_id     = "fintrail-prod"
  project_number = "612345678903"
  environment    = "prod"
  region         = "europe-west1"
  labels         = { cost_center = "platform-prod" }

  # prod uses the managed Datastream stream (the policy drops, never hashes).
  cdc_mode = "datastream"

  network = {
    subnet_cidr             = "10.30.0.0/20"
    connector_cidr          = "10.30.16.0/28"
    datastream_cidr         = "10.30.17.0/29"
    connector_min_instances = 2
    connector_max_instances = 10
  }

  sql = {
    tier                           = "db-custom-4-15360"
    availability_type              = "REGIONAL"
    disk_size_gb                   = 100
    backup_retention_count         = 30
    transaction_log_retention_days = 7
    superset_tier                  = "db-custom-1-3840"
  }

  redis = {
    tier           = "STANDARD_HA"
    memory_size_gb = 5
  }

  # Audit kept 7 years and locked (locked is computed: audit in prod).
  log_retention_days = {
    audit  = 2555
    app    = 90
    access = 365
  }

  log_location      = "europe-west1"
  bigquery_location = "EU"

  media = {
    location                = "EUROPE-WEST1"
    soft_delete_days        = 90
    noncurrent_version_days = 365
    cors_origins            = ["https://app.fintrail.example"]
  }

  images = {
    # By digest, from this environment's repository: the digest that the image build on main
    # printed (Cloud Build: results.images). All zeros until the first build (a plan warns).
    fintrail = "europe-west1-docker.pkg.dev/fintrail-prod/fintrail-prod-images/fintrail@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    superset = "apache/superset:4.1.2"
  }

  api_scaling = {
    min_instances = 2
    max_instances = 20
  }

  analysts_group               = "group:fintrail-analysts@fintrail.example"
  deploy_service_account_email = "fintrail-prod-deploy@fintrail-prod.iam.gserviceaccount.com"
  state_bucket                 = "fintrail-prod-tfstate"

  github = {
    owner      = "fintrail"
    repository = "fintrail"
  }

  allowed_customer_ids = ["C01fintr1"]
  drs_exceptions       = []

  deletion_protection = true
}
