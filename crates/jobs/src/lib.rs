//! `fintrail jobs`: the platform's periodic work, run by Cloud Scheduler in production
//! (`POST /internal/jobs/{name}`, OIDC-authenticated: [`oidc`]) and by `fintrail up` locally.
//!
//! # What it owns
//! - **The job table** ([`JOBS`]): each job's name, schedule (cron, UTC: the one declaration
//!   that `fintrail up` and `infra/modules/scheduler` both follow), the permission it acts
//!   under and its actor `system:job:<name>`.
//! - **[`run`]**: one run of one job. Single flight across processes and instances: a session
//!   advisory lock per job (`pg_try_advisory_lock`); a second caller gets [`Outcome::Busy`] and
//!   does nothing. Bounded: a deadline and a batch size ([`RunOptions`]). Audited: a
//!   `job.started` event (with the `job_runs` row) before any work and a `job.finished` /
//!   `job.failed` event with the counts after, under the job's actor and permission, through
//!   `fintrail_audit`'s append path. `--dry-run` counts what would change and changes nothing.
//! - **The jobs** ([`work`]): each is idempotent and resumable: it selects what is due *now*,
//!   and every item is one short transaction that re-checks, under a row lock, that the item
//!   is still due. A run killed at any point leaves each item done or not done; the next run
//!   picks up the rest. Nothing is copied: holds and idempotency keys go through
//!   `fintrail_ledger`, KYC/KYB transitions through [`machines`] (the same protocol and
//!   triggers as the API), checkpoints and verification through `fintrail_audit`, slot figures
//!   through `fintrail_cdc`.
//! - **`job_runs`** (migration 0040): one row per run, for `jobs list` and due-ness; the
//!   audit trail holds the authoritative events.
//!
//! # Dependencies
//! domain, db, audit, ledger, cdc (its slot figures only); `jsonwebtoken` (ring, already in the
//! binary) and `ureq` (already in the binary) for the OIDC check; no HTTP server here: the
//! route is the API's (`fintrail_api::internal_jobs`).
//!
//! # Tests
//! `tests/jobs.rs`: every job against the real database, with rows dated in the past or a
//! test-controlled clock ([`RunOptions::as_of`]), single flight, dry run, a crash-resume.
//! `crates/cli/tests/jobs_cli.rs`: two concurrent `fintrail jobs run hold-expiry` processes
//! release each hold exactly once; `kill -9` mid-job, rerun, `ledger check` and `audit verify`
//! pass. `crates/api/tests/internal_jobs.rs`: the OIDC route against a JWKS served over HTTP.

pub mod cli;
pub mod machines;
pub mod oidc;
pub mod schedule;
pub mod work;

use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use fintrail_audit::{AuditWriter, NewEvent};
use fintrail_db::{Context, DbRole};
use fintrail_domain::audit::AuditAction;
use fintrail_domain::Permission;
use serde_json::{json, Map, Value};

use schedule::Schedule;

/// A periodic job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobName {
    /// Approved KYC cases past their validity (and abandoned ones) go to `expired`.
    KycExpiry,
    /// Organizations in good standing due for periodic re-screening go back to `screening`.
    KybRescreening,
    /// Pending holds past their expiry are released, each exactly once.
    HoldExpiry,
    /// A signed checkpoint of the audit chain head.
    AuditCheckpoint,
    /// The whole trail verified; a failure is a `job.failed` event and an alert log line.
    AuditVerify,
    /// Idempotency keys past their retention are dropped.
    IdempotencyPurge,
    /// Audit events older than the retention period are purged through a signed checkpoint.
    AuditRetention,
    /// The replication slot's lag and retained WAL against thresholds.
    CdcHealth,
}

/// One row of the job table.
#[derive(Debug, Clone, Copy)]
pub struct Job {
    /// The job.
    pub name: JobName,
    /// When it runs: a cron expression in UTC (the forms [`Schedule::parse`] accepts), used
    /// verbatim by Cloud Scheduler.
    pub cron: &'static str,
    /// The permission it acts under (recorded on every event it writes).
    pub permission: Permission,
    /// One line for `--help` and `jobs list`.
    pub summary: &'static str,
}

