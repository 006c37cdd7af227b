//! Stand-alone driver for development and benchmarking without building the whole workspace:
//! `cargo run -p fintrail-iam --example fintrail-iam -- check PATH` (same as `fintrail iam ...`),
//! `cargo run --release -p fintrail-iam --example fintrail-iam -- bench` (same as `fintrail bench iam`).

use clap::Parser;

#[derive(Parser)]
#[command(name = "fintrail-iam")]
enum Cli {
    #[command(flatten)]
    Iam(Box<fintrail_iam::cli::IamCommand>),
    /// `fintrail bench iam`
    Bench(fintrail_iam::bench::BenchArgs),
}

fn main() -> std::process::ExitCode {
    match Cli::parse() {
        Cli::Iam(command) => {
            let code = fintrail_iam::cli::run(fintrail_iam::cli::IamArgs { command: *command });
            std::process::ExitCode::from(code)
        }
        Cli::Bench(args) => match fintrail_iam::bench::run(args) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("fintrail bench iam: {e:#}");
                std::process::ExitCode::FAILURE
            }
        },
    }
}
