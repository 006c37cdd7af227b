//! Issue #16, items 2, 5 and 6: what the app credential may no longer choose, each attack
//! performed with raw SQL as `fintrail_app` against a real database.

use fintrail_db::testing::{fresh_db, RECORD_THIS_TRANSACTION};
use fintrail_db::DbRole;
use fintrail_tooling::fixtures;

fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_owned()).unwrap_or_else(|| format!("no sqlstate: {e}"))
}

/// Ids far above every later one: a history row with one froze its case for ever; a chosen id
/// anywhere collided with a later insert. Every such insert is refused for lack of privilege.
#[tokio::test]
async fn the_app_cannot_choose_identities() {
    let db = fresh_db().await;
    let customers = fixtures::approved_customers(&db, 1).await.unwrap();
    let app = db.connect(DbRole::App).await.unwrap();
    let case: i64 = app
        .query_one("SELECT id FROM fintrail.kyc_cases WHERE customer_id = $1", &[&customers[0]])
        .await
        .unwrap()
        .get(0);
    let big = 9_000_000_000_000_000_000_i64;
    for sql in [
        format!("INSERT INTO fintrail.customers (id, display_name, email) OVERRIDING SYSTEM VALUE VALUES ({big}, 'M', 'm@example.com')"),
        format!("INSERT INTO fintrail.kyc_cases (id, customer_id, state) OVERRIDING SYSTEM VALUE VALUES ({big}, {}, 'started')", customers[0]),
        format!(
            "INSERT INTO fintrail.kyc_case_transitions (id, case_id, from_state, to_state, actor, reason) OVERRIDING SYSTEM VALUE \
             VALUES ({big}, {case}, 'approved', 'expired', 'mallory', 'freeze')"
        ),
        format!("INSERT INTO fintrail.organizations (id, legal_name, registration_number, country, state) OVERRIDING SYSTEM VALUE VALUES ({big}, 'M', 'R1', 'DE', 'registered')"),
        format!("INSERT INTO fintrail.api_tokens (id, token_hash, role, label, expires_at) OVERRIDING SYSTEM VALUE VALUES ({big}, sha256('t'), 'admin', 'm', now() + interval '1 day')"),
        format!(
            "INSERT INTO fintrail.media_objects (id, customer_id, kyc_case_id, kind, content_type, size_bytes, sha256, storage_key) \
             OVERRIDING SYSTEM VALUE VALUES ({big}, {}, {case}, 'selfie', 'image/png', 1, sha256('x'), 'm/x')",
            customers[0]
        ),
    ] {
        let e = app.batch_execute(&sql).await.expect_err(&sql);
        assert_eq!(sqlstate(&e), "42501", "{sql}: {e}");
    }
}

/// Item 2: a token cannot be back-dated nor outlive 30 days, and none is minted without its
/// `token.issued` event in the same transaction (the coupling, migration 0036).
#[tokio::test]
async fn the_app_cannot_backdate_a_token_or_make_it_live_a_century() {
    let db = fresh_db().await;
    let app = db.connect(DbRole::App).await.unwrap();
    let backdated = app
        .batch_execute(
            "INSERT INTO fintrail.api_tokens (token_hash, role, label, created_at, expires_at) \
             VALUES (sha256('a'), 'admin', 'm', now() - interval '99 years', now() + interval '100 years')",
        )
        .await
        .expect_err("back-dated");
    assert_eq!(sqlstate(&backdated), "42501", "{backdated}");
    let century = app
        .batch_execute(
            "INSERT INTO fintrail.api_tokens (token_hash, role, label, expires_at) \
             VALUES (sha256('b'), 'admin', 'm', now() + interval '100 years')",
        )
        .await
        .expect_err("a century");
    assert_eq!(sqlstate(&century), "23514", "{century}");
    // Thirty days is the API's own limit: without its audit event it is still refused at commit.
    let minted = "INSERT INTO fintrail.api_tokens (token_hash, role, label, expires_at) VALUES (sha256('c'), 'admin', 'm', now() + interval '30 days')";
    let silent = app.batch_execute(minted).await.expect_err("a token without its event");
    assert_eq!(sqlstate(&silent), "FT030", "{silent}");
    let n: i64 = app.query_one("SELECT count(*) FROM fintrail.api_tokens", &[]).await.unwrap().get(0);
    assert_eq!(n, 0, "nothing of the refused transaction is kept");
    // With its event, from an administrative session (the app credential alone may not issue
    // a token: migration 0037), it passes.
    let admin = db.connect(DbRole::Admin).await.unwrap();
    admin
        .batch_execute(&format!("BEGIN; {minted}; {RECORD_THIS_TRANSACTION}; COMMIT"))
        .await
        .expect("within the limit, with its event");
}

/// Item 6: a case's version and updated_at move only with its state (the trigger sets them).
#[tokio::test]
async fn case_version_and_updated_at_do_not_move_without_a_state_change() {
    let db = fresh_db().await;
    let customers = fixtures::approved_customers(&db, 1).await.unwrap();
    let app = db.connect(DbRole::App).await.unwrap();
    for sql in [
        format!("UPDATE fintrail.kyc_cases SET version = 99 WHERE customer_id = {}", customers[0]),
        format!(
            "UPDATE fintrail.kyc_cases SET updated_at = now() - interval '1 year' WHERE customer_id = {}",
            customers[0]
        ),
        "UPDATE fintrail.organizations SET version = 99".to_owned(),
        "UPDATE fintrail.organizations SET updated_at = now()".to_owned(),
    ] {
        let e = app.batch_execute(&sql).await.expect_err(&sql);
        assert_eq!(sqlstate(&e), "42501", "{sql}: {e}");
    }
}

/// Any unique violation that still reaches a handler is a 409 with a JSON code, never a 500.
#[tokio::test]
async fn a_unique_violation_maps_to_409() {
    let db = fresh_db().await;
    let app = db.connect(DbRole::App).await.unwrap();
    let insert = "INSERT INTO fintrail.api_tokens (token_hash, role, label, expires_at) VALUES (sha256('dup'), 'admin', 'm', now() + interval '1 day')";
    let admin = db.connect(DbRole::Admin).await.unwrap();
    admin.batch_execute(&format!("BEGIN; {insert}; {RECORD_THIS_TRANSACTION}; COMMIT")).await.expect("first");
    let e = app.batch_execute(insert).await.expect_err("second");
    assert_eq!(sqlstate(&e), "23505");
    let api = fintrail_api::error::ApiError::from(e);
    assert_eq!((api.status.as_u16(), api.code), (409, "already_exists"));
}
