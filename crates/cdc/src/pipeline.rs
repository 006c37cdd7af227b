//! The pipeline: publication setup, slot + consistent snapshot, then streaming with
//! exactly-once effect.
//!
//! Invariants (asserted or enforced here):
//! - a sink transaction holds either whole source transactions, or parts of exactly one
//!   large source transaction (never a mix), so stopping at any point loses nothing and
//!   duplicates nothing: the sink commits data + end LSN together, only at a source commit;
//! - an LSN is confirmed to PostgreSQL only after the sink committed it, or (keepalives,
//!   heartbeats) when nothing is pending at all;
//! - a source transaction whose commit the sink already holds (final LSN < stored LSN) is
//!   skipped;
//! - memory is bounded: at most `batch_rows` buffered changes, whatever the transaction size.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use fintrail_db::{Database, DbRole};
use pgwire_replication::{Lsn, ReplicationClient, ReplicationEvent};

use crate::model::{Change, Op, Projection, TableShape};
use crate::pgoutput::{self, Message, PG_EPOCH_OFFSET_US};
use crate::policy::{Policy, Pseudonymizer};
use crate::sink::{Phase, Sink, SinkState};
use crate::snapshot::{self, ChunkPlan};
use crate::source::{self, Names};
use crate::status::Status;

#[derive(Debug, Clone)]
pub struct Options {
    pub names: Names,
    /// Buffered changes before they are written to the (open) sink transaction.
    pub batch_rows: usize,
    /// Longest a committed source transaction waits before the sink commits it.
    pub commit_interval: Duration,
    /// Heartbeat when no source commit arrived for this long.
    pub heartbeat_interval: Duration,
    pub snapshot_rows_per_sec: Option<u64>,
    /// Rows per snapshot chunk (one sink transaction; the unit of resumption).
    pub snapshot_chunk_rows: f64,
    pub progress: bool,
    pub status_path: Option<PathBuf>,
    /// Stop (cleanly) once the sink holds every commit that ends at or before this LSN.
    pub stop_at_lsn: Option<u64>,
    /// Analytical views (name, SQL) applied to a DuckDB sink after the snapshot.
    pub views: Vec<(String, String)>,
    /// Run `setup` (publication + grants) at start, as the admin.
    pub setup: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            names: Names::default(),
            batch_rows: 50_000,
            commit_interval: Duration::from_millis(200),
            heartbeat_interval: Duration::from_secs(10),
            snapshot_rows_per_sec: None,
            snapshot_chunk_rows: snapshot::TARGET_CHUNK_ROWS,
            progress: false,
            status_path: None,
            stop_at_lsn: None,
            views: Vec::new(),
            setup: true,
        }
    }
}

/// What a run did (benches and tests read it).
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub snapshot_rows: u64,
    pub snapshot_secs: f64,
    pub streamed_rows: u64,
    pub streamed_txns: u64,
    pub stream_secs: f64,
    pub last_lsn: u64,
    /// Source commit to sink commit: (source commit time in Unix µs, lag in ms), one sample
    /// per sink commit, for the oldest source transaction in it.
    pub lag_samples_ms: Vec<(i64, f64)>,
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// The sink's view of each table as changes are buffered.
enum Entry {
    Change(Change),
    Truncate { lsn: u64, seq: u32, ts: i64 },
    Shape(TableShape),
}

struct Buffer {
    tables: BTreeMap<String, Vec<Entry>>,
    /// Per table: index where the current (open) source transaction's entries start.
    marks: HashMap<String, usize>,
    rows: usize,
}

impl Buffer {
    fn is_empty(&self) -> bool {
        self.tables.values().all(Vec::is_empty)
    }
}

