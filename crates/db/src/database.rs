//! Where to connect, and as whom. One `Database` names one PostgreSQL database, the
//! credentials of each fintrail role on it, and the TLS every connection to it uses
//! (`tls`: `verify-full` against the private cluster's own CA, or `FINTRAIL_DB_SSLMODE` /
//! `FINTRAIL_DB_SSLROOTCERT` for an external server).

use std::{collections::HashMap, fmt, path::PathBuf, str::FromStr, sync::Arc};

use anyhow::Context as _;
use fintrail_domain::db_role::DbRole;

use crate::{
    home::Home,
    secrets,
    tls::{SslMode, Tls},
};

/// The database fintrail uses on the private cluster.
pub const DEFAULT_DBNAME: &str = "fintrail";

/// Plain connection parameters, for clients other than tokio-postgres (pgbench,
/// pg_recvlogical, the replication transport): they must apply `sslmode` and `sslrootcert`
/// themselves (PostgreSQL's tools: [`ConnParams::libpq_tls_env`]).
#[derive(Clone, PartialEq, Eq)]
pub struct ConnParams {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub dbname: String,
    pub sslmode: SslMode,
    /// The CA file to trust (`None`: the public roots, or no TLS).
    pub sslrootcert: Option<PathBuf>,
}

impl ConnParams {
    /// `PGSSLMODE` / `PGSSLROOTCERT` for a libpq tool (pgbench, pg_recvlogical, ...).
    pub fn libpq_tls_env(&self) -> Vec<(&'static str, String)> {
        crate::tls::libpq_env(self.sslmode, self.sslrootcert.as_deref())
    }
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
            .field("sslmode", &self.sslmode)
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
    tls: Tls,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Database({:?} {}:{}/{} tls {})", self.kind, self.host, self.port, self.dbname, self.tls.mode())
    }
}

/// A production service's database settings, from the environment (Secret Manager provides
/// the passwords; see `docs/configuration.md`).
#[derive(Clone)]
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
    /// `FINTRAIL_DB_SSLMODE` / `FINTRAIL_DB_SSLROOTCERT`: `verify-full` unless set (Cloud SQL's
    /// server certificate names no host we connect by, so production sets `verify-ca` with the
    /// instance's CA mounted).
    pub tls: Tls,
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
            .field("tls", &self.tls.describe())
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
        let tls = Self::tls_from_env(env);
        Some(ServiceDb {
            host: host?,
            port: port?,
            dbname,
            role: role?,
            password: password?,
            sequencer_password,
            tls: tls?,
        })
    }

    /// The TLS settings, each problem recorded against the variable that caused it: a bad
    /// mode against `FINTRAIL_DB_SSLMODE`, an unusable CA file against `FINTRAIL_DB_SSLROOTCERT`.
    fn tls_from_env(env: &mut crate::env::EnvReader<'_>) -> Option<Tls> {
        use crate::tls::{SslMode, SSLMODE_ENV, SSLROOTCERT_ENV, SSLROOTCERT_PEM_ENV};
        let mode = match env.optional(SSLMODE_ENV) {
            None => SslMode::VerifyFull,
            Some(m) => match m.trim().parse::<SslMode>() {
                Ok(mode) => mode,
                Err(e) => {
                    env.problem(SSLMODE_ENV, format!("{e:#}"));
                    return None;
                }
            },
        };
        let mut root = env.optional(SSLROOTCERT_ENV).map(std::path::PathBuf::from);
        if let Some(pem) = env.optional(SSLROOTCERT_PEM_ENV) {
            if root.is_some() {
                env.problem(SSLROOTCERT_PEM_ENV, format!("set {SSLROOTCERT_ENV} or {SSLROOTCERT_PEM_ENV}, not both"));
                return None;
            }
            match crate::tls::write_inline_roots(&pem) {
                Ok(path) => root = Some(path),
                Err(e) => {
                    env.problem(SSLROOTCERT_PEM_ENV, format!("{e:#}"));
                    return None;
                }
            }
        }
        match Tls::new(mode, root.as_deref()) {
            Ok(tls) => Some(tls),
            Err(e) => {
                env.problem(SSLROOTCERT_ENV, format!("{e:#}"));
                None
            }
        }
    }
}

