//! `fintrail bench audit`: (1) `audit verify` speed on 1M events (target ≥ 1M events/s), with
//! its parallel readers and with one reader, alternated per round, next to the I/O floor (the
//! same readers and COPYs without hashing), and where verification's time goes; (2) API write
//! throughput (KYB screening transitions over real HTTP) with the audit trail on vs off, in
//! the same run, alternating order per round, and the CPU each side spends per transition
//! (fintrail and PostgreSQL, from `/proc`): where the trail's cost goes. Last line:
//! `ratio: X`, the median over rounds of (on ÷ off) within a round: the two halves of a round
//! run back to back, so a load that drifts on a shared machine cancels out of each ratio.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use fintrail_db::{Context, DbRole, Home};
use fintrail_domain::Role;
use serde_json::json;

use fintrail_api::state::AppConfig;
use fintrail_audit::chain::Sequencer;
use fintrail_audit::verify::{Outcome, Report, ScanLimits};

use crate::bench_transfers::median;

/// `fintrail bench audit` options.
#[derive(clap::Args, Clone, Debug)]
pub struct BenchArgs {
    /// Use this PostgreSQL (admin URL) instead of the private cluster under FINTRAIL_HOME.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Audit events to verify.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: i64,
    /// Seconds per write-throughput measurement.
    #[arg(long, default_value_t = 3)]
    pub write_secs: u64,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Rounds of (audit on, audit off); the order alternates between rounds; `ratio:` is the
    /// median of the rounds' ratios.
    ///
    /// Many short rounds: on this 2-core shared machine a round's ratio moves by ±0.2 with the
    /// neighbours' load; the median of 11 moved by about ±0.02 between runs.
    #[arg(long, default_value_t = 11)]
    pub rounds: usize,
    /// Rounds of (verify with N readers, verify with one reader, I/O floor), order alternating.
    #[arg(long, default_value_t = 3)]
    pub verify_rounds: usize,
    /// Parallel verification readers (default: one per core).
    #[arg(long)]
    pub verify_readers: Option<usize>,
}

const BENCH_DB: &str = "fintrail_bench_audit";
/// Rows inserted per statement when generating the trail.
const INSERT_BATCH: i64 = 100_000;

/// Runs the benchmark.
pub async fn audit(args: BenchArgs, home: &Home) -> anyhow::Result<()> {
    anyhow::ensure!(args.events > 0 && args.events <= 100_000_000, "--events must be 1..=100000000");
    anyhow::ensure!(args.concurrency > 0 && args.concurrency <= 256, "--concurrency must be 1..=256");
    anyhow::ensure!(args.write_secs > 0 && args.write_secs <= 600, "--write-secs must be 1..=600");
    anyhow::ensure!((1..=20).contains(&args.verify_rounds), "--verify-rounds must be 1..=20");
    anyhow::ensure!((1..=50).contains(&args.rounds), "--rounds must be 1..=50");
    let limits =
        ScanLimits { readers: args.verify_readers.unwrap_or(ScanLimits::default().readers), ..ScanLimits::default() };
    limits.check()?;
    let ctx = bench_database(home, args.database_url.as_deref(), BENCH_DB).await?;
    let db = ctx.db.clone();

    // 1. Verification speed.
    eprintln!("generating {} audit events ...", args.events);
    generate_events(&db, args.events).await?;
    let t = Instant::now();
    let mut seq = Sequencer::try_open(&db).await?.context("another sequencer holds the lock")?;
    let linked = seq.run_once().await?;
    let chain_secs = t.elapsed().as_secs_f64();
    drop(seq);
    // The generated trail is vacuumed and analysed now, so that autovacuum's catch-up on a
    // million new rows (measured: it landed in random write rounds, ±0.3 on their ratios) is
    // not part of any measurement.
    let admin = db.connect(DbRole::Admin).await?;
    admin.batch_execute("VACUUM (ANALYZE) fintrail.audit_events, fintrail.audit_chain").await?;
    drop(admin);
    let verify = verify_rounds(&ctx, home, limits, args.verify_rounds).await?;
    let n = args.events as f64;

    // 2. Write throughput, audit on vs off.
    let writes = write_rounds(&ctx, home, &args).await?;

    println!("fintrail bench audit");
    println!("{:<44} {:>16}", "measure", "value");
    println!("{:<44} {:>16}", "events in trail", args.events);
    println!("{:<44} {:>16.0}", "chaining (sequencer), events/s", linked as f64 / chain_secs.max(1e-9));
    verify.print(n, limits.readers);
    writes.print();
    Ok(())
}

