//! `fintrail-trace`: the `fintrail trace` commands as a standalone program (used by the
//! commit-msg hook when installed from it, and by the integration tests).

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "fintrail-trace",
    version,
    about = "Task ↔ commit ↔ infrastructure traceability (same as `fintrail trace`)."
)]
struct Standalone {
    #[command(flatten)]
    args: fintrail_trace::cli::TraceArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Standalone::parse();
    std::process::ExitCode::from(fintrail_trace::cli::run(cli.args))
}
