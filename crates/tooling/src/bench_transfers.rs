//! `fintrail bench transfers`: our HTTP `POST /v1/transfers` (8 concurrent clients, random
//! wallets, audit on, idempotency keys, group commit) against pgbench's TPC-B (8 clients) on the
//! same private cluster, alternating rounds in one run; then the hot-account scenario (every
//! transfer credits one merchant wallet) with group commit against one transaction and row
//! lock per transfer (`batch_max = 1`). Ends with `ratio: X`: the median over rounds of ours ÷
//! TPC-B in pgbench's default (simple query) mode; the same against `-M prepared` (prepared
//! statements, faster per transaction) is printed before it as a second figure. Each run also
//! measures where the time goes: CPU per transfer of our server, of the load generator and of
//! PostgreSQL, and PostgreSQL's CPU per pgbench transaction (from `/proc`).

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use fintrail_db::{Context, DbRole};
use fintrail_domain::Role;
use serde_json::json;

use crate::bench_audit::cpu_secs;
use crate::fixtures;
use fintrail_api::server::{start_with, ServerHandle};
use fintrail_api::state::AppConfig;

/// `fintrail bench transfers` options.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Rounds; each runs pgbench and ours back to back (pgbench first in odd rounds), and
    /// `ratio:` is the median of the rounds' ratios. Five short rounds rather than three long
    /// ones: the same time per side, and a median one disturbed round cannot move.
    #[arg(long, default_value_t = 5)]
    pub rounds: u32,
    /// Seconds per round and per side.
    #[arg(long, default_value_t = 6)]
    pub round_secs: u64,
    /// Concurrent clients on both sides.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Wallets the random transfers choose from.
    #[arg(long, default_value_t = 1000)]
    pub wallets: usize,
    /// Seconds per side of the hot-account scenario (0 = skip it).
    #[arg(long, default_value_t = 5)]
    pub hot_secs: u64,
    /// pgbench scale factor (branches; default: one per client, the usual fair setting).
    #[arg(long)]
    pub pgbench_scale: Option<u32>,
    /// Use this external PostgreSQL (admin URL) instead of the private cluster.
    #[arg(long)]
    pub database_url: Option<String>,
    /// The ledger batcher's lanes (batches in flight at once) for our side.
    #[arg(long, default_value_t = fintrail_ledger::engine::LANES_DEFAULT)]
    pub lanes: usize,
}

/// Most clients (bounds tasks and connections).
pub const CLIENTS_MAX: usize = 256;
/// Most wallets.
pub const WALLETS_MAX: usize = 100_000;
/// Threads of the load generator's runtime (pgbench gets `-j min(clients, 4)`).
const CLIENT_THREADS: usize = 2;
const PGBENCH: &str = "/usr/lib/postgresql/15/bin/pgbench";
const PGBENCH_DB: &str = "fintrail_pgbench";
/// The load generator's thread name: its CPU is told apart from the server's by it.
const CLIENT_THREAD_NAME: &str = "bench-client";

/// Result of one load run.
#[derive(Debug, Clone, Default)]
struct Run {
    ok: u64,
    errors: u64,
    secs: f64,
    latencies_us: Vec<u64>,
}

impl Run {
    fn tps(&self) -> f64 {
        if self.secs > 0.0 {
            self.ok as f64 / self.secs
        } else {
            0.0
        }
    }
    fn pct(&mut self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        self.latencies_us.sort_unstable();
        let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }
    fn merge(&mut self, o: Run) {
        self.ok += o.ok;
        self.errors += o.errors;
        self.secs += o.secs;
        self.latencies_us.extend(o.latencies_us);
    }
}

fn pgbench_bin() -> String {
    std::env::var("FINTRAIL_PGBENCH").unwrap_or_else(|_| PGBENCH.to_owned())
}

