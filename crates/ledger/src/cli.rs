//! `fintrail ledger check`: exit 0 when every invariant holds, 1 with the list of violations,
//! 2 when the check cannot run.

use fintrail_db::DbRole;

use crate::check;

/// `fintrail ledger ...`.
#[derive(Debug, clap::Args)]
pub struct LedgerArgs {
    #[command(subcommand)]
    command: LedgerCommand,
}

#[derive(Debug, clap::Subcommand)]
enum LedgerCommand {
    /// Prove the ledger's invariants on the live database (Σ entries per currency = 0, every
    /// transfer balanced, every balance = Σ its entries and within its floor)
    Check,
}

/// Runs the command; returns the exit code.
pub async fn run_ledger(args: LedgerArgs, ctx: &fintrail_db::Context) -> anyhow::Result<u8> {
    match args.command {
        LedgerCommand::Check => {
            let mut client = match ctx.db.connect(DbRole::App).await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("ledger check: cannot connect: {e:#}");
                    return Ok(2);
                }
            };
            let report = match check::run(&mut client).await {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("ledger check: cannot check: {e:#}");
                    return Ok(2);
                }
            };
            println!(
                "checked {} wallets, {} transfers, {} entries, {} currencies",
                report.wallets, report.transfers, report.entries, report.currencies
            );
            if report.ok() {
                println!("ledger intact: every invariant holds");
                return Ok(0);
            }
            println!("ledger VIOLATED: {} violation(s)", report.violation_count);
            for v in &report.violations {
                println!("  {v}");
            }
            if report.violation_count as usize > report.violations.len() {
                println!("  ... and {} more", report.violation_count as usize - report.violations.len());
            }
            Ok(1)
        }
    }
}
