//! Where to connect, and as whom. One `Database` names one PostgreSQL database and the
//! credentials of each fintrail role on it.

use std::{collections::HashMap, fmt, str::FromStr, sync::Arc};

use anyhow::Context as _;
use fintrail_domain::db_role::DbRole;

use crate::{home::Home, secrets};

/// The database fintrail uses on the private cluster.
pub const DEFAULT_DBNAME: &str = "fintrail";

/// Plain connection parameters, for clients other than tokio-postgres (pgbench,
/// pg_recvlogical, the replication transport).
#[derive(Clone, PartialEq, Eq)]
pub struct ConnParams {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub dbname: String,
}

impl fmt::Debug for ConnParams {
    // Never print a password, even in a debug dump.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnParams")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("dbname", &self.dbname)
            .finish()
    }
}

/// Whether this is the private cluster (passwords managed by fintrail) or an external server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Private,
    External,
}

/// One database and the credentials of each role on it.
#[derive(Clone)]
pub struct Database {
    kind: Kind,
    host: String,
    port: u16,
    dbname: String,
    users: Arc<HashMap<DbRole, (String, Option<String>)>>,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Database({:?} {}:{}/{})", self.kind, self.host, self.port, self.dbname)
    }
}

impl Database {
    /// A database on the private cluster; passwords come from `FINTRAIL_HOME/secrets`
    /// (created there if missing, set on the roles by `prepare`).
    pub fn private(home: &Home, port: u16, dbname: &str) -> anyhow::Result<Self> {
        let dir = home.secrets_dir();
        let mut users = HashMap::new();
        for role in DbRole::ALL {
            let password = if role.can_login() { Some(secrets::get_or_create(&dir, role.sql_name())?) } else { None };
            users.insert(role, (role.sql_name().to_string(), password));
        }
        Ok(Self { kind: Kind::Private, host: "127.0.0.1".into(), port, dbname: dbname.into(), users: Arc::new(users) })
    }

    /// An external server (Cloud SQL in production): `url` is the admin's URL
    /// (`postgres://user:password@host:port/db`); the other roles' passwords come from // pragma: allowlist secret
    /// `FINTRAIL_APP_PASSWORD`, `FINTRAIL_REPLICATOR_PASSWORD` and `FINTRAIL_SEQUENCER_PASSWORD`
    /// (Secret Manager in GCP).
    pub fn external(url: &str) -> anyhow::Result<Self> {
        let config = tokio_postgres::Config::from_str(url).context("parsing --database-url / DATABASE_URL")?;
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            Some(_) => anyhow::bail!("--database-url: Unix-socket hosts are not supported; use host:port"),
            None => "127.0.0.1".to_string(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let dbname = config.get_dbname().unwrap_or(DEFAULT_DBNAME).to_string();
        let admin_user = config.get_user().context("--database-url must name a user")?.to_string();
        let admin_password = config.get_password().map(|p| String::from_utf8_lossy(p).into_owned());
        let mut users = HashMap::new();
        users.insert(DbRole::Admin, (admin_user, admin_password));
        users.insert(DbRole::Owner, (DbRole::Owner.sql_name().into(), None));
        users.insert(DbRole::App, (DbRole::App.sql_name().into(), std::env::var("FINTRAIL_APP_PASSWORD").ok()));
        users.insert(
            DbRole::Replicator,
            (DbRole::Replicator.sql_name().into(), std::env::var("FINTRAIL_REPLICATOR_PASSWORD").ok()),
        );
        users.insert(
            DbRole::Sequencer,
            (DbRole::Sequencer.sql_name().into(), std::env::var("FINTRAIL_SEQUENCER_PASSWORD").ok()),
        );
        Ok(Self { kind: Kind::External, host, port, dbname, users: Arc::new(users) })
    }

    /// The production wiring of one service (Cloud Run, see `infra/envs/*/main.tf`):
    /// `FINTRAIL_DATABASE_HOST` (required), `FINTRAIL_DATABASE_PORT` (5432), `FINTRAIL_DATABASE_NAME`
    /// (`fintrail`), `FINTRAIL_DATABASE_USER` (one of the fintrail roles) and
    /// `FINTRAIL_DATABASE_PASSWORD` (from Secret Manager). Each service gets only its own role's
    /// credentials; asking for another role's connection is then an error, not a fallback.
    /// Returns `None` when `FINTRAIL_DATABASE_HOST` is unset.
    pub fn from_service_env() -> anyhow::Result<Option<Self>> {
        let Ok(host) = std::env::var("FINTRAIL_DATABASE_HOST") else { return Ok(None) };
        let port = match std::env::var("FINTRAIL_DATABASE_PORT") {
            Ok(p) => p.parse().context("FINTRAIL_DATABASE_PORT is not a port number")?,
            Err(_) => 5432,
        };
        let dbname = std::env::var("FINTRAIL_DATABASE_NAME").unwrap_or_else(|_| DEFAULT_DBNAME.to_string());
        let user = std::env::var("FINTRAIL_DATABASE_USER")
            .context("FINTRAIL_DATABASE_USER is required with FINTRAIL_DATABASE_HOST")?;
        let role = DbRole::ALL
            .into_iter()
            .find(|r| r.sql_name() == user)
            .with_context(|| format!("FINTRAIL_DATABASE_USER={user} is not a fintrail role"))?;
        let password = std::env::var("FINTRAIL_DATABASE_PASSWORD").ok();
        let mut users = HashMap::new();
        users.insert(role, (user, password));
        // The API service also runs the audit sequencer, under the sequencer's own credential
        // (the app role may not write the chain): given separately, never derived.
        if role == DbRole::App {
            if let Ok(p) = std::env::var("FINTRAIL_SEQUENCER_PASSWORD") {
                users.insert(DbRole::Sequencer, (DbRole::Sequencer.sql_name().into(), Some(p)));
            }
        }
        Ok(Some(Self { kind: Kind::External, host, port, dbname, users: Arc::new(users) }))
    }

    /// Whether this configuration holds credentials for `role`.
    pub fn has_credentials(&self, role: DbRole) -> bool {
        self.users.contains_key(&role)
    }

    /// The same server and credentials, another database name.
    pub fn with_dbname(&self, dbname: &str) -> Self {
        Self { dbname: dbname.into(), ..self.clone() }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }
    pub fn name(&self) -> &str {
        &self.dbname
    }
    pub fn host(&self) -> &str {
        &self.host
    }
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Plain parameters for `role`. The owner never logs in: asking for it is a bug.
    pub fn params(&self, role: DbRole) -> ConnParams {
        assert!(role.can_login(), "{role} is NOLOGIN: connect as admin and SET ROLE");
        // A service configured with one role's credentials (production) gets a login that fails
        // with a clear authentication error for any other role, never another role's password.
        let (user, password) = self.users.get(&role).cloned().unwrap_or_else(|| (role.sql_name().to_string(), None));
        ConnParams { host: self.host.clone(), port: self.port, user, password, dbname: self.dbname.clone() }
    }

    /// A tokio-postgres configuration for `role`.
    pub fn config(&self, role: DbRole) -> anyhow::Result<tokio_postgres::Config> {
        let p = self.params(role);
        let mut config = tokio_postgres::Config::new();
        config.host(&p.host).port(p.port).user(&p.user).dbname(&p.dbname);
        config.application_name(format!("fintrail:{}", role.sql_name()));
        config.connect_timeout(std::time::Duration::from_secs(10));
        if let Some(pw) = &p.password {
            config.password(pw);
        }
        Ok(config)
    }

    /// A `postgres://` URL for `role`, password included: for child processes only, never logs.
    pub fn url(&self, role: DbRole) -> String {
        let p = self.params(role);
        let auth = match &p.password {
            Some(pw) => format!("{}:{}", pct(&p.user), pct(pw)),
            None => pct(&p.user),
        };
        format!("postgres://{auth}@{}:{}/{}", p.host, p.port, pct(&p.dbname))
    }

    /// The URL without the password, for messages.
    pub fn display_url(&self, role: DbRole) -> String {
        let p = self.params(role);
        format!("postgres://{}@{}:{}/{}", p.user, p.host, p.port, p.dbname)
    }

    /// Connects as `role`; the connection task runs on the current tokio runtime.
    pub async fn connect(&self, role: DbRole) -> anyhow::Result<tokio_postgres::Client> {
        let config = self.config(role)?;
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .with_context(|| format!("connecting to {}", self.display_url(role)))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(log_class = "app", error = %e, "database connection closed");
            }
        });
        Ok(client)
    }
}

