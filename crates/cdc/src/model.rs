//! The data model between the source (pgoutput / COPY) and the sinks: table shapes after the
//! policy, and row changes whose values are already policy-filtered text.

use bytes::Bytes;

/// The analytical column type a PostgreSQL type becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkType {
    Boolean,
    SmallInt,
    Integer,
    BigInt,
    Real,
    Double,
    Decimal(u8, u8),
    Varchar,
    Date,
    Timestamp,
    TimestampTz,
    Uuid,
}

impl SinkType {
    /// From a PostgreSQL type OID and type modifier. Unknown types become text (never lost).
    pub fn from_pg(type_oid: u32, typmod: i32) -> SinkType {
        match type_oid {
            16 => SinkType::Boolean,
            21 => SinkType::SmallInt,
            23 => SinkType::Integer,
            20 | 26 => SinkType::BigInt,
            700 => SinkType::Real,
            701 => SinkType::Double,
            1700 => {
                // numeric(p,s): typmod = ((p << 16) | s) + 4; unconstrained numeric is -1.
                if typmod >= 4 {
                    let t = typmod - 4;
                    let p = (t >> 16) & 0xffff;
                    let s = t & 0xffff;
                    if (1..=38).contains(&p) && s <= p {
                        return SinkType::Decimal(p as u8, s as u8);
                    }
                }
                SinkType::Varchar
            }
            1082 => SinkType::Date,
            1114 => SinkType::Timestamp,
            1184 => SinkType::TimestampTz,
            2950 => SinkType::Uuid,
            _ => SinkType::Varchar,
        }
    }