/// Applies buffered entries for one table, in order, under the sink's current shapes.
fn flush_entries(
    sink: &mut dyn Sink,
    sink_shapes: &mut HashMap<String, TableShape>,
    policy: &Policy,
    table: &str,
    entries: Vec<Entry>,
    upsert_all: bool,
) -> anyhow::Result<()> {
    let mut seg: Vec<Change> = Vec::new();
    let flush_seg =
        |sink: &mut dyn Sink, shapes: &HashMap<String, TableShape>, seg: &mut Vec<Change>| -> anyhow::Result<()> {
            if seg.is_empty() {
                return Ok(());
            }
            let shape = shapes.get(table).ok_or_else(|| anyhow::anyhow!("no shape for table {table}"))?;
            sink.apply(shape, seg, upsert_all)?;
            seg.clear();
            Ok(())
        };
    for e in entries {
        match e {
            Entry::Change(c) => seg.push(c),
            Entry::Truncate { lsn, seq, ts } => {
                flush_seg(sink, sink_shapes, &mut seg)?;
                let shape = sink_shapes.get(table).ok_or_else(|| anyhow::anyhow!("no shape for table {table}"))?;
                sink.truncate(shape, lsn, seq, ts)?;
            }
            Entry::Shape(s) => {
                flush_seg(sink, sink_shapes, &mut seg)?;
                sink.ensure_table(&s, &|c| {
                    !matches!(policy.decide(table, c), crate::policy::Decision::Withhold { .. })
                })?;
                sink_shapes.insert(table.to_owned(), s);
            }
        }
    }
    flush_seg(sink, sink_shapes, &mut seg)
}

