//! `fintrail bench cdc` and `fintrail bench cdc-impact`: ours and the baseline in the same
//! run, a human table, where the time and the CPU go, and `ratio: X` (ours ÷ baseline,
//! higher is better) as the last line.
//!
//! `bench cdc [--under-load]`: pg_recvlogical and our pipeline drain slots created at the same
//! point, so both decode exactly the same WAL; alternated rounds, medians. `--under-load`
//! runs pgbench (default mode) during each consumer's run, and reports its TPS then.
//! `bench cdc-impact`: pgbench TPS with the pipeline streaming vs. no consumer, alternated,
//! with the CPU each part took (so a ratio below 1 can be told apart: the shared CPU, or
//! the database working harder per transaction).

mod cpu;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fintrail_db::{Context, DbRole, Home};
use tokio::io::AsyncBufReadExt;

use crate::pipeline::{self, percentile, Options, StreamTimes, Summary};
use crate::policy::{Policy, Pseudonymizer};
use crate::sink::duck::DuckSink;
use crate::source::{self, Names};

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Rows streamed (bench cdc).
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: u64,
    /// Use this server instead of a private cluster under FINTRAIL_HOME.
    #[arg(long)]
    pub database_url: Option<String>,
    /// cdc: run pgbench (default mode, `--clients`, `--scale`) during both consumers' runs.
    #[arg(long)]
    pub under_load: bool,
    /// Alternated rounds: cdc (pg_recvlogical, ours; medians), cdc-impact (no consumer,
    /// pipeline streaming).
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// cdc-impact: seconds per pgbench run.
    #[arg(long, default_value_t = 10)]
    pub round_secs: u64,
    /// cdc-impact: idle seconds before measuring retained WAL.
    #[arg(long, default_value_t = 60)]
    pub idle_secs: u64,
    /// pgbench clients (cdc --under-load, cdc-impact).
    #[arg(long, default_value_t = 4)]
    pub clients: u32,
    /// pgbench scale factor (cdc --under-load, cdc-impact).
    #[arg(long, default_value_t = 10)]
    pub scale: u32,
}

const BENCH_POLICY: &str = r#"
[tables.bench_cdc.columns]
id = "keep"
account = "keep"
amount_minor = "keep"
currency = "keep"
note = "keep"
created_at = "keep"
"#;

const IMPACT_POLICY: &str = r#"
[tables.pgbench_accounts.columns]
aid = "keep"
bid = "keep"
abalance = "keep"
[tables.pgbench_branches.columns]
bid = "keep"
bbalance = "keep"
[tables.pgbench_tellers.columns]
tid = "keep"
bid = "keep"
tbalance = "keep"
"#;

/// Transactions the 1M rows are loaded in.
const LOAD_TXN_ROWS: u64 = 10_000;

/// The server (private cluster under FINTRAIL_HOME unless `--database-url`), and a database
/// of the bench's own on it, so the bench never touches real tables, grants or slots.
async fn prepare(args: &BenchArgs, home: &Home) -> anyhow::Result<Context> {
    let ctx = fintrail_db::prepare(home, args.database_url.as_deref()).await?;
    let db = ctx.db.with_dbname("fintrail_bench");
    fintrail_db::ensure_database(&db).await?;
    fintrail_db::migrate::migrate(&db).await?;
    Ok(ctx.with_db(db))
}

async fn admin_sql(ctx: &Context, sql: &str) -> anyhow::Result<()> {
    let c = ctx.db.connect(DbRole::Admin).await?;
    c.batch_execute(sql).await?;
    Ok(())
}

async fn marker(ctx: &Context) -> anyhow::Result<u64> {
    let c = ctx.db.connect(DbRole::Replicator).await?;
    let r = c.query_one("SELECT pg_logical_emit_message(false, 'fintrail_bench', 'end')::text", &[]).await?;
    crate::pgoutput::parse_lsn(&r.get::<_, String>(0))
}

async fn run_ours(
    ctx: &Context,
    policy: &Policy,
    names: &Names,
    path: &std::path::Path,
    stop: u64,
) -> anyhow::Result<Summary> {
    let (db, policy, names, path) = (ctx.db.clone(), policy.clone(), names.clone(), path.to_owned());
    pipeline::on_own_thread("cdc-bench", std::future::pending(), move |shutdown| async move {
        let ps = Pseudonymizer::new(&[1u8; 32])?;
        let mut sink = DuckSink::open(&path)?;
        sink.one_thread()?; // as `cdc run`
        let opts = Options { names, stop_at_lsn: Some(stop), ..Default::default() };
        pipeline::run(&db, &policy, &ps, &mut sink, &opts, shutdown).await
    })
    .await
}

