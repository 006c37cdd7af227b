//! The streaming phase's I/O: waits for replication events, hands them to [`Stream`], and
//! hands the sink work it returns to the sink side (`apply.rs`: its own thread behind a
//! bounded queue), in order, while it goes on receiving and decoding. Every decision is the
//! state machine's (`stream.rs`); this loop only waits, calls, hands over and reports.
//!
//! What reaches PostgreSQL as confirmed is only what the sink side reports confirmable: an
//! LSN after the sink committed it (or, with nothing pending, a keepalive's position once
//! everything before it ran). The stream's own `confirmed_lsn` is what it handed out.

use std::collections::VecDeque;
use std::future::Future;
use std::time::{Duration, Instant};

use pgwire_replication::{Lsn, ReplicationClient, ReplicationEvent};

use super::apply::{Batch, Op, Report, SinkSide};
use super::now_us;
use super::stream::{Action, Stream};
use crate::pgoutput;
use crate::source::{self, Names};
use crate::status::Status;

/// How often the status file is refreshed while streaming.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);
/// How often the slot's retained WAL is read for the status (a catalog query).
const SLOT_STATS_INTERVAL: Duration = Duration::from_secs(10);
/// When no event is waiting, how long events may gather before the loop waits for the next
/// one. Waiting for each event costs a wake-up of this task by the transport's (another
/// thread, a context switch each); under CPU contention that was a fifth of the pipeline's
/// CPU (measured with perf). Gathering turns it into one wake-up per interval, for at most
/// this much more latency.
const RECV_GATHER: Duration = Duration::from_millis(1);

/// What the streaming loop acts on (besides the sink side).
pub(super) struct Io<'a> {
    pub names: &'a Names,
    pub client: ReplicationClient,
    /// A plain session, for heartbeats and slot statistics.
    pub hb: tokio_postgres::Client,
    pub status: &'a mut Status,
    /// Handed-out sink commits not known committed yet: (LSN, oldest source commit time in
    /// Unix µs), for the status's lag.
    pending_commits: VecDeque<(u64, i64)>,
}

impl<'a> Io<'a> {
    pub fn new(
        names: &'a Names,
        client: ReplicationClient,
        hb: tokio_postgres::Client,
        status: &'a mut Status,
    ) -> Self {
        Io { names, client, hb, status, pending_commits: VecDeque::new() }
    }
}

/// What the loop waited for.
enum Next {
    Shutdown,
    Event(Result<Result<Option<ReplicationEvent>, pgwire_replication::PgWireError>, tokio::time::error::Elapsed>),
    /// The sink side raised the confirmable LSN, or ended with an error.
    Sink(anyhow::Result<()>),
}

/// Streams until `shutdown` resolves, `stop_at_lsn` is reached or the server stops the
/// stream; then what is complete is committed and confirmed. Returns the sink side's report
/// once everything handed out ran; an error of the sink side is the run's.
pub(super) async fn run(
    stream: &mut Stream<'_>,
    mut side: SinkSide<'_>,
    io: &mut Io<'_>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<Report> {
    tokio::pin!(shutdown);
    let mut ticker = StatusTicker::new(Instant::now());
    let (mut recv_wait_secs, mut decode_secs) = (0.0, 0.0);
    // Events taken from the transport; it counts those it queued for us.
    let (transport, mut received) = (io.client.metrics(), 0u64);
    loop {
        if stream.stop_reached() {
            let actions = stream.flush()?;
            io.hand_out(stream, &mut side, actions).await?;
            break;
        }
        let t0 = Instant::now();
        let idle = transport.events_forwarded() <= received;
        let next = wait_next(stream, &mut side, &mut io.client, shutdown.as_mut(), idle).await;
        recv_wait_secs += t0.elapsed().as_secs_f64();
        let ev = match next {
            Next::Shutdown => {
                let actions = stream.shutdown()?;
                io.hand_out(stream, &mut side, actions).await?;
                break;
            }
            Next::Sink(r) => {
                r?;
                io.confirm(&mut side);
                continue;
            }
            Next::Event(ev) => {
                received += u64::from(matches!(ev, Ok(Ok(Some(_)))));
                ev
            }
        };
        ticker.tick(stream, side.committed_lsn(), io).await;
        if stream.heartbeat_due(Instant::now()) {
            if let Err(e) = source::heartbeat(&io.hb).await {
                tracing::warn!(error = %e, "heartbeat failed");
            }
        }
        let t1 = Instant::now();
        let actions = match ev {
            Err(_) => stream.on_quiet()?,
            Ok(r) => match r.map_err(|e| anyhow::anyhow!("replication stream: {e}"))? {
                None => anyhow::bail!("replication stream ended"),
                Some(ReplicationEvent::StoppedAt { .. }) => break,
                Some(ev) => on_event(stream, ev)?,
            },
        };
        decode_secs += t1.elapsed().as_secs_f64();
        io.hand_out(stream, &mut side, actions).await?;
        io.confirm(&mut side);
    }
    let mut report = side.finish().await?;
    anyhow::ensure!(
        report.confirmable_lsn >= stream.state().lsn,
        "the sink side confirmed {} but the stream committed up to {}",
        report.confirmable_lsn,
        stream.state().lsn
    );
    report.times.recv_wait_secs = recv_wait_secs;
    report.times.decode_secs = decode_secs;
    io.client.update_applied_lsn(Lsn(report.confirmable_lsn));
    Ok(report)
}