/// One write-throughput measurement: transitions per second, and the CPU microseconds per
/// transition of this process and of PostgreSQL (`None` where `/proc` cannot tell).
#[derive(Debug, Clone, Copy)]
struct WriteRun {
    ops_per_sec: f64,
    cpu_us: Option<(f64, f64)>,
}

/// The write rounds: each side's runs, and each round's on ÷ off.
struct WriteFigures {
    on: Vec<WriteRun>,
    off: Vec<WriteRun>,
    ratios: Vec<f64>,
}

impl WriteFigures {
    fn print(&self) {
        let rate = |v: &[WriteRun]| median(&mut v.iter().map(|r| r.ops_per_sec).collect::<Vec<_>>());
        println!("{:<44} {:>16.0}", "API transitions/s, audit ON (ours), median", rate(&self.on));
        println!("{:<44} {:>16.0}", "API transitions/s, audit OFF (baseline), median", rate(&self.off));
        println!("{:<44} {:>16}", "per-round ratios (on / off)", format!("{:.3?}", self.ratios));
        // (fintrail, PostgreSQL) medians; `None` where `/proc` could not tell for some run.
        let cpu = |v: &[WriteRun]| -> Option<(f64, f64)> {
            let (mut client, mut server): (Vec<f64>, Vec<f64>) = v.iter().map(|r| r.cpu_us).collect::<Option<_>>()?;
            Some((median(&mut client), median(&mut server)))
        };
        if let (Some(on), Some(off)) = (cpu(&self.on), cpu(&self.off)) {
            println!("where a transition's time goes (CPU per transition, medians):");
            println!("{:<44} {:>16.0}", "  fintrail (HTTP, handler, client), on, us", on.0);
            println!("{:<44} {:>16.0}", "  fintrail, off, us", off.0);
            println!("{:<44} {:>16.0}", "  PostgreSQL, on, us", on.1);
            println!("{:<44} {:>16.0}", "  PostgreSQL, off, us", off.1);
            println!("{:<44} {:>16.0}", "  the trail's cost (on - off, both), us", on.0 + on.1 - off.0 - off.1);
        }
        println!("ratio: {:.3}", median(&mut self.ratios.clone()));
    }
}

/// `args.rounds` rounds of (audit on, audit off), the order alternating between rounds.
async fn write_rounds(ctx: &Context, home: &Home, args: &BenchArgs) -> anyhow::Result<WriteFigures> {
    let mut figures = WriteFigures { on: Vec::new(), off: Vec::new(), ratios: Vec::new() };
    for round in 0..args.rounds {
        let order = if round % 2 == 0 { [true, false] } else { [false, true] };
        let (mut on, mut off) = (None, None);
        for audit_on in order {
            let (ops, secs, cpu) = write_throughput(ctx, home, audit_on, args).await?;
            let cpu_us = cpu.map(|(client, server)| {
                let n = (ops * secs).max(1.0);
                (client * 1e6 / n, server * 1e6 / n)
            });
            eprintln!("round {} audit {:<3}: {ops:.0} transitions/s", round + 1, if audit_on { "on" } else { "off" });
            let run = WriteRun { ops_per_sec: ops, cpu_us };
            if audit_on {
                on = Some(run);
                figures.on.push(run);
            } else {
                off = Some(run);
                figures.off.push(run);
            }
        }
        if let (Some(on), Some(off)) = (on, off) {
            figures.ratios.push(if off.ops_per_sec > 0.0 { on.ops_per_sec / off.ops_per_sec } else { 0.0 });
        }
    }
    Ok(figures)
}

/// A new, migrated database `name` on the private cluster (or `database_url`'s server),
/// dropped first if an earlier run left it: each benchmark measures in a database of its own.
pub async fn bench_database(home: &Home, database_url: Option<&str>, name: &str) -> anyhow::Result<Context> {
    let base = fintrail_db::prepare(home, database_url).await?;
    let db = base.db.with_dbname(name);
    let admin = base.db.with_dbname("postgres").connect(DbRole::Admin).await?;
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await?;
    fintrail_db::ensure_database(&db).await?;
    fintrail_db::migrate::migrate(&db).await?;
    Ok(base.with_db(db))
}

