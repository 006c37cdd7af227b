//! Sinks behind one trait: [`duck`] (the DuckDB file, the default) and [`bigquery`]
//! (production: BigQuery's REST API). The invariant every sink keeps: the data of a source
//! transaction and the position (LSN) it brings the sink to become durable together, or not at
//! all (DuckDB: one DuckDB transaction; BigQuery: rows staged first, then one multi-statement
//! transaction merges them and writes the state row). The pipeline confirms an LSN to
//! PostgreSQL only after `commit` returned.
//!
//! Also here, shared by the sinks: [`NetBatch`], the net effect of a batch per key.

pub mod bigquery;
pub mod duck;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::model::{key_of, Cell, Change, Op, TableShape};

/// Where the pipeline is, stored in the sink atomically with the data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkState {
    /// `snapshot` while the initial copy runs, then `streaming`.
    pub phase: Phase,
    /// Snapshot: the slot's consistent point. Streaming: end LSN of the last applied commit.
    pub lsn: u64,
    /// The slot this state belongs to (a state for another slot is not resumed).
    pub slot: String,
    /// Snapshot chunks already in the sink: (table, chunk number).
    pub chunks_done: BTreeSet<(String, u64)>,
    /// After a snapshot resumed with a newer snapshot than the slot's, transactions that
    /// commit at or before this LSN may already be in the copied rows: apply them as upserts.
    pub catchup_until: u64,
    /// Rows copied by the snapshot (for status).
    pub snapshot_rows: u64,
    /// How each table is split into snapshot chunks (fixed at the first attempt, so a
    /// resumed snapshot means the same chunks).
    #[serde(default)]
    pub plans: BTreeMap<String, crate::snapshot::ChunkPlan>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    #[default]
    Snapshot,
    Streaming,
}

/// What the sink needs to know about a column it may have to remove: may it stay?
pub type ColumnAllowed<'a> = &'a dyn Fn(&str) -> bool;

pub trait Sink: Send {
    /// The last committed state, `None` for a sink that never ran.
    fn load_state(&mut self) -> anyhow::Result<Option<SinkState>>;
    /// Create the table or bring it to `shape` (added columns). Columns the sink holds that
    /// `allowed` refuses (the policy now withholds them) are removed. A type change that
    /// cannot be applied is an error.
    fn ensure_table(&mut self, shape: &TableShape, allowed: ColumnAllowed<'_>) -> anyhow::Result<()>;
    fn begin(&mut self) -> anyhow::Result<()>;
    /// Apply a bounded batch of changes (in source order) inside the open transaction.
    /// `upsert_all`: inserts may meet an existing row (snapshot catch-up window).
    fn apply(&mut self, shape: &TableShape, changes: &[Change], upsert_all: bool) -> anyhow::Result<()>;
    fn truncate(&mut self, shape: &TableShape, commit_lsn: u64, seq: u32, commit_ts_us: i64) -> anyhow::Result<()>;
    /// Snapshot rows (current state only; no history).
    fn load_rows(&mut self, shape: &TableShape, rows: &[Vec<Cell>]) -> anyhow::Result<()>;
    /// Write `state` and commit, atomically with everything since `begin`.
    fn commit(&mut self, state: &SinkState) -> anyhow::Result<()>;
    fn rollback(&mut self) -> anyhow::Result<()>;
    /// The DuckDB sink (analytical views); `None` for other sinks.
    fn as_duck(&mut self) -> Option<&duck::DuckSink> {
        None
    }
    /// A second, owned handle on the same store, for the streaming phase's apply thread
    /// (the pipeline then uses only that handle until it returns, and joins the thread before
    /// it does, also when it is dropped). `None`: the sink is applied on the pipeline's task.
    /// The handle starts with no transaction open.
    fn fork(&mut self) -> anyhow::Result<Option<Box<dyn Sink>>> {
        Ok(None)
    }
}

/// The net effect of a batch on each key, in Rust, before touching the sink: bounded by the
/// batch size. Unchanged TOAST cells are carried forward from an earlier change to the same
/// key in the batch; the rest stay `Unchanged` for the sink to fill from its current row.
#[derive(Debug, Default)]
pub struct NetBatch {
    /// key -> (final row or None for delete, touched an existing row?)
    pub order: Vec<Vec<u8>>,
    pub rows: HashMap<Vec<u8>, NetRow>,
}

#[derive(Debug, Clone)]
pub struct NetRow {
    /// None: deleted. Some: the row to hold (may still contain `Unchanged`).
    pub row: Option<Vec<Cell>>,
    /// The key row (for deletes: to find the row in the sink).
    pub key_row: Vec<Cell>,
    /// Whether the sink's existing row for this key must be removed first.
    pub replaces: bool,
}

impl NetBatch {
    pub fn build(shape: &TableShape, changes: &[Change], upsert_all: bool) -> NetBatch {
        let key_idx = shape.key_indexes();
        let mut nb = NetBatch::default();
        for ch in changes {
            match ch.op {
                Op::Insert | Op::Update => {
                    let mut row = ch.row.clone();
                    let mut prior: Option<&NetRow> = None;
                    if let Some(old) = &ch.old_key {
                        let ok = key_of(old, &key_idx);
                        let nk = key_of(&row, &key_idx);
                        if ok != nk {
                            // Key changed: carry unchanged values from the old key's row.
                            let old_entry = nb.rows.get(&ok).cloned();
                            nb.put(ok, NetRow { row: None, key_row: old.clone(), replaces: true });
                            if let Some(e) = old_entry {
                                fill_unchanged(&mut row, e.row.as_deref());
                            }
                        }
                    }
                    let k = key_of(&row, &key_idx);
                    if let Some(p) = nb.rows.get(&k) {
                        prior = Some(p);
                    }
                    if let Some(p) = prior {
                        fill_unchanged(&mut row, p.row.as_deref());
                    }
                    let replaces = match prior {
                        Some(p) => p.replaces || p.row.is_none(),
                        None => upsert_all || ch.op == Op::Update,
                    };
                    let key_row = row.clone();
                    nb.put(k, NetRow { row: Some(row), key_row, replaces });
                }
                Op::Delete => {
                    let k = key_of(&ch.row, &key_idx);
                    nb.put(k, NetRow { row: None, key_row: ch.row.clone(), replaces: true });
                }
            }
        }
        nb
    }

    fn put(&mut self, k: Vec<u8>, r: NetRow) {
        if self.rows.insert(k.clone(), r).is_none() {
            self.order.push(k);
        }
    }
}

fn fill_unchanged(row: &mut [Cell], prior: Option<&[Cell]>) {
    let Some(prior) = prior else { return };
    for (c, p) in row.iter_mut().zip(prior) {
        if *c == Cell::Unchanged {
            *c = p.clone();
        }
    }
}
