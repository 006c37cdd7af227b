//! `fintrail trace`: commit <-> task traceability.
//! Not built yet (issue 8): every entry point says so and exits non-zero.

pub mod cli {
    /// Arguments of `fintrail trace`.
    #[derive(Debug, clap::Args)]
    pub struct TraceArgs {
        /// Everything after `trace` (not built yet).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        pub rest: Vec<String>,
    }

    /// Runs `fintrail trace`; returns the process exit code.
    pub fn run(_args: TraceArgs) -> u8 {
        eprintln!("fintrail trace: not built yet (issue 8)");
        2
    }
}
