//! The CLI entry points the binary wires (`token`, `audit`) and `fintrail up`'s demo seeding.

use fintrail_api::cli::{run_audit, run_token, AuditArgs, AuditCommand, TokenArgs, TokenCommand};
use fintrail_audit::chain::Sequencer;
use fintrail_db::testing::fresh_db;
use fintrail_db::{Context, DbRole, Home};

fn create(role: &str, ttl: &str, customer: Option<i64>) -> TokenArgs {
    TokenArgs { command: TokenCommand::Create { role: role.into(), ttl: ttl.into(), label: None, customer } }
}

#[tokio::test]
async fn token_commands_exit_codes_and_audit() {
    let db = fresh_db().await;
    let home = tempfile::tempdir().expect("home");
    let ctx = Context::new(db.database().clone(), Home::new(home.path()).expect("home"));
    assert_eq!(run_token(create("root", "8h", None), &ctx).await.expect("run"), 2, "unknown role");
    assert_eq!(run_token(create("admin", "8x", None), &ctx).await.expect("run"), 2, "bad ttl");
    assert_eq!(run_token(create("admin", "31d", None), &ctx).await.expect("run"), 2, "ttl above cap");
    assert_eq!(run_token(create("customer", "1h", None), &ctx).await.expect("run"), 2, "customer needs --customer");
    assert_eq!(run_token(create("admin", "1h", Some(1)), &ctx).await.expect("run"), 2, "staff refuses --customer");
    assert_eq!(run_token(create("customer", "1h", Some(424_242)), &ctx).await.expect("run"), 2, "unknown customer");
    assert_eq!(run_token(create("kyc_analyst", "8h", None), &ctx).await.expect("run"), 0);
    let c = db.connect(DbRole::App).await.expect("app");
    let id: i64 = c.query_one("SELECT max(id) FROM api_tokens", &[]).await.expect("id").get(0);
    let revoke = |token_id| TokenArgs { command: TokenCommand::Revoke { token_id } };
    assert_eq!(run_token(revoke(id), &ctx).await.expect("run"), 0);
    assert_eq!(run_token(revoke(id), &ctx).await.expect("run"), 1, "already revoked");
    assert_eq!(run_token(revoke(424_242), &ctx).await.expect("run"), 1, "unknown token");
    let actions: Vec<String> = c
        .query("SELECT action FROM audit_events ORDER BY seq", &[])
        .await
        .expect("events")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(actions, vec!["token.issued", "token.revoked"], "only what happened is on record");
    let stored: Vec<u8> =
        c.query_one("SELECT token_hash FROM api_tokens WHERE id = $1", &[&id]).await.expect("row").get(0);
    assert_eq!(stored.len(), 32, "only the SHA-256 is stored");
    // `audit checkpoint` then `audit verify`.
    let cp = AuditArgs { command: AuditCommand::Checkpoint { out_dir: None } };
    assert_eq!(run_audit(cp, &ctx).await.expect("checkpoint"), 0);
    let verify = AuditArgs { command: AuditCommand::Verify { checkpoint_dir: None } };
    assert_eq!(run_audit(verify, &ctx).await.expect("verify"), 0);
}

#[tokio::test]
async fn demo_seed_is_idempotent_and_its_trail_verifies() {
    let db = fresh_db().await;
    let home = tempfile::tempdir().expect("home");
    let ctx = Context::new(db.database().clone(), Home::new(home.path()).expect("home"));
    let first = fintrail_tooling::seed_demo(&ctx).await.expect("seed");
    assert!(first.created);
    assert_eq!(first.customer_ids.len(), 5);
    let second = fintrail_tooling::seed_demo(&ctx).await.expect("seed again");
    assert!(!second.created);
    assert_eq!(second.customer_ids, first.customer_ids);
    assert_eq!(second.organization_id, first.organization_id);
    assert_ne!(second.admin_token, first.admin_token, "a fresh token every time");
    let c = db.connect(DbRole::App).await.expect("app");
    let states: Vec<String> = c
        .query("SELECT state FROM kyc_cases ORDER BY id", &[])
        .await
        .expect("cases")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(states, vec!["started", "documents_submitted", "in_review", "approved", "needs_resubmission"]);
    let org_state: String = c.query_one("SELECT state FROM organizations", &[]).await.expect("org").get(0);
    assert_eq!(org_state, "potential_match");
    let mut s = Sequencer::try_open(&db).await.expect("open").expect("lock");
    assert!(s.run_once().await.expect("chain") > 0);
    drop(s);
    let verify = AuditArgs { command: AuditCommand::Verify { checkpoint_dir: None } };
    assert_eq!(run_audit(verify, &ctx).await.expect("verify"), 0);
}
