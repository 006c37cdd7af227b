# This environment's settings: the variables of infra/stack/settings.
env = {
  project_id     = "fintrail-dev"
  project_number = "412345678901"
  environment    = "dev"
  region         = "europe-west1"
  labels         = { cost_center = "platform-dev" }

  # dev runs our own pipeline (fintrail cdc run) to exercise pseudonymization.
  cdc_mode = "fintrail"

  network = {
    subnet_cidr             = "10.10.0.0/20"
    connector_cidr          = "10.10.16.0/28"
    datastream_cidr         = "10.10.17.0/29"
    connector_min_instances = 2
    connector_max_instances = 3
  }

  sql = {
    tier                           = "db-custom-1-3840"
    availability_type              = "ZONAL"
    disk_size_gb                   = 10
    backup_retention_count         = 3
    transaction_log_retention_days = 1
    superset_tier                  = "db-custom-1-3840"
  }

  redis = {
    tier           = "BASIC"
    memory_size_gb = 1
  }

  log_retention_days = {
    audit  = 1825
    app    = 7
    access = 14
  }

  bigquery_location = "EU"

  media = {
    location                = "EUROPE-WEST1"
    soft_delete_days        = 7
    noncurrent_version_days = 7
    cors_origins            = ["https://app.dev.fintrail.example"]
  }

  images = {
    # By digest, from this environment's repository: the digest that the image build on main
    # printed (Cloud Build: results.images). All zeros until the first build (a plan warns).
    fintrail = "europe-west1-docker.pkg.dev/fintrail-dev/fintrail-dev-images/fintrail@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    superset = "apache/superset:4.1.2"
  }

  api_scaling = {
    min_instances = 0
    max_instances = 2
  }

  analysts_group               = "group:fintrail-analysts-dev@fintrail.example"
  deploy_service_account_email = "fintrail-dev-deploy@fintrail-dev.iam.gserviceaccount.com"
  state_bucket                 = "fintrail-dev-tfstate"

  github = {
    owner      = "fintrail"
    repository = "fintrail"
  }

  allowed_customer_ids = ["C01fintr1"]
  drs_exceptions       = []

  deletion_protection = false
}
