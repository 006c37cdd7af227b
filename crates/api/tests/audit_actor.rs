//! Issue #16, items 2 and 4, performed with the app credential (`fintrail_app`) and raw SQL:
//! an event naming a staff member or a customer needs the bearer token the request was made
//! with (migration 0037); a token cannot be minted with the app credential alone; actors that
//! name nobody are limited to the platform's own forms. Refusals are FT031; nothing is written.

use fintrail_api::identity::create_token;
use fintrail_db::testing::fresh_db;
use fintrail_db::DbRole;
use fintrail_domain::Role;

fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_owned()).unwrap_or_else(|| format!("no sqlstate: {e}"))
}

const INSERT: &str = "INSERT INTO fintrail.audit_events (actor, action, subject, allowed, credential) \
                      VALUES ($1, $2, 'kyc_case:1', $3, $4)";

#[tokio::test]
async fn events_name_only_the_holder_of_the_presented_token() {
    let db = fresh_db().await;
    let alice = create_token(&db, Role::ComplianceOfficer, None, "alice", 3600, "operator:root").await.unwrap();
    let bob = create_token(&db, Role::KycAnalyst, None, "bob", 3600, "operator:root").await.unwrap();
    let gone = create_token(&db, Role::Admin, None, "gone", 3600, "operator:root").await.unwrap();
    let admin = db.connect(DbRole::Admin).await.unwrap();
    let id = gone.token_id;
    admin
        .batch_execute(&format!(
            "BEGIN; UPDATE fintrail.api_tokens SET revoked_at = now() WHERE id = {id}; \
             INSERT INTO fintrail.audit_events (actor, action, subject, allowed) \
             VALUES ('operator:root', 'token.revoked', 'token:{id}', true); COMMIT"
        ))
        .await
        .unwrap();
    let app = db.connect(DbRole::App).await.unwrap();
    let alice_actor = format!("staff:{}:alice", alice.token_id);
    let count =
        || async { app.query_one("SELECT count(*) FROM fintrail.audit_events", &[]).await.unwrap().get::<_, i64>(0) };
    let before = count().await;

    let approve = "kyc.case.transitioned";
    let refused: [(&str, String, &str, bool, Option<&str>); 9] = [
        ("no credential", alice_actor.clone(), approve, true, None),
        ("another staff member's token", alice_actor.clone(), approve, true, Some(bob.token.as_str())),
        ("a made-up token", alice_actor.clone(), approve, true, Some("ft_not-a-token")),
        (
            "the right token, another label",
            format!("staff:{}:mallory", alice.token_id),
            approve,
            true,
            Some(alice.token.as_str()),
        ),
        ("a revoked token", format!("staff:{}:gone", gone.token_id), approve, true, Some(gone.token.as_str())),
        ("a customer without a token", "customer:1".to_owned(), approve, true, None),
        ("an operator through the app role", "operator:root".to_owned(), approve, true, None),
        ("an anonymous actor on an allowed event", "anonymous:signed_url".to_owned(), approve, true, None),
        ("a token minted by the platform itself", "system:demo".to_owned(), "token.issued", true, None),
    ];
    for (what, actor, action, allowed, credential) in &refused {
        let e = app.execute(INSERT, &[actor, action, allowed, credential]).await.expect_err(what);
        assert_eq!(sqlstate(&e), "FT031", "{what}: {e}");
    }
    assert_eq!(count().await, before, "nothing written");

    // A signed URL's actor lives only as long as its issuing token.
    let e = app
        .execute(
            INSERT,
            &[
                &format!("signed_url:0123456789abcdef:token:{}", gone.token_id),
                &"media.signed_url.redeemed",
                &true,
                &None::<&str>,
            ],
        )
        .await
        .expect_err("a dead token's signed URL");
    assert_eq!(sqlstate(&e), "FT031", "{e}");

    // Accepted: the holder with its token (the bearer is not stored), the platform's own
    // actors, and refusals of nobody in particular.
    app.execute(INSERT, &[&alice_actor, &approve, &true, &Some(alice.token.as_str())]).await.expect("the holder");
    app.execute(
        INSERT,
        &[
            &format!("signed_url:0123456789abcdef:token:{}", alice.token_id),
            &"media.signed_url.redeemed",
            &true,
            &None::<&str>,
        ],
    )
    .await
    .expect("a live token's signed URL");
    app.execute(INSERT, &[&"system:job:hold-expiry", &"ledger.hold.expired", &true, &None::<&str>])
        .await
        .expect("a job");
    app.execute(INSERT, &[&"oidc:unauthenticated", &"access.denied", &false, &None::<&str>]).await.expect("a refusal");
    assert_eq!(count().await, before + 4);
    let stored: i64 = app
        .query_one("SELECT count(*) FROM fintrail.audit_events WHERE credential IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 0, "the bearer is never stored");

    // Item 2 end to end: the app credential cannot mint itself an admin token, even with an
    // event, unless it presents a live staff bearer.
    let e = app
        .batch_execute(
            "BEGIN; INSERT INTO fintrail.api_tokens (token_hash, role, label, expires_at) \
             VALUES (sha256('minted'), 'admin', 'm', now() + interval '30 days'); \
             INSERT INTO fintrail.audit_events (actor, action, subject, allowed) \
             SELECT 'system:ledger', 'token.issued', 'token:' || max(id), true FROM fintrail.api_tokens; COMMIT",
        )
        .await
        .expect_err("a minted token");
    assert_eq!(sqlstate(&e), "FT031", "{e}");
    app.batch_execute("ROLLBACK").await.unwrap();
    let minted: i64 = app
        .query_one("SELECT count(*) FROM fintrail.api_tokens WHERE token_hash = sha256('minted')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(minted, 0);
}