impl Database {
    /// A database on the private cluster; passwords come from `FINTRAIL_HOME/secrets`
    /// (created there if missing, set on the roles by `prepare`); TLS is `verify-full` against
    /// the cluster's CA (`FINTRAIL_HOME/tls/ca.crt`, written by `Cluster::start`), by the
    /// address 127.0.0.1, which the server certificate names.
    pub fn private(home: &Home, port: u16, dbname: &str) -> anyhow::Result<Self> {
        let tls = Tls::private(&home.tls_ca_cert())?;
        let dir = home.secrets_dir();
        let mut users = HashMap::new();
        for role in DbRole::ALL {
            let password = if role.can_login() { Some(secrets::get_or_create(&dir, role.sql_name())?) } else { None };
            users.insert(role, (role.sql_name().to_string(), password));
        }
        Ok(Self {
            kind: Kind::Private,
            host: "127.0.0.1".into(),
            port,
            dbname: dbname.into(),
            users: Arc::new(users),
            tls,
        })
    }

    /// An external server (Cloud SQL in production): `url` is the admin's URL
    /// (`postgres://user:password@host:port/db`); the other roles' passwords come from // pragma: allowlist secret
    /// `FINTRAIL_APP_PASSWORD`, `FINTRAIL_REPLICATOR_PASSWORD` and `FINTRAIL_SEQUENCER_PASSWORD`
    /// (Secret Manager in GCP). TLS: `FINTRAIL_DB_SSLMODE` / `FINTRAIL_DB_SSLROOTCERT`
    /// (`verify-full` by default), never the URL's own `sslmode`: one place for it.
    pub fn external(url: &str) -> anyhow::Result<Self> {
        refuse_tls_in_url(url)?;
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
        Ok(Self { kind: Kind::External, host, port, dbname, users: Arc::new(users), tls: Tls::from_env()? })
    }

