//! The pipeline is killed at >= 20 random moments during snapshot and streaming while a writer
//! keeps changing the source; afterwards the sink equals the source, holds no duplicate, and no
//! withheld column is in it. Two sinks:
//! - DuckDB: the pipeline's task is aborted (the DuckDB connection, the replication session and
//!   the snapshot transaction all die with it); the history has no duplicate either.
//! - BigQuery (bqemulator, started and stopped here): the pipeline runs in a child process
//!   (this test binary, as `bigquery_crash_child`: `fintrail cdc run --sink bigquery`'s path,
//!   configured by the same environment) that is killed with SIGKILL, so a kill also lands in
//!   the middle of an HTTP request, with a commit job possibly still running on the server.
//!
//! Replayable: the kill schedule and the writer's changes come from one seed
//! (`FINTRAIL_TEST_SEED`, printed with its replay command when the test fails). Which phase a
//! kill lands in does not depend on the machine's speed: the first kills come before the
//! throttled snapshot can possibly have finished, and the streaming kills wait (bounded) until
//! the pipeline reports that it streams.

mod common;
use common::bqemu::*;
use common::*;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fintrail_cdc::pipeline::{self, Options};
use fintrail_cdc::policy::Policy;
use fintrail_cdc::sink::bigquery::{BigQuerySink, Client, STAGE_PREFIX};
use fintrail_cdc::sink::duck::DuckSink;
use fintrail_cdc::sink::{Phase, Sink};
use fintrail_db::testing::fresh_db;
use fintrail_db::{Database, DbRole};
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

const POLICY: &str = r#"
[tables.crash_a.columns]
id = "keep"
v = "keep"

[tables.crash_b.columns]
id = "keep"
amount = "keep"
note = "pseudonymize"
"#;

const KILLS: usize = 22;
/// The first kills are certain to land in the snapshot: the snapshot is throttled to
/// `SNAPSHOT_ROWS_PER_SEC`, and one run of at most `EARLY_KILL_MS_MAX` copies at most one chunk
/// plus `SNAPSHOT_ROWS_PER_SEC` x that time, i.e. 2 000 + 4 000 rows, so `EARLY_KILLS` runs
/// copy at most 24 000 of the 33 000 rows.
const EARLY_KILLS: usize = 4;
const EARLY_KILL_MS_MAX: u64 = 200;
const SNAPSHOT_ROWS_PER_SEC: u64 = 20_000;
/// Kills after the middle ones wait for the pipeline to report `streaming` first.
const STREAMING_KILLS_FROM: usize = 10;
/// Bound on that wait: the snapshot needs ~1.7 s of running; a loaded CI box gets 60 s.
const STREAMING_WAIT_MS_MAX: u64 = 60_000;

fn row_hash(fields: &[Option<String>]) -> u64 {
    let mut h = Sha256::new();
    for f in fields {
        match f {
            None => h.update(b"\xffNULL"),
            Some(s) => {
                h.update((s.len() as u32).to_be_bytes());
                h.update(s.as_bytes());
            }
        }
    }
    u64::from_be_bytes(h.finalize()[..8].try_into().unwrap())
}

