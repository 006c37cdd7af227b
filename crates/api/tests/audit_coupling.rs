//! Issue #16, item 1, performed with the app credential (`fintrail_app`) and raw SQL: money
//! moves, a KYC case is approved, a token is minted or revoked, a hold, a media object, a
//! customer or a wallet is written, with no audit event. Each is refused at commit (FT030,
//! migration 0036) and nothing of the transaction is kept. An event of another transaction, or
//! with the wrong action, does not count; the same change with its event commits.

use fintrail_api::machines::apply_transition;
use fintrail_db::testing::{fresh_db, RECORD_THIS_TRANSACTION};
use fintrail_db::DbRole;
use fintrail_domain::{KybState, KycState, Role};
use fintrail_tooling::fixtures;

fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_owned()).unwrap_or_else(|| format!("no sqlstate: {e}"))
}

async fn count(c: &tokio_postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn no_change_commits_without_its_audit_event() {
    let db = fresh_db().await;
    let wallets = fixtures::funded_wallets(&db, 2, 1_000).await.unwrap();
    let (a, b) = (wallets[0], wallets[1]);
    let customer: i64 = db
        .connect(DbRole::App)
        .await
        .unwrap()
        .query_one("SELECT customer_id FROM fintrail.wallets WHERE id = $1", &[&a])
        .await
        .unwrap()
        .get(0);
    let case: i64 = {
        let c = db.connect(DbRole::App).await.unwrap();
        c.query_one("SELECT id FROM fintrail.kyc_cases WHERE customer_id = $1", &[&customer]).await.unwrap().get(0)
    };
    let pending = fixtures::customer_in_kyc_state(&db, KycState::Started).await.unwrap();
    let app = db.connect(DbRole::App).await.unwrap();
    // Tokens are issued by a credentialed actor or an administrative session (migration 0037).
    let admin = db.connect(DbRole::Admin).await.unwrap();
    admin
        .batch_execute(&format!(
            "BEGIN; INSERT INTO fintrail.api_tokens (token_hash, role, label, expires_at) \
         VALUES (sha256('victim'), 'admin', 'ops', now() + interval '1 day'); {RECORD_THIS_TRANSACTION}; COMMIT"
        ))
        .await
        .unwrap();
    let token: i64 = app.query_one("SELECT max(id) FROM fintrail.api_tokens", &[]).await.unwrap().get(0);
    let hold_sql = format!(
        "INSERT INTO fintrail.holds (debit_wallet_id, credit_wallet_id, amount_minor, currency, actor, expires_at) \
         VALUES ({a}, {b}, 10, 'EUR', 'mallory', now() + interval '1 hour')"
    );
    app.batch_execute(&format!("BEGIN; {hold_sql}; {RECORD_THIS_TRANSACTION}; COMMIT")).await.unwrap();
    let hold: i64 = app.query_one("SELECT max(id) FROM fintrail.holds", &[]).await.unwrap().get(0);
    let org = fixtures::organization(&db, KybState::Screening).await.unwrap();

    // Each change alone, in its own transaction, without an event: refused at commit.
    let changes = [
        ("token minted", "INSERT INTO fintrail.api_tokens (token_hash, role, label, expires_at) VALUES (sha256('m'), 'admin', 'm', now() + interval '1 day')".to_owned()),
        ("token revoked", format!("UPDATE fintrail.api_tokens SET revoked_at = now() WHERE id = {token}")),
        ("hold created", hold_sql.clone()),
        ("hold voided", format!("UPDATE fintrail.holds SET status = 'voided' WHERE id = {hold}")),
        ("customer", "INSERT INTO fintrail.customers (display_name, email) VALUES ('M', 'm@example.com')".to_owned()),
        ("kyc case", format!("INSERT INTO fintrail.kyc_cases (customer_id, state) VALUES ({pending}, 'started')")),
        ("wallet", format!("INSERT INTO fintrail.wallets (kind, customer_id, currency) VALUES ('customer', {customer}, 'USD')")),
        ("organization", "INSERT INTO fintrail.organizations (legal_name, registration_number, country, state) VALUES ('M', 'R', 'DE', 'registered')".to_owned()),
        ("media registered", format!(
            "INSERT INTO fintrail.media_objects (customer_id, kyc_case_id, kind, content_type, size_bytes, sha256, storage_key) \
             VALUES ({customer}, {case}, 'selfie', 'image/png', 1, sha256('x'), 'm/x')"
        )),
    ];
    for (what, sql) in &changes {
        let before = count(&app, "SELECT count(*) FROM fintrail.audit_events").await;
        let e = app.batch_execute(&format!("BEGIN; {sql}; COMMIT")).await.expect_err(what);
        assert_eq!(sqlstate(&e), "FT030", "{what}: {e}");
        assert!(e.to_string().contains("audit event") || format!("{e:?}").contains("audit event"), "{what}: {e:?}");
        app.batch_execute("ROLLBACK").await.unwrap();
        assert_eq!(count(&app, "SELECT count(*) FROM fintrail.audit_events").await, before);
    }
    // An event with the wrong action or naming another subject does not count, nor does a
    // denial (0051): the app role may record one for an actor nobody can check, and the trail
    // would say refused while the change committed.
    for (what, actor, action, subject, allowed) in [
        ("wrong action", "system:test", "token.revoked", "'customer:' || max(id)", true),
        ("wrong subject", "system:test", "customer.created", "'customer:' || (max(id) + 1)", true),
        ("a denial", "anonymous:probe", "customer.created", "'customer:' || max(id)", false),
    ] {
        let e = app
            .batch_execute(&format!(
                "BEGIN; INSERT INTO fintrail.customers (display_name, email) VALUES ('M', 'm@example.com'); \
                 INSERT INTO fintrail.audit_events (actor, action, subject, allowed) \
                 SELECT '{actor}', '{action}', {subject}, {allowed} FROM fintrail.customers; COMMIT"
            ))
            .await
            .expect_err(what);
        assert_eq!(sqlstate(&e), "FT030", "{what}: {e}");
        app.batch_execute("ROLLBACK").await.unwrap();
    }
    // With its event, each change commits (the coupling refuses only what is unrecorded; a
    // token is minted only by an administrative session or a credentialed actor: 0037).
    for (what, sql) in &changes[1..4] {
        app.batch_execute(&format!("BEGIN; {sql}; {RECORD_THIS_TRANSACTION}; COMMIT"))
            .await
            .unwrap_or_else(|e| panic!("{what} with its event: {e:?}"));
    }

    // Money: a transfer without its event; with an event of another transaction; with its
    // event written after it (the statement check wants it first); then properly.
    let balance = |w: i64| format!("SELECT balance_minor FROM fintrail.wallets WHERE id = {w}");
    let next = count(&app, "SELECT nextval('fintrail.transfers_id_seq')").await;
    let insert = format!(
        "INSERT INTO fintrail.transfers (id, kind, debit_wallet_id, credit_wallet_id, amount_minor, currency, actor) \
         VALUES ({next}, 'transfer', {a}, {b}, 500, 'EUR', 'mallory')"
    );
    // The app role records a money movement only for a person with a live token (0052).
    let payer =
        fintrail_api::identity::create_token(&db, Role::Admin, None, "payer", 3600, "operator:test").await.unwrap();
    let event = format!(
        "INSERT INTO fintrail.audit_events (actor, action, subject, allowed, credential) \
         VALUES ('staff:{}:payer', 'ledger.transfer.posted', 'transfer:{next}', true, '{}')",
        payer.token_id, payer.token
    );
    let e = app.batch_execute(&insert).await.expect_err("a silent transfer");
    assert_eq!(sqlstate(&e), "FT030", "{e}");
    app.batch_execute(&event).await.unwrap();
    let e = app.batch_execute(&insert).await.expect_err("an event of another transaction");
    assert_eq!(sqlstate(&e), "FT030", "{e}");
    let e = app.batch_execute(&format!("BEGIN; {insert}; {event}; COMMIT")).await.expect_err("event after");
    assert_eq!(sqlstate(&e), "FT030", "{e}");
    app.batch_execute("ROLLBACK").await.unwrap();
    let denial = format!(
        "INSERT INTO fintrail.audit_events (actor, action, subject, allowed) \
         VALUES ('anonymous:probe', 'ledger.transfer.posted', 'transfer:{next}', false)"
    );
    let e = app.batch_execute(&format!("BEGIN; {denial}; {insert}; COMMIT")).await.expect_err("a denial as the record");
    assert_eq!(sqlstate(&e), "FT030", "{e}");
    app.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(count(&app, &balance(a)).await, 1_000, "no money moved");
    app.batch_execute(&format!("BEGIN; {event}; {insert}; COMMIT")).await.expect("with its event first");
    assert_eq!(count(&app, &balance(a)).await, 500);

    // A KYC approval and a KYB transition through the real protocol, without their events.
    let reviewed = fixtures::customer_in_kyc_state(&db, KycState::InReview).await.unwrap();
    let in_review: i64 =
        count(&app, &format!("SELECT id FROM fintrail.kyc_cases WHERE customer_id = {reviewed}")).await;
    let mut c = db.connect(DbRole::App).await.unwrap();
    let tx = c.transaction().await.unwrap();
    apply_transition(&tx, in_review, KycState::InReview, KycState::Approved, "staff:1:alice", "silent", None)
        .await
        .expect("the protocol itself accepts it until commit");
    let e = tx.commit().await.expect_err("an approval without its event");
    assert_eq!(sqlstate(&e), "FT030", "{e}");
    let state: String =
        c.query_one("SELECT state FROM fintrail.kyc_cases WHERE id = $1", &[&in_review]).await.unwrap().get(0);
    assert_eq!(state, "in_review");
    let tx = c.transaction().await.unwrap();
    apply_transition(&tx, org, KybState::Screening, KybState::Clear, "system:job:rescreen", "silent", None)
        .await
        .unwrap();
    let e = tx.commit().await.expect_err("a screening transition without its event");
    assert_eq!(sqlstate(&e), "FT030", "{e}");
}