/// The job table: the one place that declares the jobs and their schedules.
pub const JOBS: [Job; 8] = [
    Job {
        name: JobName::KycExpiry,
        cron: "15 2 * * *",
        permission: Permission::KycCaseReview,
        summary: "approved KYC cases past their validity, and abandoned ones, go to expired",
    },
    Job {
        name: JobName::KybRescreening,
        cron: "30 2 * * *",
        permission: Permission::KybOrgScreen,
        summary: "organizations due for periodic re-screening go back into screening",
    },
    Job {
        name: JobName::HoldExpiry,
        cron: "* * * * *",
        permission: Permission::WalletHoldSettle,
        summary: "pending holds past their expiry are released, each exactly once",
    },
    Job {
        name: JobName::AuditCheckpoint,
        cron: "*/5 * * * *",
        permission: Permission::AuditCheckpointWrite,
        summary: "write a signed checkpoint of the audit chain head",
    },
    Job {
        name: JobName::AuditVerify,
        cron: "0 3 * * *",
        permission: Permission::AuditRead,
        summary: "verify the whole audit trail; a failure is a job.failed event and an alert",
    },
    Job {
        name: JobName::IdempotencyPurge,
        cron: "*/10 * * * *",
        permission: Permission::LedgerIdempotencyPurge,
        summary: "drop idempotency keys past their retention",
    },
    Job {
        name: JobName::AuditRetention,
        cron: "0 4 * * *",
        permission: Permission::AuditRetentionPurge,
        summary: "purge audit events older than the retention period, through a signed checkpoint",
    },
    Job {
        name: JobName::CdcHealth,
        cron: "*/5 * * * *",
        permission: Permission::CdcHealthRead,
        summary: "the replication slot's lag and retained WAL against thresholds",
    },
];

impl JobName {
    /// The stable name (CLI, URL, `job_runs.job`, Cloud Scheduler job name suffix).
    pub const fn as_str(self) -> &'static str {
        match self {
            JobName::KycExpiry => "kyc-expiry",
            JobName::KybRescreening => "kyb-rescreening",
            JobName::HoldExpiry => "hold-expiry",
            JobName::AuditCheckpoint => "audit-checkpoint",
            JobName::AuditVerify => "audit-verify",
            JobName::IdempotencyPurge => "idempotency-purge",
            JobName::AuditRetention => "audit-retention",
            JobName::CdcHealth => "cdc-health",
        }
    }

    /// Parses a job name.
    pub fn parse(s: &str) -> Option<JobName> {
        JOBS.iter().map(|j| j.name).find(|n| n.as_str() == s)
    }

    /// The job's row in [`JOBS`].
    pub fn job(self) -> &'static Job {
        JOBS.iter().find(|j| j.name == self).expect("every job is in the table")
    }

    /// The actor of every event the job writes.
    pub fn actor(self) -> String {
        format!("system:job:{}", self.as_str())
    }

    /// The job's advisory lock key ("ftjob" + its index): one lock per job, so different jobs
    /// run in parallel and one job never runs twice at once.
    pub fn lock_key(self) -> i64 {
        let index = JOBS.iter().position(|j| j.name == self).expect("in the table") as i64;
        0x6674_6a6f_6200_0000 + index
    }
}

/// What started a run (stored in `job_runs.trigger`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `fintrail jobs run`.
    Cli,
    /// `POST /internal/jobs/{name}` (Cloud Scheduler).
    Http,
    /// `fintrail up`'s local scheduler.
    Up,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Cli => "cli",
            Trigger::Http => "http",
            Trigger::Up => "up",
        }
    }
}

/// Most items one run may handle (bounds every run's work and transaction count).
pub const BATCH_MAX_LIMIT: u32 = 100_000;
/// Default items per run.
pub const BATCH_MAX_DEFAULT: u32 = 1_000;
/// Default deadline of a run (Cloud Scheduler's attempt deadline is 3 min by default).
pub const DEADLINE_DEFAULT: Duration = Duration::from_secs(120);

/// How one run behaves.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Count what would change; change nothing.
    pub dry_run: bool,
    /// Stop taking new items after this long (the run is then `partial`; the next resumes).
    pub deadline: Duration,
    /// Most items this run handles (1..=[`BATCH_MAX_LIMIT`]).
    pub batch_max: u32,
    /// Who started it.
    pub trigger: Trigger,
    /// The clock of the date-based jobs (KYC expiry, KYB re-screening, audit retention):
    /// `None` = the database's `now()`. Tests set it; the CLI and HTTP never do.
    pub as_of: Option<DateTime<Utc>>,
    /// CDC health thresholds.
    pub cdc: work::CdcThresholds,
}