    pub fn sql(self) -> String {
        match self {
            SinkType::Boolean => "BOOLEAN".into(),
            SinkType::SmallInt => "SMALLINT".into(),
            SinkType::Integer => "INTEGER".into(),
            SinkType::BigInt => "BIGINT".into(),
            SinkType::Real => "REAL".into(),
            SinkType::Double => "DOUBLE".into(),
            SinkType::Decimal(p, s) => format!("DECIMAL({p},{s})"),
            SinkType::Varchar => "VARCHAR".into(),
            SinkType::Date => "DATE".into(),
            SinkType::Timestamp => "TIMESTAMP".into(),
            SinkType::TimestampTz => "TIMESTAMPTZ".into(),
            SinkType::Uuid => "UUID".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkColumn {
    pub name: String,
    pub ty: SinkType,
    /// Part of the row identity (the source's replica identity / primary key).
    pub key: bool,
}

/// The shape of one table in the sink: only the columns the policy lets out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableShape {
    pub name: String,
    pub columns: Vec<SinkColumn>,
}

impl TableShape {
    pub fn key_indexes(&self) -> Vec<usize> {
        self.columns.iter().enumerate().filter(|(_, c)| c.key).map(|(i, _)| i).collect()
    }
}

/// One value as it goes to the sink: PostgreSQL's text form (or the pseudonym).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Null,
    Text(Bytes),
    /// Unchanged TOASTed value: the sink keeps its current value.
    Unchanged,
}

impl Cell {
    pub fn as_text(&self) -> Option<&[u8]> {
        match self {
            Cell::Text(b) => Some(b),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Insert,
    Update,
    Delete,
}

impl Op {
    pub fn code(self) -> &'static str {
        match self {
            Op::Insert => "I",
            Op::Update => "U",
            Op::Delete => "D",
        }
    }
}

/// One row change, cells in the sink table's column order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub op: Op,
    /// Commit LSN of the source transaction, and the change's ordinal inside it:
    /// together they identify the change (history primary key, BigQuery sequence number).
    pub commit_lsn: u64,
    pub seq: u32,
    /// Commit time, microseconds since the Unix epoch.
    pub commit_ts_us: i64,
    /// For deletes: the old key (non-key cells Null). For inserts/updates: the new row.
    pub row: Vec<Cell>,
    /// For updates that changed the key: the old key row.
    pub old_key: Option<Vec<Cell>>,
}

/// The identity of a row: its key cells' text joined with a separator no text can contain
/// unescaped (length-prefixed), so distinct keys never collide.
pub fn key_of(row: &[Cell], key_idx: &[usize]) -> Vec<u8> {
    let mut k = Vec::with_capacity(16 * key_idx.len());
    for &i in key_idx {
        match &row[i] {
            Cell::Text(b) => {
                k.extend_from_slice(&(b.len() as u32).to_be_bytes());
                k.extend_from_slice(b);
            }
            _ => k.extend_from_slice(&u32::MAX.to_be_bytes()),
        }
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_types_map_to_sink_types() {
        assert_eq!(SinkType::from_pg(20, -1), SinkType::BigInt);
        assert_eq!(SinkType::from_pg(1700, ((18 << 16) | 2) + 4), SinkType::Decimal(18, 2));
        assert_eq!(SinkType::from_pg(1700, -1), SinkType::Varchar);
        assert_eq!(SinkType::from_pg(3802, -1), SinkType::Varchar);
        assert_eq!(SinkType::from_pg(1184, -1).sql(), "TIMESTAMPTZ");
    }

    #[test]
    fn keys_do_not_collide_across_boundaries() {
        let a = vec![Cell::Text(Bytes::from_static(b"ab")), Cell::Text(Bytes::from_static(b"c"))];
        let b = vec![Cell::Text(Bytes::from_static(b"a")), Cell::Text(Bytes::from_static(b"bc"))];
        assert_ne!(key_of(&a, &[0, 1]), key_of(&b, &[0, 1]));
        assert_eq!(key_of(&a, &[0, 1]), key_of(&a.clone(), &[0, 1]));
    }
}

/// How a source relation becomes a sink table: which source column feeds each sink column,
/// and whether it is pseudonymized. Built from the policy; the only path from a source
/// tuple to sink cells, so a withheld column has no way to the sink.
#[derive(Debug, Clone)]
pub struct Projection {
    pub shape: TableShape,
    /// For each sink column: (source column index, pseudonymize).
    pub sources: Vec<(usize, bool)>,
    /// Source columns withheld by the policy (reported).
    pub withheld: Vec<String>,
}

impl Projection {
    pub fn from_relation(policy: &crate::policy::Policy, rel: &crate::pgoutput::Relation) -> Projection {
        use crate::policy::Decision;
        let mut columns = Vec::new();
        let mut sources = Vec::new();
        let mut withheld = Vec::new();
        for (i, c) in rel.columns.iter().enumerate() {
            match policy.decide(&rel.name, &c.name) {
                Decision::Keep => {
                    columns.push(SinkColumn {
                        name: c.name.clone(),
                        ty: SinkType::from_pg(c.type_oid, c.type_modifier),
                        key: c.key,
                    });
                    sources.push((i, false));
                }
                Decision::Pseudonymize => {
                    columns.push(SinkColumn { name: c.name.clone(), ty: SinkType::Varchar, key: c.key });
                    sources.push((i, true));
                }
                Decision::Withhold { .. } => withheld.push(c.name.clone()),
            }
        }
        Projection { shape: TableShape { name: rel.name.clone(), columns }, sources, withheld }
    }

    /// Identity projection over an already policy-filtered shape (the snapshot's COPY
    /// selects exactly the shape's columns).
    pub fn identity(shape: TableShape, pseudonymized: &[bool]) -> Projection {
        let sources = pseudonymized.iter().enumerate().map(|(i, p)| (i, *p)).collect();
        Projection { shape, sources, withheld: Vec::new() }
    }

    /// Source tuple to sink cells. Pseudonymized values are keyed hashes of the text form.
    pub fn project(
        &self,
        tuple: &[crate::pgoutput::Datum],
        ps: &crate::policy::Pseudonymizer,
    ) -> anyhow::Result<Vec<Cell>> {
        use crate::pgoutput::Datum;
        let mut out = Vec::with_capacity(self.sources.len());
        for (j, (i, pseudo)) in self.sources.iter().enumerate() {
            let d = tuple.get(*i).ok_or_else(|| {
                anyhow::anyhow!("tuple for {} has {} columns, expected more than {i}", self.shape.name, tuple.len())
            })?;
            out.push(match d {
                Datum::Null => Cell::Null,
                Datum::UnchangedToast => Cell::Unchanged,
                Datum::Text(b) if *pseudo => Cell::Text(Bytes::from(ps.apply(b))),
                Datum::Text(b) => Cell::Text(b.clone()),
                Datum::Binary(_) => anyhow::bail!(
                    "binary value for {}.{}: the pipeline asks for text format only",
                    self.shape.name,
                    self.shape.columns[j].name
                ),
            });
        }
        Ok(out)
    }
}

/// Builders shared by the sinks' and the pipeline's unit tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::{Cell, Change, Op, SinkColumn, SinkType, TableShape};
    use bytes::Bytes;

    /// A text cell.
    pub fn t(s: &str) -> Cell {
        Cell::Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    /// A change committed at `lsn` (ordinal `seq`), at a fixed commit time.
    pub fn ch(op: Op, lsn: u64, seq: u32, row: Vec<Cell>) -> Change {
        Change { op, commit_lsn: lsn, seq, commit_ts_us: 1_700_000_000_000_000, row, old_key: None }
    }

    /// A table shape from (name, type, key) columns.
    pub fn shape(name: &str, columns: &[(&str, SinkType, bool)]) -> TableShape {
        let columns = columns.iter().map(|(n, ty, key)| SinkColumn { name: (*n).into(), ty: *ty, key: *key }).collect();
        TableShape { name: name.into(), columns }
    }
}