async fn pgbench(ctx: &Context, args: &[String]) -> anyhow::Result<String> {
    let p = ctx.db.params(DbRole::Admin);
    let mut cmd = tokio::process::Command::new(pgbench_bin());
    cmd.args(args)
        .env("PGHOST", &p.host)
        .env("PGPORT", p.port.to_string())
        .env("PGUSER", &p.user)
        .env("PGDATABASE", PGBENCH_DB)
        .envs(p.libpq_tls_env());
    if let Some(pw) = &p.password {
        cmd.env("PGPASSWORD", pw);
    }
    let out = cmd.stdin(Stdio::null()).output().await.with_context(|| format!("running {}", pgbench_bin()))?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    anyhow::ensure!(out.status.success(), "pgbench failed: {text}");
    Ok(text)
}

fn parse_tps(out: &str) -> anyhow::Result<f64> {
    out.lines()
        .find_map(|l| {
            l.trim().strip_prefix("tps = ").and_then(|r| r.split_whitespace().next()).and_then(|n| n.parse().ok())
        })
        .with_context(|| format!("no tps in pgbench output: {out}"))
}

fn parse_latency_ms(out: &str) -> Option<f64> {
    out.lines().find_map(|l| {
        l.trim()
            .strip_prefix("latency average = ")
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    })
}

/// The load generator's runtime. A runtime must not be dropped inside another runtime's task
/// (tokio panics), which an early `?` would do: this shuts it down in the background instead.
struct ClientRuntime(Option<tokio::runtime::Runtime>);

impl ClientRuntime {
    fn handle(&self) -> &tokio::runtime::Handle {
        self.0.as_ref().expect("the client runtime lives until dropped").handle()
    }
}

impl Drop for ClientRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// The median of `xs` (sorted in place); 0 for none. Every benchmark's median.
pub(crate) fn median(xs: &mut [f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.sort_by(f64::total_cmp);
    let m = xs.len() / 2;
    if xs.len() % 2 == 1 {
        xs[m]
    } else {
        (xs[m - 1] + xs[m]) / 2.0
    }
}

/// Simple xorshift: the load generator needs speed, not quality.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// What every load run shares: the client runtime, the server, the token, the wallets and the
/// number of clients.
struct Load<'a> {
    rt: &'a tokio::runtime::Handle,
    addr: std::net::SocketAddr,
    token: &'a str,
    wallets: &'a [i64],
    clients: usize,
}

/// Drives `load.clients` HTTP clients for `secs`; `hot` sends every transfer to `wallets[0]`.
async fn load(load: &Load<'_>, secs: u64, hot: bool, tag: &str) -> Run {
    let Load { rt, addr, token, wallets, clients } = *load;
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (token, wallets, tag) = (token.to_owned(), wallets.to_vec(), tag.to_owned());
        tasks.push(rt.spawn(async move {
            let mut http = crate::http::Client::new(addr, &token);
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((c as u64 + 1) * 0x1000_0000_01B3));
            let mut run = Run::default();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let to = if hot { 0 } else { rng.below(wallets.len()) };
                let mut from = 1 + rng.below(wallets.len() - 1);
                if from == to {
                    from = (from + 1) % wallets.len();
                }
                let body = json!({ "from_wallet_id": wallets[from], "to_wallet_id": wallets[to],
                    "amount_minor": 1 + rng.below(100) as i64, "currency": "EUR" });
                let t0 = Instant::now();
                let key = format!("{tag}-{c}-{i}");
                let r = http.post_json("/v1/transfers", Some(&key), &body).await;
                i += 1;
                match r {
                    Ok((201, _)) => {
                        run.ok += 1;
                        run.latencies_us.push(t0.elapsed().as_micros() as u64);
                    }
                    Ok(_) | Err(_) => run.errors += 1,
                }
            }
            run
        }));
    }
    let mut total = Run::default();
    for t in tasks {
        if let Ok(r) = t.await {
            total.merge(r);
        }
    }
    total.secs = started.elapsed().as_secs_f64();
    total
}

