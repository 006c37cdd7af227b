//! The pipelined streaming phase against the real cluster: the sink thread behind a queue
//! bounded to one batch and one byte, with a slow sink, still applies every change exactly
//! once (the receiving side waited instead of dropping); a sink error stops the run with the
//! error in the status, and nothing past the sink's committed LSN is confirmed to the server.

mod common;
use common::*;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fintrail_cdc::model::{Cell, Change, TableShape};
use fintrail_cdc::pipeline::{self, Options, Summary};
use fintrail_cdc::policy::Policy;
use fintrail_cdc::sink::duck::DuckSink;
use fintrail_cdc::sink::{ColumnAllowed, Sink, SinkState};
use fintrail_cdc::status::Status;
use fintrail_db::testing::fresh_db;
use fintrail_db::{Database, DbRole};

const POLICY: &str = r#"
[tables.items.columns]
id = "keep"
qty = "keep"
note = "keep"
"#;

/// A DuckDB sink that is slow (every apply sleeps) and, optionally, fails a given commit.
struct TestSink {
    inner: Box<dyn Sink>,
    delay: Duration,
    /// Commits so far, across the forks (shared).
    commits: Arc<AtomicUsize>,
    /// The commit (1-based) that fails instead, if any.
    fail_commit: Option<usize>,
}

impl TestSink {
    fn open(path: &Path, delay: Duration, fail_commit: Option<usize>) -> TestSink {
        TestSink {
            inner: Box::new(DuckSink::open(path).unwrap()),
            delay,
            commits: Arc::new(AtomicUsize::new(0)),
            fail_commit,
        }
    }
}

impl Sink for TestSink {
    fn load_state(&mut self) -> anyhow::Result<Option<SinkState>> {
        self.inner.load_state()
    }
    fn ensure_table(&mut self, shape: &TableShape, allowed: ColumnAllowed<'_>) -> anyhow::Result<()> {
        self.inner.ensure_table(shape, allowed)
    }
    fn begin(&mut self) -> anyhow::Result<()> {
        self.inner.begin()
    }
    fn apply(&mut self, shape: &TableShape, changes: &[Change], upsert_all: bool) -> anyhow::Result<()> {
        std::thread::sleep(self.delay);
        self.inner.apply(shape, changes, upsert_all)
    }
    fn truncate(&mut self, shape: &TableShape, commit_lsn: u64, seq: u32, commit_ts_us: i64) -> anyhow::Result<()> {
        self.inner.truncate(shape, commit_lsn, seq, commit_ts_us)
    }
    fn load_rows(&mut self, shape: &TableShape, rows: &[Vec<Cell>]) -> anyhow::Result<()> {
        self.inner.load_rows(shape, rows)
    }
    fn commit(&mut self, state: &SinkState) -> anyhow::Result<()> {
        let n = self.commits.fetch_add(1, Ordering::SeqCst) + 1;
        if self.fail_commit == Some(n) {
            anyhow::bail!("injected sink failure at commit {n}");
        }
        self.inner.commit(state)
    }
    fn rollback(&mut self) -> anyhow::Result<()> {
        self.inner.rollback()
    }
    fn as_duck(&mut self) -> Option<&DuckSink> {
        self.inner.as_duck()
    }
    fn fork(&mut self) -> anyhow::Result<Option<Box<dyn Sink>>> {
        let Some(inner) = self.inner.fork()? else { return Ok(None) };
        Ok(Some(Box::new(TestSink {
            inner,
            delay: self.delay,
            commits: self.commits.clone(),
            fail_commit: self.fail_commit,
        })))
    }
}

/// Transactions of many sizes (one row to several batches), with updates and deletes.
async fn write_changes(db: &Database, from: i64) {
    let mut sql = String::new();
    let mut id = from;
    for t in 0..30 {
        let rows = match t % 6 {
            0 => 1,
            1 => 3,
            2 => 25,
            3 => 7,
            4 => 60,
            _ => 2,
        };
        sql.push_str("BEGIN;");
        sql.push_str(&format!(
            "INSERT INTO items (id, qty, note) SELECT i, i % 10, md5(i::text) FROM generate_series({id}, {}) i;",
            id + rows - 1
        ));
        if t % 5 == 4 {
            sql.push_str(&format!("UPDATE items SET qty = qty + 100 WHERE id BETWEEN {from} AND {};", from + 9));
            sql.push_str(&format!("DELETE FROM items WHERE id = {};", id));
        }
        sql.push_str("COMMIT;");
        id += rows;
    }
    owner_sql(db, &sql).await;
}

/// Runs the pipeline on `sink` until everything committed so far is in it.
async fn run_until_caught_up(
    db: &Database,
    policy: &Policy,
    sink: &mut dyn Sink,
    mut opts: Options,
) -> anyhow::Result<Summary> {
    opts.stop_at_lsn = Some(marker(db).await);
    let ps = pseudonymizer();
    tokio::time::timeout(Duration::from_secs(120), pipeline::run(db, policy, &ps, sink, &opts, std::future::pending()))
        .await
        .map_err(|_| anyhow::anyhow!("the pipeline did not catch up within 120 s"))?
}

