//! A tiny stand-in for the `fintrail` binary (which the lead wires): starts the private
//! cluster under FINTRAIL_HOME (or uses --database-url), migrates, and runs one of this
//! crate's commands. Used by `schemathesis.sh` and for running the benchmark locally.
//!
//!   cargo run -p fintrail-api --example serve -- serve --listen 127.0.0.1:8080
//!   cargo run -p fintrail-api --example serve -- token create --role admin --ttl 1h
//!   cargo run -p fintrail-api --example serve -- audit verify
//!   cargo run --release -p fintrail-api --example serve -- bench

use clap::{Parser, Subcommand};
use fintrail_api::bench::BenchArgs;
use fintrail_api::cli::{AuditArgs, ServeArgs, TokenArgs};

#[derive(Parser)]
struct Cli {
    /// Use this PostgreSQL (admin URL) instead of the private cluster.
    #[arg(long, global = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the API.
    Serve(ServeArgs),
    /// Audit trail.
    Audit(AuditArgs),
    /// Bearer tokens.
    Token(TokenArgs),
    /// Seed demo data and print an admin token.
    Seed,
    /// `fintrail bench audit`.
    Bench(BenchArgs),
    /// The private cluster (only `db stop` here; the real binary has more).
    Db {
        #[command(subcommand)]
        command: DbCmd,
    },
}

#[derive(Subcommand)]
enum DbCmd {
    /// Stop the private cluster under FINTRAIL_HOME.
    Stop,
}

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    tracing_subscriber_init();
    let cli = Cli::parse();
    let home = fintrail_db::Home::from_env()?;
    match cli.command {
        Cmd::Bench(args) => {
            fintrail_api::bench::audit(args, &home).await?;
            return Ok(std::process::ExitCode::SUCCESS);
        }
        Cmd::Db { command: DbCmd::Stop } => {
            fintrail_db::cluster::Cluster::new(home)?.stop()?;
            return Ok(std::process::ExitCode::SUCCESS);
        }
        _ => {}
    }
    let ctx = fintrail_db::prepare(&home, cli.database_url.as_deref()).await?;
    let code = match cli.command {
        Cmd::Serve(a) => fintrail_api::cli::run_serve(a, &ctx).await?,
        Cmd::Audit(a) => fintrail_api::cli::run_audit(a, &ctx).await?,
        Cmd::Token(a) => fintrail_api::cli::run_token(a, &ctx).await?,
        Cmd::Seed => {
            let info = fintrail_api::seed_demo(&ctx).await?;
            println!("{}", info.admin_token);
            0
        }
        Cmd::Bench(_) | Cmd::Db { .. } => unreachable!("handled above"),
    };
    Ok(std::process::ExitCode::from(code))
}

/// Logs go to stderr only when RUST_LOG is set (the example has no subscriber dependency of
/// its own; the binary installs the JSON subscriber with `log_class`).
fn tracing_subscriber_init() {}
