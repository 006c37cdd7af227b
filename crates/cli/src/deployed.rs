//! Production mode (12-factor): when `FINTRAIL_ENVIRONMENT` names a deployed environment
//! (`dev`, `staging`, `prod`: `infra/modules/service` sets it on every Cloud Run service),
//! `fintrail serve` and `fintrail cdc run` take every setting from environment variables, and
//! Secret Manager's values as Cloud Run injects them (the variable itself or a mounted file
//! named by `<NAME>_FILE`). Nothing is started, migrated or generated on the spot: a missing
//! or malformed variable stops the process before it does anything, with one message naming
//! every such variable (exit 2, a usage error in `shared/design/CLI.md`'s terms).
//!
//! Without `FINTRAIL_ENVIRONMENT` the embedded defaults apply (`FINTRAIL_HOME`, the private
//! cluster), except on Cloud Run (`K_SERVICE` set), where that is refused: a deployed process
//! never falls back to local defaults. The variables are in `docs/configuration.md`; its
//! table is kept honest by `tests/configuration.rs`.

use std::net::SocketAddr;

use fintrail_api::media::store as media;
use fintrail_db::env::{self, ConfigError, EnvReader};
use fintrail_db::{DbRole, ServiceDb};
use fintrail_jobs::oidc::OidcConfig;

/// Names this process reads in production mode (besides [`ServiceDb`]'s).
pub const ENVIRONMENT: &str = "FINTRAIL_ENVIRONMENT";
/// Set by Cloud Run on every service instance.
pub const CLOUD_RUN_SERVICE: &str = "K_SERVICE";
/// The port Cloud Run sends requests to.
pub const PORT: &str = "PORT";
pub const JOBS_OIDC_AUDIENCE: &str = "FINTRAIL_JOBS_OIDC_AUDIENCE";
pub const JOBS_INVOKER: &str = "FINTRAIL_JOBS_INVOKER";
pub const JOBS_OIDC_JWKS_URL: &str = "FINTRAIL_JOBS_OIDC_JWKS_URL";
pub const AUDIT_CHECKPOINT_KEY: &str = "FINTRAIL_AUDIT_CHECKPOINT_KEY";
pub const MEDIA_URL_KEY: &str = "FINTRAIL_MEDIA_URL_KEY";
pub const PSEUDONYMIZE_KEY: &str = "FINTRAIL_PSEUDONYMIZE_KEY";
pub const LOG_FORMAT: &str = "FINTRAIL_LOG_FORMAT";

/// A deployed environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Dev,
    Staging,
    Prod,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Dev => "dev",
            Environment::Staging => "staging",
            Environment::Prod => "prod",
        }
    }
}

/// `FINTRAIL_ENVIRONMENT`: `None` for local use (embedded defaults).
pub fn environment(env: &mut EnvReader<'_>) -> Option<Environment> {
    let value = env.optional(ENVIRONMENT);
    match value.as_deref() {
        None => {
            if env.is_set(CLOUD_RUN_SERVICE) {
                env.problem(
                    ENVIRONMENT,
                    "is missing, and K_SERVICE says this is Cloud Run: a deployed service names its \
                     environment (dev, staging, prod) and never falls back to the local defaults",
                );
            }
            None
        }
        Some("dev") => Some(Environment::Dev),
        Some("staging") => Some(Environment::Staging),
        Some("prod") => Some(Environment::Prod),
        Some(other) => {
            env.problem(
                ENVIRONMENT,
                format!("{other:?} is not an environment: dev, staging or prod (unset for local use)"),
            );
            None
        }
    }
}

/// Checks `FINTRAIL_LOG_FORMAT` (clap reads it, but its message would name only `--log-format`).
pub fn check_log_format(env: &mut EnvReader<'_>) {
    if let Some(v) = env.optional(LOG_FORMAT) {
        if !["auto", "text", "json"].contains(&v.as_str()) {
            env.problem(LOG_FORMAT, format!("{v:?} is not a log format: auto, text or json"));
        }
    }
}

/// What `fintrail serve` runs with in production.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub environment: Environment,
    /// The app role (and the sequencer's password).
    pub db: ServiceDb,
    /// `0.0.0.0:$PORT` unless `--listen` was given.
    pub listen: SocketAddr,
    /// Who may call `/internal/jobs/*`: Cloud Scheduler's OIDC tokens.
    pub jobs_oidc: OidcConfig,
    /// The HMAC key of signed audit checkpoints: one for every instance and every restart.
    pub audit_checkpoint_key: [u8; 32],
    /// The HMAC key of the API's own signed download URLs: one for every instance, or a URL
    /// one instance signed would fail on the next.
    pub media_url_key: [u8; 32],
    /// Where media live (GCS in production), read once here.
    pub media: media::MediaConfig,
}

