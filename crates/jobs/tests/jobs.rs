//! Every periodic job against the real database: rows dated in the past (holds, idempotency
//! keys) or a clock the test controls (`RunOptions::as_of`: KYC, KYB, audit retention); no
//! test sleeps. Also: single flight (a held lock makes a run `busy`), dry runs change nothing,
//! a run stopped by its batch size is `partial` and the next one resumes, and every run leaves
//! its `job.started` / `job.finished` (or `job.failed`) events under the job's actor.

use chrono::{Duration, Utc};
use fintrail_audit::chain::Sequencer;
use fintrail_audit::verify::Outcome as Verdict;
use fintrail_audit::{checkpoint, AuditWriter};
use fintrail_db::testing::{fresh_db, TestDb};
use fintrail_db::{Context, DbRole, Home};
use fintrail_domain::{KybState, KycState};
use fintrail_jobs::{run, JobName, Outcome, Report, RunOptions, Trigger};
use fintrail_tooling::fixtures;

struct Env {
    db: TestDb,
    ctx: Context,
    audit: AuditWriter,
    _home: tempfile::TempDir,
}

async fn env() -> Env {
    let db = fresh_db().await;
    let home = tempfile::tempdir().expect("home");
    let ctx = Context::new(db.database().clone(), Home::new(home.path()).expect("home"));
    Env { db, ctx, audit: AuditWriter::new(true), _home: home }
}

impl Env {
    async fn run(&self, name: JobName, opts: RunOptions) -> Report {
        run(&self.ctx, &self.audit, name, &opts).await.expect("the job runs")
    }
    async fn app(&self) -> tokio_postgres::Client {
        self.db.connect(DbRole::App).await.expect("app")
    }
    async fn count(&self, sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) -> i64 {
        self.app().await.query_one(sql, params).await.expect(sql).get(0)
    }
    async fn ledger_check(&self) {
        let mut c = self.app().await;
        let r = fintrail_ledger::check::run(&mut c).await.expect("ledger check");
        assert!(r.ok(), "{:?}", r.violations);
    }
    async fn chain(&self) {
        let mut s = Sequencer::try_open(&self.db).await.expect("open").expect("no other sequencer");
        for _ in 0..3 {
            s.run_once().await.expect("chain");
        }
    }
    async fn verify(&self) -> Verdict {
        fintrail_audit::verify::verify_trail(&self.ctx, &checkpoint::checkpoint_dir(&self.ctx.home)).await
    }
    /// The job events of `name`: (action, actor, permission, outcome in `after`).
    async fn job_events(&self, name: JobName) -> Vec<(String, String, String, Option<String>)> {
        self.app()
            .await
            .query(
                "SELECT action, actor, permission, after::jsonb->>'outcome' FROM fintrail.audit_events \
                 WHERE subject = $1 ORDER BY seq",
                &[&format!("job:{}", name.as_str())],
            )
            .await
            .expect("events")
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect()
    }
}

fn opts() -> RunOptions {
    RunOptions::new(Trigger::Cli)
}

fn at(days_from_now: i64) -> RunOptions {
    RunOptions { as_of: Some(Utc::now() + Duration::days(days_from_now)), ..opts() }
}

async fn kyc_state(e: &Env, customer: i64) -> (String, i32) {
    let r = e
        .app()
        .await
        .query_one("SELECT state, version FROM fintrail.kyc_cases WHERE customer_id = $1", &[&customer])
        .await
        .expect("case");
    (r.get(0), r.get(1))
}