/// Waits for the next thing to act on. `idle`: no event is waiting, so events first gather
/// for [`RECV_GATHER`] (unless a sink commit is due sooner).
async fn wait_next(
    stream: &Stream<'_>,
    side: &mut SinkSide<'_>,
    client: &mut ReplicationClient,
    mut shutdown: std::pin::Pin<&mut (impl Future<Output = ()> + Send)>,
    idle: bool,
) -> Next {
    let wait = stream.recv_timeout(Instant::now());
    if idle && !wait.is_zero() {
        let gathered = tokio::select! {
            biased;
            () = &mut shutdown => Some(Next::Shutdown),
            r = side.event() => Some(Next::Sink(r)),
            () = tokio::time::sleep(RECV_GATHER.min(wait)) => None,
        };
        if let Some(next) = gathered {
            return next;
        }
    }
    let wait = stream.recv_timeout(Instant::now());
    tokio::select! {
        biased;
        () = &mut shutdown => Next::Shutdown,
        r = tokio::time::timeout(wait, client.recv()) => Next::Event(r),
        r = side.event() => Next::Sink(r),
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
    /// Hands the sink work among `actions` to the sink side, in order (waiting while its
    /// queue is full); notes what the status reports.
    async fn hand_out(
        &mut self,
        stream: &Stream<'_>,
        side: &mut SinkSide<'_>,
        actions: Vec<Action>,
    ) -> anyhow::Result<()> {
        if actions.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::default();
        for action in actions {
            match action {
                Action::Begin => batch.push(Op::Begin),
                Action::EnsureTable(shape) => batch.push(Op::EnsureTable(shape)),
                Action::Apply { shape, changes, upsert_all } => batch.push(Op::Apply { shape, changes, upsert_all }),
                Action::Truncate { shape, commit_lsn, seq, commit_ts_us } => {
                    batch.push(Op::Truncate { shape, commit_lsn, seq, commit_ts_us })
                }
                Action::Commit { lsn, oldest_commit_ts_us } => {
                    assert_eq!(stream.state().lsn, lsn, "the sink commits the state the stream decided");
                    if let Some(ts) = oldest_commit_ts_us {
                        self.pending_commits.push_back((lsn, ts));
                    }
                    batch.push(Op::Commit { state: stream.state().clone(), oldest_commit_ts_us });
                }
                Action::Rollback => batch.push(Op::Rollback),
                Action::Confirm(lsn) => batch.push(Op::Confirm(lsn)),
                Action::WithheldTable(table) => {
                    tracing::warn!(%table, "change for a table outside the policy withheld");
                    self.status.note_withheld_table(&table);
                }
                Action::WithheldColumns { table, columns } => self.status.note_withheld_columns(&table, &columns),
            }
        }
        side.submit(batch).await
    }

    /// Passes a newly confirmable LSN (the sink side committed it) on to the server.
    fn confirm(&mut self, side: &mut SinkSide<'_>) {
        if let Some(lsn) = side.take_confirmable() {
            self.client.update_applied_lsn(Lsn(lsn));
        }
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

    async fn tick(&mut self, stream: &Stream<'_>, committed: u64, io: &mut Io<'_>) {
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
        status.applied_lsn = pgoutput::lsn_to_string(committed);
        status.lag_bytes = stream.lag_bytes() as i64;
        while io.pending_commits.front().is_some_and(|(lsn, _)| *lsn <= committed) {
            io.pending_commits.pop_front();
        }
        // The oldest source commit the sink does not hold: handed out, or still buffered.
        let oldest = io.pending_commits.front().map(|(_, ts)| *ts).or(stream.oldest_pending_commit_ts_us());
        status.lag_secs = match oldest {
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
