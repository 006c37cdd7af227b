//! What each job does. Every job selects what is due now, bounded by the run's batch size,
//! and handles each item in a short transaction of its own that re-checks under a row lock
//! that the item is still due; so a run can stop (deadline, crash) anywhere and the next one
//! resumes, and two racing runs never handle one item twice.

use std::time::Instant;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use fintrail_audit::{checkpoint, AuditWriter, NewEvent};
use fintrail_db::{Context, DbRole};
use fintrail_domain::{KybState, KycState};
use serde_json::{json, Map, Value};

use crate::machines::{apply_transition, Machine};
use crate::{JobName, RunOptions};

/// An approved KYC case is valid this long after its approval; then it expires (the state
/// machine's only lapse: approved → expired; re-verification is a new case).
pub const KYC_VALIDITY_DAYS: i32 = 365;
/// A case left in `started` or `needs_resubmission` this long is abandoned → expired.
pub const KYC_ABANDONED_DAYS: i32 = 90;
/// An organization in good standing (`clear` / `cleared`) is re-screened this long after
/// its last screening decision.
pub const KYB_RESCREEN_DAYS: i32 = 365;
/// Audit events are kept at least this long (5 years and a day, leap years included), then
/// purged through a signed checkpoint.
pub const AUDIT_RETENTION_DAYS: i32 = 5 * 366;
/// Items per chunk of the ledger jobs (each chunk re-checks the deadline).
const CHUNK: i64 = 100;

/// CDC health thresholds.
#[derive(Debug, Clone, Copy)]
pub struct CdcThresholds {
    /// Most bytes the slot's consumer may lag behind the current WAL position.
    pub max_lag_bytes: i64,
    /// Most WAL bytes the slot may hold back from recycling (disk safety).
    pub max_retained_wal_bytes: i64,
}

impl Default for CdcThresholds {
    fn default() -> Self {
        Self { max_lag_bytes: 256 << 20, max_retained_wal_bytes: 1 << 30 }
    }
}

/// What the work of one run produced.
#[derive(Debug, Default)]
pub struct Work {
    /// The job's counts.
    pub counts: Map<String, Value>,
    /// The deadline or the batch size stopped it before everything due was handled.
    pub partial: bool,
    /// A problem the job exists to find (tampered trail, unhealthy slot): the run fails loudly.
    pub problem: Option<String>,
}

impl Work {
    fn count(mut self, key: &str, n: impl Into<Value>) -> Self {
        self.counts.insert(key.into(), n.into());
        self
    }
}

/// Performs `name`'s work.
pub async fn perform(
    ctx: &Context,
    audit: &AuditWriter,
    name: JobName,
    opts: &RunOptions,
    deadline: Instant,
) -> anyhow::Result<Work> {
    match name {
        JobName::KycExpiry => kyc_expiry(ctx, audit, opts, deadline).await,
        JobName::KybRescreening => kyb_rescreening(ctx, audit, opts, deadline).await,
        JobName::HoldExpiry => hold_expiry(ctx, audit, opts, deadline).await,
        JobName::IdempotencyPurge => idempotency_purge(ctx, opts, deadline).await,
        JobName::AuditCheckpoint => audit_checkpoint(ctx, opts).await,
        JobName::AuditVerify => audit_verify(ctx).await,
        JobName::AuditRetention => audit_retention(ctx, opts).await,
        JobName::CdcHealth => cdc_health(ctx, opts).await,
    }
}

/// The run's clock: the test's `as_of`, or the database's `now()` (one clock for every row).
async fn clock(client: &tokio_postgres::Client, opts: &RunOptions) -> anyhow::Result<DateTime<Utc>> {
    Ok(match opts.as_of {
        Some(t) => t,
        None => client.query_one("SELECT now()", &[]).await?.get(0),
    })
}

/// One due-transition sweep: records of `M` matching `due` (SQL over the record's columns,
/// `$1` = the run's clock) go to `to`.
struct Sweep<M> {
    job: JobName,
    due: &'static str,
    to: M,
    reason: &'static str,
}