    /// The production wiring of one service (Cloud Run, see `infra/stack/main.tf`), read from
    /// `FINTRAIL_DATABASE_*` ([`ServiceDb::from_env`]). Returns `None` when
    /// `FINTRAIL_DATABASE_HOST` is unset; every missing or malformed variable is an error that
    /// names it. TLS: `FINTRAIL_DB_SSLMODE` / `FINTRAIL_DB_SSLROOTCERT` (`verify-full` by default).
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
        Self { kind: Kind::External, host: s.host, port: s.port, dbname: s.dbname, users: Arc::new(users), tls: s.tls }
    }

    /// Whether this configuration holds credentials for `role`.
    pub fn has_credentials(&self, role: DbRole) -> bool {
        self.users.contains_key(&role)
    }

    /// The same server and credentials, another database name.
    pub fn with_dbname(&self, dbname: &str) -> Self {
        Self { dbname: dbname.into(), ..self.clone() }
    }

    /// The same server and credentials, other TLS settings (tests: a wrong CA, `disable`).
    pub fn with_tls(&self, tls: Tls) -> Self {
        Self { tls, ..self.clone() }
    }

    /// The TLS every connection to this database uses.
    pub fn tls(&self) -> &Tls {
        &self.tls
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
        ConnParams {
            host: self.host.clone(),
            port: self.port,
            user,
            password,
            dbname: self.dbname.clone(),
            sslmode: self.tls.mode(),
            sslrootcert: self.tls.root_cert().map(|p| p.to_path_buf()),
        }
    }

    /// A tokio-postgres configuration for `role`, TLS required unless `disable` (connect it
    /// with [`Database::connect_config`] or [`Tls::connector`]).
    pub fn config(&self, role: DbRole) -> anyhow::Result<tokio_postgres::Config> {
        let p = self.params(role);
        let mut config = tokio_postgres::Config::new();
        config.host(&p.host).port(p.port).user(&p.user).dbname(&p.dbname);
        config.application_name(format!("fintrail:{}", role.sql_name()));
        config.connect_timeout(std::time::Duration::from_secs(10));
        if let Some(pw) = &p.password {
            config.password(pw);
        }
        self.tls.apply(&mut config);
        Ok(config)
    }

    /// A `postgres://` URL for `role`, password included: for child processes only, never logs.
    /// A child `fintrail` also needs [`Database::child_env`] (the TLS settings).
    pub fn url(&self, role: DbRole) -> String {
        let p = self.params(role);
        let auth = match &p.password {
            Some(pw) => format!("{}:{}", pct(&p.user), pct(pw)),
            None => pct(&p.user),
        };
        format!("postgres://{auth}@{}:{}/{}", p.host, p.port, pct(&p.dbname))
    }

    /// What a child `fintrail` process needs to reach this database as `role`: `DATABASE_URL`
    /// and the TLS settings (`FINTRAIL_DB_SSLMODE`, `FINTRAIL_DB_SSLROOTCERT`).
    pub fn child_env(&self, role: DbRole) -> Vec<(&'static str, String)> {
        let mut env = vec![("DATABASE_URL", self.url(role))];
        env.extend(self.tls.fintrail_env());
        env
    }

    /// The URL without the password, for messages.
    pub fn display_url(&self, role: DbRole) -> String {
        let p = self.params(role);
        format!("postgres://{}@{}:{}/{}", p.user, p.host, p.port, p.dbname)
    }

    /// Connects as `role`; the connection task runs on the current tokio runtime.
    pub async fn connect(&self, role: DbRole) -> anyhow::Result<tokio_postgres::Client> {
        self.connect_config(&self.config(role)?).await
    }

    /// Connects with `config` (one of [`Database::config`]'s, adjusted) over this database's
    /// TLS. A failure caused by TLS says which check failed (the CA, the host name, a server
    /// without TLS).
    pub async fn connect_config(&self, config: &tokio_postgres::Config) -> anyhow::Result<tokio_postgres::Client> {
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => self.host.clone(),
        };
        let target = format!(
            "postgres://{}@{host}:{}/{} (TLS {})",
            config.get_user().unwrap_or("?"),
            config.get_ports().first().copied().unwrap_or(self.port),
            config.get_dbname().unwrap_or("?"),
            self.tls.mode()
        );
        let (client, connection) = match config.connect(self.tls.connector()).await {
            Ok(c) => c,
            Err(e) => {
                let err = match self.tls.explain(&e, &host) {
                    Some(why) => anyhow::Error::new(e).context(why),
                    None => anyhow::Error::new(e),
                };
                return Err(err.context(format!("connecting to {target}")));
            }
        };
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(log_class = "app", error = %e, "database connection closed");
            }
        });
        Ok(client)
    }
}

/// TLS settings in the URL would be a second place for them, silently ignored or half applied
/// (tokio-postgres knows no `verify-full`): refused, naming the variables to use.
fn refuse_tls_in_url(url: &str) -> anyhow::Result<()> {
    let Some((_, query)) = url.split_once('?') else { return Ok(()) };
    for pair in query.split('&') {
        let key = pair.split('=').next().unwrap_or_default();
        if key.starts_with("ssl") {
            anyhow::bail!(
                "--database-url / DATABASE_URL: `{key}` is not taken from the URL; set {} / {} instead",
                crate::tls::SSLMODE_ENV,
                crate::tls::SSLROOTCERT_ENV
            );
        }
    }
    Ok(())
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
    fn tls_settings_in_the_url_are_refused_clearly() {
        for url in ["postgres://a:b@h/d?sslmode=require", "postgres://a:b@h/d?connect_timeout=3&sslrootcert=/x.pem"] {
            let err = Database::external(url).map(|_| ()).unwrap_err();
            assert!(format!("{err:#}").contains("FINTRAIL_DB_SSLMODE"), "{err:#}");
        }
        let db = Database::external("postgres://a:b@h/d").expect("valid url");
        assert_eq!(db.tls().mode(), SslMode::VerifyFull, "verify-full unless told otherwise");
        assert_eq!(db.params(DbRole::Admin).libpq_tls_env()[0], ("PGSSLMODE", "verify-full".to_string()));
        let config = db.config(DbRole::Admin).expect("config");
        assert_eq!(config.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
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
