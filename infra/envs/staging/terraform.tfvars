# This environment's settings: the variables of infra/stack/settings.
env = {
  project_id     = "fintrail-staging"
  project_number = "512345678902"
  environment    = "staging"
  region         = "europe-west1"
  labels         = { cost_center = "platform-staging" }

  # staging mirrors prod: managed Datastream.
  cdc_mode = "datastream"

  network = {
    subnet_cidr             = "10.20.0.0/20"
    connector_cidr          = "10.20.16.0/28"
    datastream_cidr         = "10.20.17.0/29"
    connector_min_instances = 2
    connector_max_instances = 3
  }

  sql = {
    tier                           = "db-custom-1-3840"
    availability_type              = "ZONAL"
    disk_size_gb                   = 10
    backup_retention_count         = 7
    transaction_log_retention_days = 7
    superset_tier                  = "db-custom-1-3840"
  }

  redis = {
    tier           = "BASIC"
    memory_size_gb = 1
  }

  log_retention_days = {
    audit  = 1825
    app    = 30
    access = 30
  }

  bigquery_location = "EU"

  media = {
    location                = "EUROPE-WEST1"
    soft_delete_days        = 7
    noncurrent_version_days = 30
    cors_origins            = ["https://app.staging.fintrail.example"]
  }

  images = {
    # By digest, from this environment's repository: the digest that the image build on main
    # printed (Cloud Build: results.images). All zeros until the first build (a plan warns).
    fintrail = "europe-west1-docker.pkg.dev/fintrail-staging/fintrail-staging-images/fintrail@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    superset = "apache/superset:4.1.2"
  }

  api_scaling = {
    min_instances = 0
    max_instances = 2
  }

  analysts_group               = "group:fintrail-analysts-staging@fintrail.example"
  deploy_service_account_email = "fintrail-staging-deploy@fintrail-staging.iam.gserviceaccount.com"
  state_bucket                 = "fintrail-staging-tfstate"

  github = {
    owner      = "fintrail"
    repository = "fintrail"
  }

  allowed_customer_ids = ["C01fintr1"]
  drs_exceptions       = []

  deletion_protection = true
}
