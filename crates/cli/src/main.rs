//! `fintrail`: one binary for the platform. This crate only parses the command line, sets up
//! telemetry and the database context, and dispatches to the library crates; the logic lives
//! in them (see ARCHITECTURE.md).

mod db_cmd;
mod telemetry;
mod up;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// fintrail — the platform baseline of a regulated fintech: identity and KYC, wallets and
/// transfers, CDC analytics, least-privilege infrastructure, and a tamper-evident audit trail.
///
/// Everything runs locally on embedded defaults under FINTRAIL_HOME (default ./.fintrail):
/// a private PostgreSQL cluster, a media folder, keys and a DuckDB analytics file.
#[derive(Debug, Parser)]
#[command(name = "fintrail", version, propagate_version = true, max_term_width = 100)]
struct Cli {
    /// Where the private cluster, media, keys and the DuckDB file live.
    #[arg(long, global = true, env = "FINTRAIL_HOME", default_value = ".fintrail", value_name = "DIR")]
    home: std::path::PathBuf,
    /// Use this external PostgreSQL (admin URL) instead of the private cluster.
    #[arg(long, global = true, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Log format on stderr: text on a terminal, JSON otherwise (auto).
    #[arg(long, global = true, env = "FINTRAIL_LOG_FORMAT", value_enum, default_value = "auto")]
    log_format: telemetry::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run everything on embedded defaults (database, API, CDC) in the foreground until Ctrl-C
    Up(up::UpArgs),
    /// Run the HTTP API
    Serve(NotBuilt),
    /// Manage the private PostgreSQL cluster: start, status, migrate, stop
    Db(db_cmd::DbArgs),
    /// Replicate PostgreSQL into the analytics store (DuckDB, BigQuery)
    Cdc(NotBuilt),
    /// Verify and checkpoint the tamper-evident audit trail
    Audit(NotBuilt),
    /// Analyze OpenTofu/Terraform code for least privilege and escalation paths
    Iam(fintrail_iam::cli::IamArgs),
    /// Trace commits to tasks and check that every change has one
    Trace(fintrail_trace::cli::TraceArgs),
    /// Measure ours against a baseline in the same run and print `ratio: X`
    Bench(BenchArgs),
}

/// A part of fintrail whose issue has not landed yet.
#[derive(Debug, clap::Args)]
struct NotBuilt {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    rest: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    #[command(subcommand)]
    name: BenchName,
}

#[derive(Debug, Subcommand)]
enum BenchName {
    /// HTTP POST /transfers against pgbench TPC-B on the same cluster
    Transfers(NotBuilt),
    /// Audit-trail verification speed and API throughput with the trail on vs off
    Audit(NotBuilt),
    /// Our CDC pipeline into DuckDB against pg_recvlogical on the same slot data
    Cdc(NotBuilt),
    /// pgbench TPS with the CDC pipeline streaming vs no consumer
    CdcImpact(NotBuilt),
    /// Our IAM analyzer against Checkov on the same generated root
    Iam(fintrail_iam::bench::BenchArgs),
}

fn not_built(what: &str, issue: u32) -> anyhow::Result<u8> {
    eprintln!("fintrail {what}: not built yet (issue {issue}); nothing was done");
    Ok(2)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    let home = fintrail_db::Home::new(&cli.home)?;
    let url = cli.database_url.as_deref();
    match cli.command {
        Command::Iam(args) => Ok(fintrail_iam::cli::run(args)),
        Command::Trace(args) => Ok(fintrail_trace::cli::run(args)),
        Command::Db(args) => runtime()?.block_on(db_cmd::run(args, &home, url)),
        Command::Up(args) => runtime()?.block_on(up::run(args, &home, url)),
        Command::Serve(_) => not_built("serve", 3),
        Command::Cdc(_) => not_built("cdc", 5),
        Command::Audit(_) => not_built("audit", 3),
        Command::Bench(b) => match b.name {
            BenchName::Iam(args) => fintrail_iam::bench::run(args).map(|()| 0),
            BenchName::Transfers(_) => not_built("bench transfers", 4),
            BenchName::Audit(_) => not_built("bench audit", 3),
            BenchName::Cdc(_) => not_built("bench cdc", 5),
            BenchName::CdcImpact(_) => not_built("bench cdc-impact", 5),
        },
    }
}
