//! `cargo run -p fintrail-trace --example bench_report --release [-- COMMITS]`:
//! times `fintrail trace report` on a generated repository (default 10,000 commits).

fn main() -> anyhow::Result<()> {
    let commits = match std::env::args().nth(1) {
        Some(n) => n.parse().map_err(|e| anyhow::anyhow!("COMMITS must be a number: {e}"))?,
        None => 10_000,
    };
    fintrail_trace::bench::run_report_bench(commits)
}
