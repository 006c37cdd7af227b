output "env" {
  description = "The environment's settings, typed and validated."
  value = {
    project_id                   = var.project_id
    project_number               = var.project_number
    environment                  = var.environment
    region                       = var.region
    labels                       = var.labels
    cdc_mode                     = var.cdc_mode
    network                      = var.network
    sql                          = var.sql
    redis                        = var.redis
    log_retention_days           = var.log_retention_days
    log_location                 = var.log_location
    bigquery_location            = var.bigquery_location
    media                        = var.media
    images                       = var.images
    api_scaling                  = var.api_scaling
    analysts_group               = var.analysts_group
    deploy_service_account_email = var.deploy_service_account_email
    state_bucket                 = var.state_bucket
    github                       = var.github
    allowed_customer_ids         = var.allowed_customer_ids
    drs_exceptions               = var.drs_exceptions
    deletion_protection          = var.deletion_protection
    views_enabled                = var.views_enabled
  }
}
