//! `fintrail iam`: least-privilege and privilege-escalation analysis of OpenTofu/Terraform code.
//! Not built yet (issue 7): every entry point says so and exits non-zero.

pub mod cli {
    /// Arguments of `fintrail iam`.
    #[derive(Debug, clap::Args)]
    pub struct IamArgs {
        /// Everything after `iam` (the analyzer is not built yet).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        pub rest: Vec<String>,
    }

    /// Runs `fintrail iam`; returns the process exit code.
    pub fn run(_args: IamArgs) -> u8 {
        eprintln!("fintrail iam: not built yet (issue 7)");
        2
    }
}

pub mod bench {
    /// Arguments of `fintrail bench iam`.
    #[derive(Debug, Clone, clap::Args)]
    pub struct BenchArgs {}

    /// Runs `fintrail bench iam`.
    pub fn run(_args: BenchArgs) -> anyhow::Result<()> {
        anyhow::bail!("fintrail bench iam: not built yet (issue 7)")
    }
}
