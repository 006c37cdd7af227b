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
    let refused: [(&str, String, &str, bool, Option<&str>); 11] = [
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
        // Money moves through the app role only for a person with a live token (0052).
        ("a job moving money", "system:job:hold-expiry".to_owned(), "ledger.transfer.posted", true, None),
        (
            "a signed URL recording anything but its redemption",
            format!("signed_url:0123456789abcdef:token:{}", alice.token_id),
            "ledger.deposit.posted",
            true,
            None,
        ),
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

/// The shape of an event (migration 0045 moved the column rules from CHECKs into the insert
/// trigger): refused for every role, as `check_violation` (a `before`/`after` that is not JSON
/// fails its cast), before a sequence number is taken; system actors keep their character set.
#[tokio::test]
async fn an_event_of_the_wrong_shape_is_refused_for_every_role_and_takes_no_number() {
    let db = fresh_db().await;
    let admin = db.connect(DbRole::Admin).await.unwrap();
    let app = db.connect(DbRole::App).await.unwrap();
    const SHAPED: &str = "INSERT INTO fintrail.audit_events \
        (actor, on_behalf_of, action, subject, permission, allowed, request_id, before, after) \
        VALUES ($1, $2, $3, $4, $5, true, $6, $7, $8)";
    let last_seq = || async {
        admin.query_one("SELECT last_value FROM fintrail.audit_events_seq", &[]).await.unwrap().get::<_, i64>(0)
    };
    let ok: [Option<String>; 8] = [
        Some("system:shape".into()),
        Some("customer:1".into()),
        Some("kyc.case.transitioned".into()),
        Some("kyc_case:1".into()),
        Some("kyc.case.review".into()),
        Some("req-1".into()),
        Some(r#"{"state":"a"}"#.into()),
        None,
    ];
    let with = |i: usize, v: Option<String>| {
        let mut row = ok.clone();
        row[i] = v;
        row
    };
    let long = |n: usize| Some("x".repeat(n));
    let bad: [(&str, [Option<String>; 8], &str); 12] = [
        ("an empty actor", with(0, Some(String::new())), "23514"),
        ("a 201-character actor", with(0, long(201)), "23514"),
        ("a 201-character on_behalf_of", with(1, long(201)), "23514"),
        ("an action with a capital", with(2, Some("kyc.Case".into())), "23514"),
        ("a 65-character action", with(2, long(65)), "23514"),
        ("an empty subject", with(3, Some(String::new())), "23514"),
        ("a 201-character subject", with(3, long(201)), "23514"),
        ("a permission with a space", with(4, Some("kyc case".into())), "23514"),
        ("an empty permission", with(4, Some(String::new())), "23514"),
        ("a 65-character request id", with(5, long(65)), "23514"),
        ("a before that is not JSON", with(6, Some("{not json".into())), "22P02"),
        ("an after over 65536 characters", with(7, Some(format!("\"{}\"", "x".repeat(65_535)))), "23514"),
    ];
    let before = last_seq().await;
    for (what, row, code) in &bad {
        let e = admin
            .execute(SHAPED, &[&row[0], &row[1], &row[2], &row[3], &row[4], &row[5], &row[6], &row[7]])
            .await
            .expect_err(what);
        assert_eq!(sqlstate(&e), *code, "{what}: {e}");
    }
    assert_eq!(last_seq().await, before, "a refused event takes no sequence number");
    // The same rules bound each column's accepted range: its edges pass.
    let edges = [with(0, long(200)), with(2, Some("a".repeat(64))), with(5, long(64)), with(4, None)];
    for row in &edges {
        admin.execute(SHAPED, &[&row[0], &row[1], &row[2], &row[3], &row[4], &row[5], &row[6], &row[7]]).await.unwrap();
    }
    // The platform's own actors keep their character set and length (the app role).
    for actor in ["system:Job", "system:", "system:a b", &format!("system:{}", "a".repeat(101))] {
        let e = app.execute(INSERT, &[&actor, &"ledger.hold.expired", &true, &None::<&str>]).await.expect_err(actor);
        assert_eq!(sqlstate(&e), "FT031", "{actor}: {e}");
    }
    let longest = format!("system:{}", "a".repeat(100));
    for actor in ["system:job:hold-expiry_1.x", longest.as_str()] {
        app.execute(INSERT, &[&actor, &"ledger.hold.expired", &true, &None::<&str>]).await.expect(actor);
    }
}

/// Issue #16 item 4, the permission half (migration 0046): with the app credential and a live
/// token, an allowed event may claim only a permission that the token's role grants; a denial
/// may name any (the one that was missing). The roles' permissions the database checks are
/// written from Rust by `migrate`, which also undoes a drift; the app role cannot change them.
#[tokio::test]
async fn an_allowed_event_claims_only_a_permission_of_the_holders_role() {
    let db = fresh_db().await;
    let bob = create_token(&db, Role::KycAnalyst, None, "bob", 3600, "operator:root").await.unwrap();
    let bob_actor = format!("staff:{}:bob", bob.token_id);
    let app = db.connect(DbRole::App).await.unwrap();
    let insert = "INSERT INTO fintrail.audit_events (actor, action, subject, permission, allowed, credential) \
                  VALUES ($1, 'kyc.case.transitioned', 'kyc_case:1', $2, $3, $4)";
    let count =
        || async { app.query_one("SELECT count(*) FROM fintrail.audit_events", &[]).await.unwrap().get::<_, i64>(0) };
    let before = count().await;
    for claimed in ["kyb.org.decide", "token.issue", "wallet.withdraw", "audit.retention.purge"] {
        let e = app
            .execute(insert, &[&bob_actor, &claimed, &true, &bob.token.as_str()])
            .await
            .expect_err(&format!("an analyst claiming {claimed}"));
        assert_eq!(sqlstate(&e), "FT031", "{claimed}: {e}");
        let message = e.as_db_error().map(|d| d.message().to_owned()).unwrap_or_default();
        assert!(message.contains("which does not grant"), "{claimed}: {message}");
    }
    assert_eq!(count().await, before, "nothing written");
    app.execute(insert, &[&bob_actor, &"kyc.case.review", &true, &bob.token.as_str()]).await.expect("his own");
    app.execute(insert, &[&bob_actor, &"kyb.org.decide", &false, &bob.token.as_str()]).await.expect("a denial");
    assert_eq!(count().await, before + 2);

    // The same rule when the credential is a console session's secret (the trigger's second
    // lookup, taken only when no API token matched; migration 0048).
    let secret = "console-session-secret-of-bob"; // pragma: allowlist secret (a test fixture)
    app.execute(
        "INSERT INTO fintrail.console_sessions (session_hash, token_id) VALUES (sha256(convert_to($1, 'UTF8')), $2)",
        &[&secret, &bob.token_id],
    )
    .await
    .expect("a console session for bob");
    let e = app
        .execute(insert, &[&bob_actor, &"kyb.org.decide", &true, &secret])
        .await
        .expect_err("an analyst's console session claiming kyb.org.decide");
    assert_eq!(sqlstate(&e), "FT031", "{e}");
    let message = e.as_db_error().map(|d| d.message().to_owned()).unwrap_or_default();
    assert!(message.contains("which does not grant"), "{message}");
    app.execute(insert, &[&bob_actor, &"kyc.case.review", &true, &secret]).await.expect("his own, by session");
    assert_eq!(count().await, before + 3);

    // The app role reads the table and writes nothing of it.
    for attack in [
        "INSERT INTO fintrail.role_permissions VALUES ('kyc_analyst', 'kyb.org.decide')",
        "UPDATE fintrail.role_permissions SET role = 'kyc_analyst' WHERE role = 'admin'",
        "DELETE FROM fintrail.role_permissions",
    ] {
        let e = app.batch_execute(attack).await.expect_err(attack);
        assert_eq!(sqlstate(&e), "42501", "{attack}: {e}");
    }

    // The database's copy is Rust's declaration; a drift is undone by the next migrate.
    let expected: std::collections::BTreeSet<(String, String)> = Role::ALL
        .iter()
        .flat_map(|r| r.permissions().iter().map(move |p| (r.as_str().to_owned(), p.as_str().to_owned())))
        .collect();
    let stored = || async {
        let rows = app.query("SELECT role, permission FROM fintrail.role_permissions", &[]).await.unwrap();
        rows.iter().map(|r| (r.get(0), r.get(1))).collect::<std::collections::BTreeSet<(String, String)>>()
    };
    assert_eq!(stored().await, expected);
    let admin = db.connect(DbRole::Admin).await.unwrap();
    admin
        .batch_execute(
            "INSERT INTO fintrail.role_permissions VALUES ('kyc_analyst', 'kyb.org.decide'); \
             DELETE FROM fintrail.role_permissions WHERE role = 'kyc_analyst' AND permission = 'kyc.case.review'",
        )
        .await
        .unwrap();
    assert_ne!(stored().await, expected);
    fintrail_db::migrate::migrate(&db).await.unwrap();
    assert_eq!(stored().await, expected, "migrate writes the table from Rust");
}
