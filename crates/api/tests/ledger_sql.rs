//! The ledger's database rules, proven with raw SQL as the application role (and as the owner
//! where the point is that even the owner cannot rewrite history).

use fintrail_db::testing::fresh_db;
use fintrail_db::DbRole;
use fintrail_domain::KycState;
use fintrail_tooling::fixtures;

fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_owned()).unwrap_or_else(|| format!("no sqlstate: {e}"))
}

async fn wallet(c: &tokio_postgres::Client, customer: i64, currency: &str) -> i64 {
    c.query_one(
        "INSERT INTO fintrail.wallets (kind, customer_id, currency) VALUES ('customer', $1, $2) RETURNING id",
        &[&customer, &currency],
    )
    .await
    .expect("wallet opens")
    .get(0)
}

async fn system(c: &tokio_postgres::Client, name: &str, currency: &str) -> i64 {
    c.query_one(
        "INSERT INTO fintrail.wallets (kind, system_name, currency) VALUES ('system', $1, $2) RETURNING id",
        &[&name, &currency],
    )
    .await
    .expect("system wallet")
    .get(0)
}

async fn transfer(
    c: &tokio_postgres::Client,
    kind: &str,
    d: i64,
    cr: i64,
    amount: i64,
    cur: &str,
) -> Result<i64, tokio_postgres::Error> {
    c.query_one(
        "INSERT INTO fintrail.transfers (kind, debit_wallet_id, credit_wallet_id, amount_minor, currency, actor) \
         VALUES ($1, $2, $3, $4, $5, 'test') RETURNING id",
        &[&kind, &d, &cr, &amount, &cur],
    )
    .await
    .map(|r| r.get(0))
}

