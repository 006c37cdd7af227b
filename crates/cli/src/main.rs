//! `fintrail`: the one binary. This crate only parses the command line, sets up telemetry and the
//! database context, handles signals, and dispatches to the library crates; the logic lives in
//! them (see ARCHITECTURE.md).
//!
//! # What it owns
//! - **Parsing** (clap): global `--home` / `FINTRAIL_HOME` (default `./.fintrail`),
//!   `--database-url` / `DATABASE_URL` (an external server instead of the private cluster; TLS
//!   from `FINTRAIL_DB_SSLMODE` / `FINTRAIL_DB_SSLROOTCERT`, `verify-full` by default, docs/tls.md),
//!   `--log-format` / `FINTRAIL_LOG_FORMAT`; the subcommands `up`, `db`, `serve`, `token`,
//!   `audit`, `ledger`, `jobs`, `cdc`, `analytics`, `iam`, `trace`, `bench`. The contract scripts rely on
//!   (names, exit codes, output) is `../shared/design/CLI.md`.
//! - **Telemetry**: every log event carries `log_class` (`audit`, `app` or `access`): the
//!   infrastructure routes each class to a bucket with its own retention (audit ≥ 5 years), so the
//!   JSON formatter adds `"log_class":"app"` to any event without one. Text on a terminal, JSON
//!   otherwise; JSON lines are written directly. `fintrail bench` logs to
//!   `FINTRAIL_HOME/logs/bench.log`, not the terminal.
//! - **Production mode** (`deployed`): with `FINTRAIL_ENVIRONMENT` set, `serve` and `cdc run`
//!   read a typed configuration from the environment alone and exit 2 naming every missing or
//!   malformed variable (`docs/configuration.md`); nothing is started or migrated.
//! - **Signals**: long-running commands (`serve`, `cdc run`, `up`) stop gracefully on Ctrl-C /
//!   SIGTERM and return; for the others, a signal drops the command's future, which drops its
//!   context and so stops a cluster it started (`fintrail_db::ClusterLease`), then the process
//!   exits with 130. Never the signal's default action, which would skip every cleanup.
//! - **`fintrail up`**: one per `FINTRAIL_HOME` (an advisory flock on `up.lock`, released by the
//!   kernel on a crash, so `kill -9` never blocks the next `up`): starts the cluster, migrates,
//!   starts the API, seeds the demo (and prints a staff token), runs the CDC pipeline into
//!   `analytics.duckdb` and the periodic jobs on their schedules (`fintrail_jobs::run_locally`),
//!   and stops all of it on Ctrl-C / SIGTERM.
//! - **`fintrail jobs run NAME [--dry-run] | run --all-due | list`**: the periodic jobs
//!   (`fintrail-jobs`; Cloud Scheduler calls the same through `POST /internal/jobs/{name}`). If the pipeline fails it stops
//!   with a clear error rather than dropping data.
//! - **`fintrail db start | status | migrate | stop`**: the private cluster.
//!
//! # Dependencies
//! Every library crate of ours (`fintrail-tooling` only for `bench` and the demo); `clap`,
//! `tokio`, `tracing` + `tracing-subscriber`, `serde_json`, `anyhow`. Dev: `fintrail-testseed`,
//! `fintrail-db` with `testing`, `proptest`.
//!
//! # Tests
//! - `tests/configuration.rs`: `docs/configuration.md`'s table against the code and `infra/`;
//!   the real `serve` exits 2 naming a missing or malformed variable, and starts from the
//!   environment alone (a secret from a mounted file) against a test database.
//! - `tests/image.rs`: the `Dockerfile` (pinned stages, non-root, entrypoint, no PostgreSQL,
//!   ./dev's DuckDB pins) and `.dockerignore`; its runtime stage built with buildah on a
//!   debootstrap base, its file list, `fintrail --version` and `fintrail serve` run in it.
//! - `tests/cli.rs`: help lists the contract's subcommands; `bench --help` lists every benchmark;
//!   missing PostgreSQL binaries give one clear message; an external `DATABASE_URL` is neither
//!   started nor stopped; `up` runs once per home, survives `kill -9` and stops cleanly; JSON logs
//!   carry a log class; `commands_stop_the_cluster_they_started` counts postmasters under the home
//!   before and after.
//! - `tests/ledger_stress.rs`: `fintrail serve` as a separate process, 32 concurrent clients
//!   (most transfers credit one hot wallet), 10 % of requests sent twice with the same
//!   `Idempotency-Key`, the server SIGKILLed at random moments and restarted, lost outcomes retried
//!   with the same key and body (`sigkilled_server_never_loses_or_duplicates_money`). Afterwards
//!   `ledger check` passes, no key was applied twice, and every acknowledged transfer is in the
//!   database exactly as acknowledged. Every request and kill delay is drawn up front from the
//!   seed; the funding is computed from the plan, so exactly the planned refusals are refused;
//!   `a_printed_seed_replays_the_same_operations` proves a printed seed replays the same run.