/// `events` KYC approval events, inserted server-side through the trail's own triggers.
pub async fn generate_events(db: &fintrail_db::Database, events: i64) -> anyhow::Result<()> {
    let su = db.connect(DbRole::Admin).await?;
    let mut done = 0;
    while done < events {
        let n = INSERT_BATCH.min(events - done);
        su.execute(
            "INSERT INTO fintrail.audit_events (actor, on_behalf_of, action, subject, permission, allowed, request_id, before, after) \
             SELECT 'staff:1:bench', 'customer:' || g, 'kyc.case.transitioned', 'kyc_case:' || g, 'kyc.case.review', true, \
                    'req-' || g, '{\"state\": \"in_review\"}', jsonb_build_object('state', 'approved', 'transition_id', g)::text \
             FROM generate_series(1, $1::bigint) AS g",
            &[&n],
        )
        .await?;
        done += n;
    }
    Ok(())
}

/// CPU seconds (user + system) used so far by this process and by the private cluster's
/// PostgreSQL (the postmaster, its live children and the children it reaped), from `/proc`;
/// `None` where that cannot be read (another OS, an external server).
pub(crate) fn cpu_secs(home: &Home) -> Option<(f64, f64)> {
    use fintrail_db::proc_cpu;
    let me = proc_cpu::proc_cpu("self")?;
    Some((me.own_secs, proc_cpu::cluster_secs(proc_cpu::postmaster(home)?)?))
}

/// Verification figures: medians over the rounds.
struct VerifyFigures {
    parallel_secs: f64,
    single_secs: f64,
    floor_secs: f64,
    /// CPU seconds of this process and of PostgreSQL during the median parallel run.
    cpu: Option<(f64, f64)>,
    /// The parallel run with the median time: its breakdown.
    breakdown: Report,
}

impl VerifyFigures {
    fn print(&self, events: f64, readers: usize) {
        let rate = |secs: f64| events / secs.max(1e-9);
        let t = &self.breakdown.timing;
        println!(
            "{:<44} {:>16.0}",
            format!("verify, {readers} readers, events/s (target >= 1M)"),
            rate(self.parallel_secs)
        );
        println!("{:<44} {:>16.0}", "verify, 1 reader, events/s", rate(self.single_secs));
        println!("{:<44} {:>16.0}", format!("I/O floor: {readers} readers, no hashing, rows/s"), rate(self.floor_secs));
        println!("where verify's time goes ({readers} readers; reader seconds are summed over readers):");
        println!("{:<44} {:>16.3}", "  wall, s", self.breakdown.elapsed_ms as f64 / 1000.0);
        println!("{:<44} {:>16.3}", "  readers: COPY, TLS, decode, encode, s", t.read_secs);
        println!("{:<44} {:>16.3}", "  readers: SHA-256, s", t.hash_secs);
        println!("{:<44} {:>16.3}", "  walk: chain fold in seq order, s", t.fold_secs);
        println!("{:<44} {:>16.3}", "  walk: waiting for readers, s", t.wait_secs);
        if let Some((client, server)) = self.cpu {
            println!("{:<44} {:>16.3}", "  CPU: fintrail (readers, TLS, walk), s", client);
            println!("{:<44} {:>16.3}", "  CPU: PostgreSQL (COPY backends, TLS), s", server);
        }
    }
}

/// Verifies the trail with `limits` and with one reader, and reads the I/O floor, `rounds`
/// times in alternating order; medians.
async fn verify_rounds(ctx: &Context, home: &Home, limits: ScanLimits, rounds: usize) -> anyhow::Result<VerifyFigures> {
    let dir = home.root().join("bench-audit-checkpoints");
    let _ = std::fs::remove_dir_all(&dir);
    let single = ScanLimits { readers: 1, ..limits };
    let (mut parallel, mut one, mut floor) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        for which in if round % 2 == 0 { [0, 1, 2] } else { [2, 1, 0] } {
            let t = Instant::now();
            match which {
                0 | 1 => {
                    let l = if which == 0 { limits } else { single };
                    let cpu_before = cpu_secs(home);
                    let outcome = fintrail_audit::verify::verify_trail_with(ctx, &dir, l).await;
                    let secs = t.elapsed().as_secs_f64();
                    // The readers' backends have exited: let the postmaster reap them (their CPU
                    // time moves to its children's total).
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let cpu = cpu_before.zip(cpu_secs(home)).map(|(a, b)| (b.0 - a.0, b.1 - a.1));
                    let Outcome::Intact(report) = outcome else {
                        anyhow::bail!("the generated trail must verify: {outcome:?}")
                    };
                    if which == 0 {
                        parallel.push((secs, report, cpu))
                    } else {
                        one.push(secs)
                    }
                }
                _ => floor.push(fintrail_audit::verify::read_floor(&ctx.db, limits).await?.1),
            }
        }
    }
    let parallel_all: Vec<f64> = parallel.iter().map(|p| p.0).collect();
    eprintln!("verify rounds, s: {} readers {parallel_all:.3?}, 1 reader {one:.3?}, floor {floor:.3?}", limits.readers);
    parallel.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (parallel_secs, breakdown, cpu) = parallel.swap_remove(parallel.len() / 2);
    Ok(VerifyFigures { parallel_secs, single_secs: median(&mut one), floor_secs: median(&mut floor), cpu, breakdown })
}