#[tokio::test]
async fn app_role_cannot_forge_entries_balances_or_history() {
    let db = fresh_db().await;
    let ids = fixtures::approved_customers(&db, 2).await.unwrap();
    let app = db.connect(DbRole::App).await.unwrap();
    let a = wallet(&app, ids[0], "EUR").await;
    let b = wallet(&app, ids[1], "EUR").await;
    let funding = system(&app, "external_funding", "EUR").await;
    let t = transfer(&app, "deposit", funding, a, 1_000, "EUR").await.unwrap();

    // The trigger wrote the two entries with running balances, and moved both balances.
    let rows = app.query("SELECT wallet_id, amount_minor, balance_after_minor FROM fintrail.entries WHERE transfer_id = $1 ORDER BY id", &[&t]).await.unwrap();
    let got: Vec<(i64, i64, i64)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(got, vec![(funding, -1_000, -1_000), (a, 1_000, 1_000)]);

    // No DML on entries, no UPDATE/DELETE on transfers or balances for the app role.
    for sql in [
        format!("INSERT INTO fintrail.entries (transfer_id, wallet_id, amount_minor, currency, balance_after_minor) VALUES ({t}, {a}, 5, 'EUR', 5)"),
        format!("UPDATE fintrail.entries SET amount_minor = 5 WHERE transfer_id = {t}"),
        format!("DELETE FROM fintrail.entries WHERE transfer_id = {t}"),
        format!("UPDATE fintrail.transfers SET amount_minor = 5 WHERE id = {t}"),
        format!("DELETE FROM fintrail.transfers WHERE id = {t}"),
        format!("UPDATE fintrail.wallets SET balance_minor = 1000000 WHERE id = {a}"),
        format!("DELETE FROM fintrail.wallets WHERE id = {a}"),
        "TRUNCATE fintrail.entries".to_owned(),
    ] {
        let e = app.batch_execute(&sql).await.expect_err(&sql);
        assert_eq!(sqlstate(&e), "42501", "{sql}: {e}");
    }

    // Even the owner cannot rewrite posted entries or balances (triggers).
    let admin = db.connect(DbRole::Admin).await.unwrap();
    for (sql, code) in [
        (format!("UPDATE fintrail.entries SET amount_minor = 5 WHERE transfer_id = {t}"), "FT004"),
        (format!("DELETE FROM fintrail.transfers WHERE id = {t}"), "FT004"),
        ("TRUNCATE fintrail.entries CASCADE".to_owned(), "FT004"),
        (format!("UPDATE fintrail.wallets SET balance_minor = 7 WHERE id = {a}"), "FT011"),
        // Entries come only with their transfer: an entry naming no transfer is refused too.
        (
            format!("INSERT INTO fintrail.entries (transfer_id, wallet_id, amount_minor, currency, balance_after_minor) VALUES (999999, {a}, 5, 'EUR', 5)"),
            "FT012",
        ),
        (format!("UPDATE fintrail.wallets SET currency = 'USD' WHERE id = {a}"), "FT011"),
    ] {
        let e = admin
            .batch_execute(&format!("BEGIN; SET LOCAL ROLE fintrail_owner; {sql}; COMMIT;"))
            .await
            .expect_err(&sql);
        assert_eq!(sqlstate(&e), code, "{sql}: {e}");
        admin.batch_execute("ROLLBACK").await.unwrap();
    }

    // Rules: floor, currency, kinds, reversal mirror and uniqueness.
    let e = transfer(&app, "transfer", a, b, 1_001, "EUR").await.unwrap_err();
    assert_eq!(sqlstate(&e), "23514", "overdraft refused by the floor CHECK: {e}");
    let usd = wallet(&app, ids[1], "USD").await;
    assert_eq!(sqlstate(&transfer(&app, "transfer", a, usd, 1, "EUR").await.unwrap_err()), "FT013");
    assert_eq!(
        sqlstate(&transfer(&app, "transfer", funding, b, 1, "EUR").await.unwrap_err()),
        "FT013",
        "plain transfers never touch system accounts"
    );
    assert_eq!(sqlstate(&transfer(&app, "transfer", a, a, 1, "EUR").await.unwrap_err()), "23514");
    assert_eq!(sqlstate(&transfer(&app, "transfer", a, b, 0, "EUR").await.unwrap_err()), "23514");
    assert_eq!(sqlstate(&transfer(&app, "transfer", a, b, -5, "EUR").await.unwrap_err()), "23514");
    let t2 = transfer(&app, "transfer", a, b, 400, "EUR").await.unwrap();
    let rev = "INSERT INTO fintrail.transfers (kind, debit_wallet_id, credit_wallet_id, amount_minor, currency, reverses_transfer_id, actor) \
               VALUES ('reversal', $1, $2, $3, 'EUR', $4, 'test')";
    let e = app.execute(rev, &[&b, &a, &399i64, &t2]).await.unwrap_err();
    assert_eq!(sqlstate(&e), "FT014", "a reversal mirrors its original: {e}");
    app.execute(rev, &[&b, &a, &400i64, &t2]).await.unwrap();
    let e = app.execute(rev, &[&b, &a, &400i64, &t2]).await.unwrap_err();
    assert_eq!(sqlstate(&e), "23505", "at most one reversal: {e}");

    // A hold reserves funds under the floor; leaving pending releases them; only once.
    let hold: i64 = app
        .query_one(
            "INSERT INTO fintrail.holds (debit_wallet_id, credit_wallet_id, amount_minor, currency, actor, expires_at) \
             VALUES ($1, $2, 900, 'EUR', 'test', now() + interval '1 hour') RETURNING id",
            &[&a, &b],
        )
        .await
        .unwrap()
        .get(0);
    let held: i64 = app.query_one("SELECT held_minor FROM fintrail.wallets WHERE id = $1", &[&a]).await.unwrap().get(0);
    assert_eq!(held, 900);
    assert_eq!(
        sqlstate(&transfer(&app, "transfer", a, b, 200, "EUR").await.unwrap_err()),
        "23514",
        "held funds are not available"
    );
    app.execute("UPDATE fintrail.holds SET status = 'voided' WHERE id = $1", &[&hold]).await.unwrap();
    let e = app
        .execute("UPDATE fintrail.holds SET status = 'posted', posted_minor = 1 WHERE id = $1", &[&hold])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "FT016", "only pending holds change: {e}");
    let held: i64 = app.query_one("SELECT held_minor FROM fintrail.wallets WHERE id = $1", &[&a]).await.unwrap().get(0);
    assert_eq!(held, 0);
    // A hold posting must match a hold posted in the same transaction.
    let e = app
        .execute(
            "INSERT INTO fintrail.transfers (kind, debit_wallet_id, credit_wallet_id, amount_minor, currency, hold_id, actor) \
             VALUES ('hold_post', $1, $2, 900, 'EUR', $3, 'test')",
            &[&a, &b, &hold],
        )
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "FT015", "{e}");

    // Idempotency keys are not deleted before expiry.
    app.execute(
        "INSERT INTO fintrail.idempotency_keys (principal, key, request_hash, status_code, response, expires_at) \
         VALUES ('p', 'k', decode(repeat('00', 32), 'hex'), 201, '{}', now() + interval '1 day')",
        &[],
    )
    .await
    .unwrap();
    let e = app.execute("DELETE FROM fintrail.idempotency_keys WHERE principal = 'p'", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&e), "FT018");

    let mut checker = db.connect(DbRole::App).await.unwrap();
    let report = fintrail_ledger::check::run(&mut checker).await.unwrap();
    assert!(report.ok(), "{:?}", report.violations);
    assert_eq!(report.transfers, 3);
}

#[tokio::test]
async fn wallets_open_only_for_approved_kyc_or_cleared_organizations() {
    let db = fresh_db().await;
    let app = db.connect(DbRole::App).await.unwrap();
    let pending = fixtures::customer_in_kyc_state(&db, KycState::InReview).await.unwrap();
    let e = app
        .execute(
            "INSERT INTO fintrail.wallets (kind, customer_id, currency) VALUES ('customer', $1, 'EUR')",
            &[&pending],
        )
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "FT010");
    let screening = fixtures::organization(&db, fintrail_domain::KybState::Screening).await.unwrap();
    let e = app
        .execute(
            "INSERT INTO fintrail.wallets (kind, organization_id, currency) VALUES ('organization', $1, 'EUR')",
            &[&screening],
        )
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "FT010");
    let cleared = fixtures::organization(&db, fintrail_domain::KybState::Cleared).await.unwrap();
    app.execute(
        "INSERT INTO fintrail.wallets (kind, organization_id, currency) VALUES ('organization', $1, 'EUR')",
        &[&cleared],
    )
    .await
    .unwrap();
    // The database picks the floor and the opening balance, not the client.
    let e = app
        .execute("INSERT INTO fintrail.wallets (kind, organization_id, currency, balance_minor) VALUES ('organization', $1, 'USD', 100)", &[&cleared])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501");
}