/// Runs the benchmark (see the module docs).
pub async fn transfers(args: BenchArgs, home: &fintrail_db::Home) -> anyhow::Result<()> {
    anyhow::ensure!((1..=CLIENTS_MAX).contains(&args.clients), "--clients must be 1..={CLIENTS_MAX}");
    anyhow::ensure!((2..=WALLETS_MAX).contains(&args.wallets), "--wallets must be 2..={WALLETS_MAX}");
    anyhow::ensure!(args.rounds >= 1 && args.round_secs >= 1, "--rounds and --round-secs must be at least 1");
    let ctx = fintrail_db::prepare(home, args.database_url.as_deref()).await?;
    let scale = pgbench_setup(&ctx, &args).await?;

    // Our fixtures: approved customers, funded wallets, an admin token, the server.
    eprintln!("bench: {} funded wallets ...", args.wallets);
    let wallets = fixtures::funded_wallets(&ctx.db, args.wallets, 1_000_000_000_000).await?;
    let token = fixtures::token(&ctx.db, Role::Admin, None).await?;
    let config = AppConfig {
        pool_size: (args.clients * 2).max(16),
        checkpoint_interval_secs: 0,
        ledger_lanes: args.lanes,
        ..AppConfig::default()
    };
    let server = start_with(&ctx, "127.0.0.1:0".parse()?, config).await?;
    // The load generator runs on its own threads, as pgbench is its own process: sharing the
    // server's runtime would make server tasks queue behind client tasks (and the reverse).
    let clients_rt = ClientRuntime(Some(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(CLIENT_THREADS)
            .thread_name(CLIENT_THREAD_NAME)
            .enable_all()
            .build()?,
    ));
    // Warm up (connections, plans, batcher).
    let target = Load {
        rt: clients_rt.handle(),
        addr: server.local_addr(),
        token: &token,
        wallets: &wallets,
        clients: args.clients,
    };
    let _ = load(&target, 1, false, "warm").await;

    let mut rounds = run_rounds(&ctx, home, &target, &args).await?;
    let hot = hot_account(&server, &target, args.hot_secs).await;

    // The ledger must still be intact after all that.
    let mut client = ctx.db.connect(DbRole::App).await?;
    let report = fintrail_ledger::check::run(&mut client).await?;
    server.shutdown().await?;

    print_table(&args, scale, &mut rounds, hot);
    print_verdict(&report, &rounds)
}

/// pgbench's database on the same cluster, initialized; its scale factor.
async fn pgbench_setup(ctx: &Context, args: &BenchArgs) -> anyhow::Result<u32> {
    let pg = ctx.db.with_dbname(PGBENCH_DB);
    fintrail_db::ensure_database(&pg).await?;
    let scale = args.pgbench_scale.unwrap_or(args.clients as u32).max(1);
    eprintln!("bench: pgbench -i -s {scale} ...");
    pgbench(ctx, &["-i".into(), "-q".into(), "-s".into(), scale.to_string()]).await?;
    Ok(scale)
}

/// CPU microseconds per operation of one run, from `/proc`: our server (HTTP, handler, ledger
/// engine, PostgreSQL client), the load generator (its own threads in this process), and
/// PostgreSQL (every process of the private cluster).
#[derive(Debug, Clone, Copy, Default)]
struct CpuPerOp {
    server_us: f64,
    client_us: f64,
    postgres_us: f64,
}

/// CPU seconds so far: (this process, its load-generator threads, PostgreSQL); `None` where
/// `/proc` cannot tell (another OS, an external server).
fn cpu_now(home: &fintrail_db::Home) -> Option<(f64, f64, f64)> {
    let (me, postgres) = cpu_secs(home)?;
    Some((me, fintrail_db::proc_cpu::threads_secs(CLIENT_THREAD_NAME)?, postgres))
}

/// The CPU per operation between two [`cpu_now`] readings, over `ops` operations.
fn cpu_per_op(before: Option<(f64, f64, f64)>, after: Option<(f64, f64, f64)>, ops: f64) -> Option<CpuPerOp> {
    let ((me0, cl0, pg0), (me1, cl1, pg1)) = (before?, after?);
    let per = |secs: f64| secs * 1e6 / ops.max(1.0);
    Some(CpuPerOp { server_us: per((me1 - me0) - (cl1 - cl0)), client_us: per(cl1 - cl0), postgres_us: per(pg1 - pg0) })
}