mod db_cmd;
mod deployed;
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
    /// Use this external PostgreSQL (admin URL) instead of the private cluster. TLS:
    /// FINTRAIL_DB_SSLMODE (verify-full by default) and FINTRAIL_DB_SSLROOTCERT (CA file).
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
    Serve(fintrail_api::cli::ServeArgs),
    /// Manage the private PostgreSQL cluster: start, status, migrate, stop
    Db(db_cmd::DbArgs),
    /// Replicate PostgreSQL into the analytics store (DuckDB, BigQuery)
    Cdc(fintrail_cdc::cli::CdcArgs),
    /// Verify and checkpoint the tamper-evident audit trail
    Audit(fintrail_api::cli::AuditArgs),
    /// Analyze OpenTofu/Terraform code for least privilege and escalation paths
    Iam(fintrail_iam::cli::IamArgs),
    /// Trace commits to tasks and check that every change has one
    Trace(fintrail_trace::cli::TraceArgs),
    /// Measure ours against a baseline in the same run and print `ratio: X`
    ///
    /// Log lines go to FINTRAIL_HOME/logs/bench.log (JSON), not to stderr: the table stays
    /// readable and no terminal competes for the CPU being measured.
    Bench(BenchArgs),
    /// Issue and revoke staff bearer tokens
    Token(fintrail_api::cli::TokenArgs),
    /// Query the analytics store (the DuckDB file written by `cdc`)
    Analytics(fintrail_cdc::cli::AnalyticsArgs),
    /// Prove the ledger's invariants on a live database (`ledger check`)
    Ledger(fintrail_ledger::cli::LedgerArgs),
    /// Run the periodic jobs (KYC expiry, hold expiry, audit checkpoint/verify, ...): run, list
    Jobs(fintrail_jobs::cli::JobsArgs),
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    #[command(subcommand)]
    name: BenchName,
}

#[derive(Debug, Subcommand)]
enum BenchName {
    /// HTTP POST /transfers against pgbench TPC-B on the same cluster
    Transfers(fintrail_tooling::bench_transfers::BenchArgs),
    /// Audit-trail verification speed and API throughput with the trail on vs off
    Audit(fintrail_tooling::bench_audit::BenchArgs),
    /// Console pages (KYC queue of 10k cases, audit viewer of 1M events) against their bare SQL
    Console(fintrail_tooling::bench_console::BenchArgs),
    /// Our CDC pipeline into DuckDB against pg_recvlogical on the same slot data
    Cdc(fintrail_cdc::bench::BenchArgs),
    /// pgbench TPS with the CDC pipeline streaming vs no consumer
    CdcImpact(fintrail_cdc::bench::BenchArgs),
    /// Our IAM analyzer against Checkov on the same generated root
    Iam(fintrail_iam::bench::BenchArgs),
}