#[tokio::test]
async fn kyc_expiry_expires_lapsed_and_abandoned_cases_through_the_state_machine() {
    let e = env().await;
    let approved = fixtures::customer_in_kyc_state(&e.db, KycState::Approved).await.unwrap();
    let started = fixtures::customer_in_kyc_state(&e.db, KycState::Started).await.unwrap();
    let in_review = fixtures::customer_in_kyc_state(&e.db, KycState::InReview).await.unwrap();
    let (_, version_before) = kyc_state(&e, approved).await;

    // 100 days on: only the abandoned case (started, 90 days) is due.
    let r = e.run(JobName::KycExpiry, at(100)).await;
    assert_eq!((r.outcome, r.counts.get("transitioned").and_then(|v| v.as_u64())), (Outcome::Ok, Some(1)), "{r:?}");
    assert_eq!(kyc_state(&e, started).await.0, "expired");
    assert_eq!(kyc_state(&e, approved).await.0, "approved");

    // A dry run a year and a day on counts the approved case and changes nothing.
    let r = e.run(JobName::KycExpiry, RunOptions { dry_run: true, ..at(366) }).await;
    assert_eq!((r.outcome, r.counts["due"].as_u64()), (Outcome::Ok, Some(1)), "{r:?}");
    assert_eq!(kyc_state(&e, approved).await.0, "approved");

    let r = e.run(JobName::KycExpiry, at(366)).await;
    assert_eq!(r.counts["transitioned"].as_u64(), Some(1), "{r:?}");
    assert_eq!(kyc_state(&e, approved).await, ("expired".into(), version_before + 1), "the trigger bumped the version");
    assert_eq!(kyc_state(&e, in_review).await.0, "in_review", "a case under review never lapses");
    // Idempotent: nothing left.
    let r = e.run(JobName::KycExpiry, at(366)).await;
    assert_eq!(r.counts["transitioned"].as_u64(), Some(0));

    // The history row and the audit event name the job and the permission the machine asks.
    let n = e
        .count(
            "SELECT count(*) FROM fintrail.kyc_case_transitions t JOIN fintrail.kyc_cases c ON c.id = t.case_id \
             WHERE c.customer_id = $1 AND t.to_state = 'expired' AND t.actor = 'system:job:kyc-expiry'",
            &[&approved],
        )
        .await;
    assert_eq!(n, 1);
    let n = e
        .count(
            "SELECT count(*) FROM fintrail.audit_events WHERE action = 'kyc.case.transitioned' \
             AND actor = 'system:job:kyc-expiry' AND permission = 'kyc.case.review' AND on_behalf_of = $1",
            &[&format!("customer:{approved}")],
        )
        .await;
    assert_eq!(n, 1);
    let events = e.job_events(JobName::KycExpiry).await;
    assert_eq!(events.len(), 8, "4 runs, a start and a finish each: {events:?}");
    for (i, (action, actor, permission, outcome)) in events.iter().enumerate() {
        assert_eq!(action, if i % 2 == 0 { "job.started" } else { "job.finished" });
        assert_eq!((actor.as_str(), permission.as_str()), ("system:job:kyc-expiry", "kyc.case.review"));
        assert_eq!(outcome.as_deref(), if i % 2 == 0 { None } else { Some("ok") });
    }
}

#[tokio::test]
async fn kyb_rescreening_sends_organizations_in_good_standing_back_to_screening() {
    let e = env().await;
    let clear = fixtures::organization(&e.db, KybState::Clear).await.unwrap();
    let cleared = fixtures::organization(&e.db, KybState::Cleared).await.unwrap();
    let blocked = fixtures::organization(&e.db, KybState::Blocked).await.unwrap();
    let state = |id: i64| {
        let e = &e;
        async move {
            let r = e.app().await.query_one("SELECT state FROM fintrail.organizations WHERE id = $1", &[&id]).await;
            r.expect("org").get::<_, String>(0)
        }
    };
    let r = e.run(JobName::KybRescreening, at(30)).await;
    assert_eq!(r.counts.get("transitioned").and_then(|v| v.as_u64()), Some(0), "not due yet: {r:?}");
    // batch_max 1: the first run is partial, the next one resumes.
    let r = e.run(JobName::KybRescreening, RunOptions { batch_max: 1, ..at(366) }).await;
    assert_eq!((r.outcome, r.counts["transitioned"].as_u64()), (Outcome::Partial, Some(1)), "{r:?}");
    let r = e.run(JobName::KybRescreening, at(366)).await;
    assert_eq!((r.outcome, r.counts.get("transitioned").and_then(|v| v.as_u64())), (Outcome::Ok, Some(1)), "{r:?}");
    assert_eq!((state(clear).await, state(cleared).await), ("screening".into(), "screening".into()));
    assert_eq!(state(blocked).await, "blocked");
    let n = e
        .count(
            "SELECT count(*) FROM fintrail.audit_events WHERE action = 'kyb.organization.transitioned' \
             AND actor = 'system:job:kyb-rescreening' AND permission = 'kyb.org.screen'",
            &[],
        )
        .await;
    assert_eq!(n, 2);
}