/// One pgbench run: its throughput, average latency (when printed) and PostgreSQL's CPU per
/// transaction.
#[derive(Debug, Clone, Copy)]
struct PgbenchRun {
    tps: f64,
    latency_ms: Option<f64>,
    cpu: Option<CpuPerOp>,
}

/// Runs pgbench with `args` (its `-T` seconds long), measuring PostgreSQL's CPU.
async fn pgbench_run(ctx: &Context, home: &fintrail_db::Home, args: &[String]) -> anyhow::Result<PgbenchRun> {
    let before = cpu_now(home);
    let out = pgbench(ctx, args).await?;
    let after = cpu_now(home);
    let tps = parse_tps(&out)?;
    let secs = args.iter().skip_while(|a| *a != "-T").nth(1).and_then(|s| s.parse::<f64>().ok()).unwrap_or(1.0);
    Ok(PgbenchRun { tps, latency_ms: parse_latency_ms(&out), cpu: cpu_per_op(before, after, tps * secs) })
}

/// Our load for `secs` on random wallets, measuring the CPU.
async fn our_run(target: &Load<'_>, home: &fintrail_db::Home, secs: u64, tag: &str) -> (Run, Option<CpuPerOp>) {
    let before = cpu_now(home);
    let r = load(target, secs, false, tag).await;
    let cpu = cpu_per_op(before, cpu_now(home), r.ok as f64);
    (r, cpu)
}

/// What the alternating rounds measured.
#[derive(Debug, Default)]
struct Rounds {
    /// Ours, all rounds merged.
    ours: Run,
    /// Our CPU per transfer, per round.
    ours_cpu: Vec<CpuPerOp>,
    /// pgbench in its default mode, per round.
    theirs: Vec<PgbenchRun>,
    /// pgbench `-M prepared`, per round.
    prepared: Vec<PgbenchRun>,
    /// Ours ÷ pgbench (default mode) per round.
    ratios: Vec<f64>,
    /// Ours ÷ pgbench `-M prepared` per round.
    ratios_prepared: Vec<f64>,
}

impl Rounds {
    /// Adds round `round`: pgbench's runs (default mode and `-M prepared`) and ours.
    fn record(&mut self, round: u32, theirs: PgbenchRun, prepared: PgbenchRun, ours: (Run, Option<CpuPerOp>)) {
        let (r, cpu) = ours;
        let ratio_to = |tps: f64| if tps > 0.0 { r.tps() / tps } else { 0.0 };
        let (round_ratio, ratio_prepared) = (ratio_to(theirs.tps), ratio_to(prepared.tps));
        self.ratios.push(round_ratio);
        self.ratios_prepared.push(ratio_prepared);
        eprintln!(
            "bench: round {round}: pgbench {:.0} tps (-M prepared {:.0}), ours {:.0} transfers/s ({} errors), ratio {round_ratio:.2} ({ratio_prepared:.2})",
            theirs.tps,
            prepared.tps,
            r.tps(),
            r.errors
        );
        self.theirs.push(theirs);
        self.prepared.push(prepared);
        self.ours_cpu.extend(cpu);
        self.ours.merge(r);
    }
}

/// The mean throughput of `runs`.
fn tps_mean(runs: &[PgbenchRun]) -> f64 {
    debug_assert!(!runs.is_empty(), "at least one round");
    runs.iter().map(|r| r.tps).sum::<f64>() / runs.len().max(1) as f64
}

/// The mean latency of `runs` that printed one; 0 when none did.
fn latency_ms_mean(runs: &[PgbenchRun]) -> f64 {
    let l: Vec<f64> = runs.iter().filter_map(|r| r.latency_ms).collect();
    if l.is_empty() {
        0.0
    } else {
        l.iter().sum::<f64>() / l.len() as f64
    }
}

