//! Issue 16, item 7: currencies come from the ISO 4217 table (`crates/domain/data/iso4217.csv`),
//! shared by Rust (`fintrail_domain::ledger::Currency`) and SQL (`fintrail.currencies`, migration
//! 0043). These tests fail when the two diverge, and perform the attack on the database side.

use fintrail_db::{testing::fresh_db, DbRole};
use fintrail_domain::ledger::Currency;

fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_owned()).unwrap_or_else(|| format!("no sqlstate: {e}"))
}

type Row = (String, i16, i16, String);

/// The file's rows, as SQL holds them.
fn file_rows() -> Vec<Row> {
    Currency::all()
        .map(|c| {
            let r = c.iso4217();
            let numeric = i16::try_from(r.numeric_code).expect("three digits fit");
            (r.code.to_owned(), numeric, i16::from(r.minor_units), r.name.to_owned())
        })
        .collect()
}

/// What a migration must insert to make the table equal the file (printed when they differ).
fn values_sql(rows: &[Row]) -> String {
    let lines: Vec<String> =
        rows.iter().map(|(c, n, m, name)| format!("    ('{c}', {n}, {m}, '{}')", name.replace('\'', "''"))).collect();
    format!("INSERT INTO fintrail.currencies (code, numeric_code, minor_units, name) VALUES\n{};", lines.join(",\n"))
}

/// The migrated table equals the file, row by row (read as the app role: it has SELECT).
#[tokio::test]
async fn the_migrated_currencies_table_is_the_iso4217_file() {
    let db = fresh_db().await;
    let app = db.connect(DbRole::App).await.unwrap();
    let in_sql: Vec<Row> = app
        .query("SELECT code, numeric_code, minor_units, name FROM fintrail.currencies ORDER BY code", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let in_file = file_rows();
    let only_sql: Vec<&Row> = in_sql.iter().filter(|r| !in_file.contains(r)).collect();
    let only_file: Vec<&Row> = in_file.iter().filter(|r| !in_sql.contains(r)).collect();
    assert!(
        only_sql.is_empty() && only_file.is_empty(),
        "fintrail.currencies differs from crates/domain/data/iso4217.csv: only in SQL {only_sql:?}, only in the \
         file {only_file:?}. Write a new migration that makes them equal; the file's rows are:\n{}",
        values_sql(&in_file)
    );
    assert_eq!(in_sql.len(), Currency::all().count());
}

/// The app role reads the table and changes nothing in it; on a fresh database both keys are
/// validated, and even a superuser's new wallet in `ZZZ` is refused.
#[tokio::test]
async fn currencies_are_read_only_and_every_key_is_validated() {
    let db = fresh_db().await;
    let app = db.connect(DbRole::App).await.unwrap();
    for sql in [
        "INSERT INTO fintrail.currencies (code, numeric_code, minor_units, name) VALUES ('ZZZ', 999, 2, 'Mine')",
        "UPDATE fintrail.currencies SET minor_units = 0 WHERE code = 'EUR'",
        "DELETE FROM fintrail.currencies WHERE code = 'EUR'",
        "TRUNCATE fintrail.currencies",
    ] {
        let e = app.batch_execute(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e), "42501", "{sql}: {e}");
    }
    let admin = db.connect(DbRole::Admin).await.unwrap();
    assert_keys(&admin, true, "settlement").await;
}

/// Both keys exist (the holds' always validated, the wallets' as `wallets_valid` says), and a
/// new wallet in `ZZZ` is refused by its key (23503) even when a superuser inserts it.
async fn assert_keys(admin: &tokio_postgres::Client, wallets_valid: bool, system_name: &str) {
    assert_eq!(
        validated(admin).await,
        [("holds_currency_assigned".into(), true), ("wallets_currency_assigned".into(), wallets_valid)]
    );
    let e = admin
        .execute(
            "INSERT INTO fintrail.wallets (kind, system_name, currency) VALUES ('system', $1, 'ZZZ')",
            &[&system_name],
        )
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23503", "a new wallet is checked: {e}");
}

async fn validated(c: &tokio_postgres::Client) -> Vec<(String, bool)> {
    c.query(
        "SELECT conname::text, convalidated FROM pg_constraint WHERE conname LIKE '%currency_assigned' ORDER BY 1",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// Migration 0043 on a database that already holds a wallet in `ZZZ` (migrated before it): the
/// migration succeeds, the wallet is kept, its key stays NOT VALID, and new rows are checked.
#[tokio::test]
async fn on_an_existing_database_a_wallet_in_an_unassigned_code_is_kept_and_new_ones_refused() {
    let db = fresh_db().await;
    let admin = db.connect(DbRole::Admin).await.unwrap();
    let m0043 = fintrail_db::migrate::all().into_iter().find(|m| m.version == 43).expect("migration 0043");
    // Back to the schema before 0043 (the keys go with the table), a legacy row, then 0043.
    admin
        .batch_execute(&format!(
            "BEGIN; SET LOCAL ROLE fintrail_owner;
             DROP TABLE fintrail.currencies CASCADE;
             INSERT INTO fintrail.wallets (kind, system_name, currency) VALUES ('system', 'settlement', 'ZZZ');
             {}
             COMMIT;",
            m0043.sql
        ))
        .await
        .expect("0043 applies over a legacy row");
    let kept: i64 =
        admin.query_one("SELECT count(*) FROM fintrail.wallets WHERE currency = 'ZZZ'", &[]).await.unwrap().get(0);
    assert_eq!(kept, 1, "the legacy wallet is kept");
    assert_keys(&admin, false, "external_funding").await;
}
