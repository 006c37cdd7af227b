//! The streaming phase as a state machine: decoded replication events in, sink actions out.
//!
//! [`Stream`] decides, without any I/O, what to buffer, when to write a batch into the sink,
//! when to commit the sink, which LSN to confirm to PostgreSQL, when a heartbeat is due and
//! when `stop_at_lsn` is reached. The driver (`driver.rs`) receives the events, calls the
//! `on_*` methods, and carries out the [`Action`]s they return, in order, before the next
//! call. Time comes in as `now`, so every decision is a function of the inputs.
//!
//! Invariants (asserted here):
//! - a sink transaction holds either whole source transactions, or parts of exactly one
//!   large source transaction (never a mix), so stopping at any point loses nothing and
//!   duplicates nothing: the sink commits data + end LSN together, only at a source commit;
//! - the sink's LSN never goes backwards, and an LSN is confirmed to PostgreSQL only once
//!   the sink committed it, or (keepalives, heartbeats) when nothing is pending at all; the
//!   confirmed LSN only rises (the transport ignores a lower one);
//! - a source transaction whose commit the sink already holds (final LSN < stored LSN) is
//!   skipped;
//! - memory is bounded: fewer than `batch_rows_max` buffered changes between events,
//!   whatever the transaction size.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::model::{Change, Op, Projection, TableShape};
use crate::pgoutput::{Datum, Message, OldKind, Relation, PG_EPOCH_OFFSET_US};
use crate::policy::{Policy, Pseudonymizer};
use crate::sink::SinkState;

/// Longest wait for an event when no sink commit is due (then [`Stream::on_quiet`]).
pub const QUIET_WAIT: Duration = Duration::from_millis(500);

/// The bounds the stream keeps (see `pipeline::Options`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Buffered changes at which they are written into the sink (bounded memory).
    pub batch_rows_max: usize,
    /// Longest a committed source transaction waits before the sink commits it.
    pub commit_interval: Duration,
    /// A heartbeat when no source commit arrived for this long.
    pub heartbeat_interval: Duration,
    /// Stop once the sink holds every commit that ends at or before this LSN.
    pub stop_at_lsn: Option<u64>,
}

/// What the driver does, in order, with the sink, the replication client and the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a sink transaction.
    Begin,
    /// Create the sink table or bring it to this shape (a schema change, in stream order).
    EnsureTable(TableShape),
    /// Apply changes of one table, in source order, inside the open sink transaction.
    /// `upsert_all`: inserts may meet an existing row (snapshot catch-up window).
    Apply { shape: TableShape, changes: Vec<Change>, upsert_all: bool },
    /// Empty one table inside the open sink transaction.
    Truncate { shape: TableShape, commit_lsn: u64, seq: u32, commit_ts_us: i64 },
    /// Commit the sink transaction with [`Stream::state`], whose LSN is `lsn`.
    /// `oldest_commit_ts_us`: source commit time of the oldest transaction in it (a lag sample).
    Commit { lsn: u64, oldest_commit_ts_us: Option<i64> },
    /// Drop the open sink transaction (it holds only part of the open source transaction).
    Rollback,
    /// Raise the LSN confirmed to PostgreSQL (the transport sends it in its next status update,
    /// and in its reply to a keepalive that asks for one).
    Confirm(u64),
    /// A table the policy does not list is in the stream: its changes are withheld.
    WithheldTable(String),
    /// The policy withholds these source columns of a table.
    WithheldColumns { table: String, columns: Vec<String> },
}

/// One buffered item of a table, in stream order.
#[derive(Debug)]
enum Entry {
    Change(Change),
    Truncate {
        lsn: u64,
        seq: u32,
        ts: i64,
    },
    /// The table's shape from here on (a schema change).
    Shape(TableShape),
}

/// Changes not yet written into the sink, per table.
#[derive(Debug, Default)]
struct Buffer {
    tables: BTreeMap<String, Vec<Entry>>,
    /// Per table: index where the open source transaction's entries start.
    marks: HashMap<String, usize>,
    /// Changes and truncates buffered (shapes are not counted).
    rows: usize,
}

impl Buffer {
    fn is_empty(&self) -> bool {
        self.tables.values().all(Vec::is_empty)
    }

    /// Called per row: allocates the table name only the first time a table shows up in the
    /// buffer / in the transaction (it was three String allocations per row).
    fn push(&mut self, table: &str, e: Entry) {
        if !self.tables.contains_key(table) {
            self.tables.insert(table.to_owned(), Vec::new());
        }
        let v = self.tables.get_mut(table).expect("inserted above");
        if !self.marks.contains_key(table) {
            self.marks.insert(table.to_owned(), v.len());
        }
        if !matches!(e, Entry::Shape(_)) {
            self.rows += 1;
        }
        v.push(e);
    }

    /// Whether entries of complete transactions precede the open transaction's.
    fn has_prior(&self) -> bool {
        self.tables.iter().any(|(t, v)| match self.marks.get(t) {
            Some(m) => *m > 0,
            None => !v.is_empty(),
        })
    }

    /// Takes the open transaction's entries out; the complete transactions' stay.
    fn split_open(&mut self) -> BTreeMap<String, Vec<Entry>> {
        let mut open = BTreeMap::new();
        for (t, v) in &mut self.tables {
            if let Some(m) = self.marks.get(t) {
                open.insert(t.clone(), v.split_off(*m));
            }
        }
        open
    }

    /// Drops the open transaction's entries (everything at or after the marks).
    fn truncate_open(&mut self) {
        for (t, m) in std::mem::take(&mut self.marks) {
            if let Some(v) = self.tables.get_mut(&t) {
                v.truncate(m);
            }
        }
    }
}

/// The source transaction being received (between Begin and Commit).
#[derive(Debug, Clone, Copy)]
struct Txn {
    final_lsn: u64,
    /// Commit time, Unix µs.
    commit_ts_us: i64,
    /// Ordinal of the transaction's next change.
    seq: u32,
    /// The sink already holds this transaction.
    skip: bool,
}

