//! The BigQuery sink against a real BigQuery emulator (bqemulator, started and stopped here):
//! types, updates with unchanged TOAST values, key changes, deletes, truncate, an aborted
//! transaction, a replay by a second writer (no duplicate), a stale writer refused, an
//! unchanged TOAST value without a row refused with nothing applied, added and withheld
//! columns, a type conflict, and a reset. The pipeline end to end, killed with SIGKILL at
//! random moments, is in `crash.rs`.

mod common;
use common::bqemu::*;

use bytes::Bytes;
use fintrail_cdc::model::{Cell, Change, Op, SinkColumn, SinkType, TableShape};
use fintrail_cdc::sink::bigquery::{self, BigQuerySink, Client, STAGE_PREFIX};
use fintrail_cdc::sink::{Phase, Sink, SinkState};

fn t(s: &str) -> Cell {
    Cell::Text(Bytes::copy_from_slice(s.as_bytes()))
}

fn ch(op: Op, lsn: u64, seq: u32, row: Vec<Cell>) -> Change {
    Change { op, commit_lsn: lsn, seq, commit_ts_us: 1_700_000_000_000_000, row, old_key: None }
}

fn shape() -> TableShape {
    let cols = [
        ("id", SinkType::BigInt, true),
        ("name", SinkType::Varchar, false),
        ("doc", SinkType::Varchar, false),
        ("amount", SinkType::Decimal(18, 2), false),
        ("at", SinkType::TimestampTz, false),
        ("day", SinkType::Date, false),
        ("frozen", SinkType::Boolean, false),
        ("ratio", SinkType::Double, false),
    ];
    TableShape {
        name: "accounts".into(),
        columns: cols.iter().map(|(n, ty, key)| SinkColumn { name: (*n).into(), ty: *ty, key: *key }).collect(),
    }
}

fn row(id: &str, name: &str, doc: Cell) -> Vec<Cell> {
    vec![t(id), t(name), doc, t("12.50"), t("2024-05-01 10:00:00.123456+00"), t("2024-02-29"), t("t"), t("0.25")]
}

fn allow(_: &str) -> bool {
    true
}

fn st(lsn: u64) -> SinkState {
    SinkState { phase: Phase::Streaming, lsn, slot: "slot_bq".into(), ..Default::default() }
}

/// (id, name, doc) of every row, by id.
fn rows(cfg: &bigquery::Config) -> Vec<(String, Option<String>, Option<String>)> {
    bq_rows(cfg, &format!("SELECT CAST(id AS STRING), name, doc FROM {} ORDER BY id", cfg.table_ref("accounts")))
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone(), r[2].clone()))
        .collect()
}

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