/// What `fintrail cdc run` runs with in production.
#[derive(Debug, Clone)]
pub struct CdcConfig {
    pub environment: Environment,
    /// The replicator role.
    pub db: ServiceDb,
    /// The pseudonymization key: the same pseudonym for the same value, run after run.
    pub pseudonymize_key: Vec<u8>,
}

/// The BigQuery sink's settings (`FINTRAIL_CDC_SINK=bigquery`), read by
/// `fintrail_cdc::sink::bigquery::Config`.
const BIGQUERY_VARS: [&str; 4] =
    ["FINTRAIL_BIGQUERY_PROJECT", "FINTRAIL_BIGQUERY_DATASET", "FINTRAIL_BIGQUERY_ENDPOINT", "GCE_METADATA_HOST"];

/// Checks settings that another crate parses as a group (media, the BigQuery sink) here, so
/// that their problems join this one fail-fast message; the problem is recorded against the
/// first variable, and the message the parser gives names the one at fault.
fn checked_together<T>(
    env: &mut EnvReader<'_>,
    vars: &[&str],
    parse: impl FnOnce(&dyn Fn(&str) -> Option<String>) -> anyhow::Result<T>,
) -> Option<T> {
    assert!(!vars.is_empty(), "a group names its variables");
    let values: std::collections::HashMap<&str, String> =
        vars.iter().filter_map(|&v| env.optional(v).map(|value| (v, value))).collect();
    match parse(&|k: &str| values.get(k).cloned()) {
        Ok(t) => Some(t),
        Err(e) => {
            env.problem(vars[0], format!("{e:#}"));
            None
        }
    }
}

/// The settings both commands share; `database_url` is `--database-url` / `DATABASE_URL`.
fn common(env: &mut EnvReader<'_>, want: DbRole, database_url: bool) -> Option<ServiceDb> {
    check_log_format(env);
    if database_url {
        env.problem(
            "DATABASE_URL",
            "is set (or --database-url): that is the admin's URL for `fintrail db migrate`; in \
             production serve and cdc run connect as their own role through FINTRAIL_DATABASE_*",
        );
    }
    let db = ServiceDb::from_env(env)?;
    if db.role != want {
        env.problem(
            ServiceDb::USER,
            format!("{:?} cannot run this command: it runs as {}", db.role.sql_name(), want.sql_name()),
        );
        return None;
    }
    Some(db)
}

/// `fintrail serve`'s production configuration.
pub fn serve_config(
    env: &mut EnvReader<'_>,
    environment: Environment,
    listen_flag: Option<SocketAddr>,
    database_url: bool,
) -> Result<ServeConfig, ConfigError> {
    let db = common(env, DbRole::App, database_url);
    // Read with the app role's settings; asked for again here when those were incomplete, so
    // that its absence is reported in the same message.
    let has_sequencer = db.as_ref().is_some_and(|d| d.sequencer_password.is_some());
    if !has_sequencer && !env.has_problem_for(ServiceDb::SEQUENCER_PASSWORD) {
        let _ = env.required_secret(
            ServiceDb::SEQUENCER_PASSWORD,
            "the fintrail_sequencer role's password: the API links the audit chain under that role",
        );
    }
    let port = env.parsed(PORT, 8080, env::parse_port);
    let listen = match (listen_flag, port) {
        (Some(addr), _) => Some(addr),
        (None, Some(p)) => Some(SocketAddr::from(([0, 0, 0, 0], p))),
        (None, None) => None,
    };
    let audience =
        env.required(JOBS_OIDC_AUDIENCE, "the audience of Cloud Scheduler's OIDC tokens (this service's https:// URL)");
    if let Some(a) = &audience {
        if !a.starts_with("https://") {
            env.problem(JOBS_OIDC_AUDIENCE, format!("{a:?} is not an https:// URL"));
        }
    }
    let invoker = env.required(JOBS_INVOKER, "the scheduler's service account email, the one caller of /internal/jobs");
    if let Some(i) = &invoker {
        if !i.ends_with(".gserviceaccount.com") || i.starts_with('@') {
            env.problem(JOBS_INVOKER, format!("{i:?} is not a service account email (…@….iam.gserviceaccount.com)"));
        }
    }
    let jwks_url = env.parsed(JOBS_OIDC_JWKS_URL, fintrail_jobs::oidc::GOOGLE_JWKS_URL.to_owned(), |v| {
        if v.starts_with("https://") || v.starts_with("http://127.0.0.1") {
            Ok(v.to_owned())
        } else {
            Err("is not an https:// URL".into())
        }
    });
    let media_vars = [media::ENV_BUCKET, media::ENV_SIGNER, media::ENV_ENDPOINT];
    let media = checked_together(env, &media_vars, |get| media::MediaConfig::from_lookup(get));
    let key = hex_key(env, AUDIT_CHECKPOINT_KEY, "the HMAC key of signed audit checkpoints (Secret Manager)");
    let url_key = hex_key(env, MEDIA_URL_KEY, "the HMAC key of the API's signed media URLs (Secret Manager)");
    if let Some(e) = env.take_error() {
        return Err(e);
    }
    let (
        Some(db),
        Some(listen),
        Some(audience),
        Some(email),
        Some(jwks_url),
        Some(audit_checkpoint_key),
        Some(media_url_key),
        Some(media),
    ) = (db, listen, audience, invoker, jwks_url, key, url_key, media)
    else {
        unreachable!("a missing value is a recorded problem")
    };
    let jobs_oidc = OidcConfig {
        audience,
        email,
        jwks_url,
        issuers: fintrail_jobs::oidc::GOOGLE_ISSUERS.map(String::from).to_vec(),
        refresh_min: fintrail_jobs::oidc::REFRESH_MIN_INTERVAL,
    };
    Ok(ServeConfig { environment, db, listen, jobs_oidc, audit_checkpoint_key, media_url_key, media })
}

