//! The streaming phase's I/O: waits for replication events, hands them to [`Stream`], and
//! carries out the [`Action`]s it returns on the sink, the replication client and the
//! status, in order. Every decision is the state machine's (`stream.rs`); this loop only
//! waits, calls and reports.

use std::future::Future;
use std::time::{Duration, Instant};

use pgwire_replication::{Lsn, ReplicationClient, ReplicationEvent};

use super::now_us;
use super::stream::{Action, Stream};
use crate::pgoutput;
use crate::policy::Policy;
use crate::sink::Sink;
use crate::source::{self, Names};
use crate::status::Status;

/// How often the status file is refreshed while streaming.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);
/// How often the slot's retained WAL is read for the status (a catalog query).
const SLOT_STATS_INTERVAL: Duration = Duration::from_secs(10);

/// What the streaming loop acts on.
pub(super) struct Io<'a> {
    pub sink: &'a mut dyn Sink,
    pub policy: &'a Policy,
    pub names: &'a Names,
    pub client: ReplicationClient,
    /// A plain session, for heartbeats and slot statistics.
    pub hb: tokio_postgres::Client,
    pub status: &'a mut Status,
    /// Source commit to sink commit: (source commit time in Unix µs, lag in ms).
    pub lag_samples_ms: Vec<(i64, f64)>,
}

/// Streams until `shutdown` resolves, `stop_at_lsn` is reached or the server stops the
/// stream; then what is complete is committed and confirmed.
pub(super) async fn run(
    stream: &mut Stream<'_>,
    io: &mut Io<'_>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    tokio::pin!(shutdown);
    let mut ticker = StatusTicker::new(Instant::now());
    loop {
        if stream.stop_reached() {
            let actions = stream.flush()?;
            return io.execute(stream, actions);
        }
        let wait = stream.recv_timeout(Instant::now());
        let ev = tokio::select! {
            biased;
            () = &mut shutdown => {
                let actions = stream.shutdown()?;
                return io.execute(stream, actions);
            }
            r = tokio::time::timeout(wait, io.client.recv()) => r,
        };
        ticker.tick(stream, io).await;
        if stream.heartbeat_due(Instant::now()) {
            if let Err(e) = source::heartbeat(&io.hb).await {
                tracing::warn!(error = %e, "heartbeat failed");
            }
        }
        let actions = match ev {
            Err(_) => stream.on_quiet()?,
            Ok(r) => match r.map_err(|e| anyhow::anyhow!("replication stream: {e}"))? {
                None => anyhow::bail!("replication stream ended"),
                Some(ReplicationEvent::StoppedAt { .. }) => return Ok(()),
                Some(ev) => on_event(stream, ev)?,
            },
        };
        io.execute(stream, actions)?;
    }
}

fn on_event(stream: &mut Stream<'_>, ev: ReplicationEvent) -> anyhow::Result<Vec<Action>> {
    Ok(match ev {
        ReplicationEvent::KeepAlive { wal_end, .. } => stream.on_keepalive(wal_end.0),
        ReplicationEvent::Message { transactional, lsn, .. } => stream.on_logical_message(transactional, lsn.0),
        ReplicationEvent::Begin { final_lsn, commit_time_micros, .. } => {
            stream.on_begin(final_lsn.0, commit_time_micros)?;
            Vec::new()
        }
        ReplicationEvent::Commit { end_lsn, .. } => stream.on_commit(end_lsn.0, Instant::now())?,
        ReplicationEvent::XLogData { data, .. } => stream.on_data(pgoutput::decode(&data)?)?,
        ReplicationEvent::StoppedAt { .. } => Vec::new(),
    })
}

impl Io<'_> {
    fn execute(&mut self, stream: &Stream<'_>, actions: Vec<Action>) -> anyhow::Result<()> {
        for action in actions {
            match action {
                Action::Begin => self.sink.begin()?,
                Action::EnsureTable(shape) => {
                    self.sink.ensure_table(&shape, &|c| self.policy.lets_out(&shape.name, c))?
                }
                Action::Apply { shape, changes, upsert_all } => self.sink.apply(&shape, &changes, upsert_all)?,
                Action::Truncate { shape, commit_lsn, seq, commit_ts_us } => {
                    self.sink.truncate(&shape, commit_lsn, seq, commit_ts_us)?
                }
                Action::Commit { lsn, oldest_commit_ts_us } => {
                    assert_eq!(stream.state().lsn, lsn, "the sink commits the state the stream decided");
                    self.sink.commit(stream.state())?;
                    if let Some(ts) = oldest_commit_ts_us {
                        self.lag_samples_ms.push((ts, (now_us() - ts) as f64 / 1000.0));
                    }
                }
                Action::Rollback => self.sink.rollback()?,
                Action::Confirm(lsn) => self.client.update_applied_lsn(Lsn(lsn)),
                Action::WithheldTable(table) => {
                    tracing::warn!(%table, "change for a table outside the policy withheld");
                    self.status.note_withheld_table(&table);
                }
                Action::WithheldColumns { table, columns } => self.status.note_withheld_columns(&table, &columns),
            }
        }
        Ok(())
    }
}

/// The status file's streaming figures, refreshed every `STATUS_INTERVAL`.
struct StatusTicker {
    last_status: Instant,
    last_slot_stats: Option<Instant>,
    /// Start of the rows/s window and the rows streamed then.
    rows_window: (Instant, u64),
}

impl StatusTicker {
    fn new(now: Instant) -> StatusTicker {
        StatusTicker { last_status: now, last_slot_stats: None, rows_window: (now, 0) }
    }

    async fn tick(&mut self, stream: &Stream<'_>, io: &mut Io<'_>) {
        if self.last_status.elapsed() < STATUS_INTERVAL {
            return;
        }
        let now = Instant::now();
        self.last_status = now;
        let status = &mut *io.status;
        let (t, n) = self.rows_window;
        let rows = stream.rows_streamed();
        status.rows_per_sec = (rows - n) as f64 / t.elapsed().as_secs_f64().max(1e-3);
        self.rows_window = (now, rows);
        status.applied_lsn = pgoutput::lsn_to_string(stream.state().lsn);
        status.lag_bytes = stream.lag_bytes() as i64;
        status.lag_secs = match stream.oldest_pending_commit_ts_us() {
            Some(ts) => (now_us() - ts) as f64 / 1e6,
            None => 0.0,
        };
        status.streamed_rows = rows;
        if self.last_slot_stats.is_none_or(|t| t.elapsed() >= SLOT_STATS_INTERVAL) {
            self.last_slot_stats = Some(Instant::now());
            if let Ok(s) = source::slot_stats(&io.hb, io.names).await {
                status.retained_wal_bytes = s.retained_wal_bytes;
            }
        }
        status.write();
    }
}