#[test]
fn the_bigquery_sink_merges_exactly_once_against_the_emulator() {
    let emu = Emulator::start();
    let cfg = emu.dataset("replica");
    let sh = shape();
    let mut sink = BigQuerySink::new(Client::new(cfg.clone()));
    assert_eq!(sink.load_state().unwrap(), None);
    sink.ensure_table(&sh, &allow).unwrap();

    // Inserts, with every type.
    sink.begin().unwrap();
    sink.apply(
        &sh,
        &[
            ch(Op::Insert, 10, 0, row("1", "a", t("doc1"))),
            ch(Op::Insert, 10, 1, row("2", "b", t("doc2"))),
            ch(Op::Insert, 10, 2, row("3", "c", Cell::Null)),
        ],
        false,
    )
    .unwrap();
    sink.commit(&st(11)).unwrap();
    assert_eq!(
        rows(&cfg),
        vec![("1".into(), s("a"), s("doc1")), ("2".into(), s("b"), s("doc2")), ("3".into(), s("c"), None)]
    );
    let typed = bq_rows(
        &cfg,
        &format!(
            "SELECT CAST(amount AS STRING), FORMAT_TIMESTAMP('%Y-%m-%d %H:%M:%E6S', `at`), CAST(day AS STRING), \
             CAST(frozen AS STRING), CAST(ratio AS STRING) FROM {} WHERE id = 1",
            cfg.table_ref("accounts")
        ),
    );
    assert_eq!(typed[0][0].as_deref().map(|v| v.parse::<f64>().unwrap()), Some(12.5));
    assert_eq!(typed[0][1].as_deref(), Some("2024-05-01 10:00:00.123456"));
    assert_eq!(typed[0][2].as_deref(), Some("2024-02-29"));
    assert_eq!(typed[0][3].as_deref(), Some("true"));
    assert_eq!(typed[0][4].as_deref().map(|v| v.parse::<f64>().unwrap()), Some(0.25));

    // A transaction staged and then abandoned (rollback, or a crash) leaves no trace.
    let mut moved = ch(Op::Update, 20, 2, row("5", "moved", Cell::Null));
    moved.old_key =
        Some(vec![t("3"), Cell::Null, Cell::Null, Cell::Null, Cell::Null, Cell::Null, Cell::Null, Cell::Null]);
    let batch2 = vec![
        ch(Op::Update, 20, 0, row("1", "a2", Cell::Unchanged)),
        ch(
            Op::Delete,
            20,
            1,
            vec![t("2"), Cell::Null, Cell::Null, Cell::Null, Cell::Null, Cell::Null, Cell::Null, Cell::Null],
        ),
        moved,
        ch(Op::Insert, 20, 3, row("6", "new", t("doc6"))),
    ];
    sink.begin().unwrap();
    sink.apply(&sh, &batch2, false).unwrap();
    sink.rollback().unwrap();
    assert_eq!(rows(&cfg).len(), 3);
    assert_eq!(sink.load_state().unwrap().unwrap().lsn, 11);

    // Applied: unchanged TOAST values kept, the key change carries doc along, the delete.
    sink.begin().unwrap();
    sink.apply(&sh, &batch2, false).unwrap();
    sink.commit(&st(21)).unwrap();
    let after =
        vec![("1".into(), s("a2"), s("doc1")), ("5".into(), s("moved"), None), ("6".into(), s("new"), s("doc6"))];
    assert_eq!(rows(&cfg), after);

    // A second writer replays both batches from an old position: same rows, no duplicate.
    let mut again = BigQuerySink::new(Client::new(cfg.clone()));
    assert_eq!(again.load_state().unwrap().unwrap().lsn, 21);
    again.ensure_table(&sh, &allow).unwrap();
    again.begin().unwrap();
    again.apply(&sh, &[ch(Op::Insert, 10, 0, row("1", "a", t("doc1")))], false).unwrap();
    again.apply(&sh, &batch2, false).unwrap();
    again.commit(&st(21)).unwrap();
    assert_eq!(rows(&cfg), after);
    let dups = bq_i64(&cfg, &format!("SELECT COUNT(*) - COUNT(DISTINCT id) FROM {}", cfg.table_ref("accounts")));
    assert_eq!(dups, 0);

    // The first writer's view is stale now: its commit is refused and applies nothing.
    sink.begin().unwrap();
    sink.apply(&sh, &[ch(Op::Insert, 30, 0, row("7", "late", Cell::Null))], false).unwrap();
    let e = format!("{:#}", sink.commit(&st(31)).unwrap_err());
    assert!(e.contains("stale generation"), "{e}");
    assert_eq!(rows(&cfg), after);

    // An unchanged TOAST value for a row the sink does not have: refused, nothing applied.
    again.begin().unwrap();
    again.apply(&sh, &[ch(Op::Insert, 40, 0, row("8", "ok", Cell::Null))], false).unwrap();
    again.apply(&sh, &[ch(Op::Update, 40, 1, row("9", "z", Cell::Unchanged))], false).unwrap();
    let e = format!("{:#}", again.commit(&st(41)).unwrap_err());
    assert!(e.contains("unchanged TOAST"), "{e}");
    assert_eq!(rows(&cfg), after);
    assert_eq!(again.load_state().unwrap().unwrap().lsn, 21);

    // Truncate, then rows again, in one transaction and in order.
    again.begin().unwrap();
    again.truncate(&sh, 50, 0, 0).unwrap();
    again.apply(&sh, &[ch(Op::Insert, 50, 1, row("10", "after", Cell::Null))], false).unwrap();
    again.commit(&st(51)).unwrap();
    assert_eq!(rows(&cfg), vec![("10".into(), s("after"), None)]);

    // An added column reaches the table and its stage; a withheld one leaves both.
    let mut wider = sh.clone();
    wider.columns.push(SinkColumn { name: "extra".into(), ty: SinkType::Integer, key: false });
    again.ensure_table(&wider, &allow).unwrap();
    assert!(bq_columns(&cfg, "accounts").contains(&"extra".to_owned()));
    assert!(bq_columns(&cfg, &format!("{STAGE_PREFIX}accounts")).contains(&"extra".to_owned()));
    let without_doc = TableShape {
        name: wider.name.clone(),
        columns: wider.columns.iter().filter(|c| c.name != "doc").cloned().collect(),
    };
    again.ensure_table(&without_doc, &|c: &str| c != "doc").unwrap();
    for table in ["accounts".to_owned(), format!("{STAGE_PREFIX}accounts")] {
        let cols = bq_columns(&cfg, &table);
        assert!(!cols.contains(&"doc".to_owned()), "{table} still has the withheld column: {cols:?}");
    }
    let mut bad = without_doc.clone();
    bad.columns[1].ty = SinkType::BigInt;
    let e = again.ensure_table(&bad, &allow).unwrap_err().to_string();
    assert!(e.contains("cannot apply a schema change"), "{e}");

    // Reset: the state goes; the next run starts from an empty table.
    bigquery::reset(&mut Client::new(cfg.clone())).unwrap();
    let mut fresh = BigQuerySink::new(Client::new(cfg.clone()));
    assert_eq!(fresh.load_state().unwrap(), None);
    fresh.ensure_table(&without_doc, &allow).unwrap();
    assert_eq!(bq_i64(&cfg, &format!("SELECT COUNT(*) FROM {}", cfg.table_ref("accounts"))), 0);
}

#[test]
#[should_panic(expected = "bqemulator is not installed")]
fn a_missing_emulator_fails_and_says_to_run_dev_setup() {
    // The message goes on: "... is missing): run ./dev setup".
    let _ = Emulator::start_from(std::path::Path::new("/nonexistent/bqemulator"));
}
