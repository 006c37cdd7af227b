//! fintrail's PostgreSQL: the private cluster, the `FINTRAIL_HOME` layout, connection parameters
//! per least-privilege role, signing keys, migrations, and the test harness.
//!
//! Depends only on `fintrail-domain` (for `DbRole`). Everything that talks to PostgreSQL goes
//! through a `Database`, which knows the credentials of each role and the TLS of the server.
//!
//! # TLS (issue #14, `docs/tls.md`)
//! Every connection is TLS, verified: `verify-full` by default. The private cluster accepts
//! nothing else (pg_hba `hostssl` only) and is verified against its own CA; an external server
//! takes `FINTRAIL_DB_SSLMODE` (`verify-full` | `verify-ca` | `disable`, the last explicit and
//! logged as a warning) and `FINTRAIL_DB_SSLROOTCERT` (the CA bundle, Cloud SQL's server CA).
//! The test harness runs on the same cluster code, so every test of every crate connects this way.
//!
//! # What it owns
//! - `cluster`: a private PostgreSQL cluster started from the machine's binaries under
//!   `FINTRAIL_HOME/pg`: never as root (runs as `FINTRAIL_PG_USER` when we are root), listening on
//!   127.0.0.1 only on a free port, scram-sha-256 passwords, `wal_level=logical`. Start is
//!   idempotent; a stale `postmaster.pid` left by a crash is removed (`remove_stale_pid_file`).
//!   TLS on (`ssl = on`, TLS 1.3 at least), re-asserted at each start: a cluster from before
//!   TLS is upgraded at its next start, stopped or running, its data kept.
//! - `certs`: the cluster's CA (its key never written) and server certificate (`localhost`,
//!   `127.0.0.1`, `::1`), generated with rcgen; renewed by `start` when fewer than 30 days are
//!   left. The CA certificate is `FINTRAIL_HOME/tls/ca.crt`; the server's certificate and key
//!   (0600, owned by the server's OS user) sit in the data folder.
//! - `hba`: the cluster's `pg_hba.conf`, written at init and re-asserted at each start: TLS only
//!   (`hostnossl ... reject` first, every accepting line `hostssl`), no physical replication for
//!   anyone, 127.0.0.1 and scram only, a line of its own for the replicator.
//!   `log_replication_commands` is on, so every slot created and its plugin is in the server log.
//! - `tls`: `SslMode` and `Tls` (one rustls configuration per `Database`, on ring, shared by
//!   every connection; the environment of child processes, libpq's and fintrail's; failed
//!   handshakes explained: the CA, the host name, a server without TLS).
//! - `home`: the `FINTRAIL_HOME` layout (`pg/`, `secrets/`, `keys/`, media, `analytics.duckdb`,
//!   `up.lock`, ...) and `home::owner_only`, the one helper for files and folders no other OS user
//!   may read (0600 files written once and synced, 0700 folders). Every crate uses it.
//! - `ClusterLease` (in `Context`): when `prepare` had to start the cluster, it is stopped when the
//!   last clone of the context is dropped: the command ended, failed, or was interrupted. A cluster
//!   that was already running, or an external server, is left alone.
//! - Signing keys under `FINTRAIL_HOME/keys` (media URL key, audit checkpoint key): 32-byte HMAC
//!   keys created owner-only on first use, or installed there from the environment in production
//!   (`keys::install`); a key id is the first 8 bytes of SHA-256(key), hex.
//! - `secrets`: generated role passwords under `secrets/` (owner-only).
//! - `database`: `Database` / `ConnParams`, connection parameters per `DbRole` for the private
//!   cluster, an external URL (`DATABASE_URL`) or a production service environment
//!   (`ServiceDb`, `FINTRAIL_DATABASE_*`), each with its `Tls` (TLS settings in the URL are
//!   refused: one place for them). Passwords never appear in `Debug` or `display_url`.
//! - `env`: configuration from the environment, the production way: typed values, every missing
//!   or malformed variable named in one error, secrets as variables or `<NAME>_FILE` mounts
//!   (`docs/configuration.md`).
//! - `migrate`: our own runner (each migration runs as a chosen role, which off-the-shelf runners
//!   do not model): in order, once, as the owner (the bootstrap as the admin); checksums in
//!   `fintrail_meta.schema_migrations` refuse an edited applied migration; an advisory lock
//!   serializes concurrent migrators. Migrations live in `migrations/` and are embedded at build.
//! - `testing` (feature `testing`, dev only): one non-durable cluster per test binary in a temp
//!   folder (a watchdog stops it and removes the folder when the process exits), a migrated
//!   template database, and `fresh_db()` returning a new database copied from it per test. Run
//!   with `cargo test` (threads in one process), not a process per test.
//!
//! # Invariants enforced in SQL (migrations: `0000_baseline.sql`, then 0043 and above)
//! - Roles (the baseline's first section): `fintrail_owner` (NOLOGIN, owns everything), `fintrail_app` (only
//!   the DML each migration grants), `fintrail_replicator` (REPLICATION; column-level SELECT
//!   granted by `fintrail cdc setup` from the replication policy). No BYPASSRLS; no login role owns a table.
//! - KYC/KYB (`fintrail.sm_install`), media, audit, ledger: triggers owned by
//!   `fintrail_owner` hold for the app role and the owner alike.
//! - Currencies (0043): `currencies` holds the ISO 4217 table, generated from
//!   `crates/domain/data/iso4217.csv` (the one source `fintrail_domain::ledger::Currency` also
//!   embeds); wallets and holds reference it. Changing the file needs a new migration:
//!   `tests/currencies.rs` fails until the migrated table equals the file again.
//!
//! # Dependencies
//! `tokio-postgres` (connections), `rustls` (ring provider, named explicitly in every config) with
//! `tokio-postgres-rustls` and `webpki-roots` (TLS), `rcgen` + `x509-cert` (the cluster's
//! certificates), `tokio`, `rand` (passwords, keys), `sha2` + `hex` (key ids, migration
//! checksums), `anyhow`, `thiserror`, `tracing`.
//!
//! # Tests
//! - `tests/harness.rs`: each test database is its own; parallel tests do not see each other;
//!   fresh databases are migrated (and the cluster listens on 127.0.0.1 with `wal_level=logical`);
//!   an edited applied migration is refused.
//! - `tests/cluster.rs`: idempotent start, secrets owner-only, recovery after SIGKILL of the
//!   postmaster.
//! - `tests/privileges.rs`: the app cannot ALTER/TRUNCATE/DROP/disable triggers on any table nor
//!   touch what it was not granted; no login role owns tables or bypasses RLS; the replicator
//!   reads only what it was granted; unknown passwords are refused.
//! - `tests/tls.rs` (real clusters, real handshakes): every harness connection is TLS 1.3 and
//!   its files owner-only; a plain client (tokio-postgres without TLS: the one in the tree) is refused by pg_hba; a
//!   wrong CA and a wrong host name are refused with errors naming them (`verify-ca` accepts the
//!   name); a server without TLS is refused unless `disable` is set; a pre-TLS cluster is
//!   upgraded at its next start, stopped or running.
//! - `tests/hba.rs`: physical replication refused (over TLS); a loosened pg_hba restored.
//! - `tests/currencies.rs`: the migrated `currencies` equals the ISO 4217 file row by row; the
//!   app only reads it; both keys validated on a fresh database; 0043 over a wallet in `ZZZ`
//!   keeps it (key NOT VALID) and refuses new ones.
//! - Unit tests: owner-only files and folders, keys created owner-only and stable, passwords
//!   never printed, sslmode parsing, CA files (unreadable, empty, not certificates), TLS in a
//!   URL refused.

pub mod certs;
pub mod cluster;
pub mod coupling;
pub mod database;
pub mod env;
pub mod hba;
pub mod home;
pub mod keys;
pub mod migrate;
pub mod proc_cpu;
pub mod secrets;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;

pub use database::{ConnParams, Database, Kind, ServiceDb, DEFAULT_DBNAME};
pub use fintrail_domain::db_role::DbRole;
pub use home::Home;
pub use tls::{SslMode, Tls};

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
