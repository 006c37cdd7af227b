//! `fintrail bench cdc` and `fintrail bench cdc-impact`: ours and the baseline in the same
//! run, a human table, and `ratio: X` (ours ÷ baseline, higher is better) as the last line.

use std::process::Stdio;
use std::time::{Duration, Instant};

use fintrail_db::{Context, DbRole, Home};

use crate::pipeline::{self, percentile, Options, Summary};
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
    /// cdc-impact: alternating rounds of (with pipeline, without consumer).
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// cdc-impact: seconds per pgbench run.
    #[arg(long, default_value_t = 10)]
    pub round_secs: u64,
    /// cdc-impact: idle seconds before measuring retained WAL.
    #[arg(long, default_value_t = 60)]
    pub idle_secs: u64,
    /// cdc-impact: pgbench clients.
    #[arg(long, default_value_t = 4)]
    pub clients: u32,
    /// cdc-impact: pgbench scale factor.
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
    let ps = Pseudonymizer::new(&[1u8; 32])?;
    let mut sink = DuckSink::open(path)?;
    let opts = Options { names: names.clone(), stop_at_lsn: Some(stop), ..Default::default() };
    pipeline::run(&ctx.db, policy, &ps, &mut sink, &opts, std::future::pending()).await
}

fn bench_dir(home: &Home) -> anyhow::Result<std::path::PathBuf> {
    let d = home.root().join("bench");
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// `fintrail bench cdc`: pg_recvlogical draining pgoutput to /dev/null vs. our pipeline
/// end to end into DuckDB, on the same rows; plus the snapshot rate.
pub async fn cdc(args: BenchArgs, home: &Home) -> anyhow::Result<()> {
    anyhow::ensure!(args.rows >= 1 && args.rows <= 100_000_000, "--rows must be in 1..=100000000");
    let ctx = prepare(&args, home).await?;
    let policy = Policy::parse(BENCH_POLICY)?;
    let dir = bench_dir(home)?;
    let ours = Names { publication: "fintrail_bench_pub".into(), slot: "fintrail_bench_ours".into() };
    let recv = Names { publication: ours.publication.clone(), slot: "fintrail_bench_recv".into() };
    let snap = Names { publication: ours.publication.clone(), slot: "fintrail_bench_snap".into() };
    for n in [&ours, &snap, &recv] {
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
    // Both consumers' slots exist before the load, so both decode exactly the same WAL.
    let ours_path = dir.join("stream.duckdb");
    let m = marker(&ctx).await?;
    run_ours(&ctx, &policy, &ours, &ours_path, m).await?;
    let repl = ctx.db.connect(DbRole::Replicator).await?;
    repl.execute("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", &[&recv.slot]).await?;
    let load_secs = load_bench_rows(&ctx, args.rows).await?;
    let end = marker(&ctx).await?;

    let recv_secs = pg_recvlogical(&ctx, &recv, end).await?;
    // Ours, end to end into DuckDB (data and LSN committed).
    let t0 = Instant::now();
    let s = run_ours(&ctx, &policy, &ours, &ours_path, end).await?;
    let ours_secs = t0.elapsed().as_secs_f64();
    anyhow::ensure!(s.streamed_rows == args.rows, "pipeline streamed {} rows, expected {}", s.streamed_rows, args.rows);
    let check = duck_count(&ours_path, "bench_cdc").await?;
    anyhow::ensure!(check == args.rows, "DuckDB holds {check} rows, expected {}", args.rows);

    // Snapshot: a fresh slot and file copy the same rows.
    let snap_path = dir.join("snapshot.duckdb");
    let m = marker(&ctx).await?;
    let snap_sum = run_ours(&ctx, &policy, &snap, &snap_path, m).await?;
    for n in [&ours, &snap] {
        source::drop_slot(&ctx.db, n).await?;
    }
    repl.execute("SELECT pg_drop_replication_slot($1)", &[&recv.slot]).await?;
    print_cdc(args.rows, load_secs, recv_secs, ours_secs, &snap_sum);
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

/// The baseline: pg_recvlogical on `names.slot` to /dev/null up to `end`; returns seconds.
async fn pg_recvlogical(ctx: &Context, names: &Names, end: u64) -> anyhow::Result<f64> {
    let bins = fintrail_db::cluster::PgBinaries::locate()?;
    let p = ctx.db.params(DbRole::Replicator);
    let t0 = Instant::now();
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
    let secs = t0.elapsed().as_secs_f64();
    anyhow::ensure!(out.status.success(), "pg_recvlogical failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(secs)
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

fn print_cdc(rows: u64, load_secs: f64, recv_secs: f64, ours_secs: f64, snap: &Summary) {
    let recv_rate = rows as f64 / recv_secs;
    let ours_rate = rows as f64 / ours_secs;
    let snap_rate = snap.snapshot_rows as f64 / snap.snapshot_secs.max(1e-9);
    println!("fintrail bench cdc — {rows} rows ({LOAD_TXN_ROWS} per transaction), loaded in {load_secs:.1} s");
    println!("{:<48} {:>10} {:>14}", "", "seconds", "rows/s");
    println!("{:<48} {:>10.2} {:>14.0}", "baseline: pg_recvlogical pgoutput -> /dev/null", recv_secs, recv_rate);
    println!("{:<48} {:>10.2} {:>14.0}", "ours: stream -> DuckDB (committed, LSN stored)", ours_secs, ours_rate);
    println!(
        "{:<48} {:>10.2} {:>14.0}   (target >= 300000)",
        "ours: snapshot COPY -> DuckDB", snap.snapshot_secs, snap_rate
    );
    println!("ratio: {:.3}", ours_rate / recv_rate);
}

fn parse_tps(out: &str) -> Option<f64> {
    out.lines()
        .filter(|l| l.starts_with("tps = "))
        .find_map(|l| l.trim_start_matches("tps = ").split_whitespace().next()?.parse().ok())
}

async fn pgbench(ctx: &Context, args: &BenchArgs, init: bool) -> anyhow::Result<f64> {
    let bins = fintrail_db::cluster::PgBinaries::locate()?;
    let p = ctx.db.params(DbRole::Admin);
    let mut cmd = tokio::process::Command::new(bins.tool("pgbench"));
    cmd.args(["-h", &p.host, "-p", &p.port.to_string(), "-U", &p.user])
        .env("PGPASSWORD", p.password.clone().unwrap_or_default())
        .env("PGOPTIONS", "-c search_path=fintrail")
        .envs(p.libpq_tls_env())
        .stdin(Stdio::null());
    if init {
        cmd.args(["-i", "-q", "-s", &args.scale.to_string(), &p.dbname]);
    } else {
        let clients = args.clients.clamp(1, 64).to_string();
        cmd.args(["-n", "-c", &clients, "-j", "2", "-T", &args.round_secs.to_string(), &p.dbname]);
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
    admin_sql(&ctx, "DROP TABLE IF EXISTS fintrail.pgbench_accounts, fintrail.pgbench_branches, fintrail.pgbench_tellers, fintrail.pgbench_history").await?;
    pgbench(&ctx, &args, true).await?;
    admin_sql(
        &ctx,
        "ALTER TABLE fintrail.pgbench_accounts OWNER TO fintrail_owner; ALTER TABLE fintrail.pgbench_branches OWNER TO fintrail_owner;
         ALTER TABLE fintrail.pgbench_tellers OWNER TO fintrail_owner; ALTER TABLE fintrail.pgbench_history OWNER TO fintrail_owner;",
    )
    .await?;
    let policy = Policy::parse(IMPACT_POLICY)?;
    let path = dir.join("impact.duckdb");
    // Snapshot once (not measured), so rounds measure streaming only.
    let m = marker(&ctx).await?;
    run_ours(&ctx, &policy, &names, &path, m).await?;
    let rounds = impact_rounds(&ctx, &args, &policy, &names, &path).await?;

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
    /// Commit-to-queryable lag of the sink commits during the runs with the pipeline (ms).
    lags_ms: Vec<f64>,
}

/// Alternating pgbench runs: without a consumer (the slot exists, nobody reads it), then
/// with the pipeline streaming.
async fn impact_rounds(
    ctx: &Context,
    args: &BenchArgs,
    policy: &Policy,
    names: &Names,
    path: &std::path::Path,
) -> anyhow::Result<Rounds> {
    let mut r = Rounds::default();
    for round in 0..args.rounds {
        r.without.push(pgbench(ctx, args, false).await?);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = spawn_pipeline(ctx, policy, names, path, rx);
        // Let it catch up with the backlog of the round without consumer first: the lag
        // figure is about steady state under load, not about draining a backlog.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let with_start_us = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_micros() as i64;
        r.with.push(pgbench(ctx, args, false).await?);
        // Let it drain before stopping (lag samples include the tail).
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ = tx.send(());
        let s = task.await??;
        r.lags_ms.extend(s.lag_samples_ms.iter().filter(|(ts, _)| *ts >= with_start_us).map(|(_, l)| *l));
        eprintln!(
            "round {}: without {:.0} tps, with {:.0} tps",
            round + 1,
            r.without.last().copied().unwrap_or(0.0),
            r.with.last().copied().unwrap_or(0.0)
        );
    }
    Ok(r)
}

/// The pipeline with default options in a task, until `stop` fires.
fn spawn_pipeline(
    ctx: &Context,
    policy: &Policy,
    names: &Names,
    path: &std::path::Path,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<anyhow::Result<Summary>> {
    let (ctx, policy, names, path) = (ctx.clone(), policy.clone(), names.clone(), path.to_owned());
    tokio::spawn(async move {
        let ps = Pseudonymizer::new(&[1u8; 32])?;
        let mut sink = DuckSink::open(&path)?;
        let opts = Options { names, ..Default::default() };
        pipeline::run(&ctx.db, &policy, &ps, &mut sink, &opts, async {
            let _ = stop.await;
        })
        .await
    })
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
    println!("ratio: {:.3}", tw / to.max(1e-9));
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
}
