//! The audit trail: append-only in the database, chained by the sequencer in sequence order
//! despite commit order and rollbacks, and `audit verify` detects update, delete, insert,
//! reorder, tail truncation after a checkpoint, a recomputed chain and a forged checkpoint —
//! each naming the first broken event — while an untouched trail verifies.

use fintrail_api::cli::{run_audit, AuditArgs, AuditCommand};
use fintrail_audit::chain::Sequencer;
use fintrail_audit::checkpoint;
use fintrail_audit::verify::Outcome;
use fintrail_audit::verify::{verify_trail, verify_trail_with, ScanLimits};
use fintrail_audit::{AuditWriter, NewEvent};
use fintrail_db::testing::{fresh_db, TestDb};
use fintrail_db::{Context, DbRole, Home};
use fintrail_domain::audit::AuditAction;
use fintrail_domain::Permission;
use serde_json::json;

struct Env {
    db: TestDb,
    ctx: Context,
    _home: tempfile::TempDir,
}

async fn env() -> Env {
    let db = fresh_db().await;
    let home = tempfile::tempdir().expect("home");
    let ctx = Context::new(db.database().clone(), Home::new(home.path()).expect("home"));
    Env { db, ctx, _home: home }
}

fn event(i: i64) -> NewEvent {
    NewEvent::allowed(
        "system:test",
        AuditAction::KycCaseTransitioned,
        format!("kyc_case:{i}"),
        Some(Permission::KycCaseReview),
    )
    .on_behalf_of(Some(format!("customer:{i}")))
    .request(Some("req"))
    .change(Some(json!({"state": "in_review"})), Some(json!({"state": "approved", "n": i})))
}

async fn emit(db: &TestDb, n: i64) {
    let mut c = db.connect(DbRole::App).await.expect("app");
    let w = AuditWriter::new(true);
    let tx = c.transaction().await.expect("tx");
    for i in 0..n {
        w.append(&tx, &event(i)).await.expect("append");
    }
    tx.commit().await.expect("commit");
}

async fn chain(db: &TestDb) -> usize {
    let mut s = Sequencer::try_open(db).await.expect("open").expect("no other sequencer");
    let mut total = 0;
    // Two rounds: a gap seen in the first is settled (its holder ended) by the second.
    for _ in 0..3 {
        total += s.run_once().await.expect("chain");
    }
    total
}

async fn verify(e: &Env) -> Outcome {
    verify_trail(&e.ctx, &checkpoint::checkpoint_dir(&e.ctx.home)).await
}

async fn superuser(db: &TestDb) -> tokio_postgres::Client {
    let c = db.connect(DbRole::Admin).await.expect("admin");
    // A superuser can switch triggers off: exactly the attacker the chain is for.
    c.batch_execute("SET session_replication_role = replica").await.expect("replica");
    c
}

fn tampered_at(o: &Outcome) -> i64 {
    match o {
        Outcome::Tampered { seq, reason, .. } => {
            assert!(
                reason.contains(&format!("event {seq}")) || reason.contains(&format!("events {seq}")),
                "names the event: {reason}"
            );
            *seq
        }
        other => panic!("expected tampering, got {other:?}"),
    }
}

async fn cli_verify(e: &Env) -> u8 {
    run_audit(AuditArgs { command: AuditCommand::Verify { checkpoint_dir: None } }, &e.ctx).await.expect("run")
}

