//! `fintrail bench transfers`: our HTTP `POST /v1/transfers` (8 concurrent clients, random
//! wallets, audit on, idempotency keys, group commit) against pgbench's TPC-B (8 clients) on the
//! same private cluster, alternating rounds in one run; then the hot-account scenario (every
//! transfer credits one merchant wallet) with group commit against one transaction and row
//! lock per transfer (`batch_max = 1`). Ends with `ratio: X`: the median over rounds of ours ÷
//! TPC-B.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use fintrail_db::{Context, DbRole};
use fintrail_domain::Role;
use serde_json::json;

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
}

/// Most clients (bounds tasks and connections).
pub const CLIENTS_MAX: usize = 256;
/// Most wallets.
pub const WALLETS_MAX: usize = 100_000;
/// Threads of the load generator's runtime (pgbench gets `-j min(clients, 4)`).
const CLIENT_THREADS: usize = 2;
const PGBENCH: &str = "/usr/lib/postgresql/15/bin/pgbench";
const PGBENCH_DB: &str = "fintrail_pgbench";

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
    let config =
        AppConfig { pool_size: (args.clients * 2).max(16), checkpoint_interval_secs: 0, ..AppConfig::default() };
    let server = start_with(&ctx, "127.0.0.1:0".parse()?, config).await?;
    // The load generator runs on its own threads, as pgbench is its own process: sharing the
    // server's runtime would make server tasks queue behind client tasks (and the reverse).
    let clients_rt = ClientRuntime(Some(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(CLIENT_THREADS)
            .thread_name("bench-client")
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

    let mut rounds = run_rounds(&ctx, &target, &args).await?;
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

/// What the alternating rounds measured.
#[derive(Debug, Default)]
struct Rounds {
    /// Ours, all rounds merged.
    ours: Run,
    /// pgbench's throughput per round.
    theirs_tps: Vec<f64>,
    /// pgbench's average latency per round (when it printed one).
    theirs_latency_ms: Vec<f64>,
    /// Ours ÷ pgbench per round.
    ratios: Vec<f64>,
}

impl Rounds {
    /// Adds round `round`: pgbench's output `out` and our run `r`.
    fn record(&mut self, round: u32, out: &str, r: Run) -> anyhow::Result<()> {
        let tps = parse_tps(out)?;
        self.theirs_tps.push(tps);
        if let Some(l) = parse_latency_ms(out) {
            self.theirs_latency_ms.push(l);
        }
        let round_ratio = if tps > 0.0 { r.tps() / tps } else { 0.0 };
        self.ratios.push(round_ratio);
        eprintln!(
            "bench: round {round}: pgbench {tps:.0} tps, ours {:.0} transfers/s ({} errors), ratio {round_ratio:.2}",
            r.tps(),
            r.errors
        );
        self.ours.merge(r);
        Ok(())
    }

    /// pgbench's mean throughput over the rounds.
    fn theirs_tps_mean(&self) -> f64 {
        debug_assert!(!self.theirs_tps.is_empty(), "at least one round");
        self.theirs_tps.iter().sum::<f64>() / self.theirs_tps.len() as f64
    }

    /// pgbench's mean latency over the rounds; 0 when it printed none.
    fn theirs_latency_ms_mean(&self) -> f64 {
        if self.theirs_latency_ms.is_empty() {
            0.0
        } else {
            self.theirs_latency_ms.iter().sum::<f64>() / self.theirs_latency_ms.len() as f64
        }
    }
}

/// `args.rounds` rounds of pgbench and ours, back to back.
async fn run_rounds(ctx: &Context, target: &Load<'_>, args: &BenchArgs) -> anyhow::Result<Rounds> {
    let mut rounds = Rounds::default();
    let t_arg = args.round_secs.to_string();
    let c_arg = args.clients.to_string();
    let j_arg = args.clients.clamp(1, 4).to_string();
    for round in 1..=args.rounds {
        // Alternated order (pgbench first in odd rounds, ours first in even ones): whatever one
        // side leaves behind (autovacuum of its tables, dirty buffers) falls on both equally.
        let pgbench_args =
            ["-n".into(), "-c".into(), c_arg.clone(), "-j".into(), j_arg.clone(), "-T".into(), t_arg.clone()];
        let tag = format!("r{round}");
        let (out, r) = if round % 2 == 1 {
            let out = pgbench(ctx, &pgbench_args).await?;
            (out, load(target, args.round_secs, false, &tag).await)
        } else {
            let r = load(target, args.round_secs, false, &tag).await;
            (pgbench(ctx, &pgbench_args).await?, r)
        };
        rounds.record(round, &out, r)?;
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
    println!(
        "{:<44} {:>12.0} {:>10} {:>10} {:>8}",
        format!("pgbench TPC-B (scale {scale}, avg latency)"),
        rounds.theirs_tps_mean(),
        format!("{:.2}", rounds.theirs_latency_ms_mean()),
        "-",
        "-"
    );
    print_run("ours: POST /v1/transfers, random wallets", &mut rounds.ours);
    if let Some((mut b, mut s)) = hot {
        print_run("hot account, group commit (ours)", &mut b);
        print_run("hot account, row lock per transfer", &mut s);
        if s.tps() > 0.0 {
            println!("hot-account ratio (group commit ÷ row lock per transfer): {:.2}", b.tps() / s.tps());
        }
    }
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
    let pg_tps = rounds.theirs_tps_mean();
    println!(
        "per-round ratios: {} (ratio of the means: {:.2})",
        rounds.ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(" "),
        if pg_tps > 0.0 { rounds.ours.tps() / pg_tps } else { 0.0 }
    );
    println!("ratio: {ratio:.2}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn the_ratio_is_the_median_of_the_rounds() {
        assert_eq!(median(&mut []), 0.0);
        assert_eq!(median(&mut [0.6]), 0.6);
        assert_eq!(median(&mut [0.9, 0.5, 0.7]), 0.7, "one disturbed round moves nothing");
        assert_eq!(median(&mut [1.0, 0.5, 0.25, 0.75]), 0.625);
    }
}