#[tokio::test]
async fn ledger_check_names_tampering_by_a_superuser() {
    let db = fresh_db().await;
    let ids = fixtures::approved_customers(&db, 1).await.unwrap();
    let app = db.connect(DbRole::App).await.unwrap();
    let a = wallet(&app, ids[0], "EUR").await;
    let funding = system(&app, "external_funding", "EUR").await;
    transfer(&app, "deposit", funding, a, 500, "EUR").await.unwrap();
    // A superuser disables the triggers and edits an entry: the check must notice.
    let admin = db.connect(DbRole::Admin).await.unwrap();
    admin
        .batch_execute(&format!(
            "SET session_replication_role = replica; UPDATE fintrail.entries SET amount_minor = 600 WHERE wallet_id = {a}; \
             INSERT INTO fintrail.entries (transfer_id, wallet_id, amount_minor, currency, balance_after_minor) \
             VALUES (999999, {a}, 1, 'EUR', 1), (999998, 888888, -1, 'EUR', -1); \
             SET session_replication_role = origin;"
        ))
        .await
        .unwrap();
    let mut checker = db.connect(DbRole::App).await.unwrap();
    let report = fintrail_ledger::check::run(&mut checker).await.unwrap();
    let text: Vec<String> = report.violations.iter().map(|v| v.to_string()).collect();
    assert!(text.iter().any(|t| t.contains("currency EUR")), "{text:?}");
    assert!(text.iter().any(|t| t.contains("transfer ")), "{text:?}");
    assert!(text.iter().any(|t| t.contains(&format!("wallet {a}: stored balance 500"))), "{text:?}");
    assert!(text.iter().any(|t| t.contains(&format!("names transfer 999999 and wallet {a}"))), "{text:?}");
    assert!(text.iter().any(|t| t.contains("names transfer 999998 and wallet 888888")), "{text:?}");
}

/// Issue #16, items 5 and 6, with the app credential: a transfer id the sequence has not issued
/// (it would collide with a later transfer) is refused; a hold marked posted without its
/// `hold_post` transfer is refused at commit; and with the triggers off (superuser), `ledger
/// check` names the hold.
#[tokio::test]
async fn app_role_cannot_choose_transfer_ids_or_post_a_hold_without_its_transfer() {
    let db = fresh_db().await;
    let ids = fixtures::approved_customers(&db, 2).await.unwrap();
    let mut app = db.connect(DbRole::App).await.unwrap();
    let a = wallet(&app, ids[0], "EUR").await;
    let b = wallet(&app, ids[1], "EUR").await;
    let funding = system(&app, "external_funding", "EUR").await;
    transfer(&app, "deposit", funding, a, 1_000, "EUR").await.unwrap();
    let future = app
        .execute(
            "INSERT INTO fintrail.transfers (id, kind, debit_wallet_id, credit_wallet_id, amount_minor, currency, actor) \
             VALUES (9000000000000000000, 'transfer', $1, $2, 5, 'EUR', 'mallory')",
            &[&a, &b],
        )
        .await
        .expect_err("a future id");
    assert_eq!(sqlstate(&future), "FT021", "{future}");

    let hold: i64 = app
        .query_one(
            "INSERT INTO fintrail.holds (debit_wallet_id, credit_wallet_id, amount_minor, currency, actor, expires_at) \
             VALUES ($1, $2, 300, 'EUR', 'test', now() + interval '1 hour') RETURNING id",
            &[&a, &b],
        )
        .await
        .unwrap()
        .get(0);
    let tx = app.transaction().await.unwrap();
    tx.execute("UPDATE fintrail.holds SET status = 'posted', posted_minor = 300 WHERE id = $1", &[&hold])
        .await
        .unwrap();
    let e = tx.commit().await.expect_err("posted without its transfer");
    assert_eq!(sqlstate(&e), "FT022", "{e}");

    // Past the database (a superuser with triggers off), the check still sees it.
    let su = db.connect(DbRole::Admin).await.unwrap();
    su.batch_execute(&format!(
        "SET session_replication_role = replica; UPDATE fintrail.holds SET status = 'posted', posted_minor = 300, settled_at = now() WHERE id = {hold}"
    ))
    .await
    .unwrap();
    let report = fintrail_ledger::check::run(&mut app).await.unwrap();
    assert!(
        report
            .violations
            .iter()
            .any(|v| matches!(v, fintrail_domain::ledger::Violation::HoldPosting { hold_id, .. } if *hold_id == hold)),
        "{:?}",
        report.violations
    );
}
