//! The pipeline is killed (its task aborted: the DuckDB connection, the replication session
//! and the snapshot transaction all die with it) at >= 20 random moments during snapshot and
//! streaming while a writer keeps changing the source. Afterwards the sink equals the
//! source, the history has no duplicate, and no withheld column is in the sink.
//!
//! Replayable: the kill schedule and the writer's changes come from one seed
//! (`FINTRAIL_TEST_SEED`, printed with its replay command when the test fails). Which phase a
//! kill lands in does not depend on the machine's speed: the first kills come before the
//! throttled snapshot can possibly have finished, and the streaming kills wait (bounded) until
//! the pipeline reports that it streams.

mod common;
use common::*;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fintrail_cdc::pipeline::{self, Options};
use fintrail_cdc::policy::Policy;
use fintrail_cdc::sink::duck::DuckSink;
use fintrail_db::testing::fresh_db;
use fintrail_db::DbRole;
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
    owner_sql(
        &db,
        "CREATE TABLE crash_a (id bigint PRIMARY KEY, v int NOT NULL, payload text);
         CREATE TABLE crash_b (id bigint PRIMARY KEY, amount bigint NOT NULL, note text);
         INSERT INTO crash_a SELECT i, 0, 'secret-' || i FROM generate_series(1, 30000) i;
         INSERT INTO crash_b SELECT i, i * 10, 'note ' || i FROM generate_series(1, 3000) i;
         ANALYZE crash_a; ANALYZE crash_b;",
    )
    .await;

    let seed = fintrail_testseed::seed!();
    let writer_seed = seed.derive(0);
    // A writer: small transactions of inserts, updates, deletes; now and then a large one.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let db = db.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let c = db.connect(DbRole::Admin).await.unwrap();
            c.batch_execute("SET ROLE fintrail_owner; SET search_path = fintrail").await.unwrap();
            let mut rng = rand::rngs::StdRng::seed_from_u64(writer_seed);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let sql = if n.is_multiple_of(40) {
                    let lo = rng.gen_range(1..25_000);
                    format!("UPDATE crash_a SET v = v + 1 WHERE id BETWEEN {lo} AND {}", lo + 3000)
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
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            n
        })
    };

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
        let ms = if i < EARLY_KILLS {
            rng.gen_range(30..EARLY_KILL_MS_MAX)
        } else if i < STREAMING_KILLS_FROM {
            rng.gen_range(30..900)
        } else {
            rng.gen_range(100..900)
        };
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
        use fintrail_cdc::sink::{Phase, Sink};
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
    let src = db.connect(DbRole::Admin).await.unwrap();
    let ps = pseudonymizer();
    let a_src = digest(
        src.query("SELECT id::text, v::text FROM fintrail.crash_a", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| vec![r.get(0), r.get(1)]),
    );
    let b_src = digest(
        src.query("SELECT id::text, amount::text, note FROM fintrail.crash_b", &[]).await.unwrap().iter().map(|r| {
            let note: Option<String> = r.get(2);
            vec![r.get(0), r.get(1), note.map(|n| ps.apply(n.as_bytes()))]
        }),
    );
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
