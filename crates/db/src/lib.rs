//! fintrail's PostgreSQL: the private cluster started by fintrail itself, the connection
//! parameters of each least-privilege role, the migrations, and the test harness.
//!
//! Depends only on `fintrail-domain` (for [`DbRole`]). Everything that talks to PostgreSQL
//! goes through a [`Database`], which knows the credentials of each role.

pub mod cluster;
pub mod database;
pub mod home;
pub mod keys;
pub mod migrate;
pub mod secrets;
#[cfg(feature = "testing")]
pub mod testing;

pub use database::{ConnParams, Database, Kind, DEFAULT_DBNAME};
pub use fintrail_domain::db_role::DbRole;
pub use home::Home;

use anyhow::Context as _;

/// What every command that works on the database needs.
///
/// When [`prepare`] had to start the private cluster, the context carries a [`ClusterLease`]:
/// the cluster is stopped when the last clone of the context is dropped (the command ended,
/// failed, or was interrupted). A cluster that was already running is left alone.
#[derive(Debug, Clone)]
pub struct Context {
    pub db: Database,
    pub home: Home,
    lease: Option<std::sync::Arc<ClusterLease>>,
}

impl Context {
    /// A context that started nothing (an external server, or a cluster someone else runs).
    pub fn new(db: Database, home: Home) -> Context {
        Context { db, home, lease: None }
    }

    /// The same context on another database of the same server; it shares the lease, so the
    /// cluster stays up while either is alive.
    pub fn with_db(&self, db: Database) -> Context {
        Context { db, home: self.home.clone(), lease: self.lease.clone() }
    }

    /// Whether this process started the private cluster (and will stop it).
    pub fn started_cluster(&self) -> bool {
        self.lease.as_ref().is_some_and(|l| !l.kept.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Leave the cluster running when this context is dropped (`fintrail up --keep-db`).
    pub fn keep_cluster(&self) {
        if let Some(l) = &self.lease {
            l.kept.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Stops, on drop, a private cluster that this process started.
///
/// Why on drop: a command ends by returning, by `?` on an error, or (through the binary's
/// signal handling) by its future being dropped on Ctrl-C / SIGTERM; drop covers all three
/// without every command remembering to clean up. Benchmarks used to leave their clusters
/// running this way.
#[derive(Debug)]
pub struct ClusterLease {
    cluster: cluster::Cluster,
    kept: std::sync::atomic::AtomicBool,
}

impl Drop for ClusterLease {
    fn drop(&mut self) {
        if self.kept.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        // Blocking is fine here: it is the end of the command, and pg_ctl stop is bounded by
        // its own timeout.
        match self.cluster.stop() {
            Ok(true) => tracing::info!(log_class = "app", "stopped the private PostgreSQL this command started"),
            Ok(false) => {}
            Err(e) => eprintln!("warning: could not stop the private PostgreSQL this command started: {e:#}"),
        }
    }
}

/// Durable clusters for real use; tests make theirs non-durable.
pub const DURABLE: cluster::InitOptions = cluster::InitOptions { durable: true };

/// Makes the database ready: with no `database_url`, starts the private cluster under `home`
/// (initializing it on first use) and creates the `fintrail` database; then migrates.
///
/// Without a URL but with `FINTRAIL_DATABASE_HOST` (a production service holding only its own
/// role's credentials), nothing is started or migrated: migrations run as a separate job with
/// the admin's credentials.
pub async fn prepare(home: &Home, database_url: Option<&str>) -> anyhow::Result<Context> {
    if database_url.is_none() {
        if let Some(db) = Database::from_service_env()? {
            return Ok(Context::new(db, home.clone()));
        }
    }
    let (db, lease) = match database_url {
        Some(url) => (Database::external(url)?, None),
        None => {
            let cluster = cluster::Cluster::new(home.clone())?;
            let c = cluster.clone();
            // The lease is made inside the blocking task: if this future is dropped (a signal)
            // while `pg_ctl start` runs, tokio drops the task's output when it completes, and
            // with it the lease, which stops the cluster that came up after all.
            let lease = tokio::task::spawn_blocking(move || {
                let started = c.start(DURABLE)?;
                anyhow::Ok(
                    (started == cluster::Started::Started)
                        .then(|| std::sync::Arc::new(ClusterLease { cluster: c.clone(), kept: Default::default() })),
                )
            })
            .await
            .context("starting the cluster")??;
            // From here on an error drops the lease, which stops what we started.
            let db = cluster.database(DEFAULT_DBNAME)?;
            ensure_database(&db).await?;
            (db, lease)
        }
    };
    migrate::migrate(&db).await?;
    Ok(Context { db, home: home.clone(), lease })
}

/// Creates `db.name()` on its server if missing (connecting to the `postgres` database).
pub async fn ensure_database(db: &Database) -> anyhow::Result<()> {
    let admin = db.with_dbname("postgres").connect(DbRole::Admin).await?;
    let exists = admin.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db.name()]).await?.is_some();
    if !exists {
        admin.batch_execute(&format!("CREATE DATABASE \"{}\"", db.name().replace('"', "\"\""))).await?;
        tracing::info!(log_class = "app", database = db.name(), "created database");
    }
    Ok(())
}
