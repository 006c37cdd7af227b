//! Micro-benchmark of the DuckDB sink alone (no PostgreSQL): where does streaming time go?
use bytes::Bytes;
use fintrail_cdc::model::{Cell, Change, Op, SinkColumn, SinkType, TableShape};
use fintrail_cdc::sink::{duck::DuckSink, Sink, SinkState};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let shape = TableShape {
        name: "bench_cdc".into(),
        columns: vec![
            SinkColumn { name: "id".into(), ty: SinkType::BigInt, key: true },
            SinkColumn { name: "account".into(), ty: SinkType::BigInt, key: false },
            SinkColumn { name: "amount_minor".into(), ty: SinkType::BigInt, key: false },
            SinkColumn { name: "currency".into(), ty: SinkType::Varchar, key: false },
            SinkColumn { name: "note".into(), ty: SinkType::Varchar, key: false },
            SinkColumn { name: "created_at".into(), ty: SinkType::TimestampTz, key: false },
        ],
    };
    let dir = std::env::temp_dir().join("fintrail-sinkbench");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let mut s = DuckSink::open(&dir.join("s.duckdb"))?;
    s.ensure_table(&shape, &|_| true)?;
    let n = 1_000_000u64;
    let batch = 50_000u64;
    let t0 = Instant::now();
    let mut lo = 0;
    while lo < n {
        let changes: Vec<Change> = (lo..lo + batch)
            .map(|i| Change {
                op: Op::Insert,
                commit_lsn: i,
                seq: 0,
                commit_ts_us: 1_700_000_000_000_000,
                row: vec![
                    Cell::Text(Bytes::from(i.to_string())),
                    Cell::Text(Bytes::from((i % 1000).to_string())),
                    Cell::Text(Bytes::from((i * 7919 % 100000).to_string())),
                    Cell::Text(Bytes::from_static(b"EUR")),
                    Cell::Text(Bytes::from(format!("{:032x}", i * 2654435761))),
                    Cell::Text(Bytes::from_static(b"2024-05-01 10:00:00.123456+00")),
                ],
                old_key: None,
            })
            .collect();
        s.begin()?;
        s.apply(&shape, &changes, false)?;
        s.commit(&SinkState { lsn: lo, ..Default::default() })?;
        lo += batch;
    }
    let secs = t0.elapsed().as_secs_f64();
    println!("sink only: {n} rows in {secs:.2} s = {:.0} rows/s", n as f64 / secs);
    Ok(())
}
