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

/// A production service's database settings, from the environment (Secret Manager provides
/// the passwords; see `docs/configuration.md`).
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceDb {
    /// `FINTRAIL_DATABASE_HOST`: Cloud SQL's private IP.
    pub host: String,
    /// `FINTRAIL_DATABASE_PORT` (5432).
    pub port: u16,
    /// `FINTRAIL_DATABASE_NAME` (`fintrail`).
    pub dbname: String,
    /// `FINTRAIL_DATABASE_USER`: the one login role this service runs as.
    pub role: DbRole,
    /// `FINTRAIL_DATABASE_PASSWORD`: that role's password.
    pub password: String,
    /// `FINTRAIL_SEQUENCER_PASSWORD`, read when the role is `fintrail_app` (the API runs the
    /// audit sequencer under the sequencer's own role).
    pub sequencer_password: Option<String>,
}

impl fmt::Debug for ServiceDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceDb")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .field("role", &self.role)
            .field("password", &"***")
            .field("sequencer_password", &self.sequencer_password.as_ref().map(|_| "***"))
            .finish()
    }
}

impl ServiceDb {
    pub const HOST: &'static str = "FINTRAIL_DATABASE_HOST";
    pub const PORT: &'static str = "FINTRAIL_DATABASE_PORT";
    pub const NAME: &'static str = "FINTRAIL_DATABASE_NAME";
    pub const USER: &'static str = "FINTRAIL_DATABASE_USER";
    pub const PASSWORD: &'static str = "FINTRAIL_DATABASE_PASSWORD";
    pub const SEQUENCER_PASSWORD: &'static str = "FINTRAIL_SEQUENCER_PASSWORD";

    /// Reads the `FINTRAIL_DATABASE_*` variables; `None` when one is missing or malformed
    /// (each recorded in `env`).
    pub fn from_env(env: &mut crate::env::EnvReader<'_>) -> Option<ServiceDb> {
        let host = env.required(Self::HOST, "the database server's address (Cloud SQL's private IP)");
        if let Some(h) = &host {
            if h.contains('/') || h.contains(char::is_whitespace) {
                env.problem(
                    Self::HOST,
                    format!("{h:?} is not a host name or IP address (Unix sockets are not supported)"),
                );
            }
        }
        let port = env.parsed(Self::PORT, 5432, crate::env::parse_port);
        let dbname = env.optional(Self::NAME).unwrap_or_else(|| DEFAULT_DBNAME.to_string());
        let logins: Vec<&str> = DbRole::ALL.iter().filter(|r| r.can_login()).map(|r| r.sql_name()).collect();
        let role = env.required(Self::USER, &format!("the database role this service runs as ({})", logins.join(", ")));
        let role = role.and_then(|user| {
            let found = DbRole::ALL.into_iter().find(|r| r.can_login() && r.sql_name() == user);
            if found.is_none() {
                env.problem(Self::USER, format!("{user:?} is not a fintrail login role ({})", logins.join(", ")));
            }
            found
        });
        let password = env.required_secret(Self::PASSWORD, "the password of FINTRAIL_DATABASE_USER (Secret Manager)");
        let sequencer_password = if role == Some(DbRole::App) { env.secret(Self::SEQUENCER_PASSWORD) } else { None };
        Some(ServiceDb { host: host?, port: port?, dbname, role: role?, password: password?, sequencer_password })
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

    /// The production wiring of one service (Cloud Run, see `infra/stack/main.tf`), read from
    /// `FINTRAIL_DATABASE_*` ([`ServiceDb::from_env`]). Returns `None` when
    /// `FINTRAIL_DATABASE_HOST` is unset; every missing or malformed variable is an error that
    /// names it.
    pub fn from_service_env() -> anyhow::Result<Option<Self>> {
        let mut env = crate::env::EnvReader::process();
        if !env.is_set(ServiceDb::HOST) {
            return Ok(None);
        }
        let db = ServiceDb::from_env(&mut env);
        env.finish()?;
        Ok(db.map(Database::service))
    }

    /// One service's connection: only its own role's credentials (and the sequencer's, for
    /// the API). Asking for another role's connection is then an error, not a fallback.
    pub fn service(s: ServiceDb) -> Self {
        let mut users = HashMap::new();
        users.insert(s.role, (s.role.sql_name().to_string(), Some(s.password)));
        if let Some(p) = s.sequencer_password {
            users.insert(DbRole::Sequencer, (DbRole::Sequencer.sql_name().into(), Some(p)));
        }
        Self { kind: Kind::External, host: s.host, port: s.port, dbname: s.dbname, users: Arc::new(users) }
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
        std::env::set_var("FINTRAIL_DATABASE_USER", "fintrail_owner");
        let err = Database::from_service_env().expect_err("the owner never logs in");
        std::env::remove_var("FINTRAIL_DATABASE_HOST");
        std::env::remove_var("FINTRAIL_DATABASE_USER");
        std::env::remove_var("FINTRAIL_DATABASE_PASSWORD");
        assert_eq!((db.host(), db.port(), db.name()), ("10.0.0.5", 5432, "fintrail"));
        assert!(db.has_credentials(DbRole::App));
        assert!(!db.has_credentials(DbRole::Admin));
        assert_eq!(db.params(DbRole::App).password.as_deref(), Some("pw-from-secret-manager"));
        assert_eq!(db.params(DbRole::Admin).password, None, "never another role's password");
        let text = format!("{err:#}");
        assert!(text.contains("FINTRAIL_DATABASE_USER: \"fintrail_owner\" is not a fintrail login role"), "{text}");
        assert!(!text.contains("pw-from-secret-manager"), "{text}");
    }

    #[test]
    #[should_panic(expected = "NOLOGIN")]
    fn the_owner_never_logs_in() {
        let db = Database::external("postgres://a:b@h/d").expect("valid url");
        let _ = db.params(DbRole::Owner);
    }
}