fn main() -> ExitCode {
    // Before clap, whose message for a bad value would name only `--log-format`.
    let mut env = fintrail_db::env::EnvReader::process();
    deployed::check_log_format(&mut env);
    if let Some(e) = env.take_error() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let cli = Cli::parse();
    let sink = match &cli.command {
        Command::Bench(_) => telemetry::LogSink::File(cli.home.join("logs").join("bench.log")),
        _ => telemetry::LogSink::Stderr,
    };
    if let telemetry::LogSink::File(path) = telemetry::init(cli.log_format, sink) {
        eprintln!("bench: log lines (the in-process server's requests and audit events) go to {}", path.display());
    }
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

/// Exit code of a command stopped by Ctrl-C / SIGTERM (128 + SIGINT, the shell convention).
const EXIT_INTERRUPTED: u8 = 130;

/// Prepares the database (starting and migrating the private cluster, or connecting to
/// `--database-url`) and runs `f` with the context. A cluster that `prepare` started is
/// stopped when the context is dropped: at the end, on an error, or on a signal.
fn with_context<F, Fut>(home: &fintrail_db::Home, url: Option<&str>, signals: Signals, f: F) -> anyhow::Result<u8>
where
    F: FnOnce(fintrail_db::Context) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<u8>>,
{
    block_on(signals, async {
        let ctx = fintrail_db::prepare(home, url).await?;
        f(ctx).await
    })
}

/// Who handles Ctrl-C / SIGTERM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signals {
    /// The command itself (`serve`, `cdc run`, `up`: they stop gracefully and return).
    Command,
    /// This wrapper: the command's future is dropped, which drops its context and so stops
    /// a cluster it started, then the process exits with 130.
    Interrupt,
}

/// Runs `fut` on a fresh runtime; with [`Signals::Interrupt`], a signal drops it instead of
/// killing the process with the signal's default action (which would skip every cleanup).
fn block_on<Fut>(signals: Signals, fut: Fut) -> anyhow::Result<u8>
where
    Fut: std::future::Future<Output = anyhow::Result<u8>>,
{
    runtime()?.block_on(async {
        if signals == Signals::Command {
            return fut.await;
        }
        // Installed before the work starts, so no signal falls in a gap.
        let mut shutdown = up::Shutdown::install()?;
        tokio::select! {
            r = fut => r,
            () = shutdown.wait() => {
                eprintln!("interrupted: stopping what this command started");
                Ok(EXIT_INTERRUPTED)
            }
        }
    })
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    let home = fintrail_db::Home::new(&cli.home)?;
    let url = cli.database_url.as_deref();
    match cli.command {
        Command::Iam(args) => Ok(fintrail_iam::cli::run(args)),
        Command::Trace(args) => Ok(fintrail_trace::cli::run(args)),
        Command::Db(args) => runtime()?.block_on(db_cmd::run(args, &home, url)),
        Command::Up(args) => runtime()?.block_on(up::run(args, &home, url)),
        Command::Serve(args) => serve(args, home, url),
        Command::Audit(args) => {
            with_context(
                &home,
                url,
                Signals::Interrupt,
                |ctx| async move { fintrail_api::cli::run_audit(args, &ctx).await },
            )
        }
        Command::Token(args) => {
            with_context(
                &home,
                url,
                Signals::Interrupt,
                |ctx| async move { fintrail_api::cli::run_token(args, &ctx).await },
            )
        }
        Command::Ledger(args) => with_context(&home, url, Signals::Interrupt, |ctx| async move {
            fintrail_ledger::cli::run_ledger(args, &ctx).await
        }),
        Command::Jobs(args) => {
            with_context(
                &home,
                url,
                Signals::Interrupt,
                |ctx| async move { fintrail_jobs::cli::run_jobs(args, &ctx).await },
            )
        }
        Command::Cdc(args) => cdc(args, home, url),
        Command::Analytics(args) => runtime()?.block_on(fintrail_cdc::cli::run_analytics(args, &home)),
        Command::Bench(b) => match b.name {
            BenchName::Iam(args) => fintrail_iam::bench::run(args).map(|()| 0),
            BenchName::Transfers(args) => block_on(Signals::Interrupt, async {
                fintrail_tooling::bench_transfers::transfers(args, &home).await.map(|()| 0)
            }),
            BenchName::Audit(args) => block_on(Signals::Interrupt, async {
                fintrail_tooling::bench_audit::audit(args, &home).await.map(|()| 0)
            }),
            BenchName::Console(args) => block_on(Signals::Interrupt, async {
                fintrail_tooling::bench_console::console(args, &home).await.map(|()| 0)
            }),
            BenchName::Cdc(args) => {
                block_on(Signals::Interrupt, async { fintrail_cdc::bench::cdc(args, &home).await.map(|()| 0) })
            }
            BenchName::CdcImpact(args) => {
                block_on(Signals::Interrupt, async { fintrail_cdc::bench::cdc_impact(args, &home).await.map(|()| 0) })
            }
        },
    }
}