fn bench_dir(home: &Home) -> anyhow::Result<std::path::PathBuf> {
    let d = home.root().join("bench");
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// Seconds pgbench runs before a consumer's run starts (connections up, steady rate).
const LOAD_WARMUP: Duration = Duration::from_secs(2);

/// One consumer's measured run.
#[derive(Debug, Clone, Default)]
struct Run {
    secs: f64,
    cpu: cpu::Use,
    /// pgbench's TPS and client CPU seconds during the run (under load).
    tps: Option<f64>,
    pgbench_cpu: f64,
    /// Ours: the pipeline's summary.
    summary: Option<Summary>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Consumer {
    Recv,
    Ours,
}

/// `fintrail bench cdc`: pg_recvlogical draining pgoutput to /dev/null vs. our pipeline
/// end to end into DuckDB, on the same rows, in alternated rounds (optionally under a
/// pgbench load); plus the snapshot rate.
pub async fn cdc(args: BenchArgs, home: &Home) -> anyhow::Result<()> {
    anyhow::ensure!(args.rows >= 1 && args.rows <= 100_000_000, "--rows must be in 1..=100000000");
    anyhow::ensure!(args.rounds >= 1 && args.rounds <= 20, "--rounds must be in 1..=20 for bench cdc");
    let ctx = prepare(&args, home).await?;
    let pm = if args.database_url.is_none() { fintrail_db::proc_cpu::postmaster(home) } else { None };
    let policy = Policy::parse(BENCH_POLICY)?;
    let dir = bench_dir(home)?;
    let publication = "fintrail_bench_pub".to_string();
    let slot = |s: String| Names { publication: publication.clone(), slot: s };
    let rounds = args.rounds as usize;
    let ours: Vec<Names> = (0..rounds).map(|r| slot(format!("fintrail_bench_ours_{r}"))).collect();
    let recv: Vec<Names> = (0..rounds).map(|r| slot(format!("fintrail_bench_recv_{r}"))).collect();
    let snap = slot("fintrail_bench_snap".into());
    for n in ours.iter().chain(&recv).chain([&snap]) {
        source::drop_slot(&ctx.db, n).await?;
    }
    admin_sql(
        &ctx,
        "SET ROLE fintrail_owner;
         DROP TABLE IF EXISTS fintrail.bench_cdc;
         CREATE TABLE fintrail.bench_cdc (id bigint PRIMARY KEY, account bigint NOT NULL, amount_minor bigint NOT NULL,
             currency text NOT NULL, note text, created_at timestamptz NOT NULL DEFAULT now());",
    )
    .await?;
    if args.under_load {
        init_pgbench(&ctx, &args).await?;
    }
    // Every consumer's slot exists before the load, so all decode exactly the same WAL.
    let m = marker(&ctx).await?;
    let paths: Vec<_> = (0..rounds).map(|r| dir.join(format!("stream_{r}.duckdb"))).collect();
    for (n, p) in ours.iter().zip(&paths) {
        run_ours(&ctx, &policy, n, p, m).await?;
    }
    let repl = ctx.db.connect(DbRole::Replicator).await?;
    for n in &recv {
        repl.execute("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", &[&n.slot]).await?;
    }
    let load_secs = load_bench_rows(&ctx, args.rows).await?;
    let end = marker(&ctx).await?;

    let (mut recv_runs, mut ours_runs) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let order = if r % 2 == 0 { [Consumer::Recv, Consumer::Ours] } else { [Consumer::Ours, Consumer::Recv] };
        for which in order {
            let load = if args.under_load { Some(Load::start(&ctx, &args).await?) } else { None };
            let before = cpu::Snap::now(pm);
            let pgbench_before = load.as_ref().map_or(0.0, Load::cpu_secs);
            let watch = cpu::WalsenderWatch::start(pm);
            let t0 = Instant::now();
            let summary = match which {
                Consumer::Recv => {
                    pg_recvlogical(&ctx, &recv[r], end).await?;
                    None
                }
                Consumer::Ours => Some(run_ours(&ctx, &policy, &ours[r], &paths[r], end).await?),
            };
            let t1 = Instant::now();
            let mut cpu = before.until(&cpu::Snap::now(pm));
            if let Some(w) = watch {
                cpu.walsender = w.stop().await;
            }
            let pgbench_cpu = load.as_ref().map_or(0.0, Load::cpu_secs) - pgbench_before;
            let tps = match load {
                Some(l) => Some(l.stop(t0, t1).await),
                None => None,
            };
            let run = Run { secs: (t1 - t0).as_secs_f64(), cpu, tps, pgbench_cpu, summary };
            eprintln!(
                "round {}: {} {:.2} s ({:.0} rows/s){}, load average {:.2}",
                r + 1,
                if which == Consumer::Recv { "pg_recvlogical" } else { "ours" },
                run.secs,
                args.rows as f64 / run.secs,
                run.tps.map(|t| format!(", pgbench {t:.0} tps")).unwrap_or_default(),
                cpu::loadavg()
            );
            match which {
                Consumer::Recv => recv_runs.push(run),
                Consumer::Ours => ours_runs.push(run),
            }
        }
        let s = ours_runs.last().and_then(|r| r.summary.as_ref()).expect("ours ran this round");
        anyhow::ensure!(
            s.streamed_rows == args.rows,
            "pipeline streamed {} rows, expected {}",
            s.streamed_rows,
            args.rows
        );
        let check = duck_count(&paths[r], "bench_cdc").await?;
        anyhow::ensure!(check == args.rows, "DuckDB holds {check} rows, expected {}", args.rows);
    }

    // Snapshot: a fresh slot and file copy the same rows (no load).
    let snap_path = dir.join("snapshot.duckdb");
    let m = marker(&ctx).await?;
    let snap_sum = run_ours(&ctx, &policy, &snap, &snap_path, m).await?;
    for n in ours.iter().chain([&snap]) {
        source::drop_slot(&ctx.db, n).await?;
    }
    for n in &recv {
        repl.execute("SELECT pg_drop_replication_slot($1)", &[&n.slot]).await?;
    }
    print_cdc(&args, load_secs, &recv_runs, &ours_runs, &snap_sum);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Loads `rows` rows into `bench_cdc` in transactions of `LOAD_TXN_ROWS`; returns seconds.
async fn load_bench_rows(ctx: &Context, rows: u64) -> anyhow::Result<f64> {
    eprintln!("loading {rows} rows in transactions of {LOAD_TXN_ROWS}...");
    let t0 = Instant::now();
    let c = ctx.db.connect(DbRole::Admin).await?;
    let mut lo = 1u64;
    while lo <= rows {
        let hi = (lo + LOAD_TXN_ROWS - 1).min(rows);
        c.batch_execute(&format!(
            "INSERT INTO fintrail.bench_cdc (id, account, amount_minor, currency, note)
             SELECT i, i % 1000, (i * 7919) % 100000, CASE WHEN i % 3 = 0 THEN 'USD' ELSE 'EUR' END, md5(i::text)
             FROM generate_series({lo}::bigint, {hi}::bigint) i"
        ))
        .await?;
        lo = hi + 1;
    }
    Ok(t0.elapsed().as_secs_f64())
}

/// The baseline: pg_recvlogical on `names.slot` to /dev/null up to `end`.
async fn pg_recvlogical(ctx: &Context, names: &Names, end: u64) -> anyhow::Result<()> {
    let bins = fintrail_db::cluster::PgBinaries::locate()?;
    let p = ctx.db.params(DbRole::Replicator);
    let out = tokio::process::Command::new(bins.tool("pg_recvlogical"))
        .args(["-h", &p.host, "-p", &p.port.to_string(), "-U", &p.user, "-d", &p.dbname])
        .args(["--slot", &names.slot, "--start", "--no-loop", "-f", "/dev/null"])
        .args(["-o", "proto_version=1", "-o", &format!("publication_names={}", names.publication)])
        .arg(format!("--endpos={}", crate::pgoutput::lsn_to_string(end)))
        .env("PGPASSWORD", p.password.clone().unwrap_or_default())
        .envs(p.libpq_tls_env())
        .stdin(Stdio::null())
        .output()
        .await?;
    anyhow::ensure!(out.status.success(), "pg_recvlogical failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// pgbench's tables in the bench database (`-i`, `--scale`), owned by the schema's owner.
async fn init_pgbench(ctx: &Context, args: &BenchArgs) -> anyhow::Result<()> {
    eprintln!("initialising pgbench tables (scale {})...", args.scale);
    admin_sql(
        ctx,
        "DROP TABLE IF EXISTS fintrail.pgbench_accounts, fintrail.pgbench_branches, fintrail.pgbench_tellers, fintrail.pgbench_history",
    )
    .await?;
    pgbench(ctx, args, true).await?;
    // `setup` revokes every grant on the schema's tables as their owner.
    admin_sql(
        ctx,
        "ALTER TABLE fintrail.pgbench_accounts OWNER TO fintrail_owner; ALTER TABLE fintrail.pgbench_branches OWNER TO fintrail_owner;
         ALTER TABLE fintrail.pgbench_tellers OWNER TO fintrail_owner; ALTER TABLE fintrail.pgbench_history OWNER TO fintrail_owner;",
    )
    .await
}

/// pgbench (default mode) running until stopped, with its per-second progress reports.
struct Load {
    child: tokio::process::Child,
    /// (arrival, TPS over the second before it).
    samples: Arc<Mutex<Vec<(Instant, f64)>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Load {
    async fn start(ctx: &Context, args: &BenchArgs) -> anyhow::Result<Load> {
        let (mut cmd, dbname) = pgbench_command(ctx)?;
        let clients = args.clients.clamp(1, 64).to_string();
        cmd.args(["-n", "-c", &clients, "-j", "2", "-T", "36000", "-P", "1", &dbname])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn()?;
        let stderr = child.stderr.take().ok_or_else(|| anyhow::anyhow!("pgbench has no stderr"))?;
        let samples = Arc::new(Mutex::new(Vec::new()));
        let sink = samples.clone();
        let reader = tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(tps) = parse_progress(&line) {
                    sink.lock().expect("not poisoned").push((Instant::now(), tps));
                }
            }
        });
        tokio::time::sleep(LOAD_WARMUP).await;
        if let Some(st) = child.try_wait()? {
            anyhow::bail!("pgbench exited at start: {st}");
        }
        Ok(Load { child, samples, reader })
    }

    /// pgbench's user + system CPU seconds so far.
    fn cpu_secs(&self) -> f64 {
        self.child.id().and_then(cpu::process_secs).unwrap_or(0.0)
    }

    /// Stops pgbench; its TPS over `[from, to]`: each progress report covers the second
    /// before it, weighted by its overlap with the window.
    async fn stop(mut self, from: Instant, to: Instant) -> f64 {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        let _ = self.reader.await;
        // Let its backends exit before the next run.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let samples = self.samples.lock().expect("not poisoned");
        let (mut sum, mut weight) = (0.0, 0.0);
        for &(at, tps) in samples.iter() {
            let start = at.checked_sub(Duration::from_secs(1)).unwrap_or(at);
            let lo = start.max(from);
            let hi = at.min(to);
            if hi > lo {
                let w = (hi - lo).as_secs_f64();
                sum += tps * w;
                weight += w;
            }
        }
        if weight > 0.0 {
            sum / weight
        } else {
            0.0
        }
    }
}

/// "progress: 5.0 s, 3012.9 tps, lat 1.326 ms stddev 0.690, 0 failed" → 3012.9.
fn parse_progress(line: &str) -> Option<f64> {
    let rest = line.strip_prefix("progress: ")?;
    rest.split(", ").find_map(|f| f.strip_suffix(" tps")?.parse().ok())
}

/// Rows of a table in a DuckDB file (the pipeline has closed it).
async fn duck_count(path: &std::path::Path, table: &'static str) -> anyhow::Result<u64> {
    let path = path.to_owned();
    let n = tokio::task::spawn_blocking(move || -> anyhow::Result<i64> {
        let c = duckdb::Connection::open(path)?;
        Ok(c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?)
    })
    .await??;
    Ok(n as u64)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The run with the median time (its breakdown is the one printed).
fn median_run(runs: &[Run]) -> &Run {
    let mut idx: Vec<usize> = (0..runs.len()).collect();
    idx.sort_by(|a, b| runs[*a].secs.total_cmp(&runs[*b].secs));
    &runs[idx[idx.len() / 2]]
}

fn print_cdc(args: &BenchArgs, load_secs: f64, recv: &[Run], ours: &[Run], snap: &Summary) {
    let rows = args.rows;
    let mrows = rows as f64 / 1e6;
    let rates = |runs: &[Run]| runs.iter().map(|r| rows as f64 / r.secs).collect::<Vec<_>>();
    let (recv_rate, ours_rate) = (median(rates(recv)), median(rates(ours)));
    let med = |runs: &[Run], f: &dyn Fn(&Run) -> f64| median(runs.iter().map(f).collect());
    let snap_rate = snap.snapshot_rows as f64 / snap.snapshot_secs.max(1e-9);
    println!(
        "fintrail bench cdc{} — {rows} rows ({LOAD_TXN_ROWS} per transaction), loaded in {load_secs:.1} s; {} alternated rounds, medians",
        if args.under_load { " --under-load" } else { "" },
        recv.len()
    );
    if args.under_load {
        println!(
            "load: pgbench default mode, -c {} -j 2, scale {}, during each consumer's run (after {} s of warm-up)",
            args.clients,
            args.scale,
            LOAD_WARMUP.as_secs()
        );
    }
    let tps = |runs: &[Run]| {
        if args.under_load {
            format!("{:.0}", med(runs, &|r| r.tps.unwrap_or(0.0)))
        } else {
            "-".into()
        }
    };
    println!("{:<48} {:>9} {:>10} {:>13} {:>12}", "", "seconds", "rows/s", "CPU s/M rows", "pgbench tps");
    // One line per consumer; its CPU is pg_recvlogical's (a reaped child) or this process's.
    let line = |label: &str, runs: &[Run], rate: f64, consumer_cpu: &dyn Fn(&Run) -> f64| {
        let (secs, cpu) = (med(runs, &|r| r.secs), med(runs, consumer_cpu) / mrows);
        println!("{label:<48} {secs:>9.2} {rate:>10.0} {cpu:>13.2} {:>12}", tps(runs));
    };
    line("baseline: pg_recvlogical pgoutput -> /dev/null", recv, recv_rate, &|r| r.cpu.children);
    line("ours: stream -> DuckDB (committed, LSN stored)", ours, ours_rate, &|r| r.cpu.me);
    println!(
        "{:<48} {:>9.2} {:>10.0}   (target >= 300000, no load)",
        "ours: snapshot COPY -> DuckDB", snap.snapshot_secs, snap_rate
    );
    let list = |v: Vec<f64>| v.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(", ");
    println!("rounds, rows/s: pg_recvlogical [{}]; ours [{}]", list(rates(recv)), list(rates(ours)));
    let per_sec = |runs: &[Run], f: &dyn Fn(&Run) -> f64| med(runs, &|r| f(r) / r.secs.max(1e-9));
    println!(
        "CPU during the runs, CPU s per s (pg_recvlogical / ours; the machine has {:.2}): machine busy {:.2} / {:.2}; \
         PostgreSQL {:.2} / {:.2}, of which walsender (sampled) {:.2} / {:.2}; pgbench client {:.2} / {:.2}; consumer {:.2} / {:.2}",
        per_sec(ours, &|r| r.cpu.machine_capacity),
        per_sec(recv, &|r| r.cpu.machine_busy),
        per_sec(ours, &|r| r.cpu.machine_busy),
        per_sec(recv, &|r| r.cpu.server),
        per_sec(ours, &|r| r.cpu.server),
        per_sec(recv, &|r| r.cpu.walsender),
        per_sec(ours, &|r| r.cpu.walsender),
        per_sec(recv, &|r| r.pgbench_cpu),
        per_sec(ours, &|r| r.pgbench_cpu),
        per_sec(recv, &|r| r.cpu.children),
        per_sec(ours, &|r| r.cpu.me),
    );
    let m = median_run(ours);
    if let Some(s) = &m.summary {
        println!(
            "where the time goes (ours, median round): {:.2} s = {:.2} s setup and connect + {:.2} s streaming; {}",
            m.secs,
            m.secs - s.stream_secs,
            s.stream_secs,
            breakdown(&s.times)
        );
    }
    println!("load average (1 min) at the end: {:.2}", cpu::loadavg());
    println!("ratio: {:.3}", ours_rate / recv_rate);
}

/// The streaming time's breakdown, one line.
fn breakdown(t: &StreamTimes) -> String {
    format!(
        "receiving side: {:.2} s waiting for the server, {:.2} s decoding, {:.2} s waiting on a full queue; \
         sink {}: {:.2} s applying, {:.2} s committing, {:.2} s idle; {} batches, queue peak {} batches / {:.1} MB",
        t.recv_wait_secs,
        t.decode_secs,
        t.queue_wait_secs,
        if t.threaded { "thread" } else { "(on the task)" },
        t.apply_secs,
        t.commit_secs,
        t.sink_idle_secs,
        t.batches,
        t.queue_peak_batches,
        t.queue_peak_bytes as f64 / 1e6
    )
}

fn parse_tps(out: &str) -> Option<f64> {
    out.lines()
        .filter(|l| l.starts_with("tps = "))
        .find_map(|l| l.trim_start_matches("tps = ").split_whitespace().next()?.parse().ok())
}

/// A pgbench command on the bench database (tables in the `fintrail` schema), and the
/// database name to end its arguments with.
fn pgbench_command(ctx: &Context) -> anyhow::Result<(tokio::process::Command, String)> {
    let bins = fintrail_db::cluster::PgBinaries::locate()?;
    let p = ctx.db.params(DbRole::Admin);
    let mut cmd = tokio::process::Command::new(bins.tool("pgbench"));
    cmd.args(["-h", &p.host, "-p", &p.port.to_string(), "-U", &p.user])
        .env("PGPASSWORD", p.password.clone().unwrap_or_default())
        .env("PGOPTIONS", "-c search_path=fintrail")
        .envs(p.libpq_tls_env())
        .stdin(Stdio::null());
    Ok((cmd, p.dbname.clone()))
}

async fn pgbench(ctx: &Context, args: &BenchArgs, init: bool) -> anyhow::Result<f64> {
    let (mut cmd, dbname) = pgbench_command(ctx)?;
    if init {
        cmd.args(["-i", "-q", "-s", &args.scale.to_string(), &dbname]);
    } else {
        let clients = args.clients.clamp(1, 64).to_string();
        cmd.args(["-n", "-c", &clients, "-j", "2", "-T", &args.round_secs.to_string(), &dbname]);
    }
    let out = cmd.output().await?;
    anyhow::ensure!(out.status.success(), "pgbench failed: {}", String::from_utf8_lossy(&out.stderr));
    if init {
        return Ok(0.0);
    }
    parse_tps(&String::from_utf8_lossy(&out.stdout)).ok_or_else(|| anyhow::anyhow!("no tps in pgbench output"))
}

/// `fintrail bench cdc-impact`: pgbench TPS with the pipeline streaming vs. with
/// `wal_level=logical` and no consumer, alternated; lag p99 and idle retained WAL.
pub async fn cdc_impact(args: BenchArgs, home: &Home) -> anyhow::Result<()> {
    anyhow::ensure!(args.rounds >= 1 && args.rounds <= 100, "--rounds must be in 1..=100");
    anyhow::ensure!(args.round_secs >= 1 && args.round_secs <= 3600, "--round-secs must be in 1..=3600");
    let ctx = prepare(&args, home).await?;
    let dir = bench_dir(home)?;
    let names = Names { publication: "fintrail_impact_pub".into(), slot: "fintrail_impact".into() };
    source::drop_slot(&ctx.db, &names).await?;
    init_pgbench(&ctx, &args).await?;
    let policy = Policy::parse(IMPACT_POLICY)?;
    let path = dir.join("impact.duckdb");
    // Snapshot once (not measured), so rounds measure streaming only.
    let m = marker(&ctx).await?;
    run_ours(&ctx, &policy, &names, &path, m).await?;
    let pm = if args.database_url.is_none() { fintrail_db::proc_cpu::postmaster(home) } else { None };
    let rounds = impact_rounds(&ctx, &args, &policy, &names, &path, pm).await?;

    // Idle: the pipeline runs, nothing is written; heartbeats keep the slot advancing. It
    // runs with the shipped heartbeat interval (`--heartbeat-secs` default), so the figure
    // is what production retains.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = spawn_pipeline(&ctx, &policy, &names, &path, rx);
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let repl = ctx.db.connect(DbRole::Replicator).await?;
    let stats = source::slot_stats(&repl, &names).await?;
    let _ = tx.send(());
    task.await??;
    source::drop_slot(&ctx.db, &names).await?;
    print_impact(&args, &rounds, stats.retained_wal_bytes.unwrap_or(0));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The measured rounds of `cdc-impact`.
#[derive(Debug, Default)]
struct Rounds {
    /// pgbench TPS with the pipeline streaming, per round.
    with: Vec<f64>,
    /// pgbench TPS without a consumer, per round.
    without: Vec<f64>,
    /// CPU during the pgbench runs, summed over the rounds.
    with_cpu: cpu::Use,
    without_cpu: cpu::Use,
    /// Commit-to-queryable lag of the sink commits during the runs with the pipeline (ms).
    lags_ms: Vec<f64>,
    /// The pipeline's runs, start to stop: its CPU seconds, rows, and where its time went.
    pipeline_cpu_secs: f64,
    pipeline_rows: u64,
    times: StreamTimes,
}

/// Alternating pgbench runs: without a consumer (the slot exists, nobody reads it), then
/// with the pipeline streaming.
async fn impact_rounds(
    ctx: &Context,
    args: &BenchArgs,
    policy: &Policy,
    names: &Names,
    path: &std::path::Path,
    pm: Option<u32>,
) -> anyhow::Result<Rounds> {
    let mut r = Rounds::default();
    for round in 0..args.rounds {
        let before = cpu::Snap::now(pm);
        r.without.push(pgbench(ctx, args, false).await?);
        r.without_cpu += before.until(&cpu::Snap::now(pm));
        let started = cpu::Snap::now(None);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = spawn_pipeline(ctx, policy, names, path, rx);
        // Let it catch up with the backlog of the round without consumer first: the lag
        // figure is about steady state under load, not about draining a backlog.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let with_start_us = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_micros() as i64;
        let before = cpu::Snap::now(pm);
        r.with.push(pgbench(ctx, args, false).await?);
        r.with_cpu += before.until(&cpu::Snap::now(pm));
        // Let it drain before stopping (lag samples include the tail).
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ = tx.send(());
        let s = task.await??;
        r.pipeline_cpu_secs += started.until(&cpu::Snap::now(None)).me;
        r.pipeline_rows += s.streamed_rows;
        add_times(&mut r.times, &s.times);
        r.lags_ms.extend(s.lag_samples_ms.iter().filter(|(ts, _)| *ts >= with_start_us).map(|(_, l)| *l));
        eprintln!(
            "round {}: without {:.0} tps, with {:.0} tps, load average {:.2}",
            round + 1,
            r.without.last().copied().unwrap_or(0.0),
            r.with.last().copied().unwrap_or(0.0),
            cpu::loadavg()
        );
    }
    Ok(r)
}

fn add_times(sum: &mut StreamTimes, t: &StreamTimes) {
    sum.recv_wait_secs += t.recv_wait_secs;
    sum.decode_secs += t.decode_secs;
    sum.queue_wait_secs += t.queue_wait_secs;
    sum.apply_secs += t.apply_secs;
    sum.commit_secs += t.commit_secs;
    sum.sink_idle_secs += t.sink_idle_secs;
    sum.batches += t.batches;
    sum.queue_peak_batches = sum.queue_peak_batches.max(t.queue_peak_batches);
    sum.queue_peak_bytes = sum.queue_peak_bytes.max(t.queue_peak_bytes);
    sum.threaded |= t.threaded;
}

/// The pipeline with default options in a task (on a thread of its own, like `cdc run`),
/// until `stop` fires.
fn spawn_pipeline(
    ctx: &Context,
    policy: &Policy,
    names: &Names,
    path: &std::path::Path,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<anyhow::Result<Summary>> {
    let (db, policy, names, path) = (ctx.db.clone(), policy.clone(), names.clone(), path.to_owned());
    let stop = async {
        let _ = stop.await;
    };
    tokio::spawn(pipeline::on_own_thread("cdc-bench", stop, move |shutdown| async move {
        let ps = Pseudonymizer::new(&[1u8; 32])?;
        let mut sink = DuckSink::open(&path)?;
        sink.one_thread()?; // as `cdc run`
        let opts = Options { names, ..Default::default() };
        pipeline::run(&db, &policy, &ps, &mut sink, &opts, shutdown).await
    }))
}

fn print_impact(args: &BenchArgs, r: &Rounds, retained_wal_bytes: i64) {
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (tw, to) = (mean(&r.with), mean(&r.without));
    let retained_mb = retained_wal_bytes as f64 / (1024.0 * 1024.0);
    println!(
        "fintrail bench cdc-impact — pgbench -c {} -T {} s, scale {}, {} alternating rounds",
        args.clients, args.round_secs, args.scale, args.rounds
    );
    println!("{:<44} {:>12}", "", "TPS (mean)");
    println!("{:<44} {:>12.0}", "baseline: wal_level=logical, no consumer", to);
    println!("{:<44} {:>12.0}", "ours: pipeline streaming into DuckDB", tw);
    println!(
        "commit-to-queryable lag: p50 {:.0} ms, p99 {:.0} ms over {} sink commits (target p99 <= 1000 ms)",
        percentile(&r.lags_ms, 50.0),
        percentile(&r.lags_ms, 99.0),
        r.lags_ms.len()
    );
    println!("retained WAL after {} s idle: {retained_mb:.2} MB (target <= 16 MB)", args.idle_secs);
    print_impact_cpu(r, to, tw);
    println!("where the time goes (pipeline, all rounds' runs): {}", breakdown(&r.times));
    println!("load average (1 min) at the end: {:.2}", cpu::loadavg());
    println!("ratio: {:.3}", tw / to.max(1e-9));
}

/// Where the CPU went during the pgbench runs, without and with the pipeline: if the
/// machine is busy in both, TPS follows the CPU left to pgbench and PostgreSQL's backends,
/// and the database's CPU per transaction tells whether it works harder with the pipeline.
fn print_impact_cpu(r: &Rounds, to: f64, tw: f64) {
    let (o, w) = (&r.without_cpu, &r.with_cpu);
    if o.wall_secs <= 0.0 || w.wall_secs <= 0.0 {
        return;
    }
    let ps = |u: &cpu::Use, x: f64| x / u.wall_secs;
    println!(
        "CPU during the pgbench runs, CPU s per s (the machine has {:.2}):  without consumer / with the pipeline",
        ps(w, w.machine_capacity)
    );
    println!("  {:<52} {:>6.2} / {:.2}", "machine busy", ps(o, o.machine_busy), ps(w, w.machine_busy));
    println!("  {:<52} {:>6.2} / {:.2}", "PostgreSQL, all processes", ps(o, o.server), ps(w, w.server));
    println!(
        "  {:<52} {:>6.2} / {:.2}",
        "  of which walsenders (decoding for the pipeline)",
        ps(o, o.walsender),
        ps(w, w.walsender)
    );
    println!("  {:<52} {:>6.2} / {:.2}", "pgbench client", ps(o, o.children), ps(w, w.children));
    println!("  {:<52} {:>6.2} / {:.2}", "pipeline (this process)", ps(o, o.me), ps(w, w.me));
    // The database's own work per transaction, walsender apart (CDC's share of it).
    let per_ktx = |u: &cpu::Use, tps: f64| (u.server - u.walsender) / (tps * u.wall_secs).max(1.0) * 1000.0;
    println!(
        "PostgreSQL CPU per 1000 transactions, walsenders apart: {:.3} s without / {:.3} s with",
        per_ktx(o, to),
        per_ktx(w, tw)
    );
    println!(
        "pipeline: {:.2} CPU s per million rows ({} rows over its runs); {:.1}% of the machine's CPU during the runs with it",
        r.pipeline_cpu_secs / (r.pipeline_rows.max(1) as f64 / 1e6),
        r.pipeline_rows,
        100.0 * w.me / w.machine_capacity.max(1e-9)
    );
    // CPU left to pgbench and the backends: what a CPU-bound TPS follows.
    let left = |u: &cpu::Use| ps(u, u.machine_busy - u.me - u.walsender);
    println!(
        "shared CPU: pgbench and the backends had {:.2} CPU/s without and {:.2} with: a CPU-bound ratio of {:.3} (measured {:.3})",
        left(o),
        left(w),
        left(w) / left(o).max(1e-9),
        tw / to.max(1e-9)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pgbench_tps_and_bench_policies() {
        let out = "number of failed transactions: 0 (0.000%)\nlatency average = 1.2 ms\ntps = 3210.987654 (without initial connection time)\n";
        assert_eq!(parse_tps(out), Some(3210.987654));
        assert_eq!(parse_tps("nothing"), None);
        assert!(Policy::parse(BENCH_POLICY).is_ok());
        assert!(Policy::parse(IMPACT_POLICY).is_ok());
    }

    #[test]
    fn parses_pgbench_progress() {
        assert_eq!(parse_progress("progress: 5.0 s, 3012.9 tps, lat 1.326 ms stddev 0.690, 0 failed"), Some(3012.9));
        assert_eq!(parse_progress("pgbench: warning: something"), None);
    }
}
