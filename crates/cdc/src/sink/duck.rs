//! The DuckDB file sink (the embedded default): current-state tables (`main.<t>`), an
//! append-only history (`history.<t>`: one row per change, keyed by commit LSN and ordinal)
//! and the pipeline's state row (`_fintrail_cdc.state`).
//!
//! Invariants held here: `commit(state)` writes the data and the state (LSN) in one DuckDB
//! transaction; an unchanged TOAST value is taken from the sink's current row (or an earlier
//! change to the same key in the batch), and a change that cannot be applied (no such row, an
//! incompatible type change) is an error that stops the pipeline, never a silent loss.

use std::collections::{BTreeSet, HashSet};

use bytes::Bytes;
use duckdb::Connection;

use super::{ColumnAllowed, NetBatch, Sink, SinkState};
use crate::model::{Cell, Change, Op, TableShape};

pub const STATE_SCHEMA: &str = "_fintrail_cdc";
pub const HISTORY_SCHEMA: &str = "history";

pub struct DuckSink {
    conn: Connection,
    in_txn: bool,
}

pub fn q(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

fn stage(table: &str) -> String {
    format!("{STATE_SCHEMA}.{}", q(&format!("stage_{table}")))
}

impl DuckSink {
    pub fn open(path: &std::path::Path) -> anyhow::Result<DuckSink> {
        let conn = Connection::open(path)
            .map_err(|e| anyhow::anyhow!("cannot open the DuckDB file {}: {e}", path.display()))?;
        // DuckDB creates its files with the process umask (0644): the analytics hold customer
        // data, so owner-only (issue 16, item 15). A WAL made later lives in the 0700 home.
        fintrail_db::home::owner_only::restrict(path)?;
        let wal = path.with_extension("duckdb.wal");
        if wal.exists() {
            fintrail_db::home::owner_only::restrict(&wal)?;
        }
        Self::init(conn)
    }

    pub fn open_in_memory() -> anyhow::Result<DuckSink> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> anyhow::Result<DuckSink> {
        conn.execute_batch(&format!(
            "SET TimeZone = 'UTC';
             CREATE SCHEMA IF NOT EXISTS {STATE_SCHEMA};
             CREATE SCHEMA IF NOT EXISTS {HISTORY_SCHEMA};
             CREATE TABLE IF NOT EXISTS {STATE_SCHEMA}.state (id INTEGER PRIMARY KEY, state VARCHAR NOT NULL);"
        ))?;
        Ok(DuckSink { conn, in_txn: false })
    }

    /// DuckDB's work on the calling thread alone (`threads = 1`, for the whole database;
    /// before `analytics::lock_down`). The pipeline's instance runs so: DuckDB's worker pool
    /// cost more CPU than it saved (the sink alone, 1M inserts in 50 000-row commits, 5 runs
    /// each: ~7.9 CPU s with the default, ~5.7 s with one thread) and competed with the
    /// walsender and the receiving side on a small machine.
    pub fn one_thread(&self) -> anyhow::Result<()> {
        self.conn.execute_batch("SET threads = 1")?;
        Ok(())
    }

    /// Another connection to the same database (its own transactions).
    pub fn try_clone(&self) -> anyhow::Result<DuckSink> {
        Ok(DuckSink { conn: self.conn.try_clone()?, in_txn: false })
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    fn columns_of(&self, schema: &str, table: &str) -> anyhow::Result<Vec<(String, String)>> {
        let mut st = self.conn.prepare(
            "SELECT column_name, data_type FROM information_schema.columns
             WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        )?;
        let rows = st.query_map([schema, table], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn col_list(shape: &TableShape) -> String {
        shape.columns.iter().map(|c| q(&c.name)).collect::<Vec<_>>().join(", ")
    }

    fn key_join(shape: &TableShape, a: &str, b: &str) -> String {
        shape
            .columns
            .iter()
            .filter(|c| c.key)
            .map(|c| format!("{a}.{n} = {b}.{n}", n = q(&c.name)))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    fn append<'a>(
        &self,
        schema: &str,
        table: &str,
        columns: &[String],
        rows: impl Iterator<Item = Vec<Param<'a>>>,
    ) -> anyhow::Result<()> {
        let cols: Vec<&str> = columns.iter().map(String::as_str).collect();
        let mut app = self.conn.appender_with_columns_to_db(table, schema, &cols)?;
        for row in rows {
            debug_assert_eq!(row.len(), cols.len());
            app.append_row(duckdb::appender_params_from_iter(row.iter()))?;
        }
        app.flush()?;
        Ok(())
    }

    /// Apply the SQL files of `analytics/views` (CREATE OR REPLACE VIEW ...). A view whose
    /// tables are not there yet is skipped with a warning and retried on the next start.
    pub fn apply_views(&self, views: &[(String, String)]) -> Vec<String> {
        let mut failed = Vec::new();
        for (name, sql) in views {
            if let Err(e) = self.conn.execute_batch(sql) {
                tracing::warn!(view = %name, error = %e, "analytical view not applied");
                failed.push(name.clone());
            }
        }
        failed
    }

    /// The streaming fast path (the common case: new rows only): one pass over the
    /// changes, each row converted once and appended to both the history and the
    /// current-state table through two open appenders, with one reused parameter buffer
    /// (no allocation per row). Measured with `--example sinkbench`: see docs/perf.md.
    fn append_inserts(&self, shape: &TableShape, changes: &[Change]) -> anyhow::Result<()> {
        let n = shape.columns.len();
        let names: Vec<&str> = shape.columns.iter().map(|c| c.name.as_str()).collect();
        let mut hnames = names.clone();
        hnames.extend(["_lsn", "_seq", "_op", "_commit_ts"]);
        let mut main = self.conn.appender_with_columns_to_db(&shape.name, "main", &names)?;
        let mut hist = self.conn.appender_with_columns_to_db(&shape.name, HISTORY_SCHEMA, &hnames)?;
        let mut row: Vec<Param<'_>> = Vec::with_capacity(n + 4);
        for ch in changes {
            assert_eq!(ch.row.len(), n, "change row does not match the shape of {}", shape.name);
            row.clear();
            row.extend(shape.columns.iter().zip(&ch.row).map(|(col, c)| Param::typed(col.ty, c)));
            main.append_row(duckdb::appender_params_from_iter(row.iter()))?;
            row.push(Param::U64(ch.commit_lsn));
            row.push(Param::U64(u64::from(ch.seq)));
            row.push(Param::Text(ch.op.code().as_bytes()));
            row.push(Param::TsMicros(ch.commit_ts_us));
            hist.append_row(duckdb::appender_params_from_iter(row.iter()))?;
        }
        hist.flush()?;
        main.flush()?;
        Ok(())
    }

    /// The general path's history: one row per change, with the columns left unchanged.
    fn append_history(&self, shape: &TableShape, changes: &[Change]) -> anyhow::Result<()> {
        let mut hcols: Vec<String> = shape.columns.iter().map(|c| c.name.clone()).collect();
        hcols.extend(["_lsn", "_seq", "_op", "_commit_ts", "_unchanged"].map(String::from));
        self.append(
            HISTORY_SCHEMA,
            &shape.name,
            &hcols,
            changes.iter().map(|ch| {
                let mut r = typed_row(shape, &ch.row);
                r.reserve(5);
                let unchanged = unchanged_list(shape, &ch.row);
                r.push(Param::U64(ch.commit_lsn));
                r.push(Param::U64(u64::from(ch.seq)));
                r.push(Param::Text(ch.op.code().as_bytes()));
                r.push(Param::TsMicros(ch.commit_ts_us));
                r.push(unchanged.map_or(Param::Null, |u| Param::OwnedText(Bytes::from(u))));
                r
            }),
        )
    }

    /// The general path's current state: the net rows go through the staging table, which
    /// fills unchanged TOAST values from the current rows, then replaces them by key.
    fn merge_stage(&self, shape: &TableShape, staged: Stage<'_>) -> anyhow::Result<()> {
        let mut scols: Vec<String> = shape.columns.iter().map(|c| c.name.clone()).collect();
        scols.extend(["_del", "_unchanged"].map(String::from));
        let stage_name = format!("stage_{}", shape.name);
        self.append(STATE_SCHEMA, &stage_name, &scols, staged.rows.into_iter())?;
        let t = format!("main.{}", q(&shape.name));
        let s = stage(&shape.name);
        let join = Self::key_join(shape, "s", "t");
        if !staged.unresolved_cols.is_empty() {
            self.resolve_unchanged(shape, &staged.unresolved_cols, &t, &s, &join)?;
        }
        if staged.any_replace {
            self.conn.execute_batch(&format!("DELETE FROM {t} AS t USING {s} AS s WHERE {join}"))?;
        }
        let cols = Self::col_list(shape);
        self.conn.execute_batch(&format!(
            "INSERT INTO {t} ({cols}) SELECT {cols} FROM {s} WHERE NOT _del; DELETE FROM {s};"
        ))?;
        Ok(())
    }

    /// Fills the staged rows' unchanged TOAST values from the current-state table `t`; a
    /// staged row with no current row to take them from is an error (never a silent loss).
    fn resolve_unchanged(
        &self,
        shape: &TableShape,
        unresolved_cols: &BTreeSet<usize>,
        t: &str,
        s: &str,
        join: &str,
    ) -> anyhow::Result<()> {
        for i in unresolved_cols {
            let c = q(&shape.columns[*i].name);
            let pat = format!("%,{},%", shape.columns[*i].name);
            self.conn.execute(
                &format!("UPDATE {s} AS s SET {c} = t.{c} FROM {t} AS t WHERE {join} AND s._unchanged LIKE ?"),
                [pat],
            )?;
        }
        let missing: i64 = self.conn.query_row(
            &format!(
                "SELECT count(*) FROM {s} AS s WHERE s._unchanged IS NOT NULL AND NOT s._del
                 AND NOT EXISTS (SELECT 1 FROM {t} AS t WHERE {join})"
            ),
            [],
            |r| r.get(0),
        )?;
        if missing > 0 {
            self.conn.execute_batch(&format!("DELETE FROM {s}"))?;
            anyhow::bail!(
                "cannot apply an update to {}: {missing} row(s) carry an unchanged TOAST value but the sink \
                 has no current row to take it from; stopping instead of dropping data",
                shape.name
            );
        }
        Ok(())
    }
}

/// The net rows of a batch as staging-table rows (the shape's columns, `_del`, `_unchanged`),
/// with what the merge needs to know: does any replace an existing row, and which columns
/// hold unchanged TOAST values to fill in.
struct Stage<'a> {
    rows: Vec<Vec<Param<'a>>>,
    unresolved_cols: BTreeSet<usize>,
    any_replace: bool,
}

impl<'a> Stage<'a> {
    fn of(shape: &TableShape, net: &'a NetBatch) -> Stage<'a> {
        let mut unresolved_cols: BTreeSet<usize> = BTreeSet::new();
        let mut any_replace = false;
        let rows = net
            .order
            .iter()
            .map(|k| {
                let nr = &net.rows[k];
                any_replace |= nr.replaces;
                let (cells, del) = match &nr.row {
                    Some(r) => (r, false),
                    None => (&nr.key_row, true),
                };
                let mut out = typed_row(shape, cells);
                if del {
                    // Only the key is meaningful for a delete.
                    for (i, c) in shape.columns.iter().enumerate() {
                        if !c.key {
                            out[i] = Param::Null;
                        }
                    }
                }
                for (i, c) in cells.iter().enumerate() {
                    if !del && *c == Cell::Unchanged {
                        unresolved_cols.insert(i);
                    }
                }
                out.push(Param::Bool(del));
                out.push(if del {
                    Param::Null
                } else {
                    unchanged_list(shape, cells).map_or(Param::Null, |u| Param::OwnedText(Bytes::from(u)))
                });
                out
            })
            .collect();
        Stage { rows, unresolved_cols, any_replace }
    }
}

fn typed_row<'a>(shape: &TableShape, cells: &'a [Cell]) -> Vec<Param<'a>> {
    shape.columns.iter().zip(cells).map(|(col, c)| Param::typed(col.ty, c)).collect()
}

/// A value handed to the Appender. Integers, booleans, floats and timestamps are parsed
/// in Rust (the Appender's native paths); everything else goes as text without copying
/// and DuckDB casts it (measured: casting text per value was the sink's bottleneck).
/// Borrows text from the change it comes from: no reference count or copy per value.
#[derive(Debug, Clone)]
pub enum Param<'a> {
    Null,
    Text(&'a [u8]),
    OwnedText(Bytes),
    I64(i64),
    U64(u64),
    Bool(bool),
    F64(f64),
    TsMicros(i64),
}

impl<'a> Param<'a> {
    pub fn typed(ty: crate::model::SinkType, c: &'a Cell) -> Param<'a> {
        use crate::model::SinkType as T;
        let Cell::Text(b) = c else { return Param::Null };
        let parsed = match ty {
            T::SmallInt | T::Integer | T::BigInt => parse_i64(b).map(Param::I64),
            T::Boolean => match &b[..] {
                b"t" => Some(Param::Bool(true)),
                b"f" => Some(Param::Bool(false)),
                _ => None,
            },
            T::Real | T::Double => std::str::from_utf8(b).ok().and_then(|s| s.parse::<f64>().ok()).map(Param::F64),
            T::Timestamp | T::TimestampTz => parse_ts_micros(b).map(Param::TsMicros),
            _ => None,
        };
        parsed.unwrap_or(Param::Text(b))
    }
}

impl duckdb::ToSql for Param<'_> {
    fn to_sql(&self) -> duckdb::Result<duckdb::types::ToSqlOutput<'_>> {
        use duckdb::types::{TimeUnit, ToSqlOutput, Value, ValueRef};
        Ok(match self {
            Param::Null => ToSqlOutput::Owned(Value::Null),
            Param::Text(b) => ToSqlOutput::Borrowed(ValueRef::Text(b)),
            Param::OwnedText(b) => ToSqlOutput::Borrowed(ValueRef::Text(b)),
            Param::I64(v) => ToSqlOutput::Borrowed(ValueRef::BigInt(*v)),
            Param::U64(v) => ToSqlOutput::Borrowed(ValueRef::UBigInt(*v)),
            Param::Bool(v) => ToSqlOutput::Borrowed(ValueRef::Boolean(*v)),
            Param::F64(v) => ToSqlOutput::Borrowed(ValueRef::Double(*v)),
            Param::TsMicros(v) => ToSqlOutput::Borrowed(ValueRef::Timestamp(TimeUnit::Microsecond, *v)),
        })
    }
}

fn parse_i64(b: &[u8]) -> Option<i64> {
    let (neg, digits) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_sub(i64::from(d - b'0'))?;
    }
    if neg {
        Some(v)
    } else {
        v.checked_neg()
    }
}