/// The sink's transaction, as far as the actions handed out go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SinkTxn {
    Closed,
    /// Open, holding whole source transactions only.
    Whole,
    /// Open, holding part of the open (large) source transaction, and nothing else.
    Partial,
}

/// The streaming state: see the module docs.
pub struct Stream<'a> {
    policy: &'a Policy,
    ps: &'a Pseudonymizer,
    limits: Limits,
    /// What the sink holds once the handed-out actions ran; `state.lsn` is the end LSN of the
    /// last source commit the sink committed.
    state: SinkState,
    /// The shape each sink table has once the handed-out actions ran.
    sink_shapes: HashMap<String, TableShape>,
    /// Relation OID to its projection under the policy (withheld tables have none).
    rels: HashMap<u32, Projection>,
    buf: Buffer,
    txn: Option<Txn>,
    sink: SinkTxn,
    /// End LSN of the last source commit received and not skipped.
    last_end_lsn: u64,
    /// LSN of the last non-transactional message (heartbeat) between transactions.
    last_message_lsn: u64,
    /// The server's WAL end, as far as keepalives and commits tell.
    server_wal_end: u64,
    /// The highest LSN confirmed to PostgreSQL.
    confirmed_lsn: u64,
    /// Source commit time of the oldest transaction the sink did not commit yet.
    oldest_pending_commit_ts_us: Option<i64>,
    /// When the oldest complete source transaction the sink did not commit yet arrived.
    pending_since: Option<Instant>,
    /// The last source commit or heartbeat: the next heartbeat is due `heartbeat_interval` later.
    last_commit_seen: Instant,
    rows_streamed: u64,
    txns_streamed: u64,
}