/// The source's rows of `items` as (id, qty, note) text, ordered.
async fn source_rows(db: &Database) -> Vec<Vec<Option<String>>> {
    let c = db.connect(DbRole::Admin).await.unwrap();
    c.query("SELECT id::text AS id_text, qty::text, note FROM fintrail.items ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (0..3).map(|i| r.get::<_, Option<String>>(i)).collect())
        .collect()
}

fn sink_rows(path: &Path) -> Vec<Vec<Option<String>>> {
    duck_query::<Option<String>>(
        path,
        "SELECT CAST(id AS VARCHAR) AS id_text, CAST(qty AS VARCHAR), note FROM items ORDER BY id",
    )
}

fn assert_exactly_once(path: &Path) {
    assert_eq!(duck_i64(path, "SELECT count(*) - count(DISTINCT (_lsn, _seq)) FROM history.items"), 0, "duplicates");
    assert_eq!(duck_i64(path, "SELECT count(*) - count(DISTINCT id) FROM main.items"), 0, "duplicate keys");
}

async fn create_items(db: &Database) {
    owner_sql(db, "CREATE TABLE items (id bigint PRIMARY KEY, qty int NOT NULL, note text);").await;
}

#[tokio::test]
async fn a_queue_of_one_batch_and_one_byte_still_delivers_every_change_exactly_once() {
    let db = fresh_db().await;
    init_tracing();
    let policy = Policy::parse(POLICY).unwrap();
    let dir = temp_dir("pipelined-tiny");
    let path = dir.join("a.duckdb");
    create_items(&db).await;
    let opts = Options {
        names: names("tiny"),
        batch_rows_max: 7,
        commit_interval: Duration::ZERO,
        queue_batches_max: 1,
        queue_bytes_max: 1,
        ..Default::default()
    };
    let mut sink = TestSink::open(&path, Duration::from_millis(3), None);
    run_until_caught_up(&db, &policy, &mut sink, opts.clone()).await.unwrap();
    write_changes(&db, 1).await;
    let s = run_until_caught_up(&db, &policy, &mut sink, opts.clone()).await.unwrap();
    drop(sink);
    let t = &s.times;
    assert!(t.threaded, "the DuckDB sink runs on its own thread");
    assert!(t.batches > 20, "many batches: {t:?}");
    assert!(t.queue_peak_batches <= 1, "at most one batch waits: {t:?}");
    assert!(t.queue_wait_secs > 0.0, "the slow sink made the receiving side wait: {t:?}");
    assert!(t.apply_secs > 0.0 && t.commit_secs > 0.0, "{t:?}");
    assert_eq!(sink_rows(&path), source_rows(&db).await);
    assert_exactly_once(&path);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_sink_error_stops_the_run_and_nothing_past_the_sinks_lsn_is_confirmed() {
    let db = fresh_db().await;
    init_tracing();
    let policy = Policy::parse(POLICY).unwrap();
    let dir = temp_dir("pipelined-error");
    let path = dir.join("a.duckdb");
    let status_path = dir.join("status.json");
    create_items(&db).await;
    let opts = Options {
        names: names("sinkerr"),
        batch_rows_max: 5,
        commit_interval: Duration::ZERO,
        queue_batches_max: 2,
        status_path: Some(status_path.clone()),
        ..Default::default()
    };
    // A plain sink takes the (empty) snapshot; the failing one fails its 6th commit while
    // streaming, with later batches queued behind it.
    catch_up_with(&db, &policy, &path, opts.clone()).await.unwrap();
    write_changes(&db, 1).await;
    let mut failing = TestSink::open(&path, Duration::from_millis(2), Some(6));
    let err = run_until_caught_up(&db, &policy, &mut failing, opts.clone()).await.unwrap_err();
    drop(failing);
    assert!(format!("{err:#}").contains("injected sink failure at commit 6"), "{err:#}");
    let status = Status::read(&status_path).unwrap().unwrap();
    assert!(!status.running);
    assert!(status.last_error.as_deref().unwrap_or("").contains("injected sink failure"), "{status:?}");
    // What the server holds as confirmed is at most what the sink committed.
    let sink_lsn = DuckSink::open(&path).unwrap().load_state().unwrap().unwrap().lsn;
    let c = db.connect(DbRole::Admin).await.unwrap();
    let confirmed: String = c
        .query_one("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'slot_sinkerr'", &[])
        .await
        .unwrap()
        .get(0);
    let confirmed = fintrail_cdc::pgoutput::parse_lsn(&confirmed).unwrap();
    assert!(confirmed <= sink_lsn, "confirmed {confirmed:X} past the sink's {sink_lsn:X}");
    assert!(sink_rows(&path).len() < source_rows(&db).await.len(), "the failure stopped the run part way");
    // Resumed with a working sink: everything, once.
    catch_up_with(&db, &policy, &path, opts).await.unwrap();
    assert_eq!(sink_rows(&path), source_rows(&db).await);
    assert_exactly_once(&path);
    let _ = std::fs::remove_dir_all(&dir);
}