fn num(b: &[u8]) -> Option<i64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    b.iter().try_fold(0i64, |a, d| a.checked_mul(10)?.checked_add(i64::from(d - b'0')))
}

/// PostgreSQL ISO output (`YYYY-MM-DD HH:MM:SS[.ffffff][+HH[:MM]]`) to Unix microseconds.
/// Anything else (BC dates, infinity, odd widths) returns None and goes as text.
pub fn parse_ts_micros(b: &[u8]) -> Option<i64> {
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b' ' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(&b[0..4])?, num(&b[5..7])?, num(&b[8..10])?);
    let (h, mi, s) = (num(&b[11..13])?, num(&b[14..16])?, num(&b[17..19])?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut rest = &b[19..];
    let mut micros = 0i64;
    if rest.first() == Some(&b'.') {
        let end = rest[1..].iter().position(|c| !c.is_ascii_digit()).map_or(rest.len(), |p| p + 1);
        let frac = &rest[1..end];
        if frac.is_empty() || frac.len() > 6 {
            return None;
        }
        micros = num(frac)? * 10i64.pow(6 - frac.len() as u32);
        rest = &rest[end..];
    }
    let mut offset_secs = 0i64;
    if let Some(&sign) = rest.first() {
        if sign != b'+' && sign != b'-' {
            return None;
        }
        let parts: Vec<&[u8]> = rest[1..].split(|c| *c == b':').collect();
        if parts.is_empty() || parts.len() > 3 || parts.iter().any(|p| p.len() != 2) {
            return None;
        }
        let mut secs = num(parts[0])? * 3600;
        if let Some(m) = parts.get(1) {
            secs += num(m)? * 60;
        }
        if let Some(sx) = parts.get(2) {
            secs += num(sx)?;
        }
        offset_secs = if sign == b'-' { -secs } else { secs };
    }
    let days = days_from_civil(y, mo, d);
    Some((days * 86_400 + h * 3600 + mi * 60 + s - offset_secs) * 1_000_000 + micros)
}