impl<'a> Stream<'a> {
    /// Starts from the sink's committed `state` (phase streaming) and its tables' `shapes`;
    /// the replication client starts at (and has confirmed) `state.lsn`.
    pub fn new(
        policy: &'a Policy,
        ps: &'a Pseudonymizer,
        limits: Limits,
        state: SinkState,
        sink_shapes: HashMap<String, TableShape>,
        now: Instant,
    ) -> Stream<'a> {
        assert!(limits.batch_rows_max >= 1, "batch_rows_max must be at least 1");
        let lsn = state.lsn;
        Stream {
            policy,
            ps,
            limits,
            state,
            sink_shapes,
            rels: HashMap::new(),
            buf: Buffer::default(),
            txn: None,
            sink: SinkTxn::Closed,
            last_end_lsn: lsn,
            last_message_lsn: 0,
            server_wal_end: lsn,
            confirmed_lsn: lsn,
            oldest_pending_commit_ts_us: None,
            pending_since: None,
            last_commit_seen: now,
            rows_streamed: 0,
            txns_streamed: 0,
        }
    }

    /// What the sink holds once the handed-out actions ran (what `Commit` writes).
    pub fn state(&self) -> &SinkState {
        &self.state
    }

    /// The highest LSN confirmed to PostgreSQL: every status update carries it.
    pub fn confirmed_lsn(&self) -> u64 {
        self.confirmed_lsn
    }

    pub fn rows_streamed(&self) -> u64 {
        self.rows_streamed
    }

    pub fn txns_streamed(&self) -> u64 {
        self.txns_streamed
    }

    /// WAL the server has that the sink does not hold yet (bytes).
    pub fn lag_bytes(&self) -> u64 {
        self.server_wal_end.saturating_sub(self.state.lsn.max(self.last_end_lsn))
    }

    /// Source commit time (Unix µs) of the oldest transaction the sink did not commit yet.
    pub fn oldest_pending_commit_ts_us(&self) -> Option<i64> {
        self.oldest_pending_commit_ts_us
    }

    /// Once no transaction is open and everything up to `stop_at_lsn` was received; the
    /// driver then calls [`Stream::flush`] and stops.
    pub fn stop_reached(&self) -> bool {
        self.limits
            .stop_at_lsn
            .is_some_and(|stop| self.txn.is_none() && self.last_end_lsn.max(self.last_message_lsn) >= stop)
    }

    /// How long to wait for the next event: until the pending sink commit is due, else
    /// [`QUIET_WAIT`]. After the wait, [`Stream::on_quiet`].
    pub fn recv_timeout(&self, now: Instant) -> Duration {
        match self.pending_since {
            Some(t) if self.txn.is_none() => self.limits.commit_interval.saturating_sub(now.duration_since(t)),
            _ => QUIET_WAIT,
        }
    }

    /// Whether to send a heartbeat now: no source commit for `heartbeat_interval`, and no
    /// transaction open. When it is, the interval starts again.
    pub fn heartbeat_due(&mut self, now: Instant) -> bool {
        let due = self.txn.is_none() && now.duration_since(self.last_commit_seen) >= self.limits.heartbeat_interval;
        if due {
            self.last_commit_seen = now;
        }
        due
    }

    /// A server keepalive. The transport already answered it if asked, with the confirmed LSN;
    /// `wal_end` is confirmed only when nothing is pending, so the slot advances past changes
    /// of unpublished tables without ever skipping one the sink has not committed.
    pub fn on_keepalive(&mut self, wal_end: u64) -> Vec<Action> {
        self.server_wal_end = self.server_wal_end.max(wal_end);
        let mut actions = Vec::new();
        if self.is_idle() {
            self.confirm(wal_end, &mut actions);
        }
        actions
    }

    /// A logical message. Heartbeats (non-transactional) arrive between transactions and,
    /// with nothing pending, are confirmed like keepalives.
    pub fn on_logical_message(&mut self, transactional: bool, lsn: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        if !transactional && self.txn.is_none() {
            self.last_message_lsn = self.last_message_lsn.max(lsn);
            if self.is_idle() {
                self.confirm(lsn, &mut actions);
            }
        }
        actions
    }

    /// A source transaction starts; `commit_ts_pg_us` is PostgreSQL-epoch µs.
    pub fn on_begin(&mut self, final_lsn: u64, commit_ts_pg_us: i64) -> anyhow::Result<()> {
        anyhow::ensure!(self.txn.is_none(), "protocol error: Begin inside a transaction");
        self.txn = Some(Txn {
            final_lsn,
            commit_ts_us: commit_ts_pg_us + PG_EPOCH_OFFSET_US,
            seq: 0,
            skip: final_lsn < self.state.lsn,
        });
        self.buf.marks.clear();
        Ok(())
    }

    /// One pgoutput message of an XLogData event (Relation, a change, Origin or Type).
    pub fn on_data(&mut self, msg: Message) -> anyhow::Result<Vec<Action>> {
        match msg {
            Message::Relation(rel) => self.on_relation(rel),
            Message::Insert { .. } | Message::Update { .. } | Message::Delete { .. } | Message::Truncate { .. } => {
                self.on_change(msg)
            }
            Message::Begin { .. } | Message::Commit { .. } | Message::Message { .. } => {
                anyhow::bail!("unexpected boundary message in XLogData")
            }
            Message::Origin { .. } | Message::Type { .. } => Ok(Vec::new()),
        }
    }

    /// A relation's (new) shape. A table outside the policy is withheld entirely; a shape
    /// other than the one the sink will have is queued in order with the changes.
    pub fn on_relation(&mut self, rel: Relation) -> anyhow::Result<Vec<Action>> {
        if rel.namespace != self.policy.schema || !self.policy.has_table(&rel.name) {
            self.rels.remove(&rel.oid);
            return Ok(vec![Action::WithheldTable(format!("{}.{}", rel.namespace, rel.name))]);
        }
        let proj = Projection::from_relation(self.policy, &rel);
        if proj.shape.key_indexes().is_empty() {
            anyhow::bail!("table {} has no key column the policy lets out; cannot apply updates or deletes", rel.name);
        }
        let mut actions = Vec::new();
        if !proj.withheld.is_empty() {
            actions.push(Action::WithheldColumns { table: rel.name.clone(), columns: proj.withheld.clone() });
        }
        if self.latest_shape(&rel.name) != Some(&proj.shape) {
            // Schema change (e.g. an added column): applied to the sink in order.
            // Columns the source dropped stay in the sink (NULL from now on).
            self.buf.push(&rel.name, Entry::Shape(proj.shape.clone()));
        }
        self.rels.insert(rel.oid, proj);
        Ok(actions)
    }

    /// An Insert, Update, Delete or Truncate of the open transaction, buffered as policy-
    /// projected changes (unless the sink holds the transaction already). A large
    /// transaction that fills the buffer is written into an open sink transaction.
    pub fn on_change(&mut self, msg: Message) -> anyhow::Result<Vec<Action>> {
        let txn = self.txn.ok_or_else(|| anyhow::anyhow!("protocol error: a change outside a transaction"))?;
        if txn.skip {
            return Ok(Vec::new());
        }
        match msg {
            Message::Insert { rel, new } => self.buffer_change(rel, Op::Insert, &new, None)?,
            Message::Update { rel, old, mut new } => {
                // With REPLICA IDENTITY FULL the old image carries unchanged TOAST values.
                if let Some((OldKind::Full, oldt)) = &old {
                    for (n, o) in new.iter_mut().zip(oldt) {
                        if *n == Datum::UnchangedToast {
                            *n = o.clone();
                        }
                    }
                }
                self.buffer_change(rel, Op::Update, &new, old.as_ref().map(|(_, o)| o.as_slice()))?;
            }
            Message::Delete { rel, old, .. } => self.buffer_change(rel, Op::Delete, &old, None)?,
            Message::Truncate { rels, .. } => self.buffer_truncate(&rels),
            _ => anyhow::bail!("not a change message"),
        }
        let mut actions = Vec::new();
        if self.buf.rows >= self.limits.batch_rows_max {
            self.spill(&mut actions)?;
        }
        self.assert_bounded();
        Ok(actions)
    }

    /// A source transaction ends. The sink commits when `batch_rows_max` changes are
    /// buffered or the oldest complete transaction waited `commit_interval`.
    pub fn on_commit(&mut self, end_lsn: u64, now: Instant) -> anyhow::Result<Vec<Action>> {
        let txn = self.txn.take().ok_or_else(|| anyhow::anyhow!("protocol error: Commit outside a transaction"))?;
        self.last_commit_seen = now;
        self.server_wal_end = self.server_wal_end.max(end_lsn);
        let mut actions = Vec::new();
        if txn.skip {
            return Ok(actions);
        }
        self.txns_streamed += 1;
        self.last_end_lsn = end_lsn;
        if self.sink == SinkTxn::Partial {
            self.sink = SinkTxn::Whole;
        }
        self.buf.marks.clear();
        self.oldest_pending_commit_ts_us.get_or_insert(txn.commit_ts_us);
        let since = *self.pending_since.get_or_insert(now);
        if self.buf.rows >= self.limits.batch_rows_max || now.duration_since(since) >= self.limits.commit_interval {
            self.flush_into(&mut actions)?;
        }
        self.assert_bounded();
        Ok(actions)
    }

    /// No event within [`Stream::recv_timeout`]: commit what is complete, so it is queryable
    /// within `commit_interval`.
    pub fn on_quiet(&mut self) -> anyhow::Result<Vec<Action>> {
        let mut actions = Vec::new();
        if self.txn.is_none() && (self.pending_since.is_some() || !self.buf.is_empty()) {
            self.flush_into(&mut actions)?;
        }
        Ok(actions)
    }

    /// Writes the buffered complete transactions and commits them with the last end LSN,
    /// then confirms it.
    pub fn flush(&mut self) -> anyhow::Result<Vec<Action>> {
        let mut actions = Vec::new();
        self.flush_into(&mut actions)?;
        Ok(actions)
    }

    /// Stop: commit the complete transactions; drop the open one (PostgreSQL resends it).
    pub fn shutdown(&mut self) -> anyhow::Result<Vec<Action>> {
        let mut actions = Vec::new();
        if self.txn.take().is_some() {
            self.buf.truncate_open();
            if self.sink == SinkTxn::Partial {
                // The open sink transaction holds only that transaction's rows.
                actions.push(Action::Rollback);
                self.sink = SinkTxn::Closed;
                assert!(self.buf.is_empty(), "a partial sink transaction had complete transactions buffered");
            }
        }
        self.flush_into(&mut actions)?;
        Ok(actions)
    }

    fn is_idle(&self) -> bool {
        self.txn.is_none() && self.sink == SinkTxn::Closed && self.buf.is_empty() && self.pending_since.is_none()
    }

    fn assert_bounded(&self) {
        assert!(
            self.buf.rows < self.limits.batch_rows_max,
            "{} buffered changes, the limit is {}",
            self.buf.rows,
            self.limits.batch_rows_max
        );
    }

    fn confirm(&mut self, lsn: u64, actions: &mut Vec<Action>) {
        assert!(
            lsn <= self.state.lsn || self.is_idle(),
            "confirming {lsn} beyond the sink's {} while changes are pending",
            self.state.lsn
        );
        self.confirmed_lsn = self.confirmed_lsn.max(lsn);
        actions.push(Action::Confirm(lsn));
    }

    /// The shape the table will have once the buffer is written: the last queued one, else
    /// the sink's.
    fn latest_shape(&self, table: &str) -> Option<&TableShape> {
        self.buf
            .tables
            .get(table)
            .and_then(|v| v.iter().rev().find_map(|e| if let Entry::Shape(s) = e { Some(s) } else { None }))
            .or_else(|| self.sink_shapes.get(table))
    }

    fn buffer_change(&mut self, rel: u32, op: Op, tuple: &[Datum], old: Option<&[Datum]>) -> anyhow::Result<()> {
        let Some(p) = self.rels.get(&rel) else { return Ok(()) };
        let row = p.project(tuple, self.ps)?;
        let old_key = match old {
            Some(o) => Some(p.project(o, self.ps)?),
            None => None,
        };
        let txn = self.txn.as_mut().expect("a change inside a transaction");
        let change =
            Change { op, commit_lsn: txn.final_lsn, seq: txn.seq, commit_ts_us: txn.commit_ts_us, row, old_key };
        txn.seq += 1;
        self.buf.push(&p.shape.name, Entry::Change(change));
        self.rows_streamed += 1;
        Ok(())
    }

    fn buffer_truncate(&mut self, rels: &[u32]) {
        let txn = self.txn.as_mut().expect("a change inside a transaction");
        for id in rels {
            let Some(p) = self.rels.get(id) else { continue };
            self.buf.push(&p.shape.name, Entry::Truncate { lsn: txn.final_lsn, seq: txn.seq, ts: txn.commit_ts_us });
            txn.seq += 1;
        }
    }

    /// A large transaction filled the buffer: write what we have into the sink transaction
    /// (bounded memory) without committing it. First commit the complete transactions
    /// before it, so the sink never mixes the two.
    fn spill(&mut self, actions: &mut Vec<Action>) -> anyhow::Result<()> {
        if self.sink == SinkTxn::Whole || self.buf.has_prior() {
            let open = self.buf.split_open();
            self.flush_into(actions)?;
            self.buf.tables = open;
        }
        if self.sink == SinkTxn::Closed {
            actions.push(Action::Begin);
        }
        self.sink = SinkTxn::Partial;
        let upsert = self.state.lsn < self.state.catchup_until;
        for (t, entries) in std::mem::take(&mut self.buf.tables) {
            self.plan_entries(&t, entries, upsert, actions)?;
            self.buf.marks.insert(t, 0);
        }
        self.buf.rows = 0;
        Ok(())
    }

    /// Writes the buffer (complete transactions only) and, if the sink transaction holds
    /// anything, commits it with the last end LSN and confirms that.
    fn flush_into(&mut self, actions: &mut Vec<Action>) -> anyhow::Result<()> {
        assert!(self.sink != SinkTxn::Partial, "a sink commit never holds part of an open source transaction");
        // Conservative: a batch that may hold a transaction of the catch-up window is
        // applied as upserts (always correct, only slower).
        let upsert = self.state.lsn < self.state.catchup_until;
        let tables = std::mem::take(&mut self.buf.tables);
        if self.sink == SinkTxn::Closed && !tables.values().all(Vec::is_empty) {
            actions.push(Action::Begin);
            self.sink = SinkTxn::Whole;
        }
        for (t, entries) in tables {
            self.plan_entries(&t, entries, upsert, actions)?;
        }
        self.buf.rows = 0;
        if self.sink == SinkTxn::Whole {
            assert!(self.last_end_lsn >= self.state.lsn, "the sink's LSN never goes backwards");
            self.state.lsn = self.last_end_lsn;
            let oldest_commit_ts_us = self.oldest_pending_commit_ts_us.take();
            actions.push(Action::Commit { lsn: self.state.lsn, oldest_commit_ts_us });
            self.sink = SinkTxn::Closed;
            self.confirm(self.state.lsn, actions);
        }
        self.pending_since = None;
        Ok(())
    }

    /// One table's buffered entries as sink actions, in order, each under the shape the
    /// sink's table has at that point.
    fn plan_entries(
        &mut self,
        table: &str,
        entries: Vec<Entry>,
        upsert_all: bool,
        actions: &mut Vec<Action>,
    ) -> anyhow::Result<()> {
        let mut segment: Vec<Change> = Vec::new();
        for e in entries {
            match e {
                Entry::Change(c) => segment.push(c),
                Entry::Truncate { lsn, seq, ts } => {
                    self.plan_apply(table, &mut segment, upsert_all, actions)?;
                    let shape = self.sink_shape(table)?.clone();
                    actions.push(Action::Truncate { shape, commit_lsn: lsn, seq, commit_ts_us: ts });
                }
                Entry::Shape(s) => {
                    self.plan_apply(table, &mut segment, upsert_all, actions)?;
                    actions.push(Action::EnsureTable(s.clone()));
                    self.sink_shapes.insert(table.to_owned(), s);
                }
            }
        }
        self.plan_apply(table, &mut segment, upsert_all, actions)
    }

    fn plan_apply(
        &self,
        table: &str,
        segment: &mut Vec<Change>,
        upsert_all: bool,
        actions: &mut Vec<Action>,
    ) -> anyhow::Result<()> {
        if segment.is_empty() {
            return Ok(());
        }
        let shape = self.sink_shape(table)?.clone();
        actions.push(Action::Apply { shape, changes: std::mem::take(segment), upsert_all });
        Ok(())
    }

    fn sink_shape(&self, table: &str) -> anyhow::Result<&TableShape> {
        self.sink_shapes.get(table).ok_or_else(|| anyhow::anyhow!("no shape for table {table}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgoutput::RelationColumn;
    use crate::sink::Phase;
    use bytes::Bytes;
    use proptest::prelude::*;

    const POLICY: &str = r#"
[tables.accounts.columns]
id = "keep"
name = "keep"
email = "pseudonymize"
country = "keep"
secret = "drop"
"#;
    const OID: u32 = 16_384;
    const HOUR: Duration = Duration::from_secs(3600);

    struct Fixture {
        policy: Policy,
        ps: Pseudonymizer,
        t0: Instant,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture {
                policy: Policy::parse(POLICY).unwrap(),
                ps: Pseudonymizer::new(&[1u8; 32]).unwrap(),
                t0: Instant::now(),
            }
        }

        /// A stream over a sink that holds everything up to `lsn`, with `accounts` as
        /// `relation(false)` makes it.
        fn stream(&self, batch_rows_max: usize, commit_interval: Duration, lsn: u64) -> Stream<'_> {
            let limits = Limits {
                batch_rows_max,
                commit_interval,
                heartbeat_interval: Duration::from_secs(10),
                stop_at_lsn: None,
            };
            let state = SinkState { phase: Phase::Streaming, lsn, slot: "s".into(), ..Default::default() };
            let shape = Projection::from_relation(&self.policy, &relation(false)).shape;
            let shapes = HashMap::from([("accounts".to_owned(), shape)]);
            Stream::new(&self.policy, &self.ps, limits, state, shapes, self.t0)
        }

        fn at(&self, ms: u64) -> Instant {
            self.t0 + Duration::from_millis(ms)
        }
    }

    fn col(name: &str, key: bool) -> RelationColumn {
        RelationColumn { key, name: name.into(), type_oid: if key { 20 } else { 25 }, type_modifier: -1 }
    }

    /// `fintrail.accounts` as pgoutput describes it; `country_added`: after `ADD COLUMN country`.
    fn relation(country_added: bool) -> Relation {
        let mut columns = vec![col("id", true), col("name", false), col("email", false), col("secret", false)];
        if country_added {
            columns.push(col("country", false));
        }
        Relation { oid: OID, namespace: "fintrail".into(), name: "accounts".into(), replica_identity: b'd', columns }
    }

    fn text(s: &str) -> Datum {
        Datum::Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn insert(id: u64) -> Message {
        Message::Insert { rel: OID, new: vec![text(&id.to_string()), text("ann"), text("ann@x.test"), text("s3cret")] }
    }

    /// A transaction of inserts (ids), whole: Begin, the changes, Commit at `now`.
    fn txn(s: &mut Stream<'_>, final_lsn: u64, end_lsn: u64, ids: &[u64], now: Instant) -> Vec<String> {
        s.on_begin(final_lsn, 0).unwrap();
        let mut actions = Vec::new();
        for id in ids {
            actions.extend(s.on_data(insert(*id)).unwrap());
        }
        actions.extend(s.on_commit(end_lsn, now).unwrap());
        show(&actions)
    }

    /// Actions in brief: `apply accounts [id@commit_lsn ...]`, `commit LSN`, ...
    fn show(actions: &[Action]) -> Vec<String> {
        let id =
            |c: &Change| format!("{}@{}", String::from_utf8_lossy(c.row[0].as_text().unwrap_or(b"?")), c.commit_lsn);
        actions
            .iter()
            .map(|a| match a {
                Action::Begin => "begin".to_owned(),
                Action::EnsureTable(s) => format!("ensure {} ({} columns)", s.name, s.columns.len()),
                Action::Apply { shape, changes, upsert_all } => format!(
                    "apply {} [{}]{}",
                    shape.name,
                    changes.iter().map(id).collect::<Vec<_>>().join(" "),
                    if *upsert_all { " as upserts" } else { "" }
                ),
                Action::Truncate { shape, .. } => format!("truncate {}", shape.name),
                Action::Commit { lsn, .. } => format!("commit {lsn}"),
                Action::Rollback => "rollback".to_owned(),
                Action::Confirm(lsn) => format!("confirm {lsn}"),
                Action::WithheldTable(t) => format!("withheld table {t}"),
                Action::WithheldColumns { table, columns } => format!("withheld {table}: {}", columns.join(", ")),
            })
            .collect()
    }

    fn relate(s: &mut Stream<'_>, country_added: bool) -> Vec<String> {
        show(&s.on_data(Message::Relation(relation(country_added))).unwrap())
    }

    #[test]
    fn a_commit_after_commit_interval_commits_the_sink_with_its_end_lsn() {
        let f = Fixture::new();
        let mut s = f.stream(100, Duration::from_millis(200), 100);
        assert_eq!(relate(&mut s, false), ["withheld accounts: secret"]);
        // The first commit waits for company: the sink commits at most every 200 ms.
        assert!(txn(&mut s, 150, 160, &[1], f.at(0)).is_empty());
        assert_eq!(s.recv_timeout(f.at(50)), Duration::from_millis(150));
        assert!(txn(&mut s, 170, 180, &[2], f.at(150)).is_empty());
        // The commit that arrives once the oldest pending one waited 200 ms commits both,
        // with the end LSN of the last, and confirms exactly that.
        assert_eq!(
            txn(&mut s, 190, 200, &[3], f.at(200)),
            ["begin", "apply accounts [1@150 2@170 3@190]", "commit 200", "confirm 200"]
        );
        assert_eq!(s.state().lsn, 200);
        assert_eq!(s.confirmed_lsn(), 200);
        assert_eq!((s.rows_streamed(), s.txns_streamed()), (3, 3));
        assert_eq!(s.recv_timeout(f.at(200)), QUIET_WAIT, "nothing pending");
    }

    #[test]
    fn the_sink_commit_carries_the_oldest_pending_commit_time_as_the_lag_sample() {
        let f = Fixture::new();
        let mut s = f.stream(100, Duration::ZERO, 100);
        relate(&mut s, false);
        s.on_begin(150, 7).unwrap();
        s.on_data(insert(1)).unwrap();
        let actions = s.on_commit(160, f.at(0)).unwrap();
        assert!(
            actions.contains(&Action::Commit { lsn: 160, oldest_commit_ts_us: Some(7 + PG_EPOCH_OFFSET_US) }),
            "{actions:?}"
        );
    }

    #[test]
    fn a_quiet_stream_commits_what_is_complete_and_nothing_of_an_open_transaction() {
        let f = Fixture::new();
        let mut s = f.stream(100, HOUR, 100);
        relate(&mut s, false);
        assert!(txn(&mut s, 150, 160, &[1], f.at(0)).is_empty());
        s.on_begin(170, 0).unwrap();
        s.on_data(insert(2)).unwrap();
        assert!(s.on_quiet().unwrap().is_empty(), "never inside a transaction");
        s.on_commit(180, f.at(1)).unwrap();
        assert_eq!(
            show(&s.on_quiet().unwrap()),
            ["begin", "apply accounts [1@150 2@170]", "commit 180", "confirm 180"]
        );
        assert!(s.on_quiet().unwrap().is_empty(), "nothing left");
    }

    #[test]
    fn a_transaction_split_across_batches_is_never_half_confirmed() {
        let f = Fixture::new();
        let mut s = f.stream(2, HOUR, 100);
        relate(&mut s, false);
        assert!(txn(&mut s, 110, 120, &[1], f.at(0)).is_empty());
        // A large transaction fills the buffer: the complete one before it is committed
        // first, on its own; then the large one goes into an open sink transaction.
        s.on_begin(200, 0).unwrap();
        assert_eq!(
            show(&s.on_data(insert(2)).unwrap()),
            ["begin", "apply accounts [1@110]", "commit 120", "confirm 120", "begin", "apply accounts [2@200]"]
        );
        assert!(s.on_data(insert(3)).unwrap().is_empty());
        assert_eq!(show(&s.on_data(insert(4)).unwrap()), ["apply accounts [3@200 4@200]"], "no begin, no commit");
        // Neither a keepalive nor a heartbeat confirms past what the sink committed.
        assert!(s.on_keepalive(500).is_empty());
        assert!(s.on_logical_message(false, 501).is_empty());
        assert_eq!((s.state().lsn, s.confirmed_lsn()), (120, 120));
        s.on_data(insert(5)).unwrap();
        // Its commit does not commit the sink at once (commit_interval): still not confirmed.
        assert!(s.on_commit(210, f.at(1)).unwrap().is_empty());
        assert!(s.on_keepalive(600).is_empty());
        assert_eq!(s.confirmed_lsn(), 120);
        assert_eq!(show(&s.on_quiet().unwrap()), ["apply accounts [5@200]", "commit 210", "confirm 210"]);
        assert_eq!(s.rows_streamed(), 5);
    }

    #[test]
    fn shutdown_drops_the_open_transaction_and_commits_the_complete_ones() {
        let f = Fixture::new();
        // Inside a large transaction: its partial sink transaction is rolled back.
        let mut s = f.stream(2, HOUR, 100);
        relate(&mut s, false);
        txn(&mut s, 110, 120, &[1], f.at(0));
        s.on_begin(200, 0).unwrap();
        s.on_data(insert(2)).unwrap();
        s.on_data(insert(3)).unwrap();
        assert_eq!(show(&s.shutdown().unwrap()), ["rollback"]);
        assert_eq!((s.state().lsn, s.confirmed_lsn()), (120, 120));
        // Inside a small transaction: the complete ones before it are committed without it.
        let mut s = f.stream(100, HOUR, 100);
        relate(&mut s, false);
        txn(&mut s, 110, 120, &[1], f.at(0));
        s.on_begin(200, 0).unwrap();
        s.on_data(insert(2)).unwrap();
        assert_eq!(show(&s.shutdown().unwrap()), ["begin", "apply accounts [1@110]", "commit 120", "confirm 120"]);
    }

    #[test]
    fn stop_at_lsn_stops_after_the_commit_that_reaches_it() {
        let f = Fixture::new();
        let mut s = f.stream(100, HOUR, 100);
        s.limits.stop_at_lsn = Some(300);
        relate(&mut s, false);
        txn(&mut s, 240, 250, &[1], f.at(0));
        assert!(!s.stop_reached());
        s.on_begin(290, 0).unwrap();
        s.on_data(insert(2)).unwrap();
        assert!(!s.stop_reached(), "never inside a transaction");
        s.on_commit(300, f.at(1)).unwrap();
        assert!(s.stop_reached());
        assert_eq!(show(&s.flush().unwrap()), ["begin", "apply accounts [1@240 2@290]", "commit 300", "confirm 300"]);
        // A marker message (non-transactional) at or past the stop position stops too.
        let mut s = f.stream(100, HOUR, 100);
        s.limits.stop_at_lsn = Some(300);
        s.on_logical_message(true, 400);
        assert!(!s.stop_reached(), "a transactional message is not a position");
        s.on_logical_message(false, 400);
        assert!(s.stop_reached());
    }

    #[test]
    fn keepalive_with_reply_requested_carries_the_confirmed_lsn_not_a_newer_one() {
        let f = Fixture::new();
        let mut s = f.stream(100, HOUR, 100);
        relate(&mut s, false);
        // Nothing pending: the server's position is confirmed (unpublished changes pass).
        assert_eq!(show(&s.on_keepalive(150)), ["confirm 150"]);
        assert_eq!(s.confirmed_lsn(), 150);
        // A transaction open, then complete but not in the sink: the reply the transport
        // sends carries the confirmed LSN, which stays put.
        s.on_begin(160, 0).unwrap();
        s.on_data(insert(1)).unwrap();
        assert!(s.on_keepalive(900).is_empty());
        s.on_commit(170, f.at(0)).unwrap();
        assert!(s.on_keepalive(900).is_empty());
        assert_eq!(s.confirmed_lsn(), 150);
        assert_eq!(s.lag_bytes(), 900 - 170);
        assert_eq!(show(&s.flush().unwrap()), ["begin", "apply accounts [1@160]", "commit 170", "confirm 170"]);
        // A heartbeat between transactions with nothing pending is confirmed like a keepalive.
        assert_eq!(show(&s.on_logical_message(false, 950)), ["confirm 950"]);
        assert_eq!(s.confirmed_lsn(), 950);
    }

    #[test]
    fn transactions_the_sink_already_holds_are_skipped() {
        let f = Fixture::new();
        let mut s = f.stream(100, Duration::ZERO, 500);
        relate(&mut s, false);
        assert!(txn(&mut s, 400, 450, &[1, 2], f.at(0)).is_empty());
        assert!(s.on_quiet().unwrap().is_empty());
        assert_eq!((s.rows_streamed(), s.txns_streamed(), s.state().lsn), (0, 0, 500));
        // The first transaction at or after the sink's position is applied.
        assert_eq!(
            txn(&mut s, 500, 520, &[3], f.at(1)),
            ["begin", "apply accounts [3@500]", "commit 520", "confirm 520"]
        );
    }

    #[test]
    fn a_schema_change_applies_between_the_changes_around_it() {
        let f = Fixture::new();
        let mut s = f.stream(100, HOUR, 100);
        relate(&mut s, false);
        s.on_begin(150, 0).unwrap();
        s.on_data(insert(1)).unwrap();
        assert_eq!(relate(&mut s, true), ["withheld accounts: secret"]);
        s.on_data(Message::Insert {
            rel: OID,
            new: vec![text("2"), text("bo"), text("bo@x.test"), text("s"), text("NL")],
        })
        .unwrap();
        s.on_commit(160, f.at(0)).unwrap();
        let actions = s.flush().unwrap();
        assert_eq!(
            show(&actions),
            [
                "begin",
                "apply accounts [1@150]",
                "ensure accounts (4 columns)",
                "apply accounts [2@150]",
                "commit 160",
                "confirm 160"
            ]
        );
        let columns: Vec<usize> = actions
            .iter()
            .filter_map(|a| if let Action::Apply { shape, .. } = a { Some(shape.columns.len()) } else { None })
            .collect();
        assert_eq!(columns, [3, 4], "each batch under the shape of its time");
        // The same shape again is no schema change.
        s.on_begin(170, 0).unwrap();
        relate(&mut s, true);
        s.on_commit(180, f.at(1)).unwrap();
        assert!(!show(&s.flush().unwrap()).iter().any(|a| a.starts_with("ensure")));
    }

    #[test]
    fn tables_outside_the_policy_are_withheld_with_their_changes() {
        let f = Fixture::new();
        let mut s = f.stream(100, Duration::ZERO, 100);
        let mut other = relation(false);
        other.name = "unlisted".into();
        assert_eq!(show(&s.on_data(Message::Relation(other)).unwrap()), ["withheld table fintrail.unlisted"]);
        let mut other_schema = relation(false);
        other_schema.namespace = "public".into();
        assert_eq!(show(&s.on_data(Message::Relation(other_schema)).unwrap()), ["withheld table public.accounts"]);
        // The relation is unknown now: its changes never reach the buffer.
        assert!(txn(&mut s, 150, 160, &[1], f.at(0)).is_empty());
        assert_eq!(s.rows_streamed(), 0);
        assert_eq!(show(&s.on_keepalive(170)), ["confirm 170"]);
    }

    #[test]
    fn a_heartbeat_is_due_after_the_interval_without_a_commit_and_never_inside_a_transaction() {
        let f = Fixture::new();
        let mut s = f.stream(100, HOUR, 100);
        assert!(!s.heartbeat_due(f.at(9_999)));
        assert!(s.heartbeat_due(f.at(10_000)));
        assert!(!s.heartbeat_due(f.at(10_001)), "the interval starts again");
        s.on_begin(150, 0).unwrap();
        assert!(!s.heartbeat_due(f.at(30_000)));
        s.on_commit(160, f.at(30_000)).unwrap();
        assert!(!s.heartbeat_due(f.at(39_999)));
        assert!(s.heartbeat_due(f.at(40_000)));
    }

    #[test]
    fn the_snapshot_catch_up_window_is_applied_as_upserts() {
        let f = Fixture::new();
        let mut s = f.stream(100, Duration::ZERO, 100);
        s.state.catchup_until = 300;
        relate(&mut s, false);
        assert_eq!(txn(&mut s, 150, 200, &[1], f.at(0))[1], "apply accounts [1@150] as upserts");
        // Conservative: the batch after the sink reached 200 may still hold the window.
        assert_eq!(txn(&mut s, 350, 400, &[2], f.at(1))[1], "apply accounts [2@350] as upserts");
        assert_eq!(txn(&mut s, 450, 500, &[3], f.at(2))[1], "apply accounts [3@450]");
    }

    #[test]
    fn protocol_errors_stop_the_stream() {
        let f = Fixture::new();
        let mut s = f.stream(100, HOUR, 100);
        assert!(s.on_commit(110, f.at(0)).is_err());
        assert!(s.on_data(insert(1)).is_err(), "a change outside a transaction");
        s.on_begin(150, 0).unwrap();
        assert!(s.on_begin(150, 0).is_err());
        let boundary = Message::Begin { final_lsn: 1, commit_ts_us: 0, xid: 1 };
        assert!(s.on_data(boundary).is_err());
        let mut keyless = relation(false);
        keyless.columns[0].key = false;
        let e = s.on_data(Message::Relation(keyless)).unwrap_err().to_string();
        assert!(e.contains("no key column"), "{e}");
    }

    /// One step of a generated run.
    #[derive(Debug, Clone)]
    enum Step {
        /// A whole transaction of this many inserts, its commit arriving after `ms`.
        Txn {
            rows: usize,
            ms: u64,
        },
        Keepalive,
        Heartbeat,
        Quiet,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0usize..7, 0u64..300).prop_map(|(rows, ms)| Step::Txn { rows, ms }),
            1 => Just(Step::Keepalive),
            1 => Just(Step::Heartbeat),
            1 => Just(Step::Quiet),
        ]
    }

    /// The sink as the actions leave it: what is committed, and up to which LSN.
    #[derive(Default)]
    struct ModelSink {
        open: Vec<(u64, u64)>,
        durable: Vec<(u64, u64)>,
        durable_lsn: u64,
        confirmed_lsn: u64,
    }

    impl ModelSink {
        /// Carries out `actions`; `complete`: (end LSN, the transaction's (id, final LSN)s) of
        /// every transaction received whole so far.
        fn run(&mut self, actions: Vec<Action>, complete: &[(u64, Vec<(u64, u64)>)]) -> Result<(), TestCaseError> {
            for a in actions {
                match a {
                    Action::Begin => prop_assert!(self.open.is_empty()),
                    Action::Apply { changes, .. } => self.open.extend(changes.iter().map(|c| {
                        let id = String::from_utf8_lossy(c.row[0].as_text().unwrap()).parse::<u64>().unwrap();
                        (id, c.commit_lsn)
                    })),
                    Action::Commit { lsn, .. } => {
                        prop_assert!(lsn >= self.durable_lsn, "the sink's LSN went back");
                        self.durable.append(&mut self.open);
                        self.durable_lsn = lsn;
                        // Exactly the whole transactions that end at or before the LSN.
                        let want: Vec<(u64, u64)> =
                            complete.iter().filter(|(end, _)| *end <= lsn).flat_map(|(_, r)| r.clone()).collect();
                        prop_assert_eq!(&self.durable, &want);
                    }
                    Action::Rollback => self.open.clear(),
                    Action::Confirm(lsn) => {
                        // Confirmed means durable: every transaction up to it is in the sink.
                        let held = complete.iter().filter(|(end, _)| *end <= lsn).map(|(_, r)| r.len()).sum::<usize>();
                        prop_assert_eq!(held, self.durable.len(), "confirmed {} beyond the sink", lsn);
                        self.confirmed_lsn = self.confirmed_lsn.max(lsn);
                    }
                    other => prop_assert!(false, "unexpected {:?}", other),
                }
            }
            Ok(())
        }
    }

    proptest! {
        #![proptest_config(fintrail_testseed::proptest_config!())]
        #[test]
        fn whatever_the_batching_only_whole_committed_transactions_are_confirmed(
            steps in proptest::collection::vec(step(), 1..40),
            batch_rows_max in 1usize..6,
            commit_interval_ms in 0u64..500,
            stop_inside in any::<bool>(),
        ) {
            let f = Fixture::new();
            let mut s = f.stream(batch_rows_max, Duration::from_millis(commit_interval_ms), 100);
            relate(&mut s, false);
            let (mut sink, mut complete) = (ModelSink::default(), Vec::new());
            let (mut lsn, mut id, mut ms) = (100u64, 0u64, 0u64);
            for st in &steps {
                let actions = match st {
                    Step::Txn { rows, ms: wait } => {
                        let final_lsn = lsn + 10;
                        s.on_begin(final_lsn, 0).unwrap();
                        let mut rows_of_txn = Vec::new();
                        for _ in 0..*rows {
                            id += 1;
                            rows_of_txn.push((id, final_lsn));
                            sink.run(s.on_data(insert(id)).unwrap(), &complete)?;
                        }
                        lsn = final_lsn + 5;
                        complete.push((lsn, rows_of_txn));
                        ms += wait;
                        s.on_commit(lsn, f.at(ms)).unwrap()
                    }
                    Step::Keepalive => s.on_keepalive(lsn + 1),
                    Step::Heartbeat => s.on_logical_message(false, lsn + 2),
                    Step::Quiet => s.on_quiet().unwrap(),
                };
                sink.run(actions, &complete)?;
                prop_assert!(s.confirmed_lsn() >= sink.confirmed_lsn);
            }
            if stop_inside {
                // Stop inside a transaction that spans batches: none of it may stay.
                s.on_begin(lsn + 10, 0).unwrap();
                for _ in 0..(2 * batch_rows_max) {
                    id += 1;
                    sink.run(s.on_data(insert(id)).unwrap(), &complete)?;
                }
            }
            sink.run(s.shutdown().unwrap(), &complete)?;
            prop_assert!(sink.open.is_empty());
            let all: Vec<(u64, u64)> = complete.iter().flat_map(|(_, r)| r.clone()).collect();
            prop_assert_eq!(&sink.durable, &all, "every complete transaction is in the sink after the stop");
        }
    }
}