impl RunOptions {
    /// Defaults for `trigger`.
    pub fn new(trigger: Trigger) -> Self {
        Self {
            dry_run: false,
            deadline: DEADLINE_DEFAULT,
            batch_max: BATCH_MAX_DEFAULT,
            trigger,
            as_of: None,
            cdc: work::CdcThresholds::default(),
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Everything due was handled.
    Ok,
    /// The deadline or the batch size stopped it; the next run resumes.
    Partial,
    /// An error, or the job found a problem (tampered trail, unhealthy slot).
    Failed,
    /// Another process holds the job's lock; this call did nothing.
    Busy,
}

impl Outcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Partial => "partial",
            Outcome::Failed => "failed",
            Outcome::Busy => "busy",
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// The job.
    pub job: &'static str,
    /// Its `job_runs` row (none when busy).
    pub run_id: Option<i64>,
    /// How it ended.
    pub outcome: Outcome,
    /// Whether it was a dry run.
    pub dry_run: bool,
    /// Per-job counts (`expired`, `would_expire`, `events`, ...).
    pub counts: Map<String, Value>,
    /// The error or the problem found, if any.
    pub error: Option<String>,
    /// Wall time.
    pub duration_ms: u64,
}

fn subject(name: JobName) -> String {
    format!("job:{}", name.as_str())
}

fn job_event(name: JobName, action: AuditAction, after: Value) -> NewEvent {
    NewEvent::allowed(name.actor(), action, subject(name), Some(name.job().permission)).change(None, Some(after))
}

/// Runs `name` once (single flight: [`Outcome::Busy`] if it is running elsewhere).
pub async fn run(ctx: &Context, audit: &AuditWriter, name: JobName, opts: &RunOptions) -> anyhow::Result<Report> {
    anyhow::ensure!((1..=BATCH_MAX_LIMIT).contains(&opts.batch_max), "batch_max must be 1..={BATCH_MAX_LIMIT}");
    let started = Instant::now();
    let mut lock = ctx.db.connect(DbRole::App).await.context("connecting for the job lock")?;
    let locked: bool = lock.query_one("SELECT pg_try_advisory_lock($1)", &[&name.lock_key()]).await?.get(0);
    if !locked {
        tracing::info!(log_class = "app", job = name.as_str(), "job already running elsewhere: skipped");
        return Ok(Report {
            job: name.as_str(),
            run_id: None,
            outcome: Outcome::Busy,
            dry_run: opts.dry_run,
            counts: Map::new(),
            error: None,
            duration_ms: 0,
        });
    }
    let run_id = record_start(&mut lock, audit, name, opts).await?;
    let deadline = started + opts.deadline;
    let result = work::perform(ctx, audit, name, opts, deadline).await;
    let duration_ms = started.elapsed().as_millis() as u64;
    let (outcome, counts, error) = match result {
        Ok(w) if w.problem.is_some() => (Outcome::Failed, w.counts, w.problem),
        Ok(w) if w.partial => (Outcome::Partial, w.counts, None),
        Ok(w) => (Outcome::Ok, w.counts, None),
        Err(e) => (Outcome::Failed, Map::new(), Some(format!("{e:#}"))),
    };
    let report =
        Report { job: name.as_str(), run_id: Some(run_id), outcome, dry_run: opts.dry_run, counts, error, duration_ms };
    record_finish(&mut lock, audit, name, &report).await?;
    lock.execute("SELECT pg_advisory_unlock($1)", &[&name.lock_key()]).await?;
    Ok(report)
}

async fn record_start(
    client: &mut tokio_postgres::Client,
    audit: &AuditWriter,
    name: JobName,
    opts: &RunOptions,
) -> anyhow::Result<i64> {
    let tx = client.transaction().await?;
    let run_id: i64 = tx
        .query_one(
            "INSERT INTO fintrail.job_runs (job, actor, trigger, dry_run) VALUES ($1, $2, $3, $4) RETURNING id",
            &[&name.as_str(), &name.actor(), &opts.trigger.as_str(), &opts.dry_run],
        )
        .await?
        .get(0);
    let after = json!({
        "run_id": run_id, "dry_run": opts.dry_run, "batch_max": opts.batch_max,
        "deadline_ms": opts.deadline.as_millis() as u64, "trigger": opts.trigger.as_str(),
        "as_of": opts.as_of.map(|t| t.to_rfc3339()),
    });
    audit.append(&tx, &job_event(name, AuditAction::JobStarted, after)).await?;
    tx.commit().await?;
    audit.committed();
    Ok(run_id)
}

/// Longest error text stored (the column's CHECK).
const ERROR_MAX_CHARS: usize = 2000;

async fn record_finish(
    client: &mut tokio_postgres::Client,
    audit: &AuditWriter,
    name: JobName,
    r: &Report,
) -> anyhow::Result<()> {
    let error: Option<String> = r.error.as_ref().map(|e| e.chars().take(ERROR_MAX_CHARS).collect());
    let counts = Value::Object(r.counts.clone());
    let tx = client.transaction().await?;
    let n = tx
        .execute(
            "UPDATE fintrail.job_runs SET outcome = $2, counts = $3, error = $4 WHERE id = $1",
            &[&r.run_id, &r.outcome.as_str(), &counts, &error],
        )
        .await?;
    anyhow::ensure!(n == 1, "job_runs row {:?} vanished", r.run_id);
    let action = if r.outcome == Outcome::Failed { AuditAction::JobFailed } else { AuditAction::JobFinished };
    let after = json!({
        "run_id": r.run_id, "outcome": r.outcome.as_str(), "dry_run": r.dry_run, "counts": counts,
        "duration_ms": r.duration_ms, "error": error,
    });
    audit.append(&tx, &job_event(name, action, after)).await?;
    tx.commit().await?;
    audit.committed();
    if r.outcome == Outcome::Failed {
        // The alert: Cloud Logging routes `log_class=audit` errors with `alert` to the pager.
        tracing::error!(
            log_class = "audit",
            alert = true,
            job = name.as_str(),
            run_id = r.run_id,
            error = error.as_deref().unwrap_or(""),
            "periodic job failed"
        );
    } else {
        tracing::info!(log_class = "app", job = name.as_str(), outcome = r.outcome.as_str(), duration_ms = r.duration_ms,
            counts = %counts, "periodic job finished");
    }
    Ok(())
}

/// The last run of a job, as `jobs list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LastRun {
    /// The job.
    pub job: &'static str,
    /// Its schedule.
    pub cron: &'static str,
    /// The last run's row id.
    pub run_id: Option<i64>,
    /// When it started.
    pub started_at: Option<DateTime<Utc>>,
    /// Its outcome; `running` while a process holds the lock, `interrupted` if none does.
    pub outcome: Option<String>,
    /// Its counts.
    pub counts: Option<Value>,
    /// Its duration (finished runs).
    pub duration_ms: Option<i64>,
    /// Whether it is due now.
    pub due: bool,
}

