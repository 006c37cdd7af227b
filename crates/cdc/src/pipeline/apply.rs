//! The streaming phase's sink side: the work the stream hands out, applied on its own OS
//! thread behind a bounded queue, so receiving and decoding the next changes overlaps with
//! writing the previous ones into the sink.
//!
//! Invariants held here:
//! - **bounded**: at most `queue_batches_max` batches wait in the queue, and the batches
//!   queued or being applied hold at most `queue_bytes_max` bytes (an estimate: payload plus
//!   per-cell overhead; a batch larger than the limit waits until it is alone). The receiving
//!   side waits when either is reached (back-pressure): nothing is dropped;
//! - **in order**: one queue, one consumer; the batches run in the order the stream handed
//!   them out, each batch's operations in order;
//! - **confirm after commit**: an LSN becomes confirmable only when the thread reaches the
//!   `Confirm` that follows it, i.e. after every earlier operation ran, the sink's commit of
//!   that LSN included; the driver confirms nothing else to PostgreSQL;
//! - **a sink error stops everything**: the thread rolls its transaction back, ends, and its
//!   error is the run's; nothing after it is confirmed;
//! - **no orphan**: dropping the [`SinkSide`] (the task aborted, an error) stops the thread
//!   and joins it before the drop returns: its transaction is rolled back and its connection
//!   closed, so a restart in the same process finds the sink free.
//!
//! A sink that cannot be forked (`Sink::fork` gives `None`) is applied on the task instead,
//! batch by batch, with the same code.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};

use super::now_us;
use crate::model::{Cell, Change, TableShape};
use crate::policy::Policy;
use crate::sink::{Sink, SinkState};

/// One sink operation, in stream order (the stream's `Action`s, minus what the driver does
/// itself, with the state a commit writes).
#[derive(Debug)]
pub(super) enum Op {
    Begin,
    EnsureTable(TableShape),
    Apply { shape: TableShape, changes: Vec<Change>, upsert_all: bool },
    Truncate { shape: TableShape, commit_lsn: u64, seq: u32, commit_ts_us: i64 },
    Commit { state: SinkState, oldest_commit_ts_us: Option<i64> },
    Rollback,
    Confirm(u64),
}

/// The operations of one stream step (a flush holds up to `batch_rows_max` changes).
#[derive(Debug, Default)]
pub(super) struct Batch {
    pub ops: Vec<Op>,
    /// Estimated bytes of the changes it holds.
    pub bytes: usize,
}

impl Batch {
    pub fn push(&mut self, op: Op) {
        if let Op::Apply { changes, .. } = &op {
            self.bytes += changes.iter().map(change_bytes).sum::<usize>();
        }
        self.ops.push(op);
    }
}

/// Estimated memory of a change: its cells' payload plus the structures around them.
pub(super) fn change_bytes(c: &Change) -> usize {
    let cells = |r: &[Cell]| r.iter().map(|c| std::mem::size_of::<Cell>() + c.as_text().map_or(0, <[u8]>::len)).sum();
    std::mem::size_of::<Change>() + cells(&c.row) + c.old_key.as_deref().map_or(0, cells)
}

/// The queue's bounds (see `pipeline::Options`).
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    pub batches_max: usize,
    pub bytes_max: usize,
}

/// Where the streaming time went (seconds), measured on each side.
#[derive(Debug, Clone, Default)]
pub struct StreamTimes {
    /// Receiving side, waiting for the server's next event.
    pub recv_wait_secs: f64,
    /// Receiving side, decoding pgoutput and running the stream's state machine.
    pub decode_secs: f64,
    /// Receiving side, waiting because the queue was full (back-pressure).
    pub queue_wait_secs: f64,
    /// Sink side, writing changes (appends, schema changes, truncates, begin, rollback).
    pub apply_secs: f64,
    /// Sink side, committing (data and LSN together).
    pub commit_secs: f64,
    /// Sink side, waiting for work.
    pub sink_idle_secs: f64,
    /// Batches handed to the sink side.
    pub batches: u64,
    /// Most batches waiting in the queue at once (at most `queue_batches_max`).
    pub queue_peak_batches: usize,
    /// Most estimated bytes queued or being applied at once (at most `queue_bytes_max`,
    /// unless one batch alone is larger).
    pub queue_peak_bytes: usize,
    /// The sink ran on its own thread (false: the sink cannot be forked).
    pub threaded: bool,
}

