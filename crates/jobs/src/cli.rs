//! `fintrail jobs run NAME [--dry-run]`, `fintrail jobs run --all-due`, `fintrail jobs list`.

use std::time::Duration;

use fintrail_audit::AuditWriter;
use fintrail_db::Context;

use crate::{JobName, Outcome, Report, RunOptions, Trigger, BATCH_MAX_DEFAULT, JOBS};

/// `fintrail jobs`.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = jobs_help())]
pub struct JobsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: JobsCommand,
}

/// `fintrail jobs run|list`.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum JobsCommand {
    /// Run one job now, or every job that is due (exit 0 ok/partial/busy, 1 failed, 2 usage)
    Run(RunArgs),
    /// Each job's schedule, last run (outcome, counts, duration) and whether it is due
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// `fintrail jobs run`.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// The job (see the list below).
    #[arg(required_unless_present = "all_due", conflicts_with = "all_due")]
    pub name: Option<String>,
    /// Run every job whose schedule fired since its last run.
    #[arg(long)]
    pub all_due: bool,
    /// Count what would change; change nothing (the run and its events are still recorded).
    #[arg(long)]
    pub dry_run: bool,
    /// Most items this run handles (the rest is left for the next run).
    #[arg(long, default_value_t = BATCH_MAX_DEFAULT, value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::BATCH_MAX_LIMIT)))]
    pub batch_max: u32,
    /// Stop taking new items after this many seconds (the next run resumes).
    #[arg(long, default_value_t = crate::DEADLINE_DEFAULT.as_secs(), value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub deadline_secs: u64,
}

fn jobs_help() -> String {
    let mut s = String::from("Jobs (schedule in UTC cron; Cloud Scheduler and `fintrail up` use the same):\n");
    for j in &JOBS {
        s.push_str(&format!("  {:<18} {:<13} {}\n", j.name.as_str(), j.cron, j.summary));
    }
    s.push_str(
        "\nEach run takes the job's advisory lock (a second run at the same time is `busy` and does\n\
         nothing), stops at its deadline and batch size (`partial`; the next run resumes), and\n\
         records job.started / job.finished (or job.failed) audit events under system:job:<name>.",
    );
    s
}

/// Runs `fintrail jobs ...`; returns the exit code.
pub async fn run_jobs(args: JobsArgs, ctx: &Context) -> anyhow::Result<u8> {
    let audit = AuditWriter::new(true);
    match args.command {
        JobsCommand::List { json } => {
            let runs = crate::list(ctx).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&runs)?);
                return Ok(0);
            }
            println!(
                "{:<18} {:<13} {:<4} {:<12} {:<25} {:>8}  counts",
                "job", "schedule", "due", "last", "started", "ms"
            );
            for r in runs {
                println!(
                    "{:<18} {:<13} {:<4} {:<12} {:<25} {:>8}  {}",
                    r.job,
                    r.cron,
                    if r.due { "yes" } else { "no" },
                    r.outcome.as_deref().unwrap_or("never"),
                    r.started_at.map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_default(),
                    r.duration_ms.map(|d| d.to_string()).unwrap_or_default(),
                    r.counts.map(|c| c.to_string()).unwrap_or_default()
                );
            }
            Ok(0)
        }
        JobsCommand::Run(a) => {
            let opts = RunOptions {
                dry_run: a.dry_run,
                deadline: Duration::from_secs(a.deadline_secs),
                batch_max: a.batch_max,
                ..RunOptions::new(Trigger::Cli)
            };
            let reports = match a.name.as_deref() {
                None => crate::run_all_due(ctx, &audit, &opts).await?,
                Some(n) => {
                    let Some(name) = JobName::parse(n) else {
                        let names: Vec<&str> = JOBS.iter().map(|j| j.name.as_str()).collect();
                        eprintln!("unknown job {n:?}; jobs: {}", names.join(", "));
                        return Ok(2);
                    };
                    vec![crate::run(ctx, &audit, name, &opts).await?]
                }
            };
            if reports.is_empty() {
                println!("no job is due");
            }
            for r in &reports {
                print_report(r);
            }
            Ok(if reports.iter().any(|r| r.outcome == Outcome::Failed) { 1 } else { 0 })
        }
    }
}

fn print_report(r: &Report) {
    let run = r.run_id.map(|id| format!(" (run {id})")).unwrap_or_default();
    let dry = if r.dry_run { " [dry run]" } else { "" };
    println!(
        "job {}: {}{dry}{run} in {} ms: {}",
        r.job,
        r.outcome.as_str(),
        r.duration_ms,
        serde_json::Value::Object(r.counts.clone())
    );
    if let Some(e) = &r.error {
        eprintln!("job {}: {e}", r.job);
    }
}