/// The medians of each CPU figure over `runs`; `None` when no run could tell.
fn cpu_median<'a>(runs: impl Iterator<Item = &'a CpuPerOp>) -> Option<CpuPerOp> {
    let (mut s, mut c, mut p) = (Vec::new(), Vec::new(), Vec::new());
    for r in runs {
        s.push(r.server_us);
        c.push(r.client_us);
        p.push(r.postgres_us);
    }
    (!p.is_empty()).then(|| CpuPerOp {
        server_us: median(&mut s),
        client_us: median(&mut c),
        postgres_us: median(&mut p),
    })
}

/// `args.rounds` rounds of pgbench (default mode), pgbench `-M prepared` and ours, back to back.
async fn run_rounds(
    ctx: &Context,
    home: &fintrail_db::Home,
    target: &Load<'_>,
    args: &BenchArgs,
) -> anyhow::Result<Rounds> {
    let mut rounds = Rounds::default();
    let t_arg = args.round_secs.to_string();
    let c_arg = args.clients.to_string();
    let j_arg = args.clients.clamp(1, 4).to_string();
    let simple: Vec<String> = vec!["-n".into(), "-c".into(), c_arg, "-j".into(), j_arg, "-T".into(), t_arg];
    let prepared: Vec<String> = simple.iter().cloned().chain(["-M".into(), "prepared".into()]).collect();
    for round in 1..=args.rounds {
        // Alternated order (pgbench first in odd rounds, ours first in even ones, `-M prepared`
        // always between): whatever one side leaves behind (autovacuum of its tables, dirty
        // buffers) falls on both equally.
        let tag = format!("r{round}");
        let (theirs, prep, ours) = if round % 2 == 1 {
            let theirs = pgbench_run(ctx, home, &simple).await?;
            let prep = pgbench_run(ctx, home, &prepared).await?;
            (theirs, prep, our_run(target, home, args.round_secs, &tag).await)
        } else {
            let ours = our_run(target, home, args.round_secs, &tag).await;
            let prep = pgbench_run(ctx, home, &prepared).await?;
            (pgbench_run(ctx, home, &simple).await?, prep, ours)
        };
        rounds.record(round, theirs, prep, ours);
    }
    debug_assert_eq!(rounds.ratios.len(), args.rounds as usize);
    Ok(rounds)
}

/// Hot account: group commit vs one transaction (and row lock) per transfer; `None` when
/// `secs` is 0.
async fn hot_account(server: &ServerHandle, target: &Load<'_>, secs: u64) -> Option<(Run, Run)> {
    if secs == 0 {
        return None;
    }
    let batched = load(target, secs, true, "hotb").await;
    server.state.ledger.set_batch_max(1);
    let single = load(target, secs, true, "hot1").await;
    server.state.ledger.set_batch_max(fintrail_ledger::engine::BATCH_MAX_DEFAULT);
    Some((batched, single))
}

/// One row of the table: `label`, throughput, p50 and p99 latency, errors.
fn print_run(label: &str, run: &mut Run) {
    let (p50, p99) = (run.pct(0.5), run.pct(0.99));
    println!("{:<44} {:>12.0} {:>10.2} {:>10.2} {:>8}", label, run.tps(), p50, p99, run.errors);
}

/// The results table.
fn print_table(args: &BenchArgs, scale: u32, rounds: &mut Rounds, hot: Option<(Run, Run)>) {
    println!(
        "fintrail bench transfers — {} rounds × {} s, {} clients, {} wallets",
        args.rounds, args.round_secs, args.clients, args.wallets
    );
    println!("{:<44} {:>12} {:>10} {:>10} {:>8}", "scenario", "per second", "p50 ms", "p99 ms", "errors");
    for (mode, runs) in [("", &rounds.theirs), (" -M prepared", &rounds.prepared)] {
        println!(
            "{:<44} {:>12.0} {:>10} {:>10} {:>8}",
            format!("pgbench TPC-B{mode} (scale {scale}, avg lat.)"),
            tps_mean(runs),
            format!("{:.2}", latency_ms_mean(runs)),
            "-",
            "-"
        );
    }
    print_run("ours: POST /v1/transfers, random wallets", &mut rounds.ours);
    print_cpu(rounds);
    if let Some((mut b, mut s)) = hot {
        print_run("hot account, group commit (ours)", &mut b);
        print_run("hot account, row lock per transfer", &mut s);
        if s.tps() > 0.0 {
            println!("hot-account ratio (group commit ÷ row lock per transfer): {:.2}", b.tps() / s.tps());
        }
    }
}