/// Runs operations on a sink and keeps what the run reports.
#[derive(Debug, Default)]
struct Applier {
    /// Source commit to sink commit: (source commit time in Unix µs, lag in ms).
    lag_samples_ms: Vec<(i64, f64)>,
    apply_secs: f64,
    commit_secs: f64,
}

impl Applier {
    /// Runs `ops` in order; `on_commit(lsn)` after each commit, `on_confirm(lsn)` at each
    /// confirm (everything before it ran).
    fn run(
        &mut self,
        sink: &mut dyn Sink,
        policy: &Policy,
        ops: Vec<Op>,
        on_commit: &mut dyn FnMut(u64),
        on_confirm: &mut dyn FnMut(u64),
    ) -> anyhow::Result<()> {
        for op in ops {
            let t = Instant::now();
            match op {
                Op::Begin => sink.begin()?,
                Op::EnsureTable(shape) => sink.ensure_table(&shape, &|c| policy.lets_out(&shape.name, c))?,
                Op::Apply { shape, changes, upsert_all } => sink.apply(&shape, &changes, upsert_all)?,
                Op::Truncate { shape, commit_lsn, seq, commit_ts_us } => {
                    sink.truncate(&shape, commit_lsn, seq, commit_ts_us)?
                }
                Op::Commit { state, oldest_commit_ts_us } => {
                    sink.commit(&state)?;
                    if let Some(ts) = oldest_commit_ts_us {
                        self.lag_samples_ms.push((ts, (now_us() - ts) as f64 / 1000.0));
                    }
                    self.commit_secs += t.elapsed().as_secs_f64();
                    on_commit(state.lsn);
                    continue;
                }
                Op::Rollback => sink.rollback()?,
                Op::Confirm(lsn) => {
                    on_confirm(lsn);
                    continue;
                }
            }
            self.apply_secs += t.elapsed().as_secs_f64();
        }
        Ok(())
    }
}

/// What the sink side reports when it ends.
#[derive(Debug, Default)]
pub(super) struct Report {
    pub lag_samples_ms: Vec<(i64, f64)>,
    pub times: StreamTimes,
    /// The highest LSN the sink side reached a confirm for.
    pub confirmable_lsn: u64,
}

/// Shared between the driver and the sink thread.
struct Shared {
    /// Set when the driver is dropped: the thread stops after the operation in progress.
    abandon: AtomicBool,
    /// The last LSN the sink committed (status).
    committed_lsn: AtomicU64,
    /// Estimated bytes queued or being applied.
    bytes_held: AtomicUsize,
}

/// The sink thread, seen from the driver.
struct Worker {
    tx: Option<mpsc::Sender<Queued>>,
    bytes: Arc<Semaphore>,
    limits: QueueLimits,
    shared: Arc<Shared>,
    confirmable: watch::Receiver<u64>,
    done: Option<oneshot::Receiver<anyhow::Result<Report>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

/// A batch in the queue, with its share of the byte limit (released once applied).
struct Queued {
    batch: Batch,
    /// Bytes of the limit it holds (its estimate, at most the limit).
    held: usize,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Worker {
    fn drop(&mut self) {
        // The driver is gone without `finish`: stop the thread and wait for it, so its
        // transaction is rolled back and its connection closed before the drop returns.
        self.shared.abandon.store(true, Ordering::SeqCst);
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The sink side: a thread with its own handle on the sink, or the sink itself.
pub(super) struct SinkSide<'s> {
    mode: Mode<'s>,
    /// The highest confirmable LSN the driver has taken.
    confirmable_lsn: u64,
    queue_wait_secs: f64,
    queue_peak_batches: usize,
    queue_peak_bytes: usize,
    batches: u64,
}

enum Mode<'s> {
    Thread(Worker),
    Inline {
        sink: &'s mut dyn Sink,
        policy: &'s Policy,
        applier: Applier,
        committed_lsn: u64,
        pending_confirm: Option<u64>,
    },
}

impl<'s> SinkSide<'s> {
    /// Forks the sink onto a thread when it can be; `start_lsn` is what the sink holds.
    pub fn start(
        sink: &'s mut dyn Sink,
        policy: &'s Policy,
        limits: QueueLimits,
        start_lsn: u64,
    ) -> anyhow::Result<SinkSide<'s>> {
        anyhow::ensure!(limits.batches_max >= 1, "queue_batches_max must be at least 1");
        anyhow::ensure!(
            (1..=u32::MAX as usize).contains(&limits.bytes_max),
            "queue_bytes_max must be in 1..={}",
            u32::MAX
        );
        let mode = match sink.fork()? {
            Some(forked) => Mode::Thread(Worker::spawn(forked, policy.clone(), limits, start_lsn)?),
            None => Mode::Inline {
                sink,
                policy,
                applier: Applier::default(),
                committed_lsn: start_lsn,
                pending_confirm: None,
            },
        };
        Ok(SinkSide {
            mode,
            confirmable_lsn: start_lsn,
            queue_wait_secs: 0.0,
            queue_peak_batches: 0,
            queue_peak_bytes: 0,
            batches: 0,
        })
    }

