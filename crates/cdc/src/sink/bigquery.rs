//! The BigQuery sink (production): Storage Write API change data capture. Each row carries
//! `_CHANGE_TYPE` (`UPSERT` / `DELETE`) and `_CHANGE_SEQUENCE_NUMBER` derived from the source
//! commit LSN and the change's ordinal in its transaction, so BigQuery applies changes in
//! source order whatever order they arrive in, and a replayed change is a no-op.
//!
//! BigQuery has no multi-table transaction, so exactly-once *effect* comes from idempotence:
//! data rows first, then the state row (LSN); after a crash the pipeline replays from the
//! last stored LSN and the replayed rows carry the same sequence numbers (greatest wins).
//!
//! The service cannot be reached from here: the transport is the [`BigQueryWriter`] trait,
//! and [`FakeBigQuery`] (a fake, named as one) implements BigQuery's documented CDC apply
//! semantics for tests. The crate documentation (`lib.rs`) says how to run against the real service.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Map, Value};

use super::{ColumnAllowed, Sink, SinkState};
use crate::model::{key_of, Cell, Change, Op, SinkType, TableShape};

/// The state table (one row, key `id = 1`).
pub const STATE_TABLE: &str = "_fintrail_cdc_state";
/// Rows per AppendRows request (the API limits a request to 10 MB).
pub const MAX_ROWS_PER_REQUEST: usize = 500;

/// `_CHANGE_SEQUENCE_NUMBER`: fixed-width upper-case hex sections separated by '/', so the
/// string order BigQuery uses equals the (commit LSN, ordinal) order.
pub fn change_sequence_number(commit_lsn: u64, seq: u32) -> String {
    format!("{commit_lsn:016X}/{seq:08X}")
}

/// BigQuery column type for a sink type.
pub fn bq_type(t: SinkType) -> &'static str {
    match t {
        SinkType::Boolean => "BOOL",
        SinkType::SmallInt | SinkType::Integer | SinkType::BigInt => "INT64",
        SinkType::Real | SinkType::Double => "FLOAT64",
        SinkType::Decimal(..) => "BIGNUMERIC",
        SinkType::Date => "DATE",
        SinkType::Timestamp => "DATETIME",
        SinkType::TimestampTz => "TIMESTAMP",
        SinkType::Varchar | SinkType::Uuid => "STRING",
    }
}