/// Where the time goes: CPU per transfer (ours) and per transaction (pgbench), medians of the
/// rounds.
fn print_cpu(rounds: &Rounds) {
    let ours = cpu_median(rounds.ours_cpu.iter());
    let theirs = cpu_median(rounds.theirs.iter().filter_map(|r| r.cpu.as_ref()));
    let prepared = cpu_median(rounds.prepared.iter().filter_map(|r| r.cpu.as_ref()));
    let (Some(ours), Some(theirs), Some(prepared)) = (ours, theirs, prepared) else {
        println!("where the time goes: not measured (no /proc, or an external server)");
        return;
    };
    println!("where the time goes (CPU per transfer or transaction, medians of the rounds):");
    println!("{:<44} {:>12.0}", "  ours: fintrail server, us", ours.server_us);
    println!("{:<44} {:>12.0}", "  ours: load generator, us", ours.client_us);
    println!("{:<44} {:>12.0}", "  ours: PostgreSQL, us", ours.postgres_us);
    println!("{:<44} {:>12.0}", "  pgbench: PostgreSQL, us", theirs.postgres_us);
    println!("{:<44} {:>12.0}", "  pgbench -M prepared: PostgreSQL, us", prepared.postgres_us);
}

/// The ledger check's verdict (an error when violated), then the ratios.
fn print_verdict(report: &fintrail_ledger::check::CheckReport, rounds: &Rounds) -> anyhow::Result<()> {
    println!(
        "ledger check after the run: {} ({} transfers, {} violations)",
        if report.ok() { "intact" } else { "VIOLATED" },
        report.transfers,
        report.violation_count
    );
    anyhow::ensure!(report.ok(), "the ledger check failed after the benchmark: {:?}", report.violations.first());
    // The ratio is the median of the rounds' ratios: each round pairs the two sides under the same
    // conditions of this shared machine, and the median ignores one disturbed round.
    let ratio = median(&mut rounds.ratios.clone());
    let pg_tps = tps_mean(&rounds.theirs);
    let list = |v: &[f64]| v.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(" ");
    println!(
        "per-round ratios: {} (ratio of the means: {:.2})",
        list(&rounds.ratios),
        if pg_tps > 0.0 { rounds.ours.tps() / pg_tps } else { 0.0 }
    );
    println!(
        "against pgbench -M prepared: {:.2} (per round: {})",
        median(&mut rounds.ratios_prepared.clone()),
        list(&rounds.ratios_prepared)
    );
    println!("ratio: {ratio:.2}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{cpu_per_op, median};

    #[test]
    fn the_cpu_per_transfer_splits_our_process_into_server_and_load_generator() {
        // (this process, its load-generator threads, PostgreSQL), in CPU seconds.
        let c = cpu_per_op(Some((1.0, 0.25, 3.0)), Some((2.0, 0.5, 5.0)), 1_000.0).unwrap();
        assert_eq!((c.server_us, c.client_us, c.postgres_us), (750.0, 250.0, 2_000.0));
        assert!(cpu_per_op(None, Some((2.0, 0.5, 5.0)), 1.0).is_none(), "nothing measured, nothing claimed");
        let none_done = cpu_per_op(Some((1.0, 0.0, 1.0)), Some((1.5, 0.0, 1.5)), 0.0).unwrap();
        assert!(none_done.server_us.is_finite(), "no operation divides by one, not by zero");
    }

    #[test]
    fn the_ratio_is_the_median_of_the_rounds() {
        assert_eq!(median(&mut []), 0.0);
        assert_eq!(median(&mut [0.6]), 0.6);
        assert_eq!(median(&mut [0.9, 0.5, 0.7]), 0.7, "one disturbed round moves nothing");
        assert_eq!(median(&mut [1.0, 0.5, 0.25, 0.75]), 0.625);
    }
}