/// Runs the pipeline until `shutdown` resolves (or `stop_at_lsn` is reached), then commits
/// what is complete, confirms it, and returns.
pub async fn run(
    db: &Database,
    policy: &Policy,
    ps: &Pseudonymizer,
    sink: &mut dyn Sink,
    opts: &Options,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<Summary> {
    let mut status = Status::new(opts.status_path.clone());
    let r = run_inner(db, policy, ps, sink, opts, shutdown, &mut status).await;
    if let Err(e) = &r {
        let _ = sink.rollback();
        status.last_error = Some(format!("{e:#}"));
        status.running = false;
        status.write();
    }
    r
}

#[allow(clippy::too_many_lines)]
async fn run_inner(
    db: &Database,
    policy: &Policy,
    ps: &Pseudonymizer,
    sink: &mut dyn Sink,
    opts: &Options,
    shutdown: impl Future<Output = ()> + Send,
    status: &mut Status,
) -> anyhow::Result<Summary> {
    let names = &opts.names;
    let status_t0 = Instant::now();
    let mut summary = Summary::default();
    status.running = true;
    status.phase = "starting".into();
    status.write();

    let published: Vec<String> = if opts.setup {
        let report = source::setup(db, policy, names).await?;
        status.withheld_columns = report.withheld_columns.clone();
        status.skipped_tables = report.skipped.clone();
        status.unknown_policy_columns = report.unknown_columns.clone();
        report.published
    } else {
        let c = db.connect(DbRole::Replicator).await?;
        c.query(
            "SELECT tablename::text FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2",
            &[&names.publication, &policy.schema],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    let pg = db.connect(DbRole::Replicator).await?;
    pg.batch_execute(
        "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'iso_8601'; SET extra_float_digits = 3",
    )
    .await?;
    let shapes = source::shapes(&pg, policy, &published).await?;
    let allowed = |t: &str| {
        let t = t.to_owned();
        move |c: &str| !matches!(policy.decide(&t, c), crate::policy::Decision::Withhold { .. })
    };

    let mut state = sink.load_state()?;
    if let Some(s) = &state {
        if s.slot != names.slot {
            anyhow::bail!("the sink belongs to slot {:?}, not {:?}: run `fintrail cdc reset`", s.slot, names.slot);
        }
        if !source::slot_exists(db, names).await? {
            anyhow::bail!(
                "replication slot {} is gone, so the sink cannot resume without loss: run `fintrail cdc reset` to re-snapshot",
                names.slot
            );
        }
    }
    let mut sink_shapes: HashMap<String, TableShape> = HashMap::new();
    for s in &shapes {
        sink.ensure_table(s, &allowed(&s.name))?;
        sink_shapes.insert(s.name.clone(), s.clone());
    }

    // --- Slot and snapshot ---
    let mut gated: Option<ReplicationClient> = None;
    let need_snapshot = !matches!(&state, Some(s) if s.phase == Phase::Streaming);
    if need_snapshot {
        status.phase = "snapshot".into();
        status.write();
        let t0 = Instant::now();
        let tx_sql;
        let mut st = match state.take() {
            None => {
                // A slot without sink state (an earlier run died before its first commit) is
                // useless: the sink has nothing to resume from.
                source::drop_slot(db, names).await?;
                let slot = source::create_slot(db, names).await?;
                tracing::info!(consistent_point = %pgoutput::lsn_to_string(slot.consistent_point), "created replication slot");
                tx_sql = format!(
                    "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{}'",
                    slot.snapshot_name.replace('\'', "''")
                );
                pg.batch_execute(&tx_sql).await?;
                gated = Some(slot.client);
                let mut st = SinkState {
                    phase: Phase::Snapshot,
                    lsn: slot.consistent_point,
                    slot: names.slot.clone(),
                    ..Default::default()
                };
                sink.begin()?;
                sink.commit(&st)?;
                st.phase = Phase::Snapshot;
                st
            }
            Some(mut st) => {
                // Resume: the exported snapshot died with the earlier session. Copy the
                // remaining chunks under a newer snapshot and replay the stream from the
                // slot's consistent point as upserts up to that snapshot's position.
                pg.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?;
                let row = pg.query_one("SELECT pg_current_wal_lsn()::text", &[]).await?;
                let at = pgoutput::parse_lsn(&row.get::<_, String>(0))?;
                st.catchup_until = st.catchup_until.max(at);
                tracing::info!(catchup_until = %pgoutput::lsn_to_string(at), "resuming the snapshot under a newer snapshot");
                st
            }
        };
        let mut work = Vec::new();
        for s in &shapes {
            let plan = match st.plans.get(&s.name) {
                Some(p) => *p,
                None => {
                    let p = snapshot::plan(&pg, &policy.schema, &s.name, opts.snapshot_chunk_rows).await?;
                    st.plans.insert(s.name.clone(), p);
                    p
                }
            };
            let pseudo: Vec<bool> = s
                .columns
                .iter()
                .map(|c| matches!(policy.decide(&s.name, &c.name), crate::policy::Decision::Pseudonymize))
                .collect();
            work.push((Projection::identity(s.clone(), &pseudo), plan));
        }
        let status_ref = &mut *status;
        let mut on_progress = |rows: u64| {
            status_ref.snapshot_rows = rows;
            status_ref.write_throttled();
        };
        let copier = snapshot::Copier {
            client: &pg,
            schema: &policy.schema,
            ps,
            rows_per_sec: opts.snapshot_rows_per_sec,
            progress: opts.progress,
        };
        let copied = copier.copy_tables(&work, sink, &mut st, &mut on_progress).await?;
        pg.batch_execute("COMMIT").await?;
        st.phase = Phase::Streaming;
        sink.begin()?;
        sink.commit(&st)?;
        summary.snapshot_rows = copied;
        summary.snapshot_secs = t0.elapsed().as_secs_f64();
        tracing::info!(rows = copied, secs = summary.snapshot_secs, "snapshot done");
        state = Some(st);
    }
    let mut st = state.ok_or_else(|| anyhow::anyhow!("no sink state after snapshot"))?;
    assert_eq!(st.phase, Phase::Streaming);
    if let Some(d) = sink.as_duck() {
        status.views_failed = d.apply_views(&opts.views);
    }

    // --- Streaming ---
    status.phase = "streaming".into();
    status.write();
    tracing::debug!(elapsed_ms = status_t0.elapsed().as_millis() as u64, "streaming starts");
    let mut client = match gated {
        Some(mut c) => {
            c.start().await?;
            c
        }
        None => {
            source::wait_slot_inactive(&pg, names, Duration::from_secs(30)).await?;
            ReplicationClient::connect(source::replication_config(db, names, st.lsn)).await?
        }
    };
    let hb = db.connect(DbRole::Replicator).await?;
    let mut rels: HashMap<u32, Projection> = HashMap::new();
    let mut buf = Buffer { tables: BTreeMap::new(), marks: HashMap::new(), rows: 0 };
    let mut in_txn = false;
    let mut skip_txn = false;
    let mut sink_open = false;
    // The sink's open transaction holds part of the current (large) source transaction.
    let mut sink_partial = false;
    let mut txn_final_lsn = 0u64;
    let mut txn_ts = 0i64;
    let mut txn_seq = 0u32;
    let mut last_end_lsn = st.lsn;
    let mut oldest_pending_commit_ts: Option<i64> = None;
    let mut pending_since: Option<Instant> = None;
    let mut last_commit_seen = Instant::now();
    let mut last_status = Instant::now();
    let mut last_slot_stats = Instant::now() - Duration::from_secs(60);
    let mut server_wal_end = st.lsn;
    let mut last_message_lsn = 0u64;
    let stream_t0 = Instant::now();
    let mut rows_window: (Instant, u64) = (Instant::now(), 0);
    tokio::pin!(shutdown);

    macro_rules! commit_sink {
        () => {{
            // Conservative: a batch that may hold a transaction of the catch-up window is
            // applied as upserts (always correct, only slower).
            let upsert = st.lsn < st.catchup_until;
            let tables = std::mem::take(&mut buf.tables);
            if !tables.values().all(Vec::is_empty) && !sink_open {
                sink.begin()?;
                sink_open = true;
            }
            for (t, entries) in tables {
                flush_entries(sink, &mut sink_shapes, policy, &t, entries, upsert)?;
            }
            buf.rows = 0;
            if sink_open {
                st.lsn = last_end_lsn;
                sink.commit(&st)?;
                sink_open = false;
                client.update_applied_lsn(Lsn(last_end_lsn));
                if let Some(ts) = oldest_pending_commit_ts.take() {
                    summary.lag_samples_ms.push((ts, (now_us() - ts) as f64 / 1000.0));
                }
            }
            pending_since = None;
        }};
    }

    let result: anyhow::Result<()> = async {
        loop {
            if let Some(stop) = opts.stop_at_lsn {
                if !in_txn && last_end_lsn.max(last_message_lsn) >= stop {
                    commit_sink!();
                    break;
                }
            }
            let wait = match pending_since {
                Some(t) if !in_txn => opts.commit_interval.saturating_sub(t.elapsed()),
                _ => Duration::from_millis(500),
            };
            let ev = tokio::select! {
                biased;
                () = &mut shutdown => {
                    // Commit complete transactions; drop the open one (it will be resent).
                    if in_txn {
                        // Everything at or after the marks belongs to the open transaction.
                        let marks = std::mem::take(&mut buf.marks);
                        for (t, m) in marks {
                            if let Some(v) = buf.tables.get_mut(&t) { v.truncate(m); }
                        }
                        if sink_partial {
                            // The open sink transaction holds only that transaction's rows.
                            sink.rollback()?;
                            sink_open = false;
                            sink_partial = false;
                            debug_assert!(buf.is_empty());
                        }
                        in_txn = false;
                    }
                    commit_sink!();
                    break;
                }
                r = tokio::time::timeout(wait, client.recv()) => r,
            };
            // Periodic work: status, slot statistics, heartbeat.
            if last_status.elapsed() >= Duration::from_secs(1) {
                last_status = Instant::now();
                let (t, n) = rows_window;
                status.rows_per_sec = (summary.streamed_rows - n) as f64 / t.elapsed().as_secs_f64().max(1e-3);
                rows_window = (Instant::now(), summary.streamed_rows);
                status.applied_lsn = pgoutput::lsn_to_string(st.lsn);
                status.lag_bytes = server_wal_end.saturating_sub(st.lsn.max(last_end_lsn)) as i64;
                status.lag_secs = match oldest_pending_commit_ts {
                    Some(ts) => (now_us() - ts) as f64 / 1e6,
                    None => 0.0,
                };
                status.streamed_rows = summary.streamed_rows;
                if last_slot_stats.elapsed() >= Duration::from_secs(10) {
                    last_slot_stats = Instant::now();
                    if let Ok(s) = source::slot_stats(&hb, names).await {
                        status.retained_wal_bytes = s.retained_wal_bytes;
                    }
                }
                status.write();
            }
            if last_commit_seen.elapsed() >= opts.heartbeat_interval && !in_txn {
                last_commit_seen = Instant::now();
                if let Err(e) = source::heartbeat(&hb).await {
                    tracing::warn!(error = %e, "heartbeat failed");
                }
            }
            let ev = match ev {
                Err(_) => {
                    // Quiet: commit what is complete so it is queryable within commit_interval.
                    if !in_txn && (pending_since.is_some() || !buf.is_empty()) {
                        commit_sink!();
                    }
                    continue;
                }
                Ok(r) => r.map_err(|e| anyhow::anyhow!("replication stream: {e}"))?,
            };
            let Some(ev) = ev else { anyhow::bail!("replication stream ended") };
            match ev {
                ReplicationEvent::KeepAlive { wal_end, .. } => {
                    server_wal_end = server_wal_end.max(wal_end.0);
                    if !in_txn && !sink_open && buf.is_empty() && pending_since.is_none() {
                        // Nothing pending: let the slot advance past unpublished changes.
                        client.update_applied_lsn(wal_end);
                    }
                }
                ReplicationEvent::Message { transactional, lsn, .. } => {
                    if !transactional && !in_txn {
                        last_message_lsn = last_message_lsn.max(lsn.0);
                    }
                    // Heartbeats (non-transactional) arrive between transactions.
                    if !transactional && !in_txn && !sink_open && buf.is_empty() && pending_since.is_none() {
                        client.update_applied_lsn(lsn);
                    }
                }
                ReplicationEvent::Begin { final_lsn, commit_time_micros, .. } => {
                    anyhow::ensure!(!in_txn, "protocol error: Begin inside a transaction");
                    in_txn = true;
                    txn_final_lsn = final_lsn.0;
                    txn_ts = commit_time_micros + PG_EPOCH_OFFSET_US;
                    txn_seq = 0;
                    skip_txn = final_lsn.0 < st.lsn;
                    buf.marks.clear();
                }
                ReplicationEvent::Commit { end_lsn, .. } => {
                    anyhow::ensure!(in_txn, "protocol error: Commit outside a transaction");
                    in_txn = false;
                    last_commit_seen = Instant::now();
                    server_wal_end = server_wal_end.max(end_lsn.0);
                    if skip_txn {
                        skip_txn = false;
                        continue;
                    }
                    summary.streamed_txns += 1;
                    last_end_lsn = end_lsn.0;
                    sink_partial = false;
                    buf.marks.clear();
                    oldest_pending_commit_ts.get_or_insert(txn_ts);
                    pending_since.get_or_insert_with(Instant::now);
                    if buf.rows >= opts.batch_rows || pending_since.is_some_and(|t| t.elapsed() >= opts.commit_interval)
                    {
                        commit_sink!();
                    }
                }
                ReplicationEvent::XLogData { data, .. } => {
                    let msg = pgoutput::decode(&data)?;
                    handle_message(
                        msg,
                        policy,
                        ps,
                        &mut rels,
                        &mut buf,
                        &sink_shapes,
                        skip_txn,
                        txn_final_lsn,
                        txn_ts,
                        &mut txn_seq,
                        &mut summary.streamed_rows,
                        status,
                    )?;
                    if in_txn && buf.rows >= opts.batch_rows {
                        // A large transaction: write what we have into the sink transaction
                        // (bounded memory) without committing it. First commit the complete
                        // transactions before it, so the sink never mixes the two.
                        let has_prior = (sink_open && !sink_partial)
                            || buf.tables.iter().any(|(t, v)| match buf.marks.get(t) {
                                Some(m) => *m > 0,
                                None => !v.is_empty(),
                            });
                        if has_prior {
                            let mut current: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
                            for (t, v) in buf.tables.iter_mut() {
                                if let Some(m) = buf.marks.get(t) {
                                    current.insert(t.clone(), v.split_off(*m));
                                }
                            }
                            in_txn = false;
                            commit_sink!();
                            in_txn = true;
                            buf.tables = current;
                        }
                        if !sink_open {
                            sink.begin()?;
                            sink_open = true;
                        }
                        sink_partial = true;
                        let upsert = st.lsn < st.catchup_until;
                        for (t, entries) in std::mem::take(&mut buf.tables) {
                            flush_entries(sink, &mut sink_shapes, policy, &t, entries, upsert)?;
                            buf.marks.insert(t, 0);
                        }
                        buf.rows = 0;
                    }
                }
                ReplicationEvent::StoppedAt { .. } => break,
            }
        }
        Ok(())
    }
    .await;
    summary.stream_secs = stream_t0.elapsed().as_secs_f64();
    summary.last_lsn = st.lsn;
    match result {
        Ok(()) => {
            // Let the final feedback reach the server before closing.
            client.update_applied_lsn(Lsn(st.lsn));
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = client.shutdown().await;
            status.running = false;
            status.phase = "stopped".into();
            status.applied_lsn = pgoutput::lsn_to_string(st.lsn);
            status.write();
            Ok(summary)
        }
        Err(e) => {
            client.stop();
            Err(e)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn handle_message(
    msg: Message,
    policy: &Policy,
    ps: &Pseudonymizer,
    rels: &mut HashMap<u32, Projection>,
    buf: &mut Buffer,
    sink_shapes: &HashMap<String, TableShape>,
    skip: bool,
    lsn: u64,
    ts: i64,
    seq: &mut u32,
    rows: &mut u64,
    status: &mut Status,
) -> anyhow::Result<()> {
    // Called per row: allocates the table name only the first time a table shows up in the
    // buffer / in the transaction (it was three String allocations per row).
    let push = |buf: &mut Buffer, table: &str, e: Entry| {
        if !buf.tables.contains_key(table) {
            buf.tables.insert(table.to_owned(), Vec::new());
        }
        let v = buf.tables.get_mut(table).expect("inserted above");
        if !buf.marks.contains_key(table) {
            buf.marks.insert(table.to_owned(), v.len());
        }
        v.push(e);
        buf.rows += 1;
    };
    match msg {
        Message::Relation(rel) => {
            if rel.namespace != policy.schema || !policy.has_table(&rel.name) {
                tracing::warn!(table = %rel.name, "change for a table outside the policy withheld");
                status.note_withheld_table(&format!("{}.{}", rel.namespace, rel.name));
                rels.remove(&rel.oid);
                return Ok(());
            }
            let proj = Projection::from_relation(policy, &rel);
            if proj.shape.key_indexes().is_empty() {
                anyhow::bail!(
                    "table {} has no key column the policy lets out; cannot apply updates or deletes",
                    rel.name
                );
            }
            if !proj.withheld.is_empty() {
                status.note_withheld_columns(&rel.name, &proj.withheld);
            }
            // Compare with the latest shape the buffer/sink will have for this table.
            let latest = buf
                .tables
                .get(&rel.name)
                .and_then(|v| v.iter().rev().find_map(|e| if let Entry::Shape(s) = e { Some(s) } else { None }))
                .or_else(|| sink_shapes.get(&rel.name));
            if latest != Some(&proj.shape) {
                // Schema change (e.g. an added column): applied to the sink in order.
                // Columns the source dropped stay in the sink (NULL from now on).
                push(buf, &rel.name, Entry::Shape(proj.shape.clone()));
                buf.rows -= 1;
            }
            rels.insert(rel.oid, proj);
        }
        Message::Insert { rel, new } if !skip => {
            let Some(p) = rels.get(&rel) else { return Ok(()) };
            let row = p.project(&new, ps)?;
            push(
                buf,
                &p.shape.name,
                Entry::Change(Change {
                    op: Op::Insert,
                    commit_lsn: lsn,
                    seq: *seq,
                    commit_ts_us: ts,
                    row,
                    old_key: None,
                }),
            );
            *seq += 1;
            *rows += 1;
        }
        Message::Update { rel, old, new } if !skip => {
            let Some(p) = rels.get(&rel) else { return Ok(()) };
            let mut newt = new;
            // With REPLICA IDENTITY FULL the old image carries unchanged TOAST values.
            if let Some((crate::pgoutput::OldKind::Full, oldt)) = &old {
                for (n, o) in newt.iter_mut().zip(oldt) {
                    if *n == crate::pgoutput::Datum::UnchangedToast {
                        *n = o.clone();
                    }
                }
            }
            let row = p.project(&newt, ps)?;
            let old_key = match &old {
                Some((_, o)) => Some(p.project(o, ps)?),
                None => None,
            };
            push(
                buf,
                &p.shape.name,
                Entry::Change(Change { op: Op::Update, commit_lsn: lsn, seq: *seq, commit_ts_us: ts, row, old_key }),
            );
            *seq += 1;
            *rows += 1;
        }
        Message::Delete { rel, old, .. } if !skip => {
            let Some(p) = rels.get(&rel) else { return Ok(()) };
            let row = p.project(&old, ps)?;
            push(
                buf,
                &p.shape.name,
                Entry::Change(Change {
                    op: Op::Delete,
                    commit_lsn: lsn,
                    seq: *seq,
                    commit_ts_us: ts,
                    row,
                    old_key: None,
                }),
            );
            *seq += 1;
            *rows += 1;
        }
        Message::Truncate { rels: ids, .. } if !skip => {
            for id in ids {
                let Some(p) = rels.get(&id) else { continue };
                let name = p.shape.name.clone();
                push(buf, &name, Entry::Truncate { lsn, seq: *seq, ts });
                *seq += 1;
            }
        }
        Message::Begin { .. } | Message::Commit { .. } | Message::Message { .. } => {
            anyhow::bail!("unexpected boundary message in XLogData")
        }
        _ => {}
    }
    Ok(())
}

/// Keeps `Summary` lag figures readable.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut v = samples.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let idx = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[idx.min(v.len() - 1)]
}

pub type Plans = BTreeMap<String, ChunkPlan>;