/// The transport: what the real client (Storage Write API + a DDL/DML job runner) provides.
pub trait BigQueryWriter: Send {
    /// `CREATE TABLE IF NOT EXISTS ... (cols, PRIMARY KEY (keys) NOT ENFORCED)
    /// OPTIONS (max_staleness = ...)`, or `ALTER TABLE ADD COLUMN` for new columns.
    fn ensure_table(&mut self, table: &str, columns: &[(String, &'static str)], keys: &[String]) -> anyhow::Result<()>;
    /// One AppendRows request on the table's default stream (CDC rows as JSON).
    fn append_rows(&mut self, table: &str, rows: Vec<Value>) -> anyhow::Result<()>;
    /// A `TRUNCATE TABLE` DML job.
    fn truncate(&mut self, table: &str) -> anyhow::Result<()>;
    /// The current row of a table by key (used only to read the state row).
    fn read_row(&mut self, table: &str, key: &Value) -> anyhow::Result<Option<Value>>;
}

pub struct BigQuerySink<W: BigQueryWriter> {
    pub writer: W,
    in_txn: bool,
    known: HashMap<String, TableShape>,
}

impl<W: BigQueryWriter> BigQuerySink<W> {
    pub fn new(writer: W) -> Self {
        BigQuerySink { writer, in_txn: false, known: HashMap::new() }
    }

    fn cell_json(ty: SinkType, c: &Cell) -> Value {
        match c {
            Cell::Null | Cell::Unchanged => Value::Null,
            Cell::Text(b) => {
                let s = String::from_utf8_lossy(b);
                match ty {
                    SinkType::Boolean => Value::Bool(s == "t" || s == "true"),
                    _ => Value::String(s.into_owned()),
                }
            }
        }
    }

    /// The CDC request rows for a batch, in source order.
    pub fn rows_for(shape: &TableShape, changes: &[Change]) -> anyhow::Result<Vec<Value>> {
        let key_idx = shape.key_indexes();
        let mut out = Vec::with_capacity(changes.len());
        let row_obj = |cells: &[Cell], only_key: bool, kind: &str, csn: String| {
            let mut m = Map::new();
            for (i, (col, c)) in shape.columns.iter().zip(cells).enumerate() {
                if !only_key || key_idx.contains(&i) {
                    m.insert(col.name.clone(), Self::cell_json(col.ty, c));
                }
            }
            m.insert("_CHANGE_TYPE".into(), Value::String(kind.into()));
            m.insert("_CHANGE_SEQUENCE_NUMBER".into(), Value::String(csn));
            Value::Object(m)
        };
        for ch in changes {
            let csn = change_sequence_number(ch.commit_lsn, ch.seq);
            match ch.op {
                Op::Delete => out.push(row_obj(&ch.row, true, "DELETE", csn)),
                Op::Insert | Op::Update => {
                    if let Some((i, _)) = ch.row.iter().enumerate().find(|(_, c)| **c == Cell::Unchanged) {
                        anyhow::bail!(
                            "cannot apply an update to {} in BigQuery: column {} is an unchanged TOAST value and BigQuery \
                             UPSERT replaces whole rows; set REPLICA IDENTITY FULL on the source table",
                            shape.name,
                            shape.columns[i].name
                        );
                    }
                    if let Some(old) = &ch.old_key {
                        if key_of(old, &key_idx) != key_of(&ch.row, &key_idx) {
                            // Key changed: delete the old identity first (same sequence number
                            // is fine: different primary keys).
                            out.push(row_obj(old, true, "DELETE", csn.clone()));
                        }
                    }
                    out.push(row_obj(&ch.row, false, "UPSERT", csn));
                }
            }
        }
        Ok(out)
    }
}

impl<W: BigQueryWriter> Sink for BigQuerySink<W> {
    fn load_state(&mut self) -> anyhow::Result<Option<SinkState>> {
        self.writer.ensure_table(STATE_TABLE, &[("id".into(), "INT64"), ("state".into(), "STRING")], &["id".into()])?;
        match self.writer.read_row(STATE_TABLE, &json!("1"))? {
            None => Ok(None),
            Some(v) => {
                let s = v
                    .get("state")
                    .and_then(Value::as_str)
                    .ok_or_else(|| anyhow::anyhow!("BigQuery state row has no state"))?;
                Ok(Some(serde_json::from_str(s)?))
            }
        }
    }

    fn ensure_table(&mut self, shape: &TableShape, _allowed: ColumnAllowed<'_>) -> anyhow::Result<()> {
        let cols: Vec<(String, &'static str)> = shape.columns.iter().map(|c| (c.name.clone(), bq_type(c.ty))).collect();
        let keys: Vec<String> = shape.columns.iter().filter(|c| c.key).map(|c| c.name.clone()).collect();
        anyhow::ensure!(!keys.is_empty(), "BigQuery CDC needs a primary key on {}", shape.name);
        self.writer.ensure_table(&shape.name, &cols, &keys)?;
        self.known.insert(shape.name.clone(), shape.clone());
        Ok(())
    }

    fn begin(&mut self) -> anyhow::Result<()> {
        assert!(!self.in_txn, "sink transaction already open");
        self.in_txn = true;
        Ok(())
    }

    fn apply(&mut self, shape: &TableShape, changes: &[Change], _upsert_all: bool) -> anyhow::Result<()> {
        assert!(self.in_txn, "apply outside a sink transaction");
        let rows = Self::rows_for(shape, changes)?;
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let req: Vec<Value> = rows.by_ref().take(MAX_ROWS_PER_REQUEST).collect();
            self.writer.append_rows(&shape.name, req)?;
        }
        Ok(())
    }

    fn truncate(&mut self, shape: &TableShape, _lsn: u64, _seq: u32, _ts: i64) -> anyhow::Result<()> {
        self.writer.truncate(&shape.name)
    }

    fn load_rows(&mut self, shape: &TableShape, rows: &[Vec<Cell>]) -> anyhow::Result<()> {
        // Snapshot rows: UPSERTs with sequence number 0/0, so any streamed change wins.
        let changes: Vec<Change> = rows
            .iter()
            .map(|r| Change { op: Op::Insert, commit_lsn: 0, seq: 0, commit_ts_us: 0, row: r.clone(), old_key: None })
            .collect();
        self.apply(shape, &changes, true)
    }

    fn commit(&mut self, state: &SinkState) -> anyhow::Result<()> {
        assert!(self.in_txn, "commit without a sink transaction");
        // After the data: the state row. Its own sequence number is the LSN it records.
        let row = json!({
            "id": "1",
            "state": serde_json::to_string(state)?,
            "_CHANGE_TYPE": "UPSERT",
            "_CHANGE_SEQUENCE_NUMBER": change_sequence_number(state.lsn, u32::MAX),
        });
        self.writer.append_rows(STATE_TABLE, vec![row])?;
        self.in_txn = false;
        Ok(())
    }

    fn rollback(&mut self) -> anyhow::Result<()> {
        // Rows already sent stay; they are replayed identically after restart (idempotent).
        self.in_txn = false;
        Ok(())
    }
}

/// A fake BigQuery (tests only; the real service is unreachable here). It checks requests
/// the way the service does and applies CDC rows with BigQuery's documented semantics: per
/// primary key, the row with the greatest `_CHANGE_SEQUENCE_NUMBER` wins; DELETE removes.
#[derive(Debug, Default)]
pub struct FakeBigQuery {
    pub tables: BTreeMap<String, FakeTable>,
    pub requests: usize,
    /// Fail the next N append requests (transport errors).
    pub fail_next: usize,
}

#[derive(Debug, Default, Clone)]
pub struct FakeTable {
    pub columns: Vec<(String, &'static str)>,
    pub keys: Vec<String>,
    /// key -> (sequence number, row or None for deleted)
    pub rows: BTreeMap<String, (String, Option<Map<String, Value>>)>,
}

fn valid_csn(s: &str) -> bool {
    let parts: Vec<&str> = s.split('/').collect();
    !parts.is_empty()
        && parts.len() <= 4
        && parts.iter().all(|p| !p.is_empty() && p.len() <= 16 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// BigQuery compares sequence numbers section by section as integers.
fn csn_key(s: &str) -> Vec<u64> {
    s.split('/').map(|p| u64::from_str_radix(p, 16).unwrap_or(0)).collect()
}

impl FakeTable {
    pub fn live_rows(&self) -> Vec<&Map<String, Value>> {
        self.rows.values().filter_map(|(_, r)| r.as_ref()).collect()
    }
}

impl BigQueryWriter for FakeBigQuery {
    fn ensure_table(&mut self, table: &str, columns: &[(String, &'static str)], keys: &[String]) -> anyhow::Result<()> {
        let t = self.tables.entry(table.to_owned()).or_default();
        for c in columns {
            if let Some(existing) = t.columns.iter().find(|(n, _)| *n == c.0) {
                anyhow::ensure!(existing.1 == c.1, "FakeBigQuery: column {table}.{} changes type", c.0);
            } else {
                t.columns.push(c.clone());
            }
        }
        if t.keys.is_empty() {
            t.keys = keys.to_vec();
        }
        anyhow::ensure!(t.keys == keys, "FakeBigQuery: primary key of {table} changed");
        Ok(())
    }

    fn append_rows(&mut self, table: &str, rows: Vec<Value>) -> anyhow::Result<()> {
        if self.fail_next > 0 {
            self.fail_next -= 1;
            anyhow::bail!("FakeBigQuery: injected transport failure");
        }
        anyhow::ensure!(rows.len() <= MAX_ROWS_PER_REQUEST, "FakeBigQuery: request too large");
        self.requests += 1;
        let t = self.tables.get_mut(table).ok_or_else(|| anyhow::anyhow!("FakeBigQuery: no table {table}"))?;
        for row in rows {
            let mut m = match row {
                Value::Object(m) => m,
                _ => anyhow::bail!("FakeBigQuery: row is not an object"),
            };
            let kind = m.remove("_CHANGE_TYPE").and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
            let csn =
                m.remove("_CHANGE_SEQUENCE_NUMBER").and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
            anyhow::ensure!(valid_csn(&csn), "FakeBigQuery: invalid _CHANGE_SEQUENCE_NUMBER {csn:?}");
            for k in m.keys() {
                anyhow::ensure!(t.columns.iter().any(|(n, _)| n == k), "FakeBigQuery: unknown column {table}.{k}");
            }
            let key = t
                .keys
                .iter()
                .map(|k| {
                    m.get(k)
                        .cloned()
                        .filter(|v| !v.is_null())
                        .ok_or_else(|| anyhow::anyhow!("FakeBigQuery: key {k} missing"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let key = serde_json::to_string(&key)?;
            if let Some((old, _)) = t.rows.get(&key) {
                if csn_key(old) > csn_key(&csn) {
                    continue; // an older change arriving late: BigQuery keeps the newer row
                }
            }
            match kind.as_str() {
                "UPSERT" => {
                    t.rows.insert(key, (csn, Some(m)));
                }
                "DELETE" => {
                    t.rows.insert(key, (csn, None));
                }
                other => anyhow::bail!("FakeBigQuery: invalid _CHANGE_TYPE {other:?}"),
            }
        }
        Ok(())
    }

    fn truncate(&mut self, table: &str) -> anyhow::Result<()> {
        let t = self.tables.get_mut(table).ok_or_else(|| anyhow::anyhow!("FakeBigQuery: no table {table}"))?;
        t.rows.clear();
        Ok(())
    }

    fn read_row(&mut self, table: &str, key: &Value) -> anyhow::Result<Option<Value>> {
        let Some(t) = self.tables.get(table) else { return Ok(None) };
        let key = serde_json::to_string(&vec![key.clone()])?;
        Ok(t.rows.get(&key).and_then(|(_, r)| r.clone()).map(Value::Object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::{ch, t};
    use crate::sink::Phase;
    use proptest::prelude::*;

    fn shape() -> TableShape {
        crate::model::fixtures::shape(
            "wallets",
            &[
                ("id", SinkType::BigInt, true),
                ("currency", SinkType::Varchar, false),
                ("frozen", SinkType::Boolean, false),
            ],
        )
    }
    fn allow(_: &str) -> bool {
        true
    }

    #[test]
    fn cdc_rows_carry_change_type_and_sequence() {
        let rows = BigQuerySink::<FakeBigQuery>::rows_for(
            &shape(),
            &[
                ch(Op::Insert, 0x1A, 0, vec![t("1"), t("EUR"), t("f")]),
                ch(Op::Delete, 0x1B, 3, vec![t("1"), Cell::Null, Cell::Null]),
            ],
        )
        .unwrap();
        assert_eq!(rows[0]["_CHANGE_TYPE"], "UPSERT");
        assert_eq!(rows[0]["_CHANGE_SEQUENCE_NUMBER"], "000000000000001A/00000000");
        assert_eq!(rows[0]["frozen"], false);
        assert_eq!(rows[1]["_CHANGE_TYPE"], "DELETE");
        assert_eq!(rows[1]["_CHANGE_SEQUENCE_NUMBER"], "000000000000001B/00000003");
        assert!(rows[1].get("currency").is_none(), "a DELETE carries only the key");
    }

    #[test]
    fn the_sink_applies_through_the_fake_and_replays_idempotently() {
        let mut s = BigQuerySink::new(FakeBigQuery::default());
        assert_eq!(s.load_state().unwrap(), None);
        s.ensure_table(&shape(), &allow).unwrap();
        let batch1 = vec![
            ch(Op::Insert, 10, 0, vec![t("1"), t("EUR"), t("f")]),
            ch(Op::Insert, 10, 1, vec![t("2"), t("USD"), t("f")]),
        ];
        let mut upd = ch(Op::Update, 20, 0, vec![t("3"), t("USD"), t("t")]);
        upd.old_key = Some(vec![t("2"), Cell::Null, Cell::Null]);
        let batch2 = vec![upd, ch(Op::Delete, 20, 1, vec![t("1"), Cell::Null, Cell::Null])];
        let st = |lsn| SinkState { phase: Phase::Streaming, lsn, slot: "s".into(), ..Default::default() };
        s.begin().unwrap();
        s.apply(&shape(), &batch1, false).unwrap();
        s.commit(&st(11)).unwrap();
        // Crash after sending batch2's data but before its state row: replay both.
        s.begin().unwrap();
        s.apply(&shape(), &batch2, false).unwrap();
        s.rollback().unwrap();
        assert_eq!(s.load_state().unwrap().unwrap().lsn, 11);
        s.begin().unwrap();
        for b in [&batch1, &batch2] {
            s.apply(&shape(), b, false).unwrap();
        }
        s.commit(&st(21)).unwrap();
        let live: Vec<String> =
            s.writer.tables["wallets"].live_rows().iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect();
        assert_eq!(live, vec!["3"]);
        assert_eq!(s.load_state().unwrap().unwrap().lsn, 21);
    }

    #[test]
    fn late_older_changes_lose_and_bad_requests_are_rejected() {
        let mut f = FakeBigQuery::default();
        f.ensure_table("t", &[("id".into(), "INT64"), ("v".into(), "STRING")], &["id".into()]).unwrap();
        f.append_rows(
            "t",
            vec![json!({"id": "1", "v": "new", "_CHANGE_TYPE": "UPSERT", "_CHANGE_SEQUENCE_NUMBER": "2/0"})],
        )
        .unwrap();
        f.append_rows(
            "t",
            vec![json!({"id": "1", "v": "old", "_CHANGE_TYPE": "UPSERT", "_CHANGE_SEQUENCE_NUMBER": "1/FF"})],
        )
        .unwrap();
        assert_eq!(f.tables["t"].live_rows()[0]["v"], "new");
        assert!(f
            .append_rows("t", vec![json!({"id": "1", "_CHANGE_TYPE": "MERGE", "_CHANGE_SEQUENCE_NUMBER": "3"})])
            .is_err());
        assert!(f
            .append_rows("t", vec![json!({"id": "1", "_CHANGE_TYPE": "UPSERT", "_CHANGE_SEQUENCE_NUMBER": "xyz"})])
            .is_err());
        assert!(f
            .append_rows(
                "t",
                vec![json!({"id": "1", "nope": 1, "_CHANGE_TYPE": "UPSERT", "_CHANGE_SEQUENCE_NUMBER": "4"})]
            )
            .is_err());
    }

    #[test]
    fn unchanged_toast_is_a_clear_error_for_bigquery() {
        let e = BigQuerySink::<FakeBigQuery>::rows_for(
            &shape(),
            &[ch(Op::Update, 1, 0, vec![t("1"), Cell::Unchanged, t("f")])],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("REPLICA IDENTITY FULL"), "{e}");
    }

    proptest! {
        #![proptest_config(fintrail_testseed::proptest_config!())]
        #[test]
        fn sequence_numbers_sort_like_the_source(a in any::<(u64, u32)>(), b in any::<(u64, u32)>()) {
            let (sa, sb) = (change_sequence_number(a.0, a.1), change_sequence_number(b.0, b.1));
            prop_assert!(valid_csn(&sa));
            prop_assert_eq!(sa.cmp(&sb), a.cmp(&b));
            prop_assert_eq!(csn_key(&sa).cmp(&csn_key(&sb)), a.cmp(&b));
        }
    }
}