/// (year, month, day) to days since 1970-01-01 (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl Sink for DuckSink {
    fn load_state(&mut self) -> anyhow::Result<Option<SinkState>> {
        let mut st = self.conn.prepare(&format!("SELECT state FROM {STATE_SCHEMA}.state WHERE id = 1"))?;
        let mut rows = st.query([])?;
        match rows.next()? {
            None => Ok(None),
            Some(r) => {
                let s: String = r.get(0)?;
                Ok(Some(
                    serde_json::from_str(&s)
                        .map_err(|e| anyhow::anyhow!("the sink's stored CDC state is unreadable: {e}"))?,
                ))
            }
        }
    }

    fn ensure_table(&mut self, shape: &TableShape, allowed: ColumnAllowed<'_>) -> anyhow::Result<()> {
        let existing = self.columns_of("main", &shape.name)?;
        let extra = "_lsn UBIGINT, _seq UINTEGER, _op VARCHAR, _commit_ts TIMESTAMPTZ, _unchanged VARCHAR";
        if existing.is_empty() {
            let defs =
                shape.columns.iter().map(|c| format!("{} {}", q(&c.name), c.ty.sql())).collect::<Vec<_>>().join(", ");
            self.conn.execute_batch(&format!(
                "CREATE TABLE main.{t} ({defs});
                 CREATE TABLE IF NOT EXISTS {HISTORY_SCHEMA}.{t} ({defs}, {extra});
                 CREATE TABLE IF NOT EXISTS {stage} ({defs}, _del BOOLEAN, _unchanged VARCHAR);",
                t = q(&shape.name),
                stage = stage(&shape.name),
            ))?;
            return Ok(());
        }
        for c in &shape.columns {
            match existing.iter().find(|(n, _)| *n == c.name) {
                None => {
                    tracing::info!(table = %shape.name, column = %c.name, "adding column to the sink");
                    for target in [
                        format!("main.{}", q(&shape.name)),
                        format!("{HISTORY_SCHEMA}.{}", q(&shape.name)),
                        stage(&shape.name),
                    ] {
                        self.conn.execute_batch(&format!(
                            "ALTER TABLE {target} ADD COLUMN {} {}",
                            q(&c.name),
                            c.ty.sql()
                        ))?;
                    }
                }
                Some((_, ty)) => {
                    let want = c.ty.sql();
                    let same = ty.eq_ignore_ascii_case(&want)
                        || (want == "TIMESTAMPTZ" && ty.eq_ignore_ascii_case("TIMESTAMP WITH TIME ZONE"));
                    if !same {
                        anyhow::bail!(
                            "cannot apply a schema change: column {}.{} is {ty} in the sink but {want} in the source; \
                             stopping instead of dropping data (run `fintrail cdc reset` to re-snapshot)",
                            shape.name,
                            c.name
                        );
                    }
                }
            }
        }
        // A column the sink holds but the policy now withholds must leave the sink.
        for (name, _) in &existing {
            if !shape.columns.iter().any(|c| c.name == *name) && !allowed(name) {
                tracing::warn!(table = %shape.name, column = %name, "removing a column the policy withholds from the sink");
                for target in [
                    format!("main.{}", q(&shape.name)),
                    format!("{HISTORY_SCHEMA}.{}", q(&shape.name)),
                    stage(&shape.name),
                ] {
                    self.conn.execute_batch(&format!("ALTER TABLE {target} DROP COLUMN IF EXISTS {}", q(name)))?;
                }
            }
        }
        Ok(())
    }

    fn begin(&mut self) -> anyhow::Result<()> {
        assert!(!self.in_txn, "sink transaction already open");
        self.conn.execute_batch("BEGIN TRANSACTION")?;
        self.in_txn = true;
        Ok(())
    }

    fn apply(&mut self, shape: &TableShape, changes: &[Change], upsert_all: bool) -> anyhow::Result<()> {
        assert!(self.in_txn, "apply outside a sink transaction");
        if changes.is_empty() {
            return Ok(());
        }
        if !upsert_all && inserts_of_distinct_new_keys(shape, changes) {
            return self.append_inserts(shape, changes);
        }
        // 1. The append-only history, one row per change.
        self.append_history(shape, changes)?;
        // 2. The net effect per key, then set-based SQL on the current-state table.
        let net = NetBatch::build(shape, changes, upsert_all);
        let staged = Stage::of(shape, &net);
        if !staged.any_replace && staged.unresolved_cols.is_empty() {
            // Fast path (the common case): only new keys, nothing to resolve: the net rows
            // go straight into the current-state table.
            let n = shape.columns.len();
            let names: Vec<String> = shape.columns.iter().map(|c| c.name.clone()).collect();
            let rows = staged.rows.into_iter().map(|mut r| {
                r.truncate(n);
                r
            });
            return self.append("main", &shape.name, &names, rows);
        }
        self.merge_stage(shape, staged)
    }

    fn truncate(&mut self, shape: &TableShape, commit_lsn: u64, seq: u32, commit_ts_us: i64) -> anyhow::Result<()> {
        assert!(self.in_txn, "truncate outside a sink transaction");
        self.conn.execute_batch(&format!("DELETE FROM main.{}", q(&shape.name)))?;
        self.conn.execute(
            &format!(
                "INSERT INTO {HISTORY_SCHEMA}.{} (_lsn, _seq, _op, _commit_ts) VALUES (?, ?, 'T', ?::TIMESTAMPTZ)",
                q(&shape.name)
            ),
            duckdb::params![commit_lsn, seq, format_ts(commit_ts_us)],
        )?;
        Ok(())
    }

    fn load_rows(&mut self, shape: &TableShape, rows: &[Vec<Cell>]) -> anyhow::Result<()> {
        assert!(self.in_txn, "load outside a sink transaction");
        let names: Vec<String> = shape.columns.iter().map(|c| c.name.clone()).collect();
        self.append("main", &shape.name, &names, rows.iter().map(|r| typed_row(shape, r)))
    }

    fn commit(&mut self, state: &SinkState) -> anyhow::Result<()> {
        assert!(self.in_txn, "commit without a sink transaction");
        let json = serde_json::to_string(state)?;
        self.conn.execute(&format!("INSERT OR REPLACE INTO {STATE_SCHEMA}.state (id, state) VALUES (1, ?)"), [json])?;
        self.conn.execute_batch("COMMIT")?;
        self.in_txn = false;
        Ok(())
    }

    /// The streaming phase's handle: a connection of its own. Its session keeps DuckDB's
    /// default time zone (a locked-down instance refuses `SET`), which no write depends on:
    /// timestamps are converted in Rust, and a value left as text for DuckDB to cast carries
    /// its offset (PostgreSQL prints `timestamptz` with one).
    fn fork(&mut self) -> anyhow::Result<Option<Box<dyn Sink>>> {
        assert!(!self.in_txn, "a sink is forked between transactions only");
        Ok(Some(Box::new(self.try_clone()?)))
    }

    fn as_duck(&mut self) -> Option<&DuckSink> {
        Some(self)
    }

    fn rollback(&mut self) -> anyhow::Result<()> {
        if self.in_txn {
            self.in_txn = false;
            self.conn.execute_batch("ROLLBACK")?;
        }
        Ok(())
    }
}