/// Transitions per second over `args.write_secs`, the seconds measured, and the CPU seconds
/// (fintrail, PostgreSQL) spent in that window (`None` where `/proc` cannot tell).
///
/// Steady state only: the window opens once every client has created its organization and
/// made one transition, so starting the server (its pool's connections: backend start, TLS,
/// SCRAM, catalog caches, the functions' first compilation; the sequencer's connection) is in
/// neither side's figures. Those are per start, not per transition, and with short rounds they
/// weighed on the side that opens more (measured with `--rounds 11 --write-secs 3`).
async fn write_throughput(
    ctx: &Context,
    home: &Home,
    audit_on: bool,
    args: &BenchArgs,
) -> anyhow::Result<(f64, f64, Option<(f64, f64)>)> {
    // The baseline is the platform without its trail: no events, so no coupling either (it would
    // refuse every transition); this benchmark's own database, the owner's DDL.
    let admin = ctx.db.connect(DbRole::Admin).await?;
    fintrail_db::coupling::set_enabled(&admin, audit_on).await?;
    let config = AppConfig {
        audit_enabled: audit_on,
        run_sequencer: audit_on,
        record_stages: false,
        pool_size: args.concurrency + 2,
        checkpoint_interval_secs: 0,
        ..AppConfig::default()
    };
    let handle = fintrail_api::server::start_with(ctx, "127.0.0.1:0".parse()?, config).await?;
    let addr = handle.local_addr();
    let token =
        fintrail_api::identity::create_token(&ctx.db, Role::ComplianceOfficer, None, "bench", 3600, "system:bench")
            .await?
            .token;
    let window = Duration::from_secs(args.write_secs);
    // Every client and this task meet here once warmed up; the window starts after it.
    let warm = std::sync::Arc::new(tokio::sync::Barrier::new(args.concurrency + 1));
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (token, warm) = (token.clone(), warm.clone());
        workers.push(tokio::spawn(async move { transition_client(addr, &token, &warm, window).await }));
    }
    warm.wait().await;
    let (started, cpu_before) = (Instant::now(), cpu_secs(home));
    let mut total = 0u64;
    for w in workers {
        total += w.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_before.zip(cpu_secs(home)).map(|(a, b)| (b.0 - a.0, b.1 - a.1));
    handle.shutdown().await?;
    Ok((total as f64 / secs.max(1e-9), secs, cpu))
}

/// One HTTP client: creates an organization and makes one transition (warm-up), waits at
/// `warm`, then re-screens it for `window`: registered → screening → clear → screening ...
/// Returns the transitions made in the window.
async fn transition_client(
    addr: std::net::SocketAddr,
    token: &str,
    warm: &tokio::sync::Barrier,
    window: Duration,
) -> anyhow::Result<u64> {
    let mut http = crate::http::Client::new(addr, token);
    let org = json!({"legal_name": "Bench GmbH", "registration_number": "B-1", "country": "DE"});
    let (status, body) = http.post_json("/v1/kyb/organizations", None, &org).await?;
    anyhow::ensure!(status == 201, "creating an organization failed: {status}");
    let org: serde_json::Value = serde_json::from_slice(&body)?;
    let id = org["id"].as_i64().context("organization id")?;
    let path = format!("/v1/kyb/organizations/{id}/screening");
    let mut next = "screening";
    screen(&mut http, &path, &mut next).await?;
    warm.wait().await;
    let deadline = Instant::now() + window;
    let mut ops = 0u64;
    while Instant::now() < deadline {
        screen(&mut http, &path, &mut next).await?;
        ops += 1;
    }
    Ok(ops)
}

/// One transition to `next` (periodic re-screening: screening and clear alternate).
async fn screen(http: &mut crate::http::Client, path: &str, next: &mut &'static str) -> anyhow::Result<()> {
    let (status, _) = http.post_json(path, None, &json!({"to": *next, "reason": "bench"})).await?;
    anyhow::ensure!((200..300).contains(&status), "transition failed: {status}");
    *next = if *next == "screening" { "clear" } else { "screening" };
    Ok(())
}