#[tokio::test]
async fn hold_expiry_releases_overdue_holds_once_and_resumes_after_a_partial_run() {
    let e = env().await;
    let w = fixtures::funded_wallets(&e.db, 2, 10_000).await.unwrap();
    let holds = fixtures::overdue_holds(&e.db, w[0], w[1], 5, 100).await.unwrap();
    e.ledger_check().await;

    let r = e.run(JobName::HoldExpiry, RunOptions { dry_run: true, ..opts() }).await;
    assert_eq!(r.counts["due"].as_u64(), Some(5));
    assert_eq!(e.count("SELECT held_minor FROM fintrail.wallets WHERE id = $1", &[&w[0]]).await, 500);

    let r = e.run(JobName::HoldExpiry, RunOptions { batch_max: 3, ..opts() }).await;
    assert_eq!((r.outcome, r.counts["expired"].as_u64()), (Outcome::Partial, Some(3)), "{r:?}");
    let r = e.run(JobName::HoldExpiry, opts()).await;
    assert_eq!((r.outcome, r.counts["expired"].as_u64()), (Outcome::Ok, Some(2)), "{r:?}");
    let r = e.run(JobName::HoldExpiry, opts()).await;
    assert_eq!(r.counts["expired"].as_u64(), Some(0));

    assert_eq!(e.count("SELECT held_minor FROM fintrail.wallets WHERE id = $1", &[&w[0]]).await, 0);
    assert_eq!(
        e.count("SELECT count(*) FROM fintrail.holds WHERE id = ANY($1) AND status = 'expired'", &[&holds]).await,
        5
    );
    let n = e
        .count(
            "SELECT count(DISTINCT subject) FROM fintrail.audit_events WHERE action = 'ledger.hold.expired' \
             AND actor = 'system:job:hold-expiry' AND permission = 'wallet.hold.settle'",
            &[],
        )
        .await;
    assert_eq!(n, 5);
    assert_eq!(
        e.count("SELECT count(*) FROM fintrail.audit_events WHERE action = 'ledger.hold.expired'", &[]).await,
        5
    );
    e.ledger_check().await;
}

#[tokio::test]
async fn a_job_running_elsewhere_makes_the_run_busy_and_it_does_nothing() {
    let e = env().await;
    let w = fixtures::funded_wallets(&e.db, 2, 10_000).await.unwrap();
    fixtures::overdue_holds(&e.db, w[0], w[1], 1, 100).await.unwrap();
    let other = e.app().await;
    other.execute("SELECT pg_advisory_lock($1)", &[&JobName::HoldExpiry.lock_key()]).await.unwrap();
    let r = e.run(JobName::HoldExpiry, opts()).await;
    assert_eq!((r.outcome, r.run_id), (Outcome::Busy, None));
    assert_eq!(e.count("SELECT count(*) FROM fintrail.holds WHERE status = 'pending'", &[]).await, 1);
    // Another job is not blocked by it.
    assert_eq!(e.run(JobName::IdempotencyPurge, opts()).await.outcome, Outcome::Ok);
    // A run interrupted while holding the lock shows as running, then interrupted once it died.
    let c = e.app().await;
    c.execute(
        "INSERT INTO fintrail.job_runs (job, actor, trigger, dry_run) VALUES ('hold-expiry', 'system:job:hold-expiry', 'cli', false)",
        &[],
    )
    .await
    .unwrap();
    let state = |runs: Vec<fintrail_jobs::LastRun>| runs.into_iter().find(|r| r.job == "hold-expiry").unwrap().outcome;
    assert_eq!(state(fintrail_jobs::list(&e.ctx).await.unwrap()).as_deref(), Some("running"));
    drop(other);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // The server releases the dead session's lock asynchronously: a bounded poll.
    while state(fintrail_jobs::list(&e.ctx).await.unwrap()).as_deref() != Some("interrupted") {
        assert!(std::time::Instant::now() < deadline, "the lock was never released");
        tokio::task::yield_now().await;
    }
    assert_eq!(e.run(JobName::HoldExpiry, opts()).await.counts["expired"].as_u64(), Some(1));
}