/// True when the batch is inserts only, with no unchanged TOAST value and no key twice:
/// then every row is a new key and goes straight into both tables. Keys are compared by
/// a 64-bit hash (no allocation); a hash seen twice (a repeated key, or a collision) just
/// sends the batch down the general path, which is always correct.
pub fn inserts_of_distinct_new_keys(shape: &TableShape, changes: &[Change]) -> bool {
    let key_idx = shape.key_indexes();
    let mut seen: HashSet<u64> = HashSet::with_capacity(changes.len());
    for ch in changes {
        if ch.op != Op::Insert || ch.old_key.is_some() || ch.row.contains(&Cell::Unchanged) {
            return false;
        }
        // FNV-1a over (length, bytes) of each key cell: cheap, and only used to detect
        // repeats (a collision costs speed, never correctness).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &i in &key_idx {
            let bytes: &[u8] = match &ch.row[i] {
                Cell::Text(b) => b,
                _ => &[0xff],
            };
            for b in (bytes.len() as u32).to_le_bytes().iter().chain(bytes) {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        if !seen.insert(h) {
            return false;
        }
    }
    true
}

fn unchanged_list(shape: &TableShape, row: &[Cell]) -> Option<String> {
    let names: Vec<&str> = shape
        .columns
        .iter()
        .zip(row)
        .filter(|(_, c)| **c == Cell::Unchanged)
        .map(|(col, _)| col.name.as_str())
        .collect();
    if names.is_empty() {
        None
    } else {
        Some(format!(",{},", names.join(",")))
    }
}

/// ISO text of a Unix-epoch microsecond timestamp in UTC (DuckDB casts it).
pub fn format_ts(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{micros:06}+00", sod / 3600, (sod / 60) % 60, sod % 60)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::{ch, t};
    use crate::model::{SinkColumn, SinkType};
    use crate::sink::Phase;

    fn shape() -> TableShape {
        crate::model::fixtures::shape(
            "accounts",
            &[("id", SinkType::BigInt, true), ("name", SinkType::Varchar, false), ("doc", SinkType::Varchar, false)],
        )
    }
    fn rows(s: &DuckSink) -> Vec<(i64, Option<String>, Option<String>)> {
        let mut st = s.conn().prepare("SELECT id, name, doc FROM accounts ORDER BY id").unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect()
    }
    fn allow(_: &str) -> bool {
        true
    }

    #[test]
    fn duckdb_is_the_pinned_prebuilt_version() {
        let s = DuckSink::open_in_memory().unwrap();
        let v: String = s.conn().query_row("SELECT version()", [], |r| r.get(0)).unwrap();
        assert_eq!(v, "v1.5.6");
    }

    /// Issue 16, item 15: the analytics file and the status file are 0600, also when DuckDB
    /// (umask 0644) or an earlier version made them wider; another OS user cannot read them.
    #[test]
    fn the_analytics_and_status_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("fintrail-duck-mode-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("analytics.duckdb");
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        drop(DuckSink::open(&path).unwrap());
        assert_eq!(mode(&path), 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(DuckSink::open(&path).unwrap());
        assert_eq!(mode(&path), 0o600, "reopening tightens a file left open");
        let status_path = dir.join(crate::status::STATUS_FILE);
        let mut st = crate::status::Status::new(Some(status_path.clone()));
        st.write();
        assert_eq!(mode(&status_path), 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn data_and_lsn_commit_together_or_not_at_all() {
        let mut s = DuckSink::open_in_memory().unwrap();
        s.ensure_table(&shape(), &allow).unwrap();
        assert_eq!(s.load_state().unwrap(), None);
        s.begin().unwrap();
        s.apply(&shape(), &[ch(Op::Insert, 10, 0, vec![t("1"), t("a"), t("x")])], false).unwrap();
        s.rollback().unwrap();
        assert!(rows(&s).is_empty());
        assert_eq!(s.load_state().unwrap(), None);
        s.begin().unwrap();
        s.apply(&shape(), &[ch(Op::Insert, 10, 0, vec![t("1"), t("a"), t("x")])], false).unwrap();
        let st = SinkState { phase: Phase::Streaming, lsn: 11, slot: "s".into(), ..Default::default() };
        s.commit(&st).unwrap();
        assert_eq!(rows(&s), vec![(1, Some("a".into()), Some("x".into()))]);
        assert_eq!(s.load_state().unwrap(), Some(st));
    }

    #[test]
    fn insert_batches_take_the_fast_path_only_when_every_key_is_new_and_distinct() {
        let sh = shape();
        let ins = |id: &str, lsn| ch(Op::Insert, lsn, 0, vec![t(id), t("n"), t("d")]);
        assert!(inserts_of_distinct_new_keys(&sh, &[ins("1", 1), ins("2", 1), ins("3", 2)]));
        // A repeated key, an update, a delete or an unchanged TOAST value: the general path.
        assert!(!inserts_of_distinct_new_keys(&sh, &[ins("1", 1), ins("1", 2)]));
        assert!(!inserts_of_distinct_new_keys(&sh, &[ins("1", 1), ch(Op::Update, 2, 0, vec![t("1"), t("m"), t("d")])]));
        assert!(!inserts_of_distinct_new_keys(
            &sh,
            &[ins("1", 1), ch(Op::Delete, 2, 0, vec![t("1"), Cell::Null, Cell::Null])]
        ));
        assert!(!inserts_of_distinct_new_keys(&sh, &[ch(Op::Insert, 1, 0, vec![t("1"), t("n"), Cell::Unchanged])]));

        // Both paths give the same tables: the fast one (distinct inserts) ...
        let mut s = DuckSink::open_in_memory().unwrap();
        s.ensure_table(&sh, &allow).unwrap();
        s.begin().unwrap();
        s.apply(&sh, &[ins("1", 10), ins("2", 10), ch(Op::Insert, 11, 0, vec![t("3"), Cell::Null, t("z")])], false)
            .unwrap();
        s.commit(&SinkState { lsn: 12, ..Default::default() }).unwrap();
        // ... and the general one (the same key inserted, deleted, inserted in one batch).
        s.begin().unwrap();
        s.apply(
            &sh,
            &[
                ins("4", 20),
                ch(Op::Delete, 21, 0, vec![t("4"), Cell::Null, Cell::Null]),
                ch(Op::Insert, 22, 0, vec![t("4"), t("again"), t("d")]),
            ],
            false,
        )
        .unwrap();
        s.commit(&SinkState { lsn: 23, ..Default::default() }).unwrap();
        assert_eq!(
            rows(&s),
            vec![
                (1, Some("n".into()), Some("d".into())),
                (2, Some("n".into()), Some("d".into())),
                (3, None, Some("z".into())),
                (4, Some("again".into()), Some("d".into()))
            ]
        );
        let hist: Vec<(i64, String, u64, Option<String>)> = {
            let mut st =
                s.conn().prepare("SELECT id, _op, _lsn, _unchanged FROM history.accounts ORDER BY _lsn, _seq").unwrap();
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        assert_eq!(
            hist,
            vec![
                (1, "I".into(), 10, None),
                (2, "I".into(), 10, None),
                (3, "I".into(), 11, None),
                (4, "I".into(), 20, None),
                (4, "D".into(), 21, None),
                (4, "I".into(), 22, None)
            ]
        );
    }

    #[test]
    fn updates_deletes_toast_and_truncate() {
        let mut s = DuckSink::open_in_memory().unwrap();
        let sh = shape();
        s.ensure_table(&sh, &allow).unwrap();
        s.begin().unwrap();
        s.apply(
            &sh,
            &[
                ch(Op::Insert, 10, 0, vec![t("1"), t("a"), t("big")]),
                ch(Op::Insert, 10, 1, vec![t("2"), t("b"), t("big2")]),
                ch(Op::Insert, 10, 2, vec![t("3"), t("c"), Cell::Null]),
            ],
            false,
        )
        .unwrap();
        s.commit(&SinkState::default()).unwrap();
        s.begin().unwrap();
        s.apply(
            &sh,
            &[
                // Unchanged TOAST resolved from the sink's current row.
                ch(Op::Update, 20, 0, vec![t("1"), t("a2"), Cell::Unchanged]),
                // Within one batch: change doc, then an update that leaves it unchanged.
                ch(Op::Update, 20, 1, vec![t("2"), t("b2"), t("new")]),
                ch(Op::Update, 20, 2, vec![t("2"), t("b3"), Cell::Unchanged]),
                ch(Op::Delete, 20, 3, vec![t("3"), Cell::Null, Cell::Null]),
            ],
            false,
        )
        .unwrap();
        s.commit(&SinkState::default()).unwrap();
        assert_eq!(
            rows(&s),
            vec![(1, Some("a2".into()), Some("big".into())), (2, Some("b3".into()), Some("new".into()))]
        );
        let hist: i64 = s.conn().query_row("SELECT count(*) FROM history.accounts", [], |r| r.get(0)).unwrap();
        assert_eq!(hist, 7);
        let unchanged: String = s
            .conn()
            .query_row("SELECT _unchanged FROM history.accounts WHERE _lsn = 20 AND _seq = 0", [], |r| r.get(0))
            .unwrap();
        assert_eq!(unchanged, ",doc,");
        s.begin().unwrap();
        s.truncate(&sh, 30, 0, 0).unwrap();
        s.commit(&SinkState::default()).unwrap();
        assert!(rows(&s).is_empty());
    }

    #[test]
    fn unchanged_toast_without_a_row_stops_instead_of_losing_data() {
        let mut s = DuckSink::open_in_memory().unwrap();
        let sh = shape();
        s.ensure_table(&sh, &allow).unwrap();
        s.begin().unwrap();
        let e = s.apply(&sh, &[ch(Op::Update, 20, 0, vec![t("9"), t("z"), Cell::Unchanged])], false).unwrap_err();
        assert!(e.to_string().contains("unchanged TOAST"), "{e}");
        s.rollback().unwrap();
    }

    #[test]
    fn key_change_and_reinsert_in_one_batch() {
        let mut s = DuckSink::open_in_memory().unwrap();
        let sh = shape();
        s.ensure_table(&sh, &allow).unwrap();
        s.begin().unwrap();
        let mut upd = ch(Op::Update, 10, 1, vec![t("5"), t("moved"), Cell::Unchanged]);
        upd.old_key = Some(vec![t("4"), Cell::Null, Cell::Null]);
        s.apply(
            &sh,
            &[
                ch(Op::Insert, 10, 0, vec![t("4"), t("orig"), t("doc4")]),
                upd,
                ch(Op::Insert, 10, 2, vec![t("4"), t("again"), Cell::Null]),
            ],
            false,
        )
        .unwrap();
        s.commit(&SinkState::default()).unwrap();
        assert_eq!(rows(&s), vec![(4, Some("again".into()), None), (5, Some("moved".into()), Some("doc4".into()))]);
    }

    #[test]
    fn added_column_and_withheld_column_and_type_conflict() {
        let mut s = DuckSink::open_in_memory().unwrap();
        let mut sh = shape();
        s.ensure_table(&sh, &allow).unwrap();
        sh.columns.push(SinkColumn { name: "extra".into(), ty: SinkType::Integer, key: false });
        s.ensure_table(&sh, &allow).unwrap();
        let n: i64 = s
            .conn()
            .query_row("SELECT count(*) FROM information_schema.columns WHERE column_name = 'extra'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 3, "main, history and stage all gain the column");
        // The policy now withholds `doc`: it must leave the sink.
        let without_doc = TableShape {
            name: sh.name.clone(),
            columns: sh.columns.iter().filter(|c| c.name != "doc").cloned().collect(),
        };
        s.ensure_table(&without_doc, &|c: &str| c != "doc").unwrap();
        let n: i64 = s
            .conn()
            .query_row("SELECT count(*) FROM information_schema.columns WHERE column_name = 'doc'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
        let mut bad = without_doc.clone();
        bad.columns[1].ty = SinkType::BigInt;
        let e = s.ensure_table(&bad, &allow).unwrap_err().to_string();
        assert!(e.contains("cannot apply a schema change"), "{e}");
    }

    #[test]
    fn typed_params_parse_postgres_text() {
        assert_eq!(parse_ts_micros(b"1970-01-01 00:00:00+00"), Some(0));
        assert_eq!(parse_ts_micros(b"2023-11-14 22:13:20.123456+00"), Some(1_700_000_000_123_456));
        assert_eq!(parse_ts_micros(b"2023-11-15 00:13:20.5+02"), Some(1_700_000_000_500_000));
        assert_eq!(parse_ts_micros(b"2023-11-14 16:43:20-05:30"), Some(1_700_000_000_000_000));
        assert_eq!(parse_ts_micros(b"infinity"), None);
        assert_eq!(parse_ts_micros(b"0044-03-15 00:00:00 BC"), None);
        for us in [0i64, 1, -1, 1_700_000_000_123_456, 4_102_444_800_000_000] {
            assert_eq!(parse_ts_micros(format_ts(us).as_bytes()), Some(us));
        }
        assert!(matches!(Param::typed(SinkType::BigInt, &t("-9223372036854775808")), Param::I64(i64::MIN)));
        assert!(matches!(Param::typed(SinkType::BigInt, &t("9223372036854775808")), Param::Text(_)));
        assert!(matches!(Param::typed(SinkType::Boolean, &t("t")), Param::Bool(true)));
        assert!(matches!(Param::typed(SinkType::Double, &t("NaN")), Param::F64(v) if v.is_nan()));
        assert!(matches!(Param::typed(SinkType::Decimal(18, 2), &t("1.50")), Param::Text(_)));
        assert!(matches!(Param::typed(SinkType::Integer, &Cell::Null), Param::Null));
    }

    #[test]
    fn timestamps_format_in_utc() {
        assert_eq!(format_ts(0), "1970-01-01 00:00:00.000000+00");
        assert_eq!(format_ts(1_700_000_000_123_456), "2023-11-14 22:13:20.123456+00");
        assert_eq!(format_ts(-1), "1969-12-31 23:59:59.999999+00");
    }

    #[test]
    fn a_fork_of_a_locked_down_sink_writes_on_its_own_connection() {
        let mut s = DuckSink::open_in_memory().unwrap();
        s.one_thread().unwrap();
        let shape =
            crate::model::fixtures::shape("t", &[("id", SinkType::BigInt, true), ("ts", SinkType::TimestampTz, false)]);
        s.ensure_table(&shape, &|_| true).unwrap();
        // `fintrail cdc run` locks the configuration before streaming starts (analytics).
        crate::analytics::lock_down(s.conn()).unwrap();
        let mut f = s.fork().unwrap().expect("DuckDB forks");
        f.begin().unwrap();
        let row = vec![t("1"), t("2024-05-01 10:00:00+02")];
        f.apply(&shape, &[ch(Op::Insert, 10, 0, row)], false).unwrap();
        f.commit(&SinkState { lsn: 10, ..Default::default() }).unwrap();
        drop(f);
        let ts: String = s.conn().query_row("SELECT CAST(ts AS VARCHAR) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(ts, "2024-05-01 08:00:00+00");
        assert_eq!(s.load_state().unwrap().map(|st| st.lsn), Some(10));
    }
}