/// The last run of every job (real runs and dry runs alike) and whether each is due.
pub async fn list(ctx: &Context) -> anyhow::Result<Vec<LastRun>> {
    let client = ctx.db.connect(DbRole::App).await?;
    let now: DateTime<Utc> = client.query_one("SELECT now()", &[]).await?.get(0);
    let mut out = Vec::with_capacity(JOBS.len());
    for job in &JOBS {
        let row = client
            .query_opt(
                "SELECT id, started_at, outcome, counts, (extract(epoch FROM finished_at - started_at) * 1000)::int8 \
                 FROM fintrail.job_runs WHERE job = $1 ORDER BY id DESC LIMIT 1",
                &[&job.name.as_str()],
            )
            .await?;
        let mut outcome: Option<String> = row.as_ref().map(|r| r.get(2));
        if outcome.as_deref() == Some("running") && !lock_held(&client, job.name).await? {
            outcome = Some("interrupted".into());
        }
        out.push(LastRun {
            job: job.name.as_str(),
            cron: job.cron,
            run_id: row.as_ref().map(|r| r.get(0)),
            started_at: row.as_ref().map(|r| r.get(1)),
            outcome,
            counts: row.as_ref().map(|r| r.get(3)),
            duration_ms: row.as_ref().and_then(|r| r.get(4)),
            due: is_due(&client, job, now).await?,
        });
    }
    Ok(out)
}

/// Whether a session holds `name`'s lock. Read from `pg_locks` rather than probed with a
/// try-lock, which would for an instant hold the lock and turn a run starting then `busy`.
/// A bigint advisory key is stored as `classid` (high 32 bits) and `objid` (low), `objsubid` 1.
async fn lock_held(client: &tokio_postgres::Client, name: JobName) -> anyhow::Result<bool> {
    let held: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 \
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
               AND (classid::int8 << 32 | objid::int8) = $1)",
            &[&name.lock_key()],
        )
        .await?
        .get(0);
    Ok(held)
}