/// (row count, order-independent checksum) of a set of rows.
fn digest(rows: impl Iterator<Item = Vec<Option<String>>>) -> (u64, u64) {
    rows.fold((0, 0), |(n, s), r| (n + 1, s.wrapping_add(row_hash(&r))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_at_random_moments_the_sink_still_equals_the_source() {
    let db = fresh_db().await;
    let policy = Policy::parse(POLICY).unwrap();
    let names = names("crash");
    let dir = temp_dir("crash");
    let path = dir.join("crash.duckdb");
    create_tables(&db).await;
    let seed = fintrail_testseed::seed!();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(&db, seed.derive(0), DUCKDB_LOAD, stop.clone());

    let mut rng = rand::rngs::StdRng::seed_from_u64(seed.derive(1));
    let status_path = dir.join("status.json");
    let opts = Options {
        names: names.clone(),
        batch_rows_max: 500,
        commit_interval: Duration::from_millis(20),
        snapshot_rows_per_sec: Some(SNAPSHOT_ROWS_PER_SEC),
        status_path: Some(status_path.clone()),
        snapshot_chunk_rows: 2_000.0,
        ..Default::default()
    };
    let (mut in_snapshot, mut in_streaming) = (0, 0);
    for i in 0..KILLS {
        // Drawn before the run, so the schedule is the seed's alone.
        let ms = kill_after_ms(&mut rng, i);
        let _ = std::fs::remove_file(&status_path);
        let (db2, policy2, opts2, path2) = (db.clone(), policy.clone(), opts.clone(), path.clone());
        let task = tokio::spawn(async move {
            let ps = pseudonymizer();
            let mut sink = DuckSink::open(&path2)?;
            pipeline::run(&db2, &policy2, &ps, &mut sink, &opts2, std::future::pending()).await
        });
        if i >= STREAMING_KILLS_FROM {
            wait_for_streaming(&status_path, &task).await;
        }
        tokio::time::sleep(Duration::from_millis(ms)).await;
        task.abort();
        match task.await {
            Err(e) if e.is_cancelled() => {}
            Err(e) => panic!("pipeline panicked: {e}"),
            Ok(r) => panic!("pipeline stopped by itself: {r:?}"),
        }
        // Where did the kill land? (The sink's committed state says.)
        match DuckSink::open(&path).unwrap().load_state().unwrap() {
            Some(s) if s.phase == Phase::Streaming => in_streaming += 1,
            _ => in_snapshot += 1,
        }
    }
    println!("kills: {in_snapshot} during the snapshot, {in_streaming} while streaming");
    assert!(in_snapshot >= EARLY_KILLS, "the early kills land in the snapshot ({in_snapshot})");
    assert!(in_streaming >= KILLS - STREAMING_KILLS_FROM, "the late kills land while streaming ({in_streaming})");
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await.unwrap();
    assert!(writes > 100, "the writer made only {writes} transactions");
    catch_up(&db, &policy, &names, &path).await.unwrap();

    // Compare source and sink.
    let (a_src, b_src) = source_digests(&db).await;
    let a_sink = digest(
        duck_query::<Option<String>>(&path, "SELECT CAST(id AS VARCHAR), CAST(v AS VARCHAR) FROM crash_a").into_iter(),
    );
    let b_sink = digest(
        duck_query::<Option<String>>(&path, "SELECT CAST(id AS VARCHAR), CAST(amount AS VARCHAR), note FROM crash_b")
            .into_iter(),
    );
    assert_eq!(a_sink, a_src, "crash_a (rows, checksum) differs");
    assert_eq!(b_sink, b_src, "crash_b (rows, checksum) differs");
    for t in ["crash_a", "crash_b"] {
        let dups = duck_i64(&path, &format!("SELECT count(*) - count(DISTINCT (_lsn, _seq)) FROM history.{t}"));
        assert_eq!(dups, 0, "duplicate history rows in {t}");
        let keys = duck_i64(&path, &format!("SELECT count(*) - count(DISTINCT id) FROM main.{t}"));
        assert_eq!(keys, 0, "duplicate keys in {t}");
    }
    let withheld = duck_i64(&path, "SELECT count(*) FROM information_schema.columns WHERE column_name = 'payload'");
    assert_eq!(withheld, 0, "a withheld column reached the sink");
    println!("writer transactions: {writes}; crash_a rows {}, crash_b rows {}", a_src.0, b_src.0);
    let _ = std::fs::remove_dir_all(&dir);
}

async fn create_tables(db: &Database) {
    owner_sql(
        db,
        "CREATE TABLE crash_a (id bigint PRIMARY KEY, v int NOT NULL, payload text);
         CREATE TABLE crash_b (id bigint PRIMARY KEY, amount bigint NOT NULL, note text);
         INSERT INTO crash_a SELECT i, 0, 'secret-' || i FROM generate_series(1, 30000) i;
         INSERT INTO crash_b SELECT i, i * 10, 'note ' || i FROM generate_series(1, 3000) i;
         ANALYZE crash_a; ANALYZE crash_b;",
    )
    .await;
}

/// How hard the writer writes.
#[derive(Clone, Copy)]
struct Load {
    /// Pause after each transaction.
    pause_ms: u64,
    /// Every this many transactions, one updates `big_rows` rows of crash_a.
    big_every: u64,
    big_rows: u64,
}

/// DuckDB takes what the source can write.
const DUCKDB_LOAD: Load = Load { pause_ms: 2, big_every: 40, big_rows: 3000 };
/// The emulator converts insertAll rows in Python (a few thousand rows/s on a loaded 2-core
/// machine; BigQuery takes far more): a lighter writer, the same kinds of transactions.
const BIGQUERY_LOAD: Load = Load { pause_ms: 20, big_every: 100, big_rows: 300 };

/// A writer: small transactions of inserts, updates, deletes; now and then a large one. Returns
/// how many transactions it made once `stop` is set.
fn spawn_writer(db: &Database, writer_seed: u64, load: Load, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    let db = db.clone();
    tokio::spawn(async move {
        let c = db.connect(DbRole::Admin).await.unwrap();
        c.batch_execute("SET ROLE fintrail_owner; SET search_path = fintrail").await.unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(writer_seed);
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let sql = if n.is_multiple_of(load.big_every) {
                let lo = rng.gen_range(1..25_000);
                format!("UPDATE crash_a SET v = v + 1 WHERE id BETWEEN {lo} AND {}", lo + load.big_rows)
            } else {
                let a = rng.gen_range(1..40_000);
                let b = rng.gen_range(1..4_000);
                let d = rng.gen_range(1..40_000);
                format!(
                    "BEGIN;
                     INSERT INTO crash_a VALUES ({a}, 1, 'p') ON CONFLICT (id) DO UPDATE SET v = crash_a.v + 1;
                     UPDATE crash_b SET amount = amount + 1, note = 'n{n}' WHERE id = {b};
                     DELETE FROM crash_a WHERE id = {d};
                     INSERT INTO crash_b VALUES ({}, {n}, NULL) ON CONFLICT DO NOTHING;
                     COMMIT;",
                    10_000 + n
                )
            };
            c.batch_execute(&sql).await.unwrap();
            tokio::time::sleep(Duration::from_millis(load.pause_ms)).await;
        }
        n
    })
}

/// (rows, checksum) of crash_a (id, v) and crash_b (id, amount, pseudonymized note) at the source.
async fn source_digests(db: &Database) -> ((u64, u64), (u64, u64)) {
    let src = db.connect(DbRole::Admin).await.unwrap();
    let ps = pseudonymizer();
    let a = digest(
        src.query("SELECT id::text, v::text FROM fintrail.crash_a", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| vec![r.get(0), r.get(1)]),
    );
    let b = digest(
        src.query("SELECT id::text, amount::text, note FROM fintrail.crash_b", &[]).await.unwrap().iter().map(|r| {
            let note: Option<String> = r.get(2);
            vec![r.get(0), r.get(1), note.map(|n| ps.apply(n.as_bytes()))]
        }),
    );
    (a, b)
}

/// The kill schedule: how long run `i` lives (drawn before the run: the seed's alone).
fn kill_after_ms(rng: &mut rand::rngs::StdRng, i: usize) -> u64 {
    if i < EARLY_KILLS {
        rng.gen_range(30..EARLY_KILL_MS_MAX)
    } else if i < STREAMING_KILLS_FROM {
        rng.gen_range(30..900)
    } else {
        rng.gen_range(100..900)
    }
}

/// Polls the pipeline's status file until it reports `streaming` (bounded; the pipeline must
/// not have stopped meanwhile).
async fn wait_for_streaming(
    status_path: &std::path::Path,
    task: &tokio::task::JoinHandle<anyhow::Result<pipeline::Summary>>,
) {
    let deadline = Instant::now() + Duration::from_millis(STREAMING_WAIT_MS_MAX);
    loop {
        let phase = fintrail_cdc::status::Status::read(status_path).ok().flatten().map(|s| s.phase);
        if phase.as_deref() == Some("streaming") {
            return;
        }
        assert!(!task.is_finished(), "the pipeline stopped before it streamed");
        assert!(Instant::now() < deadline, "no `streaming` status within {STREAMING_WAIT_MS_MAX} ms (last: {phase:?})");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the parent hands its child through `CHILD_ENV` (the BigQuery side comes as the
/// `FINTRAIL_BIGQUERY_*` variables `cdc run --sink bigquery` reads).
const CHILD_ENV: &str = "FINTRAIL_CDC_CRASH_CHILD";
const CHILD_TEST: &str = "bigquery_crash_child";

/// Bound on the wait for a child's first `snapshot` or `streaming` status.
const START_WAIT_MS_MAX: u64 = 60_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkilled_at_random_moments_the_bigquery_sink_still_equals_the_source() {
    let emu = Emulator::start();
    let cfg = emu.dataset("crash");
    let db = fresh_db().await;
    let policy = Policy::parse(POLICY).unwrap();
    let names = names("crash_bq");
    let dir = temp_dir("crash-bq");
    create_tables(&db).await;
    let seed = fintrail_testseed::seed!();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(&db, seed.derive(0), BIGQUERY_LOAD, stop.clone());

    let mut rng = rand::rngs::StdRng::seed_from_u64(seed.derive(1));
    let status_path = dir.join("status.json");
    let child_cfg = serde_json::json!({
        "admin_url": db.url(DbRole::Admin),
        "publication": names.publication,
        "slot": names.slot,
        "status_path": status_path,
    });
    let replicator_password = db.params(DbRole::Replicator).password.expect("the replicator's password");
    let (mut in_snapshot, mut in_streaming) = (0, 0);
    for i in 0..KILLS {
        let ms = kill_after_ms(&mut rng, i);
        let _ = std::fs::remove_file(&status_path);
        let log = dir.join(format!("child-{i}.log"));
        let log_file = std::fs::File::create(&log).unwrap();
        let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
            .args([CHILD_TEST, "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .envs(emu.env("crash"))
            .env(CHILD_ENV, child_cfg.to_string())
            // The cluster's TLS settings (its CA), as `fintrail cdc run` would be given them.
            .envs(db.child_env(DbRole::Admin))
            .env("FINTRAIL_REPLICATOR_PASSWORD", &replicator_password)
            .stdin(std::process::Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let want = if i >= STREAMING_KILLS_FROM { &["streaming"][..] } else { &["snapshot", "streaming"][..] };
        let wait = if i >= STREAMING_KILLS_FROM { STREAMING_WAIT_MS_MAX } else { START_WAIT_MS_MAX };
        wait_for_phase(&status_path, want, wait, &mut child, &log).await;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        if let Ok(Some(exit)) = child.try_wait() {
            panic!("the pipeline stopped by itself ({exit}):\n{}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        child.start_kill().unwrap(); // SIGKILL
        child.wait().await.unwrap();
        // Where did the kill land? (The sink's committed state says.)
        let cfg2 = cfg.clone();
        let state = tokio::task::spawn_blocking(move || BigQuerySink::new(Client::new(cfg2)).load_state())
            .await
            .unwrap()
            .unwrap();
        match state {
            Some(s) if s.phase == Phase::Streaming => in_streaming += 1,
            _ => in_snapshot += 1,
        }
    }
    println!("kills: {in_snapshot} during the snapshot, {in_streaming} while streaming");
    assert!(in_snapshot >= EARLY_KILLS, "the early kills land in the snapshot ({in_snapshot})");
    assert!(in_streaming >= KILLS - STREAMING_KILLS_FROM, "the late kills land while streaming ({in_streaming})");
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await.unwrap();
    assert!(writes > 100, "the writer made only {writes} transactions");

    // Catch up in this process, into the same dataset.
    let opts = Options {
        names: names.clone(),
        stop_at_lsn: Some(marker(&db).await),
        commit_interval: Duration::from_millis(50),
        ..Default::default()
    };
    let mut sink = BigQuerySink::new(Client::new(cfg.clone()));
    let ps = pseudonymizer();
    tokio::time::timeout(
        Duration::from_secs(300),
        pipeline::run(&db, &policy, &ps, &mut sink, &opts, std::future::pending()),
    )
    .await
    .expect("the pipeline catches up within 300 s")
    .unwrap();

    let (a_src, b_src) = source_digests(&db).await;
    let (cfg2, cfg3) = (cfg.clone(), cfg.clone());
    let a_sink = tokio::task::spawn_blocking(move || {
        digest(
            bq_rows(&cfg2, &format!("SELECT CAST(id AS STRING), CAST(v AS STRING) FROM {}", cfg2.table_ref("crash_a")))
                .into_iter(),
        )
    })
    .await
    .unwrap();
    let b_sink = tokio::task::spawn_blocking(move || {
        digest(
            bq_rows(
                &cfg3,
                &format!("SELECT CAST(id AS STRING), CAST(amount AS STRING), note FROM {}", cfg3.table_ref("crash_b")),
            )
            .into_iter(),
        )
    })
    .await
    .unwrap();
    assert_eq!(a_sink, a_src, "crash_a (rows, checksum) differs");
    assert_eq!(b_sink, b_src, "crash_b (rows, checksum) differs");
    let cfg2 = cfg.clone();
    tokio::task::spawn_blocking(move || {
        for t in ["crash_a", "crash_b"] {
            let dups = bq_i64(&cfg2, &format!("SELECT COUNT(*) - COUNT(DISTINCT id) FROM {}", cfg2.table_ref(t)));
            assert_eq!(dups, 0, "duplicate keys in {t}");
            for table in [t.to_owned(), format!("{STAGE_PREFIX}{t}")] {
                let cols = bq_columns(&cfg2, &table);
                assert!(!cols.is_empty(), "{table} exists");
                assert!(!cols.iter().any(|c| c == "payload"), "a withheld column reached BigQuery: {table} {cols:?}");
            }
        }
    })
    .await
    .unwrap();
    println!("writer transactions: {writes}; crash_a rows {}, crash_b rows {}", a_src.0, b_src.0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The child process of the BigQuery crash test: `fintrail cdc run --sink bigquery`'s path (the
/// sink from the `FINTRAIL_BIGQUERY_*` environment), until its parent kills it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of the BigQuery crash test (it starts it)"]
async fn bigquery_crash_child() {
    let cfg: serde_json::Value =
        serde_json::from_str(&std::env::var(CHILD_ENV).expect("run by the BigQuery crash test")).unwrap();
    let s = |k: &str| cfg[k].as_str().unwrap().to_owned();
    let db = Database::external(&s("admin_url")).unwrap();
    let policy = Policy::parse(POLICY).unwrap();
    let opts = Options {
        names: fintrail_cdc::source::Names { publication: s("publication"), slot: s("slot") },
        batch_rows_max: 500,
        commit_interval: Duration::from_millis(20),
        snapshot_rows_per_sec: Some(SNAPSHOT_ROWS_PER_SEC),
        status_path: Some(s("status_path").into()),
        snapshot_chunk_rows: 2_000.0,
        ..Default::default()
    };
    assert_eq!(std::env::var("FINTRAIL_CDC_SINK").as_deref(), Ok("bigquery"));
    let mut sink = BigQuerySink::from_env().unwrap();
    let ps = pseudonymizer();
    let r = pipeline::run(&db, &policy, &ps, &mut sink, &opts, std::future::pending()).await;
    panic!("the pipeline returned before it was killed: {r:?}");
}

/// Polls the status file until the child reports one of `phases` (bounded; the child must not
/// have stopped meanwhile).
async fn wait_for_phase(
    status_path: &std::path::Path,
    phases: &[&str],
    max_ms: u64,
    child: &mut tokio::process::Child,
    log: &std::path::Path,
) {
    let deadline = Instant::now() + Duration::from_millis(max_ms);
    loop {
        let phase = fintrail_cdc::status::Status::read(status_path).ok().flatten().map(|s| s.phase);
        if phase.as_deref().is_some_and(|p| phases.contains(&p)) {
            return;
        }
        if let Ok(Some(exit)) = child.try_wait() {
            panic!(
                "the pipeline stopped ({exit}) before {phases:?}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "no {phases:?} status within {max_ms} ms (last: {phase:?})");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