    /// Hands a batch over; waits while the queue is full. An error is the sink's (it stopped).
    pub async fn submit(&mut self, batch: Batch) -> anyhow::Result<()> {
        if batch.ops.is_empty() {
            return Ok(());
        }
        self.batches += 1;
        match &mut self.mode {
            Mode::Inline { sink, policy, applier, committed_lsn, pending_confirm } => {
                let mut on_commit = |lsn| *committed_lsn = lsn;
                let mut on_confirm = |lsn: u64| *pending_confirm = Some(pending_confirm.map_or(lsn, |p| p.max(lsn)));
                applier.run(&mut **sink, policy, batch.ops, &mut on_commit, &mut on_confirm)
            }
            Mode::Thread(w) => {
                let t = Instant::now();
                let r = w.send(batch).await;
                self.queue_wait_secs += t.elapsed().as_secs_f64();
                // Batches waiting: the queue's free slots come back as the thread takes them.
                let queued = w.tx.as_ref().map_or(0, |tx| tx.max_capacity() - tx.capacity());
                self.queue_peak_batches = self.queue_peak_batches.max(queued);
                self.queue_peak_bytes = self.queue_peak_bytes.max(w.shared.bytes_held.load(Ordering::SeqCst));
                match r {
                    Ok(()) => Ok(()),
                    // The thread ended: its error says why.
                    Err(()) => Err(w.wait_error().await),
                }
            }
        }
    }

    /// A confirmable LSN higher than the last one taken, if the sink side reached one.
    pub fn take_confirmable(&mut self) -> Option<u64> {
        let lsn = match &mut self.mode {
            Mode::Inline { pending_confirm, .. } => pending_confirm.take()?,
            Mode::Thread(w) => *w.confirmable.borrow_and_update(),
        };
        if lsn > self.confirmable_lsn {
            self.confirmable_lsn = lsn;
            return Some(lsn);
        }
        None
    }

    /// The last LSN the sink committed.
    pub fn committed_lsn(&self) -> u64 {
        match &self.mode {
            Mode::Inline { committed_lsn, .. } => *committed_lsn,
            Mode::Thread(w) => w.shared.committed_lsn.load(Ordering::SeqCst),
        }
    }

    /// Resolves when the sink thread has something to say: a new confirmable LSN, or it
    /// ended (then with its error). Never resolves for an inline sink.
    pub async fn event(&mut self) -> anyhow::Result<()> {
        match &mut self.mode {
            Mode::Inline { .. } => std::future::pending().await,
            Mode::Thread(w) => match w.confirmable.changed().await {
                Ok(()) => Ok(()),
                Err(_) => Err(w.wait_error().await),
            },
        }
    }

    /// Waits for every handed-out batch to be applied; the sink side's report.
    pub async fn finish(mut self) -> anyhow::Result<Report> {
        let mut report = match &mut self.mode {
            Mode::Inline { applier, .. } => Report {
                lag_samples_ms: std::mem::take(&mut applier.lag_samples_ms),
                times: StreamTimes {
                    apply_secs: applier.apply_secs,
                    commit_secs: applier.commit_secs,
                    ..Default::default()
                },
                confirmable_lsn: 0,
            },
            Mode::Thread(w) => w.finish().await?,
        };
        let _ = self.take_confirmable();
        report.confirmable_lsn = report.confirmable_lsn.max(self.confirmable_lsn);
        let t = &mut report.times;
        t.queue_wait_secs = self.queue_wait_secs;
        t.queue_peak_batches = self.queue_peak_batches;
        t.queue_peak_bytes = self.queue_peak_bytes;
        t.batches = self.batches;
        t.threaded = matches!(self.mode, Mode::Thread(_));
        Ok(report)
    }
}

impl Worker {
    fn spawn(sink: Box<dyn Sink>, policy: Policy, limits: QueueLimits, start_lsn: u64) -> anyhow::Result<Worker> {
        let (tx, rx) = mpsc::channel::<Queued>(limits.batches_max);
        let (conf_tx, conf_rx) = watch::channel(start_lsn);
        let (done_tx, done_rx) = oneshot::channel();
        let shared = Arc::new(Shared {
            abandon: AtomicBool::new(false),
            committed_lsn: AtomicU64::new(start_lsn),
            bytes_held: AtomicUsize::new(0),
        });
        let thread_shared = shared.clone();
        let handle = std::thread::Builder::new().name("cdc-sink".into()).spawn(move || {
            let r = sink_thread(sink, &policy, rx, &conf_tx, &thread_shared);
            let _ = done_tx.send(r);
        })?;
        Ok(Worker {
            tx: Some(tx),
            bytes: Arc::new(Semaphore::new(limits.bytes_max)),
            limits,
            shared,
            confirmable: conf_rx,
            done: Some(done_rx),
            handle: Some(handle),
        })
    }

