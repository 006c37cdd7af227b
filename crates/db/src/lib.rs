//! fintrail's PostgreSQL: the private cluster started by fintrail itself, the connection
//! parameters of each least-privilege role, the migrations, and the test harness.
//!
//! Depends only on `fintrail-domain` (for [`DbRole`]). Everything that talks to PostgreSQL
//! goes through a [`Database`], which knows the credentials of each role.

pub mod cluster;
pub mod database;
pub mod home;
pub mod migrate;
pub mod secrets;
#[cfg(feature = "testing")]
pub mod testing;

pub use database::{ConnParams, Database, Kind, DEFAULT_DBNAME};
pub use fintrail_domain::db_role::DbRole;
pub use home::Home;

use anyhow::Context as _;

/// What every command that works on the database needs.
#[derive(Debug, Clone)]
pub struct Context {
    pub db: Database,
    pub home: Home,
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
            return Ok(Context { db, home: home.clone() });
        }
    }
    let db = match database_url {
        Some(url) => Database::external(url)?,
        None => {
            let cluster = cluster::Cluster::new(home.clone())?;
            let c = cluster.clone();
            tokio::task::spawn_blocking(move || c.start(DURABLE)).await.context("starting the cluster")??;
            let db = cluster.database(DEFAULT_DBNAME)?;
            ensure_database(&db).await?;
            db
        }
    };
    migrate::migrate(&db).await?;
    Ok(Context { db, home: home.clone() })
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