/// Percent-encodes a URL component (passwords are hex, but names may not be).
fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_url_is_parsed_and_passwords_never_printed() {
        let db = Database::external("postgres://admin:s3cr%40t@db.internal:6543/prod").expect("valid url");
        assert_eq!(db.host(), "db.internal");
        assert_eq!(db.port(), 6543);
        assert_eq!(db.name(), "prod");
        let p = db.params(DbRole::Admin);
        assert_eq!(p.user, "admin");
        assert_eq!(p.password.as_deref(), Some("s3cr@t"));
        assert!(!format!("{p:?}").contains("s3cr"));
        assert!(!format!("{db:?}").contains("s3cr"));
        assert!(!db.display_url(DbRole::Admin).contains("s3cr"));
        assert_eq!(db.url(DbRole::Admin), "postgres://admin:s3cr%40t@db.internal:6543/prod"); // pragma: allowlist secret
        assert_eq!(db.params(DbRole::App).user, "fintrail_app");
    }

    #[test]
    fn unix_socket_urls_are_refused_clearly() {
        let err = Database::external("postgres://a@%2Ftmp/db").map(|_| ()).unwrap_err();
        assert!(format!("{err:#}").contains("Unix-socket"), "{err:#}");
    }

    #[test]
    fn a_service_gets_only_its_own_role() {
        // Environment variables are process-wide: this is the only test that sets them.
        std::env::set_var("FINTRAIL_DATABASE_HOST", "10.0.0.5");
        std::env::set_var("FINTRAIL_DATABASE_USER", "fintrail_app");
        std::env::set_var("FINTRAIL_DATABASE_PASSWORD", "pw-from-secret-manager"); // pragma: allowlist secret
        let db = Database::from_service_env().expect("valid").expect("configured");
        std::env::remove_var("FINTRAIL_DATABASE_HOST");
        std::env::remove_var("FINTRAIL_DATABASE_USER");
        std::env::remove_var("FINTRAIL_DATABASE_PASSWORD");
        assert_eq!((db.host(), db.port(), db.name()), ("10.0.0.5", 5432, "fintrail"));
        assert!(db.has_credentials(DbRole::App));
        assert!(!db.has_credentials(DbRole::Admin));
        assert_eq!(db.params(DbRole::App).password.as_deref(), Some("pw-from-secret-manager"));
        assert_eq!(db.params(DbRole::Admin).password, None, "never another role's password");
    }

    #[test]
    #[should_panic(expected = "NOLOGIN")]
    fn the_owner_never_logs_in() {
        let db = Database::external("postgres://a:b@h/d").expect("valid url");
        let _ = db.params(DbRole::Owner);
    }
}