    /// Queues a batch once the byte and batch limits let it in. `Err`: the thread ended.
    async fn send(&mut self, batch: Batch) -> Result<(), ()> {
        let tx = self.tx.as_ref().ok_or(())?;
        let want = batch.bytes.clamp(1, self.limits.bytes_max);
        let permit = self.bytes.clone().acquire_many_owned(want as u32).await.map_err(|_| ())?;
        self.shared.bytes_held.fetch_add(want, Ordering::SeqCst);
        let queued = Queued { batch, held: want, _permit: permit };
        tx.send(queued).await.map_err(|_| ())?;
        Ok(())
    }

    /// The thread's error once it ended (it ends early only on an error).
    async fn wait_error(&mut self) -> anyhow::Error {
        match self.done.take() {
            Some(rx) => match rx.await {
                Ok(Err(e)) => e,
                Ok(Ok(_)) => anyhow::anyhow!("the sink thread stopped early"),
                Err(_) => anyhow::anyhow!("the sink thread panicked"),
            },
            None => anyhow::anyhow!("the sink thread stopped"),
        }
    }

    /// Closes the queue and waits for the thread to apply what it holds.
    async fn finish(&mut self) -> anyhow::Result<Report> {
        self.tx = None;
        let r = match self.done.take() {
            Some(rx) => rx.await.unwrap_or_else(|_| Err(anyhow::anyhow!("the sink thread panicked"))),
            None => Err(anyhow::anyhow!("the sink thread stopped")),
        };
        if let Some(h) = self.handle.take() {
            // It sent its result: it is returning.
            let _ = h.join();
        }
        r
    }
}

/// The sink thread: applies batches in order until the queue closes or an operation fails.
fn sink_thread(
    mut sink: Box<dyn Sink>,
    policy: &Policy,
    mut rx: mpsc::Receiver<Queued>,
    confirmable: &watch::Sender<u64>,
    shared: &Shared,
) -> anyhow::Result<Report> {
    let mut applier = Applier::default();
    let mut idle_secs = 0.0;
    let mut confirmable_lsn = *confirmable.borrow();
    loop {
        let t = Instant::now();
        let Some(Queued { batch, held, _permit }) = rx.blocking_recv() else { break };
        idle_secs += t.elapsed().as_secs_f64();
        if shared.abandon.load(Ordering::SeqCst) {
            break;
        }
        let mut on_commit = |lsn| shared.committed_lsn.store(lsn, Ordering::SeqCst);
        let mut on_confirm = |lsn: u64| {
            if lsn > confirmable_lsn {
                confirmable_lsn = lsn;
                confirmable.send_replace(lsn);
            }
        };
        let r = applier.run(&mut *sink, policy, batch.ops, &mut on_commit, &mut on_confirm);
        shared.bytes_held.fetch_sub(held, Ordering::SeqCst);
        if let Err(e) = r {
            let _ = sink.rollback();
            return Err(e);
        }
    }
    // The queue closed: the driver finished (its last batch committed or rolled back), or
    // it was dropped mid-transaction: roll back what is open.
    let _ = sink.rollback();
    Ok(Report {
        lag_samples_ms: applier.lag_samples_ms,
        times: StreamTimes {
            apply_secs: applier.apply_secs,
            commit_secs: applier.commit_secs,
            sink_idle_secs: idle_secs,
            ..Default::default()
        },
        confirmable_lsn,
    })
}