#[tokio::test]
async fn untouched_trail_verifies_with_checkpoints() {
    let e = env().await;
    emit(&e.db, 50).await;
    let (cp, file) = checkpoint::write(&e.ctx, &checkpoint::checkpoint_dir(&e.ctx.home)).await.expect("checkpoint");
    assert_eq!(cp.seq, 50);
    assert!(file.exists());
    // Owner-only, like every file fintrail writes under FINTRAIL_HOME (and its folder).
    assert!(fintrail_db::home::owner_only::is_owner_only(&file).expect("mode"));
    assert!(fintrail_db::home::owner_only::is_owner_only(file.parent().expect("dir")).expect("mode"));
    emit(&e.db, 10).await;
    assert_eq!(chain(&e.db).await, 10);
    match verify(&e).await {
        Outcome::Intact(r) => {
            assert_eq!((r.events, r.linked, r.pending, r.head_seq), (60, 60, 0, 60));
            assert_eq!(r.checkpoints, 2, "the database row and the file");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(cli_verify(&e).await, 0);
    // Unchained (pending) events are reported, not flagged.
    emit(&e.db, 3).await;
    match verify(&e).await {
        Outcome::Intact(r) => assert_eq!(r.pending, 3),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn update_is_detected_at_the_event() {
    let e = env().await;
    emit(&e.db, 20).await;
    chain(&e.db).await;
    superuser(&e.db)
        .await
        .execute("UPDATE fintrail.audit_events SET actor = 'mallory' WHERE seq = 7", &[])
        .await
        .expect("tamper");
    assert_eq!(tampered_at(&verify(&e).await), 7);
    assert_eq!(cli_verify(&e).await, 1);
    // Even a change inside the JSON (same keys, other value) is caught.
    let e = env().await;
    emit(&e.db, 20).await;
    chain(&e.db).await;
    superuser(&e.db)
        .await
        .execute("UPDATE fintrail.audit_events SET after = '{\"state\": \"rejected\", \"n\": 11}' WHERE seq = 12", &[])
        .await
        .expect("tamper");
    assert_eq!(tampered_at(&verify(&e).await), 12);
}

#[tokio::test]
async fn delete_is_detected_at_the_event() {
    let e = env().await;
    emit(&e.db, 20).await;
    chain(&e.db).await;
    superuser(&e.db).await.execute("DELETE FROM fintrail.audit_events WHERE seq = 9", &[]).await.expect("tamper");
    assert_eq!(tampered_at(&verify(&e).await), 9);
    // Deleting the link too only moves the break to the next event.
    superuser(&e.db).await.execute("DELETE FROM fintrail.audit_chain WHERE seq = 9", &[]).await.expect("tamper");
    assert_eq!(tampered_at(&verify(&e).await), 10);
    assert_eq!(cli_verify(&e).await, 1);
}

#[tokio::test]
async fn insert_is_detected_at_the_event() {
    let e = env().await;
    emit(&e.db, 5).await;
    // A rolled-back writer leaves a permanent gap (seq 6).
    {
        let mut c = e.db.connect(DbRole::App).await.expect("app");
        let tx = c.transaction().await.expect("tx");
        AuditWriter::new(true).append(&tx, &event(99)).await.expect("append");
        tx.rollback().await.expect("rollback");
    }
    emit(&e.db, 5).await;
    // The gap settles once every transaction in progress when it was seen has ended (other
    // tests share the cluster, so allow a few rounds).
    let mut s = Sequencer::try_open(&e.db).await.expect("open").expect("lock");
    let mut linked = 0;
    // A bounded poll for the condition (60 s: other tests' transactions on a loaded box).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while linked < 10 && std::time::Instant::now() < deadline {
        linked += s.run_once().await.expect("round");
        if linked < 10 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    drop(s);
    assert_eq!(linked, 10, "the settled gap is skipped");
    assert_eq!(cli_verify(&e).await, 0);
    let su = superuser(&e.db).await;
    su.execute(
        "INSERT INTO fintrail.audit_events (seq, at, txid, actor, action, subject, allowed) \
         VALUES (6, now(), pg_current_xact_id(), 'mallory', 'token.issued', 'token:1', true)",
        &[],
    )
    .await
    .expect("tamper");
    assert_eq!(tampered_at(&verify(&e).await), 6);
}

#[tokio::test]
async fn reorder_is_detected_at_the_first_moved_event() {
    let e = env().await;
    emit(&e.db, 20).await;
    chain(&e.db).await;
    let su = superuser(&e.db).await;
    su.batch_execute(
        "UPDATE fintrail.audit_events SET seq = -5 WHERE seq = 5; \
         UPDATE fintrail.audit_events SET seq = 5 WHERE seq = 6; \
         UPDATE fintrail.audit_events SET seq = 6 WHERE seq = -5;",
    )
    .await
    .expect("tamper");
    assert_eq!(tampered_at(&verify(&e).await), 5);
}

#[tokio::test]
async fn truncating_the_tail_after_a_checkpoint_is_detected() {
    let e = env().await;
    emit(&e.db, 30).await;
    checkpoint::write(&e.ctx, &checkpoint::checkpoint_dir(&e.ctx.home)).await.expect("checkpoint");
    let su = superuser(&e.db).await;
    // The attacker removes the last events, their links, and even the checkpoint row: the file
    // copy of the checkpoint still says the trail reached event 30.
    su.batch_execute(
        "DELETE FROM fintrail.audit_events WHERE seq >= 25; \
         DELETE FROM fintrail.audit_chain WHERE seq >= 25; \
         DELETE FROM fintrail.audit_checkpoints;",
    )
    .await
    .expect("tamper");
    assert_eq!(tampered_at(&verify(&e).await), 25);
    assert_eq!(cli_verify(&e).await, 1);
}

#[tokio::test]
async fn a_recomputed_chain_is_caught_by_the_signed_checkpoint() {
    let e = env().await;
    emit(&e.db, 30).await;
    checkpoint::write(&e.ctx, &checkpoint::checkpoint_dir(&e.ctx.home)).await.expect("checkpoint");
    let su = superuser(&e.db).await;
    su.batch_execute(
        "UPDATE fintrail.audit_events SET actor = 'mallory' WHERE seq = 12; \
         DELETE FROM fintrail.audit_chain WHERE seq >= 12;",
    )
    .await
    .expect("tamper");
    // Relink with the real algorithm: the chain itself is consistent again.
    assert_eq!(chain(&e.db).await, 19);
    let o = verify(&e).await;
    let seq = tampered_at(&o);
    assert!(seq <= 12, "the reported range starts at or before the rewritten event: {o:?}");
}

#[tokio::test]
async fn forged_checkpoint_and_missing_key() {
    let e = env().await;
    emit(&e.db, 10).await;
    let dir = checkpoint::checkpoint_dir(&e.ctx.home);
    let (_, file) = checkpoint::write(&e.ctx, &dir).await.expect("checkpoint");
    let text = std::fs::read_to_string(&file).expect("read");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let forged = text.replace(v["link"].as_str().expect("link"), &"ab".repeat(32));
    std::fs::write(&file, forged).expect("write");
    assert!(matches!(verify(&e).await, Outcome::Tampered { .. }));
    std::fs::remove_file(&file).expect("rm");
    assert_eq!(cli_verify(&e).await, 0);
    std::fs::remove_file(e.ctx.home.keys_dir().join(fintrail_db::keys::AUDIT_CHECKPOINT_KEY)).expect("rm key");
    assert_eq!(cli_verify(&e).await, 2, "checkpoints exist but cannot be checked");
}

#[tokio::test]
async fn the_trail_is_append_only_in_the_database() {
    let e = env().await;
    emit(&e.db, 5).await;
    chain(&e.db).await;
    let app = e.db.connect(DbRole::App).await.expect("app");
    for sql in [
        "UPDATE audit_events SET actor = 'x'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
        "UPDATE audit_chain SET link = link",
        "DELETE FROM audit_chain",
        "DELETE FROM audit_checkpoints",
        "ALTER TABLE audit_events DISABLE TRIGGER ALL",
        "SET session_replication_role = replica",
        "SELECT fintrail.audit_purge_through(1, ''::bytea)",
        "INSERT INTO audit_chain (seq, link) VALUES (1000, '\\x00')",
        "INSERT INTO audit_checkpoints (seq, link, key_id, signature) VALUES (1, '\\x00', '0000000000000000', '\\x00')",
        "SELECT setval('audit_events_seq', 1)",
    ] {
        assert!(app.batch_execute(sql).await.is_err(), "app role: {sql}");
    }
    // The app cannot choose seq, time or txid: the trigger assigns them.
    let seq: i64 = app
        .query_one("INSERT INTO audit_events (seq, at, actor, action, subject, allowed) VALUES (1, '2000-01-01', 'system:a', 'x.y', 's', true) RETURNING seq", &[])
        .await
        .expect("insert")
        .get(0);
    assert_eq!(seq, 6);
    // Not even the owner may rewrite it outside the retention procedure.
    let owner = e.db.connect(DbRole::Admin).await.expect("admin");
    owner.batch_execute("SET ROLE fintrail_owner").await.expect("owner");
    for sql in [
        "UPDATE fintrail.audit_events SET actor = 'x'",
        "DELETE FROM fintrail.audit_events",
        "TRUNCATE fintrail.audit_events",
    ] {
        let err = owner.batch_execute(sql).await.expect_err(sql);
        assert!(
            err.as_db_error().is_some_and(|d| d.code().code() == "FT004"),
            "owner refused by the trigger: {sql}: {err}"
        );
    }
    // The documented retention procedure: purge up to a signed checkpoint; the rest verifies.
    chain(&e.db).await;
    let (cp, _) = checkpoint::write(&e.ctx, &checkpoint::checkpoint_dir(&e.ctx.home)).await.expect("checkpoint");
    emit(&e.db, 4).await;
    chain(&e.db).await;
    let id: i64 = owner
        .query_one("SELECT id FROM fintrail.audit_checkpoints WHERE seq = $1", &[&cp.seq])
        .await
        .expect("cp")
        .get(0);
    let purged = fintrail_audit::retention::purge_through(&e.ctx, id).await.expect("purge");
    assert_eq!(purged, 6);
    match verify(&e).await {
        Outcome::Intact(r) => assert_eq!((r.events, r.linked), (4, 4)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn sequencer_chains_in_sequence_order_not_commit_order() {
    let e = env().await;
    let w = AuditWriter::new(true);
    let mut slow = e.db.connect(DbRole::App).await.expect("c1");
    let mut fast = e.db.connect(DbRole::App).await.expect("c2");
    let mut seqr = Sequencer::try_open(&e.db).await.expect("open").expect("lock");
    assert!(Sequencer::try_open(&e.db).await.expect("open").is_none(), "one sequencer per database");
    let slow_tx = slow.transaction().await.expect("tx");
    let s1 = w.append(&slow_tx, &event(1)).await.expect("a").expect("seq");
    let fast_tx = fast.transaction().await.expect("tx");
    let s2 = w.append(&fast_tx, &event(2)).await.expect("b").expect("seq");
    fast_tx.commit().await.expect("commit");
    assert!(s1 < s2);
    // s2 is committed, s1 is not: nothing may be linked past the hole.
    assert_eq!(seqr.run_once().await.expect("round"), 0);
    assert_eq!(seqr.run_once().await.expect("round"), 0, "still in flight: not skipped");
    slow_tx.commit().await.expect("commit");
    assert_eq!(seqr.run_once().await.expect("round"), 2);
    assert_eq!(seqr.last_seq(), s2);
    assert_eq!(verify_trail(&e.ctx, &checkpoint::checkpoint_dir(&e.ctx.home)).await.exit_code(), 0);
}

/// 32 bytes of a key the attacker made up, and the checkpoint signature our code would compute
/// with it (a valid HMAC, just not under our key).
fn attacker_signature(seq: i64, link: &[u8; 32]) -> (fintrail_db::keys::Key, [u8; 32]) {
    let key = fintrail_db::keys::Key::from_secret([7u8; 32]);
    let sig = checkpoint::sign(&key, seq, link);
    (key, sig)
}

async fn link_at(db: &TestDb, seq: i64) -> [u8; 32] {
    let c = db.connect(DbRole::App).await.expect("app");
    let l: Vec<u8> = c.query_one("SELECT link FROM audit_chain WHERE seq = $1", &[&seq]).await.expect("link").get(0);
    l.try_into().expect("32 bytes")
}

async fn owner(db: &TestDb) -> tokio_postgres::Client {
    let c = db.connect(DbRole::Admin).await.expect("admin");
    c.batch_execute("SET ROLE fintrail_owner").await.expect("owner");
    c
}

fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.as_db_error().map(|d| d.code().code().to_owned()).unwrap_or_default()
}

/// Item 3 of issue #16: with the app credential, a link for a future sequence number and a
/// checkpoint under an unknown key are refused (they used to poison verify for ever); the
/// sequencer's own role writes both and may touch nothing else.
#[tokio::test]
async fn only_the_sequencer_role_writes_the_chain_and_checkpoints() {
    let e = env().await;
    emit(&e.db, 5).await;
    let app = e.db.connect(DbRole::App).await.expect("app");
    let future = app.execute("INSERT INTO audit_chain (seq, link) VALUES (9000000, sha256('x'))", &[]).await;
    assert_eq!(sqlstate(&future.expect_err("future link")), "42501", "permission denied");
    let cp = app
        .execute(
            "INSERT INTO audit_checkpoints (seq, link, key_id, signature) VALUES (5, sha256('x'), 'ffffffffffffffff', sha256('y'))",
            &[],
        )
        .await;
    assert_eq!(sqlstate(&cp.expect_err("unknown-key checkpoint")), "42501");
    // The sequencer links and checkpoints as its own role; verify is intact.
    assert_eq!(chain(&e.db).await, 5);
    checkpoint::write(&e.ctx, &checkpoint::checkpoint_dir(&e.ctx.home)).await.expect("checkpoint");
    assert_eq!(cli_verify(&e).await, 0);
    let seqr = e.db.connect(DbRole::Sequencer).await.expect("sequencer");
    for sql in [
        "INSERT INTO audit_events (actor, action, subject, allowed) VALUES ('a', 'x.y', 's', true)",
        "UPDATE audit_chain SET link = link",
        "DELETE FROM audit_checkpoints",
        "SELECT * FROM api_tokens",
    ] {
        assert!(seqr.batch_execute(sql).await.is_err(), "sequencer role: {sql}");
    }
}

/// Item 8: the retention flag is no longer a session setting that unlocks DELETE, and an anchor
/// row cannot be inserted by the owner.
#[tokio::test]
async fn the_retention_flag_and_anchor_table_unlock_nothing_for_the_owner() {
    let e = env().await;
    emit(&e.db, 6).await;
    chain(&e.db).await;
    let o = owner(&e.db).await;
    let flagged = o
        .batch_execute(
            "BEGIN; SELECT set_config('fintrail.audit_retention', 'on', true); DELETE FROM fintrail.audit_events WHERE seq <= 3",
        )
        .await;
    assert_eq!(sqlstate(&flagged.expect_err("flag")), "FT004");
    o.batch_execute("ROLLBACK").await.expect("rollback");
    let anchor = o
        .execute("INSERT INTO fintrail.audit_retention (purged_through_seq, anchor_link) VALUES (3, sha256('x'))", &[])
        .await;
    assert_eq!(sqlstate(&anchor.expect_err("anchor")), "FT004");
    assert_eq!(cli_verify(&e).await, 0);
}

/// Item 8: the owner erases a prefix with triggers off (superuser-level DDL) and writes an
/// anchor using the real link: verify finds no signed checkpoint at the anchor and names the
/// erased range.
#[tokio::test]
async fn prefix_erasure_by_a_forged_anchor_is_detected() {
    let e = env().await;
    emit(&e.db, 12).await;
    chain(&e.db).await;
    checkpoint::write(&e.ctx, &checkpoint::checkpoint_dir(&e.ctx.home)).await.expect("checkpoint at 12");
    let link5 = link_at(&e.db, 5).await;
    let su = superuser(&e.db).await;
    su.execute("DELETE FROM fintrail.audit_events WHERE seq <= 5", &[]).await.expect("erase");
    su.execute("DELETE FROM fintrail.audit_chain WHERE seq <= 5", &[]).await.expect("erase links");
    su.execute(
        "INSERT INTO fintrail.audit_retention (purged_through_seq, anchor_link) VALUES (5, $1)",
        &[&link5.as_slice()],
    )
    .await
    .expect("forge anchor");
    match verify(&e).await {
        Outcome::Tampered { seq, reason, .. } => {
            assert_eq!(seq, 1, "{reason}");
            assert!(reason.contains("events 1..=5"), "names the erased range: {reason}");
        }
        other => panic!("expected tampering, got {other:?}"),
    }
    assert_eq!(cli_verify(&e).await, 1);
}

/// Item 8: a checkpoint with a bad signature cannot drive the purge; one validly signed under
/// the owner's own key can (the database cannot know our key), and verify then names the range.
#[tokio::test]
async fn prefix_erasure_by_a_forged_checkpoint_is_refused_or_detected() {
    let e = env().await;
    emit(&e.db, 10).await;
    chain(&e.db).await;
    let dir = checkpoint::checkpoint_dir(&e.ctx.home);
    let (real, _) = checkpoint::write(&e.ctx, &dir).await.expect("our checkpoint at 10");
    let link4 = link_at(&e.db, 4).await;
    let su = superuser(&e.db).await;
    let (mallory, sig) = attacker_signature(4, &link4);
    // Under our key id but not our signature: the procedure refuses.
    let bad: i64 = su
        .query_one(
            "INSERT INTO fintrail.audit_checkpoints (seq, link, key_id, signature) VALUES (4, $1, $2, $3) RETURNING id",
            &[&link4.as_slice(), &real.key_id, &sig.as_slice()],
        )
        .await
        .expect("forge")
        .get(0);
    let refused = fintrail_audit::retention::purge_through(&e.ctx, bad).await.expect_err("bad signature");
    assert!(format!("{refused:#}").contains("invalid signature"), "{refused:#}");
    // Under the attacker's own key: the procedure cannot tell, the purge goes through ...
    let forged: i64 = su
        .query_one(
            "INSERT INTO fintrail.audit_checkpoints (seq, link, key_id, signature) VALUES (4, $1, $2, $3) RETURNING id",
            &[&link4.as_slice(), &mallory.id, &sig.as_slice()],
        )
        .await
        .expect("forge")
        .get(0);
    let o = owner(&e.db).await;
    let purged: i64 = o
        .query_one("SELECT fintrail.audit_purge_through($1, $2)", &[&forged, &mallory.secret().as_slice()])
        .await
        .expect("purge under the attacker's key")
        .get(0);
    assert_eq!(purged, 4);
    // ... and verify names what was erased.
    match verify(&e).await {
        Outcome::Tampered { seq, reason, .. } => {
            assert_eq!(seq, 1, "{reason}");
            assert!(reason.contains("events 1..=4"), "{reason}");
        }
        other => panic!("expected tampering, got {other:?}"),
    }
    assert_eq!(cli_verify(&e).await, 1);
}

/// Item 9: the owner switches the append-only trigger off and deletes an event: DDL the
/// database cannot prevent, which verify detects at the event.
#[tokio::test]
async fn the_owner_disabling_the_trigger_is_detected_by_verify() {
    let e = env().await;
    emit(&e.db, 8).await;
    chain(&e.db).await;
    let o = owner(&e.db).await;
    o.batch_execute(
        "ALTER TABLE fintrail.audit_events DISABLE TRIGGER audit_events_append_only; \
         DELETE FROM fintrail.audit_events WHERE seq = 3; \
         ALTER TABLE fintrail.audit_events ENABLE TRIGGER audit_events_append_only;",
    )
    .await
    .expect("the owner may run DDL");
    assert_eq!(tampered_at(&verify(&e).await), 3);
    assert_eq!(cli_verify(&e).await, 1);
}

/// Inserts `n` events in one statement (as the benchmark does): a large trail in a second.
async fn emit_many(db: &TestDb, n: i64) {
    db.connect(DbRole::App)
        .await
        .expect("app")
        .execute(
            "INSERT INTO fintrail.audit_events (actor, on_behalf_of, action, subject, permission, allowed, request_id, before, after) \
             SELECT 'system:test', 'customer:' || g, 'kyc.case.transitioned', 'kyc_case:' || g, 'kyc.case.review', true, \
                    'req-' || g, '{\"state\": \"in_review\"}', jsonb_build_object('state', 'approved', 'n', g)::text \
             FROM generate_series(1, $1::bigint) AS g",
            &[&n],
        )
        .await
        .expect("insert");
}

/// How a sequential recomputation reads (one reader, one partition: what the default does with
/// this trail), and many small partitions and chunks over more readers than cores.
fn scan_limits() -> [ScanLimits; 2] {
    let sequential = ScanLimits { partition_seqs: 1 << 24, readers: 1, ..ScanLimits::default() };
    let small = ScanLimits { partition_seqs: 4096, readers: 3, chunk_bytes_max: 8192, queue_depth: 1 };
    [sequential, small]
}

/// The first broken event each way of reading names (they must agree).
async fn first_break(e: &Env) -> Vec<i64> {
    let mut seqs = Vec::new();
    for limits in scan_limits() {
        seqs.push(tampered_at(&verify_trail_with(&e.ctx, &checkpoint::checkpoint_dir(&e.ctx.home), limits).await));
    }
    seqs
}

#[tokio::test]
async fn parallel_readers_name_the_same_first_broken_event_as_a_sequential_walk() {
    const EVENTS: i64 = 50_000;
    let e = env().await;
    emit_many(&e.db, EVENTS).await;
    assert_eq!(chain(&e.db).await, EVENTS as usize);
    for limits in scan_limits() {
        match verify_trail_with(&e.ctx, &checkpoint::checkpoint_dir(&e.ctx.home), limits).await {
            Outcome::Intact(r) => assert_eq!((r.events, r.linked, r.head_seq), (EVENTS as u64, EVENTS as u64, EVENTS)),
            other => panic!("{limits:?}: {other:?}"),
        }
    }
    let su = superuser(&e.db).await;
    // The first and last event, both sides of a partition boundary (4096 | 4097), the middle.
    for seq in [1, 4096, 4097, 8192, 25_000, EVENTS] {
        let set = |actor: &str| format!("UPDATE fintrail.audit_events SET actor = '{actor}' WHERE seq = {seq}");
        su.execute(&set("mallory"), &[]).await.expect("tamper");
        assert_eq!(first_break(&e).await, [seq; 2], "tampered at {seq}");
        su.execute(&set("system:test"), &[]).await.expect("restore");
    }
    // Two tampered events in partitions that different readers read: the earlier one is named.
    su.execute("UPDATE fintrail.audit_events SET subject = 'x' WHERE seq IN (30000, 9000)", &[]).await.expect("tamper");
    assert_eq!(first_break(&e).await, [9000; 2]);
    // A deleted event with its link at the last sequence number of a partition: the next
    // partition's first event no longer hashes onto the stored link before it.
    su.batch_execute(
        "DELETE FROM fintrail.audit_events WHERE seq = 8192; DELETE FROM fintrail.audit_chain WHERE seq = 8192",
    )
    .await
    .expect("tamper");
    assert_eq!(first_break(&e).await, [8193; 2]);
    // A deleted link below the head: the event is unchained, before the later mismatch.
    su.execute("DELETE FROM fintrail.audit_chain WHERE seq = 4097", &[]).await.expect("tamper");
    assert_eq!(first_break(&e).await, [4097; 2]);
}