#[tokio::test]
async fn idempotency_purge_drops_only_keys_past_their_retention() {
    let e = env().await;
    let admin = e.db.connect(DbRole::Admin).await.unwrap();
    admin
        .batch_execute(
            "INSERT INTO fintrail.idempotency_keys (principal, key, request_hash, status_code, response, created_at, expires_at) \
             SELECT 'staff:1:t', 'old-' || i, decode(repeat('00', 32), 'hex'), 200, '{}', now() - interval '3 days', now() - interval '1 day' \
             FROM generate_series(1, 3) i; \
             INSERT INTO fintrail.idempotency_keys (principal, key, request_hash, status_code, response, expires_at) \
             VALUES ('staff:1:t', 'fresh', decode(repeat('00', 32), 'hex'), 200, '{}', now() + interval '1 day')",
        )
        .await
        .unwrap();
    let r = e.run(JobName::IdempotencyPurge, RunOptions { dry_run: true, ..opts() }).await;
    assert_eq!(r.counts["due"].as_u64(), Some(3));
    let r = e.run(JobName::IdempotencyPurge, opts()).await;
    assert_eq!((r.outcome, r.counts["purged"].as_u64()), (Outcome::Ok, Some(3)), "{r:?}");
    let keys: Vec<String> = e
        .app()
        .await
        .query("SELECT key FROM fintrail.idempotency_keys", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(keys, ["fresh"]);
}

#[tokio::test]
async fn audit_checkpoint_signs_the_head_and_audit_verify_fails_loudly_on_tampering() {
    let e = env().await;
    fixtures::customer_in_kyc_state(&e.db, KycState::Approved).await.unwrap();
    let r = e.run(JobName::AuditCheckpoint, opts()).await;
    assert_eq!(r.outcome, Outcome::Ok, "{r:?}");
    let seq = r.counts["seq"].as_i64().unwrap();
    assert!(seq >= 1);
    assert_eq!(e.count("SELECT count(*) FROM fintrail.audit_checkpoints WHERE seq = $1", &[&seq]).await, 1);
    assert_eq!(std::fs::read_dir(checkpoint::checkpoint_dir(&e.ctx.home)).unwrap().count(), 1);

    e.chain().await;
    let r = e.run(JobName::AuditVerify, opts()).await;
    assert_eq!(r.outcome, Outcome::Ok, "{r:?}");
    assert!(r.counts["linked"].as_u64().unwrap() >= seq as u64);

    // Tamper with a chained event as the superuser (triggers off): the job fails, and says so
    // in the trail (job.failed) and in the run's row.
    let admin = e.db.connect(DbRole::Admin).await.unwrap();
    admin
        .batch_execute(
            "SET session_replication_role = replica; UPDATE fintrail.audit_events SET actor = 'mallory' WHERE seq = 1",
        )
        .await
        .unwrap();
    let r = e.run(JobName::AuditVerify, opts()).await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert!(r.error.as_deref().unwrap_or("").contains("TAMPERED at event 1"), "{r:?}");
    let last = e.job_events(JobName::AuditVerify).await.pop().unwrap();
    assert_eq!((last.0.as_str(), last.3.as_deref()), ("job.failed", Some("failed")));
    let outcome: String = e
        .app()
        .await
        .query_one("SELECT outcome FROM fintrail.job_runs WHERE id = $1", &[&r.run_id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(outcome, "failed");
}

#[tokio::test]
async fn audit_retention_purges_only_through_a_signed_checkpoint_older_than_the_retention() {
    let e = env().await;
    fixtures::customer_in_kyc_state(&e.db, KycState::Approved).await.unwrap();
    let cp = e.run(JobName::AuditCheckpoint, opts()).await.counts["seq"].as_i64().unwrap();
    fixtures::customer_in_kyc_state(&e.db, KycState::Approved).await.unwrap();
    e.chain().await;

    // Today nothing is old enough.
    let r = e.run(JobName::AuditRetention, opts()).await;
    assert_eq!((r.outcome, r.counts["purged"].as_i64()), (Outcome::Ok, Some(0)), "{r:?}");
    // Six years on (the test's clock): everything through the checkpoint goes, the rest stays.
    let after = e.count("SELECT count(*) FROM fintrail.audit_events WHERE seq > $1", &[&cp]).await;
    let r = e.run(JobName::AuditRetention, RunOptions { dry_run: true, ..at(6 * 366) }).await;
    assert_eq!(r.counts["due"].as_i64(), Some(cp), "{r:?}");
    let r = e.run(JobName::AuditRetention, at(6 * 366)).await;
    assert_eq!((r.outcome, r.counts["through_seq"].as_i64()), (Outcome::Ok, Some(cp)), "{r:?}");
    assert_eq!(r.counts["purged"].as_i64(), Some(cp));
    assert_eq!(e.count("SELECT count(*) FROM fintrail.audit_events WHERE seq <= $1", &[&cp]).await, 0);
    assert!(e.count("SELECT count(*) FROM fintrail.audit_events WHERE seq > $1", &[&cp]).await > after);
    e.chain().await;
    assert!(matches!(e.verify().await, Verdict::Intact(_)), "{:?}", e.verify().await);

    // A forged (unsigned) checkpoint row never anchors a purge: the run fails loudly instead.
    e.chain().await;
    let head: i64 = e.count("SELECT max(seq) FROM fintrail.audit_chain", &[]).await;
    let admin = e.db.connect(DbRole::Admin).await.unwrap();
    admin
        .execute(
            "INSERT INTO fintrail.audit_checkpoints (seq, link, key_id, signature) \
             SELECT seq, link, '0123456789abcdef', decode(repeat('00', 32), 'hex') FROM fintrail.audit_chain WHERE seq = $1",
            &[&head],
        )
        .await
        .unwrap();
    let before = e.count("SELECT count(*) FROM fintrail.audit_events", &[]).await;
    let r = e.run(JobName::AuditRetention, at(6 * 366)).await;
    assert_eq!(r.outcome, Outcome::Failed, "{r:?}");
    assert!(r.error.as_deref().unwrap_or("").contains("no valid signature"), "{r:?}");
    assert_eq!(e.count("SELECT count(*) FROM fintrail.audit_events WHERE seq <= $1", &[&head]).await, before);
}

#[tokio::test]
async fn cdc_health_reports_the_slot_against_its_thresholds() {
    let e = env().await;
    let r = e.run(JobName::CdcHealth, opts()).await;
    assert_eq!((r.outcome, r.counts["exists"].as_bool()), (Outcome::Ok, Some(false)), "no slot: {r:?}");

    // The test cluster is this binary's own: the only test that creates the slot.
    let admin = e.db.connect(DbRole::Admin).await.unwrap();
    admin.execute("SELECT pg_create_logical_replication_slot('fintrail_analytics', 'pgoutput')", &[]).await.unwrap();
    fixtures::customer_in_kyc_state(&e.db, KycState::Approved).await.unwrap();
    let r = e.run(JobName::CdcHealth, opts()).await;
    assert_eq!((r.outcome, r.counts["exists"].as_bool()), (Outcome::Ok, Some(true)), "{r:?}");
    assert!(r.counts["lag_bytes"].as_i64().unwrap() > 0, "{r:?}");
    let strict = fintrail_jobs::work::CdcThresholds { max_lag_bytes: 0, max_retained_wal_bytes: 0 };
    let r = e.run(JobName::CdcHealth, RunOptions { cdc: strict, ..opts() }).await;
    assert_eq!(r.outcome, Outcome::Failed, "{r:?}");
    assert!(r.error.as_deref().unwrap_or("").contains("lags"), "{r:?}");
    assert_eq!(e.job_events(JobName::CdcHealth).await.pop().unwrap().0, "job.failed");
    admin.execute("SELECT pg_drop_replication_slot('fintrail_analytics')", &[]).await.unwrap();
}

#[tokio::test]
async fn all_due_runs_each_job_once_per_schedule_period() {
    let e = env().await;
    let reports = fintrail_jobs::run_all_due(&e.ctx, &e.audit, &opts()).await.unwrap();
    assert_eq!(reports.len(), fintrail_jobs::JOBS.len(), "never run: all due");
    let again = fintrail_jobs::run_all_due(&e.ctx, &e.audit, &opts()).await.unwrap();
    // Within the same minute nothing is due again (a minute boundary may fall in between:
    // then only the every-minute and every-N-minute jobs may come round again).
    assert!(
        again.iter().all(|r| matches!(r.job, "hold-expiry" | "audit-checkpoint" | "idempotency-purge" | "cdc-health")),
        "{again:?}"
    );
    let list = fintrail_jobs::list(&e.ctx).await.unwrap();
    assert!(list.iter().all(|r| r.run_id.is_some() && r.outcome.is_some()), "{list:?}");
}

/// The second line of defence under the advisory lock: two expiry sweeps racing on the same
/// holds (as two instances would if the lock were ever lost) still release each hold once,
/// because each hold is re-checked under the wallet and row locks in its own transaction.
#[tokio::test]
async fn racing_expiry_sweeps_without_the_job_lock_release_each_hold_once() {
    let e = env().await;
    let w = fixtures::funded_wallets(&e.db, 2, 100_000).await.unwrap();
    fixtures::overdue_holds(&e.db, w[0], w[1], 60, 100).await.unwrap();
    let who = fintrail_ledger::Who {
        actor: JobName::HoldExpiry.actor(),
        on_behalf_of: None,
        permission: fintrail_domain::Permission::WalletHoldSettle,
        request_id: None,
        credential: None,
    };
    let sweep = |who: fintrail_ledger::Who| {
        let db = e.db.clone();
        tokio::spawn(async move {
            let mut c = db.connect(DbRole::App).await.unwrap();
            fintrail_ledger::holds::expire_overdue(&mut c, &AuditWriter::new(true), &who, 1000).await.unwrap()
        })
    };
    let (a, b) = (sweep(who.clone()), sweep(who));
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert_eq!(a + b, 60, "{a} + {b}");
    assert_eq!(
        e.count("SELECT count(*) FROM fintrail.audit_events WHERE action = 'ledger.hold.expired'", &[]).await,
        60
    );
    assert_eq!(e.count("SELECT held_minor FROM fintrail.wallets WHERE id = $1", &[&w[0]]).await, 0);
    e.ledger_check().await;
}
