#![allow(dead_code)]
//! Shared helpers for the pipeline tests: real PostgreSQL (the db crate's harness), real
//! DuckDB files in temp folders.

use std::path::PathBuf;
use std::time::Duration;

use fintrail_cdc::pipeline::{self, Options, Summary};
use fintrail_cdc::policy::{Policy, Pseudonymizer};
use fintrail_cdc::sink::duck::DuckSink;
use fintrail_cdc::source::Names;
use fintrail_db::{Database, DbRole};

pub fn pseudonymizer() -> Pseudonymizer {
    Pseudonymizer::new(&[42u8; 32]).unwrap()
}

pub fn names(tag: &str) -> Names {
    Names { publication: format!("pub_{tag}"), slot: format!("slot_{tag}") }
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fintrail-cdc-test-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Turns the audit coupling (migration 0036) off in this test's database: these tests write
/// fixture rows in raw SQL to test what replication carries, not the trail (the coupling has
/// its own tests in `crates/api/tests/audit_coupling.rs`).
pub async fn without_audit_coupling(db: &Database) {
    let c = db.connect(DbRole::Admin).await.unwrap();
    fintrail_db::coupling::set_enabled(&c, false).await.unwrap();
}

/// Runs DDL/DML as the schema owner.
pub async fn owner_sql(db: &Database, sql: &str) {
    let c = db.connect(DbRole::Admin).await.unwrap();
    c.batch_execute(&format!("SET ROLE fintrail_owner; SET search_path = fintrail; {sql}")).await.unwrap();
}

/// The position after everything committed so far (a logical message marks it).
pub async fn marker(db: &Database) -> u64 {
    let c = db.connect(DbRole::Replicator).await.unwrap();
    let r = c.query_one("SELECT pg_logical_emit_message(false, 'fintrail_test', 'x')::text", &[]).await.unwrap();
    fintrail_cdc::pgoutput::parse_lsn(&r.get::<_, String>(0)).unwrap()
}

/// Runs the pipeline until the sink holds everything committed before this call.
pub async fn catch_up(
    db: &Database,
    policy: &Policy,
    names: &Names,
    path: &std::path::Path,
) -> anyhow::Result<Summary> {
    let opts = Options { names: names.clone(), ..Default::default() };
    catch_up_with(db, policy, path, opts).await
}

/// `catch_up` with the caller's options (`stop_at_lsn` and `commit_interval` are set here).
pub async fn catch_up_with(
    db: &Database,
    policy: &Policy,
    path: &std::path::Path,
    mut opts: Options,
) -> anyhow::Result<Summary> {
    opts.stop_at_lsn = Some(marker(db).await);
    opts.commit_interval = Duration::from_millis(50);
    let mut sink = DuckSink::open(path)?;
    let ps = pseudonymizer();
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        pipeline::run(db, policy, &ps, &mut sink, &opts, std::future::pending()),
    )
    .await
    .map_err(|_| anyhow::anyhow!("pipeline did not catch up within 60 s"))?;
    r
}

pub fn duck_query<T: duckdb::types::FromSql>(path: &std::path::Path, sql: &str) -> Vec<Vec<T>> {
    let c = duckdb::Connection::open(path).unwrap();
    let mut st = c.prepare(sql).unwrap();
    let mut rows = st.query([]).unwrap();
    let mut out = Vec::new();
    while let Some(r) = rows.next().unwrap() {
        let n = r.as_ref().column_count();
        out.push((0..n).map(|i| r.get::<_, T>(i).unwrap()).collect());
    }
    out
}

pub fn duck_i64(path: &std::path::Path, sql: &str) -> i64 {
    duck_query::<i64>(path, sql)[0][0]
}

pub fn duck_columns(path: &std::path::Path, schema: &str, table: &str) -> Vec<String> {
    duck_query::<String>(
        path,
        &format!(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = '{schema}' AND table_name = '{table}' ORDER BY ordinal_position"
        ),
    )
    .into_iter()
    .map(|mut r| r.remove(0))
    .collect()
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
pub mod bqemu;
