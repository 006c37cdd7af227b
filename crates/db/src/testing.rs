//! The test harness: one private cluster per test binary, one fresh database per test.
//!
//! The first call starts a non-durable cluster in a temp folder and migrates a template
//! database once; every `fresh_db()` then copies the template (`CREATE DATABASE ... TEMPLATE`,
//! milliseconds), so tests run in parallel, each against real PostgreSQL with the real roles,
//! and cannot see each other's rows. A watchdog shell process stops the cluster and deletes
//! the folder when the test process exits (Rust's test harness has no global teardown).
//!
//! Run with `cargo test` (threads in one process), not nextest (a process per test would
//! start a cluster per test).

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        OnceLock,
    },
};

use anyhow::Context as _;
use tokio::sync::OnceCell;

use crate::{cluster::Cluster, cluster::InitOptions, Database, DbRole, Home};

const TEMPLATE_DBNAME: &str = "fintrail_template";

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static TEMPLATE: OnceCell<Database> = OnceCell::const_new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// The test binary's private cluster, started on first use.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        start_cluster().expect("the test cluster starts (are PostgreSQL 15+ binaries installed? ./dev setup)")
    })
}

fn start_cluster() -> anyhow::Result<Cluster> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.subsec_nanos();
    let root = std::env::temp_dir().join(format!("fintrail-test-{}-{nanos}", std::process::id()));
    let cluster = Cluster::new(Home::new(&root)?)?;
    cluster.start(InitOptions { durable: false })?;
    spawn_watchdog(&root, &cluster.home().pg_data())?;
    Ok(cluster)
}

/// Stops the cluster (immediate shutdown = SIGQUIT to the postmaster; `pg_ctl` refuses to run
/// as root) and removes its folder once this test process is gone.
fn spawn_watchdog(root: &std::path::Path, data: &std::path::Path) -> anyhow::Result<()> {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
         pm=$(head -1 '{data}/postmaster.pid' 2>/dev/null); \
         [ -n \"$pm\" ] && kill -QUIT \"$pm\" 2>/dev/null; sleep 1; rm -rf '{root}'",
        pid = std::process::id(),
        data = data.display(),
        root = root.display()
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("spawning the test cluster's watchdog")?;
    Ok(())
}

async fn template() -> anyhow::Result<&'static Database> {
    TEMPLATE
        .get_or_try_init(|| async {
            let db = cluster().database(TEMPLATE_DBNAME)?;
            crate::ensure_database(&db).await?;
            crate::migrate::migrate(&db).await?;
            Ok::<_, anyhow::Error>(db)
        })
        .await
}

/// A database of its own for one test.
#[derive(Debug, Clone)]
pub struct TestDb {
    db: Database,
}

impl std::ops::Deref for TestDb {
    type Target = Database;
    fn deref(&self) -> &Database {
        &self.db
    }
}

impl TestDb {
    pub fn database(&self) -> &Database {
        &self.db
    }
    /// The `FINTRAIL_HOME` of the test cluster (secrets live there).
    pub fn home(&self) -> &Home {
        cluster().home()
    }
}

/// A brand-new, migrated database copied from the template.
pub async fn fresh_db() -> TestDb {
    fresh_db_inner().await.expect("a fresh test database")
}

async fn fresh_db_inner() -> anyhow::Result<TestDb> {
    let template = template().await?;
    let n = NEXT_DB.fetch_add(1, Ordering::Relaxed);
    let name = format!("fintrail_test_{n}");
    let admin = template.with_dbname("postgres").connect(DbRole::Admin).await?;
    admin.batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {TEMPLATE_DBNAME}")).await?;
    // Database-level privileges are not copied from a template: apply 0001's again.
    admin
        .batch_execute(&format!(
            "REVOKE ALL ON DATABASE {name} FROM PUBLIC;
             GRANT CONNECT, TEMPORARY, CREATE ON DATABASE {name} TO fintrail_owner;
             GRANT CONNECT ON DATABASE {name} TO fintrail_app, fintrail_replicator, fintrail_sequencer;"
        ))
        .await?;
    Ok(TestDb { db: template.with_dbname(&name) })
}

/// The root folder of the test cluster.
pub fn cluster_root() -> PathBuf {
    cluster().home().root().to_path_buf()
}

/// SQL that appends, in the current transaction, the audit event the database requires
/// (migration 0036) for every row of a coupled table this transaction inserted or changed,
/// with actor `system:test`. For tests that write fixtures in raw SQL (as the owner or the
/// application role): run it last, in the same transaction (a multi-statement simple query is
/// one transaction). A row is this transaction's when its `xmin` is the current transaction id
/// (the test clusters are fresh, so the epoch is 0).
pub const RECORD_THIS_TRANSACTION: &str = "
INSERT INTO fintrail.audit_events (actor, action, subject, allowed)
SELECT 'system:test', r.action, r.subject, true FROM (
    SELECT 'customer.created' AS action, 'customer:' || id AS subject, xmin FROM fintrail.customers
    UNION ALL SELECT 'kyc.case.created', 'kyc_case:' || id, xmin FROM fintrail.kyc_cases
    UNION ALL SELECT 'kyc.case.transitioned', 'kyc_case:' || case_id, xmin FROM fintrail.kyc_case_transitions
    UNION ALL SELECT 'kyb.organization.created', 'organization:' || id, xmin FROM fintrail.organizations
    UNION ALL SELECT 'kyb.organization.transitioned', 'organization:' || organization_id, xmin
        FROM fintrail.organization_transitions
    UNION ALL SELECT CASE WHEN revoked_at IS NULL THEN 'token.issued' ELSE 'token.revoked' END, 'token:' || id, xmin
        FROM fintrail.api_tokens
    UNION ALL SELECT 'media.uploaded', 'media:' || id, xmin FROM fintrail.media_objects
    UNION ALL SELECT 'ledger.wallet.opened', 'wallet:' || id, xmin FROM fintrail.wallets WHERE kind <> 'system'
    UNION ALL SELECT CASE WHEN status = 'pending' THEN 'ledger.hold.created' ELSE 'ledger.hold.' || status END,
        'hold:' || id, xmin FROM fintrail.holds
) r
WHERE r.xmin::text::bigint = (pg_current_xact_id()::text::numeric % 4294967296)::bigint;
";