async fn kyc_expiry(ctx: &Context, audit: &AuditWriter, opts: &RunOptions, deadline: Instant) -> anyhow::Result<Work> {
    const DUE: &str = "((state = 'approved' AND updated_at < $1::timestamptz - make_interval(days => 365)) \
        OR (state IN ('started', 'needs_resubmission') AND updated_at < $1::timestamptz - make_interval(days => 90)))";
    const { assert!(KYC_VALIDITY_DAYS == 365 && KYC_ABANDONED_DAYS == 90, "DUE spells the constants out") };
    let sweep = Sweep {
        job: JobName::KycExpiry,
        due: DUE,
        to: KycState::Expired,
        reason: "periodic job kyc-expiry: verification lapsed or case abandoned",
    };
    sweep.run(ctx, audit, opts, deadline).await
}

async fn kyb_rescreening(
    ctx: &Context,
    audit: &AuditWriter,
    opts: &RunOptions,
    deadline: Instant,
) -> anyhow::Result<Work> {
    const DUE: &str = "(state IN ('clear', 'cleared') AND updated_at < $1::timestamptz - make_interval(days => 365))";
    const { assert!(KYB_RESCREEN_DAYS == 365, "DUE spells the constant out") };
    let sweep = Sweep {
        job: JobName::KybRescreening,
        due: DUE,
        to: KybState::Screening,
        reason: "periodic job kyb-rescreening: periodic re-screening due",
    };
    sweep.run(ctx, audit, opts, deadline).await
}