/// A required 32-byte key given as 64 hex digits (Secret Manager); its value is never printed.
fn hex_key(env: &mut EnvReader<'_>, var: &str, what: &str) -> Option<[u8; 32]> {
    let key = env.required_secret(var, what)?;
    match env::parse_hex_key(&key) {
        Ok(k) => Some(k),
        Err(e) => {
            env.problem(var, format!("(value withheld) {e}"));
            None
        }
    }
}

/// `fintrail cdc run`'s production configuration.
pub fn cdc_config(
    env: &mut EnvReader<'_>,
    environment: Environment,
    database_url: bool,
    sink_bigquery: bool,
) -> Result<CdcConfig, ConfigError> {
    let db = common(env, DbRole::Replicator, database_url);
    if sink_bigquery {
        checked_together(env, &BIGQUERY_VARS, |get| fintrail_cdc::sink::bigquery::Config::from_lookup(get));
    }
    let key = env.required_secret(
        PSEUDONYMIZE_KEY,
        "the pseudonymization key (Secret Manager): without it every restart would pseudonymize anew",
    );
    let key = key.and_then(|k| match env::parse_key_material(&k, fintrail_cdc::policy::MIN_KEY_BYTES) {
        Ok(k) => Some(k),
        Err(e) => {
            env.problem(PSEUDONYMIZE_KEY, format!("(value withheld) {e}"));
            None
        }
    });
    if let Some(e) = env.take_error() {
        return Err(e);
    }
    let (Some(db), Some(pseudonymize_key)) = (db, key) else { unreachable!("a missing value is a recorded problem") };
    Ok(CdcConfig { environment, db, pseudonymize_key })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::ffi::OsString;

    const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"; // pragma: allowlist secret

    fn reader(vars: &[(&str, &str)]) -> EnvReader<'static> {
        let map: HashMap<String, OsString> = vars.iter().map(|(k, v)| ((*k).to_owned(), OsString::from(v))).collect();
        EnvReader::new(move |k| map.get(k).cloned())
    }

    fn api_env() -> Vec<(&'static str, &'static str)> {
        vec![
            ("FINTRAIL_ENVIRONMENT", "prod"),
            ("FINTRAIL_DATABASE_HOST", "10.20.0.3"),
            ("FINTRAIL_DATABASE_USER", "fintrail_app"),
            ("FINTRAIL_DATABASE_PASSWORD", "app-pw"),
            ("FINTRAIL_SEQUENCER_PASSWORD", "seq-pw"),
            ("FINTRAIL_JOBS_OIDC_AUDIENCE", "https://fintrail-prod-api-1.europe-west1.run.app"),
            ("FINTRAIL_JOBS_INVOKER", "fintrail-prod-scheduler@fintrail-prod.iam.gserviceaccount.com"),
            ("FINTRAIL_AUDIT_CHECKPOINT_KEY", SECRET),
            ("FINTRAIL_MEDIA_URL_KEY", SECRET),
            ("PORT", "8081"),
        ]
    }

    #[test]
    fn the_api_starts_from_the_environment_alone() {
        let mut env = reader(&api_env());
        let e = environment(&mut env).expect("deployed");
        let c = serve_config(&mut env, e, None, false).expect("complete");
        assert_eq!(c.environment, Environment::Prod);
        assert_eq!(c.listen.to_string(), "0.0.0.0:8081");
        assert_eq!((c.db.host.as_str(), c.db.port, c.db.dbname.as_str()), ("10.20.0.3", 5432, "fintrail"));
        assert_eq!(c.db.role, DbRole::App);
        assert_eq!(c.db.sequencer_password.as_deref(), Some("seq-pw"));
        assert_eq!(c.jobs_oidc.jwks_url, fintrail_jobs::oidc::GOOGLE_JWKS_URL);
        assert_eq!(c.audit_checkpoint_key[0], 0x01);
        assert!(!format!("{c:?}").contains("app-pw"), "no password in a debug dump");
    }

    #[test]
    fn every_missing_or_malformed_variable_is_named_at_once() {
        let mut vars = api_env();
        vars.retain(|(k, _)| !["FINTRAIL_DATABASE_HOST", "FINTRAIL_SEQUENCER_PASSWORD"].contains(k));
        vars.push(("FINTRAIL_DATABASE_PORT", "54x32"));
        vars.push(("FINTRAIL_LOG_FORMAT", "xml"));
        vars.retain(|(k, _)| *k != "FINTRAIL_AUDIT_CHECKPOINT_KEY");
        vars.push(("FINTRAIL_AUDIT_CHECKPOINT_KEY", "not-hex-and-secret"));
        let mut env = reader(&vars);
        let e = environment(&mut env).unwrap();
        let err = serve_config(&mut env, e, None, true).unwrap_err();
        assert_eq!(
            err.vars(),
            vec![
                "FINTRAIL_LOG_FORMAT",
                "DATABASE_URL",
                "FINTRAIL_DATABASE_HOST",
                "FINTRAIL_DATABASE_PORT",
                "FINTRAIL_SEQUENCER_PASSWORD",
                "FINTRAIL_AUDIT_CHECKPOINT_KEY"
            ]
        );
        let text = err.to_string();
        assert!(!text.contains("not-hex-and-secret"), "a secret is never printed: {text}");
    }

    #[test]
    fn the_sequencer_password_is_required_for_the_api() {
        let mut vars = api_env();
        vars.retain(|(k, _)| *k != "FINTRAIL_SEQUENCER_PASSWORD");
        let mut env = reader(&vars);
        let err = serve_config(&mut env, Environment::Dev, None, false).unwrap_err();
        assert_eq!(err.vars(), vec!["FINTRAIL_SEQUENCER_PASSWORD"]);
    }

    #[test]
    fn each_command_runs_as_its_own_role() {
        let mut env = reader(&api_env());
        let err = cdc_config(&mut env, Environment::Dev, false, false).unwrap_err();
        assert!(err.to_string().contains("\"fintrail_app\" cannot run this command: it runs as fintrail_replicator"));
        assert!(err.vars().contains(&"FINTRAIL_PSEUDONYMIZE_KEY"));
        let mut env = reader(&[
            ("FINTRAIL_DATABASE_HOST", "10.20.0.3"),
            ("FINTRAIL_DATABASE_USER", "fintrail_replicator"),
            ("FINTRAIL_DATABASE_PASSWORD", "rep-pw"),
            ("FINTRAIL_PSEUDONYMIZE_KEY", SECRET),
        ]);
        let c = cdc_config(&mut env, Environment::Dev, false, false).expect("complete");
        assert_eq!(c.db.role, DbRole::Replicator);
        assert_eq!(c.pseudonymize_key.len(), 32);
    }

    #[test]
    fn the_environment_is_named_or_absent_and_cloud_run_never_runs_on_defaults() {
        let mut env = reader(&[]);
        assert_eq!(environment(&mut env), None);
        assert!(env.finish().is_ok(), "local use");
        let mut env = reader(&[("FINTRAIL_ENVIRONMENT", "production")]);
        assert_eq!(environment(&mut env), None);
        assert!(env.finish().unwrap_err().to_string().contains("\"production\" is not an environment"));
        let mut env = reader(&[("K_SERVICE", "fintrail-prod-api")]);
        assert_eq!(environment(&mut env), None);
        assert_eq!(env.finish().unwrap_err().vars(), vec!["FINTRAIL_ENVIRONMENT"]);
    }
}