/// `fintrail serve`: production mode from the environment alone (`deployed`), or the local
/// defaults.
fn serve(args: fintrail_api::cli::ServeArgs, home: fintrail_db::Home, url: Option<&str>) -> anyhow::Result<u8> {
    let mut env = fintrail_db::env::EnvReader::process();
    let environment = deployed::environment(&mut env);
    if let Some(e) = env.take_error() {
        return Err(e.into());
    }
    match environment {
        Some(environment) => {
            let c = deployed::serve_config(&mut env, environment, args.listen, url.is_some())?;
            home.create()?;
            fintrail_db::keys::install(
                &home.keys_dir(),
                fintrail_db::keys::AUDIT_CHECKPOINT_KEY,
                &c.audit_checkpoint_key,
            )?;
            fintrail_db::keys::install(&home.keys_dir(), fintrail_db::keys::MEDIA_URL_KEY, &c.media_url_key)?;
            tracing::info!(log_class = "app", environment = c.environment.as_str(), "production configuration read");
            let ctx = fintrail_db::Context::new(fintrail_db::Database::service(c.db), home);
            block_on(Signals::Command, async move {
                let deployed = fintrail_api::cli::Deployed { listen: c.listen, jobs_oidc: c.jobs_oidc, media: c.media };
                fintrail_api::cli::run_serve(args, &ctx, Some(deployed)).await
            })
        }
        None => with_context(&home, url, Signals::Command, |ctx| async move {
            fintrail_api::cli::run_serve(args, &ctx, None).await
        }),
    }
}

/// `fintrail cdc`: `cdc run` in production mode from the environment alone, or the local
/// defaults.
fn cdc(args: fintrail_cdc::cli::CdcArgs, home: fintrail_db::Home, url: Option<&str>) -> anyhow::Result<u8> {
    // `cdc run` stops gracefully on a signal (commits and confirms what it has).
    let run = matches!(args.command, fintrail_cdc::cli::CdcCommand::Run(_));
    let signals = if run { Signals::Command } else { Signals::Interrupt };
    let mut env = fintrail_db::env::EnvReader::process();
    let environment = if run { deployed::environment(&mut env) } else { None };
    if let Some(e) = env.take_error() {
        return Err(e.into());
    }
    if let Some(environment) = environment {
        let bigquery = matches!(&args.command, fintrail_cdc::cli::CdcCommand::Run(a)
            if a.sink == fintrail_cdc::cli::SinkKind::Bigquery);
        let c = deployed::cdc_config(&mut env, environment, url.is_some(), bigquery)?;
        home.create()?;
        fintrail_db::keys::install(&home.keys_dir(), fintrail_cdc::policy::KEY_FILE, &c.pseudonymize_key)?;
        tracing::info!(log_class = "app", environment = c.environment.as_str(), "production configuration read");
        let ctx = fintrail_db::Context::new(fintrail_db::Database::service(c.db), home);
        return block_on(signals, async move { fintrail_cdc::cli::run_cdc(args, &ctx).await });
    }
    with_context(&home, url, signals, |ctx| async move { fintrail_cdc::cli::run_cdc(args, &ctx).await })
}