impl<M: Machine> Sweep<M> {
    async fn run(
        &self,
        ctx: &Context,
        audit: &AuditWriter,
        opts: &RunOptions,
        deadline: Instant,
    ) -> anyhow::Result<Work> {
        let mut client = ctx.db.connect(DbRole::App).await?;
        let as_of = clock(&client, opts).await?;
        // One more than the batch: whether anything is left tells `partial` apart from done.
        let limit = i64::from(opts.batch_max) + 1;
        let ids: Vec<i64> = client
            .query(
                &format!("SELECT id FROM fintrail.{} WHERE {} ORDER BY id LIMIT $2", M::TABLE, self.due),
                &[&as_of, &limit],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut partial = ids.len() as i64 == limit;
        let batch = &ids[..ids.len().min(opts.batch_max as usize)];
        if opts.dry_run {
            return Ok(Work { partial, ..Work::default() }.count("due", batch.len() as u64));
        }
        let (mut done, mut skipped) = (0u64, 0u64);
        for &id in batch {
            if Instant::now() >= deadline {
                partial = true;
                break;
            }
            if self.transition_one(&mut client, audit, id, as_of).await? {
                done += 1;
            } else {
                skipped += 1;
            }
        }
        Ok(Work { partial, ..Work::default() }.count("transitioned", done).count("skipped", skipped))
    }

    /// Transitions record `id` if it is still due: lock, re-check, history + state through
    /// [`apply_transition`] (the API's protocol; the triggers check it again), the audit event
    /// under the job's actor and the permission the state machine names, one transaction.
    async fn transition_one(
        &self,
        client: &mut tokio_postgres::Client,
        audit: &AuditWriter,
        id: i64,
        as_of: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        let tx = client.transaction().await?;
        let owner_col = if M::TABLE == "kyc_cases" { "customer_id" } else { "NULL::bigint" };
        let sql =
            format!("SELECT state, {owner_col} FROM fintrail.{} WHERE id = $2 AND {} FOR UPDATE", M::TABLE, self.due);
        let Some(row) = tx.query_opt(&sql, &[&as_of, &id]).await? else {
            return Ok(false); // Changed meanwhile (another run, or a person): nothing to do.
        };
        let from = M::parse(row.get::<_, &str>(0)).map_err(|e| anyhow::anyhow!("{e}"))?;
        let owner: Option<i64> = row.get(1);
        let permission = M::transition(from, self.to).with_context(|| {
            format!("{} {id}: {} -> {} is not in the state machine", M::SUBJECT, from.as_str(), self.to.as_str())
        })?;
        anyhow::ensure!(
            permission == self.job.job().permission,
            "{}: the transition needs {permission}, the job acts under {}",
            self.job.as_str(),
            self.job.job().permission
        );
        let actor = self.job.actor();
        let transition_id = apply_transition::<M, _>(&tx, id, from, self.to, &actor, self.reason, None).await?;
        let ev = NewEvent::allowed(actor, M::ACTION, format!("{}:{id}", M::SUBJECT), Some(permission))
            .on_behalf_of(owner.map(|c| format!("customer:{c}")))
            .change(
                Some(json!({ "state": from.as_str() })),
                Some(json!({ "state": self.to.as_str(), "transition_id": transition_id })),
            );
        audit.append(&tx, &ev).await?;
        tx.commit().await?;
        audit.committed();
        Ok(true)
    }
}

fn job_who(name: JobName) -> fintrail_ledger::Who {
    fintrail_ledger::Who {
        actor: name.actor(),
        on_behalf_of: None,
        permission: name.job().permission,
        request_id: None,
        credential: None,
    }
}

async fn hold_expiry(ctx: &Context, audit: &AuditWriter, opts: &RunOptions, deadline: Instant) -> anyhow::Result<Work> {
    let mut client = ctx.db.connect(DbRole::App).await?;
    let batch = i64::from(opts.batch_max);
    if opts.dry_run {
        let due = fintrail_ledger::holds::count_overdue(&client, batch).await?;
        return Ok(Work::default().count("due", due));
    }
    let who = job_who(JobName::HoldExpiry);
    let mut expired = 0u64;
    let mut partial = false;
    loop {
        let want = CHUNK.min(batch - expired as i64);
        if want <= 0 || Instant::now() >= deadline {
            partial = fintrail_ledger::holds::count_overdue(&client, 1).await? > 0;
            break;
        }
        let n = fintrail_ledger::holds::expire_overdue(&mut client, audit, &who, want).await?;
        expired += n;
        if n == 0 {
            break;
        }
    }
    Ok(Work { partial, ..Work::default() }.count("expired", expired))
}

async fn idempotency_purge(ctx: &Context, opts: &RunOptions, deadline: Instant) -> anyhow::Result<Work> {
    use fintrail_ledger::engine::{count_expired_idempotency_keys, purge_idempotency_keys};
    let client = ctx.db.connect(DbRole::App).await?;
    let batch = i64::from(opts.batch_max);
    if opts.dry_run {
        return Ok(Work::default().count("due", count_expired_idempotency_keys(&client, batch).await?));
    }
    let mut purged = 0u64;
    let mut partial = false;
    loop {
        let want = (CHUNK * 10).min(batch - purged as i64);
        if want <= 0 || Instant::now() >= deadline {
            partial = count_expired_idempotency_keys(&client, 1).await? > 0;
            break;
        }
        let n = purge_idempotency_keys(&client, want).await?;
        purged += n;
        if (n as i64) < want {
            break;
        }
    }
    Ok(Work { partial, ..Work::default() }.count("purged", purged))
}

async fn audit_checkpoint(ctx: &Context, opts: &RunOptions) -> anyhow::Result<Work> {
    if opts.dry_run {
        let client = ctx.db.connect(DbRole::App).await?;
        let (seq, _) = fintrail_audit::chain::head(&client).await?;
        return Ok(Work::default().count("head_seq", seq));
    }
    let (cp, path) = checkpoint::write(ctx, &checkpoint::checkpoint_dir(&ctx.home)).await?;
    Ok(Work::default().count("seq", cp.seq).count("file", path.display().to_string()))
}

async fn audit_verify(ctx: &Context) -> anyhow::Result<Work> {
    use fintrail_audit::verify::Outcome;
    let outcome = fintrail_audit::verify::verify_trail(ctx, &checkpoint::checkpoint_dir(&ctx.home)).await;
    let (report, problem) = match outcome {
        Outcome::Intact(r) => (r, None),
        Outcome::Tampered { report, seq, reason } => {
            (report, Some(format!("audit trail TAMPERED at event {seq}: {reason}")))
        }
        Outcome::CannotCheck(why) => (Default::default(), Some(format!("audit trail cannot be checked: {why}"))),
    };
    let w = Work { problem, ..Work::default() }
        .count("events", report.events)
        .count("linked", report.linked)
        .count("pending", report.pending)
        .count("checkpoints", report.checkpoints as u64)
        .count("head_seq", report.head_seq);
    Ok(w)
}

async fn audit_retention(ctx: &Context, opts: &RunOptions) -> anyhow::Result<Work> {
    let client = ctx.db.connect(DbRole::App).await?;
    let as_of = clock(&client, opts).await?;
    let cutoff = as_of - chrono::Duration::days(i64::from(AUDIT_RETENTION_DAYS));
    // The newest checkpoint past the last purge that covers only events older than the cutoff.
    let row = client
        .query_opt(
            "SELECT c.id FROM fintrail.audit_checkpoints c \
             WHERE c.seq > coalesce((SELECT max(purged_through_seq) FROM fintrail.audit_retention), 0) \
               AND NOT EXISTS (SELECT 1 FROM fintrail.audit_events e WHERE e.seq <= c.seq AND e.at >= $1) \
             ORDER BY c.seq DESC LIMIT 1",
            &[&cutoff],
        )
        .await?;
    let Some(row) = row else {
        return Ok(Work::default().count("purged", 0u64).count("cutoff", cutoff.to_rfc3339()));
    };
    let id: i64 = row.get(0);
    // Decoded by fintrail-audit's own reader (the one `verify` uses), that row alone.
    let cp = checkpoint::load_row(&client, id).await?.with_context(|| format!("checkpoint db:{id} vanished"))?;
    // Only through a *signed* checkpoint: a forged row never anchors a purge (issue #16).
    let key = fintrail_db::keys::load(&ctx.home.keys_dir(), fintrail_db::keys::AUDIT_CHECKPOINT_KEY)?
        .context("no audit checkpoint key: cannot check the checkpoint's signature")?;
    if !checkpoint::signature_valid(&key, &cp) {
        let problem = format!("checkpoint {} (event {}) has no valid signature: not purging", cp.source, cp.seq);
        return Ok(Work { problem: Some(problem), ..Work::default() }.count("purged", 0u64));
    }
    let w =
        Work::default().count("checkpoint_id", id).count("through_seq", cp.seq).count("cutoff", cutoff.to_rfc3339());
    if opts.dry_run {
        let n: i64 =
            client.query_one("SELECT count(*) FROM fintrail.audit_events WHERE seq <= $1", &[&cp.seq]).await?.get(0);
        return Ok(w.count("due", n));
    }
    // The database checks the signature again (migration 0034) and runs the purge as
    // `fintrail_retention`; it needs the key, which `retention::purge_through` passes.
    let purged = fintrail_audit::retention::purge_through(ctx, id).await?;
    Ok(w.count("purged", purged))
}

async fn cdc_health(ctx: &Context, opts: &RunOptions) -> anyhow::Result<Work> {
    let client = ctx.db.connect(DbRole::App).await?;
    let names = fintrail_cdc::source::Names::default();
    let s = fintrail_cdc::source::slot_stats(&client, &names).await?;
    let w = Work::default().count("slot", names.slot.clone()).count("exists", s.exists);
    if !s.exists {
        // No pipeline configured here (e.g. `fintrail up --no-cdc`): nothing holds WAL back.
        return Ok(w);
    }
    let (lag, retained) = (s.lag_bytes.unwrap_or(0), s.retained_wal_bytes.unwrap_or(0));
    let t = opts.cdc;
    let mut problems = Vec::new();
    if lag > t.max_lag_bytes {
        problems.push(format!("slot {} lags {lag} bytes (max {})", names.slot, t.max_lag_bytes));
    }
    if retained > t.max_retained_wal_bytes {
        problems.push(format!("slot {} retains {retained} WAL bytes (max {})", names.slot, t.max_retained_wal_bytes));
    }
    let problem = (!problems.is_empty()).then(|| problems.join("; "));
    Ok(Work { problem, ..w }.count("active", s.active).count("lag_bytes", lag).count("retained_wal_bytes", retained))
}
