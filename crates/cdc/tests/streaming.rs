//! End to end against the real cluster: snapshot, then every change kind streamed into a
//! DuckDB file, with the policy applied.

mod common;
use common::*;

use fintrail_cdc::policy::Policy;
use fintrail_db::testing::fresh_db;

const POLICY: &str = r#"
[tables.accounts.columns]
id = "keep"
name = "keep"
email = "pseudonymize"
doc = "keep"
country = "keep"
created_at = "keep"
secret = "drop"

[tables.ledger.columns]
id = "keep"
amount = "keep"
"#;

#[tokio::test]
async fn every_change_kind_reaches_duckdb_under_the_policy() {
    let db = fresh_db().await;
    let policy = Policy::parse(POLICY).unwrap();
    init_tracing();
    let names = names("stream");
    let dir = temp_dir("stream");
    let path = dir.join("a.duckdb");
    owner_sql(
        &db,
        "CREATE TABLE accounts (id bigint PRIMARY KEY, name text, email text, doc text, secret text,
                                created_at timestamptz NOT NULL DEFAULT now());
         CREATE TABLE ledger (id bigint PRIMARY KEY, amount numeric(18,2) NOT NULL);
         CREATE TABLE unlisted (id int PRIMARY KEY, v text);
         INSERT INTO accounts (id, name, email, secret) VALUES (1, 'ann', 'ann@x.test', 's1'), (2, 'bob', 'bob@x.test', 's2');
         INSERT INTO ledger VALUES (1, 10.50);",
    )
    .await;
    // Snapshot.
    let s = catch_up(&db, &policy, &names, &path).await.unwrap();
    assert_eq!(s.snapshot_rows, 3);
    assert_eq!(duck_i64(&path, "SELECT count(*) FROM accounts"), 2);
    assert!(!duck_columns(&path, "main", "accounts").contains(&"secret".to_string()));

    // A big, incompressible value is stored out of line (TOAST).
    owner_sql(
        &db,
        "UPDATE accounts SET doc = (SELECT string_agg(md5(i::text || random()::text), '') FROM generate_series(1, 2000) i) WHERE id = 1;
         INSERT INTO accounts (id, name, email, secret) VALUES (3, 'cy', 'cy@x.test', 's3');
         DELETE FROM accounts WHERE id = 2;
         INSERT INTO unlisted VALUES (1, 'never');
         INSERT INTO ledger VALUES (2, 3.25);",
    )
    .await;
    catch_up(&db, &policy, &names, &path).await.unwrap();
    // Update another column only: pgoutput sends 'u' for doc; the sink keeps its value.
    owner_sql(&db, "UPDATE accounts SET name = 'ann2' WHERE id = 1;").await;
    catch_up(&db, &policy, &names, &path).await.unwrap();
    let src = db.connect(fintrail_db::DbRole::Admin).await.unwrap();
    let doc_md5: String =
        src.query_one("SELECT md5(doc) FROM fintrail.accounts WHERE id = 1", &[]).await.unwrap().get(0);
    let sink_md5 = duck_query::<String>(&path, "SELECT md5(doc) || ' ' || name FROM accounts WHERE id = 1");
    assert_eq!(sink_md5[0][0], format!("{doc_md5} ann2"));
    let unchanged = duck_query::<String>(&path, "SELECT _unchanged FROM history.accounts WHERE _unchanged IS NOT NULL");
    assert_eq!(unchanged, vec![vec![",doc,".to_string()]], "the TOAST update was really sent as unchanged");
    assert_eq!(duck_i64(&path, "SELECT count(*) FROM accounts"), 2);
    assert_eq!(duck_i64(&path, "SELECT count(*) FROM accounts WHERE id = 2"), 0);
    // Pseudonymized: not the value, but deterministic.
    let emails = duck_query::<String>(&path, "SELECT email FROM accounts ORDER BY id");
    assert!(emails.iter().all(|r| r[0].len() == 64 && !r[0].contains('@')));
    assert_eq!(emails[0][0], pseudonymizer().apply(b"ann@x.test"));
    // The unlisted table never reached the sink.
    assert!(duck_columns(&path, "main", "unlisted").is_empty());
    assert_eq!(duck_query::<String>(&path, "SELECT CAST(sum(amount) AS VARCHAR) FROM ledger")[0][0], "13.75");

    // Schema change: an added column, then truncate. The new column is in no column list yet:
    // default deny, its values stay on the server (row 4's country never leaves) until setup
    // re-syncs the publication with the policy, which lets it out from then on.
    owner_sql(
        &db,
        "ALTER TABLE accounts ADD COLUMN country text;
         INSERT INTO accounts (id, name, email, country) VALUES (4, 'dee', 'dee@x.test', 'NL');",
    )
    .await;
    fintrail_cdc::source::setup(&db, &policy, &names).await.unwrap();
    owner_sql(
        &db,
        "UPDATE accounts SET country = 'DE' WHERE id = 3;
         TRUNCATE ledger;
         INSERT INTO ledger VALUES (9, 1.00);",
    )
    .await;
    catch_up(&db, &policy, &names, &path).await.unwrap();
    assert!(duck_columns(&path, "main", "accounts").contains(&"country".to_string()));
    assert_eq!(
        duck_query::<Option<String>>(&path, "SELECT country FROM accounts WHERE id IN (3, 4) ORDER BY id"),
        vec![vec![Some("DE".to_string())], vec![None]]
    );
    assert_eq!(duck_i64(&path, "SELECT count(*) FROM ledger"), 1);
    assert_eq!(duck_i64(&path, "SELECT count(*) FROM history.ledger WHERE _op = 'T'"), 1);
    // History has no duplicates across the restarts.
    assert_eq!(duck_i64(&path, "SELECT count(*) - count(DISTINCT (_lsn, _seq)) FROM history.accounts"), 0);
    // Withheld columns never reached the sink, anywhere.
    let secret_cols = duck_i64(&path, "SELECT count(*) FROM information_schema.columns WHERE column_name = 'secret'");
    assert_eq!(secret_cols, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A resumed snapshot (the slot's exported snapshot died with the earlier run) replays the
/// stream as upserts up to a position at or after every commit its snapshot sees. A writer of
/// the source may commit with `synchronous_commit = off`: its rows are visible before its commit
/// record is written out, so the write position (`pg_current_wal_lsn`) can lag a commit the
/// snapshot copies, whose rows would then be applied twice. Each round commits one row that way
/// and resumes a snapshot at once, before the WAL writer's next cycle (200 ms) writes it.
#[tokio::test]
async fn a_resumed_snapshot_replays_up_to_every_commit_it_sees_even_one_not_yet_written() {
    let db = fresh_db().await;
    owner_sql(&db, "CREATE TABLE accounts (id bigint PRIMARY KEY, name text)").await;
    let writer = db.connect(fintrail_db::DbRole::Admin).await.unwrap();
    writer.batch_execute("SET ROLE fintrail_owner; SET synchronous_commit = off").await.unwrap();
    let reader = db.connect(fintrail_db::DbRole::Admin).await.unwrap();
    reader.batch_execute("SET ROLE fintrail_owner").await.unwrap();
    let lsn = |r: tokio_postgres::Row| fintrail_cdc::pgoutput::parse_lsn(&r.get::<_, String>(0)).unwrap();
    for id in 0..20_i64 {
        writer.execute("INSERT INTO fintrail.accounts VALUES ($1, 'a')", &[&id]).await.unwrap();
        // At or after the end of that commit's record: the insert position, read after it.
        let committed_end = lsn(writer.query_one("SELECT pg_current_wal_insert_lsn()::text", &[]).await.unwrap());
        let at = fintrail_cdc::source::begin_resumed_snapshot(&reader).await.unwrap();
        let seen: i64 =
            reader.query_one("SELECT count(*) FROM fintrail.accounts WHERE id = $1", &[&id]).await.unwrap().get(0);
        reader.batch_execute("COMMIT").await.unwrap();
        assert_eq!(seen, 1, "round {id}: the snapshot sees the committed row");
        assert!(
            at >= committed_end,
            "round {id}: the replay ends at {} before the end {} of a commit the snapshot copies",
            fintrail_cdc::pgoutput::lsn_to_string(at),
            fintrail_cdc::pgoutput::lsn_to_string(committed_end)
        );
    }
}