/// Due: no real (non-dry, non-busy) run has started since the schedule's latest fire time.
async fn is_due(client: &tokio_postgres::Client, job: &Job, now: DateTime<Utc>) -> anyhow::Result<bool> {
    let schedule = Schedule::parse(job.cron)?;
    let last: Option<DateTime<Utc>> = client
        .query_one(
            "SELECT max(started_at) FROM fintrail.job_runs WHERE job = $1 AND NOT dry_run",
            &[&job.name.as_str()],
        )
        .await?
        .get(0);
    Ok(last.is_none_or(|t| t < schedule.latest_fire(now)))
}

/// How often `fintrail up`'s local scheduler looks for due jobs (schedules are per minute).
pub const LOCAL_TICK: Duration = Duration::from_secs(20);

/// `fintrail up`'s scheduler: every [`LOCAL_TICK`], runs the jobs that are due (the same
/// schedules as Cloud Scheduler's), until `stop` turns true. A run in progress at the stop is
/// dropped, which is a crash as far as the job is concerned: each item is its own transaction,
/// so nothing is half done, and the next run resumes.
pub async fn run_locally(ctx: Context, audit: AuditWriter, mut stop: tokio::sync::watch::Receiver<bool>) {
    let opts = RunOptions::new(Trigger::Up);
    loop {
        tokio::select! {
            r = run_all_due(&ctx, &audit, &opts) => match r {
                Ok(reports) => {
                    for r in reports.iter().filter(|r| r.outcome == Outcome::Failed) {
                        tracing::warn!(log_class = "app", job = r.job, error = r.error.as_deref().unwrap_or(""), "local job failed");
                    }
                }
                Err(e) => tracing::warn!(log_class = "app", error = %format!("{e:#}"), "local jobs: cannot run"),
            },
            _ = stop.wait_for(|s| *s) => return,
        }
        tokio::select! {
            () = tokio::time::sleep(LOCAL_TICK) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Runs every job that is due, one after the other (`jobs run --all-due`, `fintrail up`).
pub async fn run_all_due(ctx: &Context, audit: &AuditWriter, opts: &RunOptions) -> anyhow::Result<Vec<Report>> {
    let client = ctx.db.connect(DbRole::App).await?;
    let now: DateTime<Utc> = client.query_one("SELECT now()", &[]).await?.get(0);
    let mut due = Vec::new();
    for job in &JOBS {
        if is_due(&client, job, now).await? {
            due.push(job.name);
        }
    }
    drop(client);
    let mut reports = Vec::with_capacity(due.len());
    for name in due {
        reports.push(run(ctx, audit, name, opts).await?);
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_table_is_consistent() {
        let mut names = std::collections::HashSet::new();
        for job in &JOBS {
            assert!(names.insert(job.name.as_str()), "{} listed twice", job.name.as_str());
            assert_eq!(JobName::parse(job.name.as_str()), Some(job.name));
            assert!(Schedule::parse(job.cron).is_ok(), "{}: schedule {}", job.name.as_str(), job.cron);
            // The job_runs CHECK and Cloud Scheduler's job-name rules.
            assert!(job.name.as_str().bytes().all(|b| b.is_ascii_lowercase() || b == b'-'));
            assert!(job.name.actor().len() <= 200);
        }
        assert_eq!(JobName::parse("nope"), None);
        let keys: std::collections::HashSet<_> = JOBS.iter().map(|j| j.name.lock_key()).collect();
        assert_eq!(keys.len(), JOBS.len());
    }

    /// `infra/modules/scheduler/jobs.json` schedules exactly these jobs, on these schedules:
    /// Cloud Scheduler in production and `fintrail up` locally follow one table.
    #[test]
    fn the_infra_scheduler_schedules_the_same_jobs() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../infra/modules/scheduler/jobs.json");
        let infra: Map<String, Value> =
            serde_json::from_str(&std::fs::read_to_string(path).expect(path)).expect("JSON");
        let ours: Map<String, Value> = JOBS
            .iter()
            .map(|j| (j.name.as_str().to_owned(), json!({ "schedule": j.cron, "description": j.summary })))
            .collect();
        assert_eq!(infra, ours, "{path} differs from fintrail_jobs::JOBS");
    }
}
