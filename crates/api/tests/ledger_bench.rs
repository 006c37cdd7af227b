//! Runs `fintrail bench transfers` end to end (its own durable private cluster under a temp
//! FINTRAIL_HOME, pgbench, the in-process server). Ignored by default: it takes a while and
//! measures rather than asserts. Run with
//! `cargo test -p fintrail-api --test ledger_bench -- --ignored --nocapture`
//! (`LEDGER_BENCH_ROUND_SECS`, `LEDGER_BENCH_ROUNDS` to lengthen).

use fintrail_tooling::bench_transfers::{transfers, BenchArgs};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: slow, measures instead of asserting; run explicitly"]
async fn bench_transfers_runs_and_keeps_the_ledger_intact() {
    let dir = std::env::temp_dir().join(format!("fintrail-ledger-bench-{}", std::process::id()));
    let home = fintrail_db::Home::new(&dir).unwrap();
    let args = BenchArgs {
        rounds: env_or("LEDGER_BENCH_ROUNDS", 1) as u32,
        round_secs: env_or("LEDGER_BENCH_ROUND_SECS", 3),
        clients: 8,
        wallets: 200,
        hot_secs: env_or("LEDGER_BENCH_HOT_SECS", 2),
        pgbench_scale: None,
        database_url: None,
        lanes: fintrail_ledger::engine::LANES_DEFAULT,
    };
    let r = transfers(args, &home).await;
    // The benchmark started the cluster, so it stopped it again (its context's lease).
    let pid = home.pg_data().join("postmaster.pid");
    assert!(!pid.exists(), "the benchmark left its cluster running ({})", pid.display());
    let _ = std::fs::remove_dir_all(&dir);
    r.unwrap();
}
