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
    let recv_slot = "fintrail_bench_recv";
    let snap = Names { publication: ours.publication.clone(), slot: "fintrail_bench_snap".into() };
    for n in [&ours, &snap] {
        source::drop_slot(&ctx.db, n).await?;
    }
    source::drop_slot(&ctx.db, &Names { publication: ours.publication.clone(), slot: recv_slot.into() }).await?;
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
    repl.execute("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", &[&recv_slot]).await?;

    eprintln!("loading {} rows in transactions of {LOAD_TXN_ROWS}...", args.rows);
    let load_t0 = Instant::now();
    {
        let c = ctx.db.connect(DbRole::Admin).await?;
        let mut lo = 1u64;
        while lo <= args.rows {
            let hi = (lo + LOAD_TXN_ROWS - 1).min(args.rows);
            c.batch_execute(&format!(
                "INSERT INTO fintrail.bench_cdc (id, account, amount_minor, currency, note)
                 SELECT i, i % 1000, (i * 7919) % 100000, CASE WHEN i % 3 = 0 THEN 'USD' ELSE 'EUR' END, md5(i::text)
                 FROM generate_series({lo}::bigint, {hi}::bigint) i"
            ))
            .await?;
            lo = hi + 1;
        }
    }
    let load_secs = load_t0.elapsed().as_secs_f64();
    let end = marker(&ctx).await?;

    // Baseline: pg_recvlogical to /dev/null up to the same end position.
    let bins = fintrail_db::cluster::PgBinaries::locate()?;
    let p = ctx.db.params(DbRole::Replicator);
    let t0 = Instant::now();
    let out = tokio::process::Command::new(bins.tool("pg_recvlogical"))
        .args(["-h", &p.host, "-p", &p.port.to_string(), "-U", &p.user, "-d", &p.dbname])
        .args(["--slot", recv_slot, "--start", "--no-loop", "-f", "/dev/null"])
        .args(["-o", "proto_version=1", "-o", &format!("publication_names={}", ours.publication)])
        .arg(format!("--endpos={}", crate::pgoutput::lsn_to_string(end)))
        .env("PGPASSWORD", p.password.clone().unwrap_or_default())
        .stdin(Stdio::null())
        .output()
        .await?;
    let recv_secs = t0.elapsed().as_secs_f64();
    anyhow::ensure!(out.status.success(), "pg_recvlogical failed: {}", String::from_utf8_lossy(&out.stderr));

    // Ours, end to end into DuckDB (data and LSN committed).
    let t0 = Instant::now();
    let s = run_ours(&ctx, &policy, &ours, &ours_path, end).await?;
    let ours_secs = t0.elapsed().as_secs_f64();
    anyhow::ensure!(s.streamed_rows == args.rows, "pipeline streamed {} rows, expected {}", s.streamed_rows, args.rows);
    let check = tokio::task::spawn_blocking({
        let p = ours_path.clone();
        move || -> anyhow::Result<i64> {
            let c = duckdb::Connection::open(p)?;
            Ok(c.query_row("SELECT count(*) FROM bench_cdc", [], |r| r.get(0))?)
        }
    })
    .await??;
    anyhow::ensure!(check as u64 == args.rows, "DuckDB holds {check} rows, expected {}", args.rows);

    // Snapshot: a fresh slot and file copy the same rows.
    let snap_path = dir.join("snapshot.duckdb");
    let m = marker(&ctx).await?;
    let snap_sum = run_ours(&ctx, &policy, &snap, &snap_path, m).await?;
    for n in [&ours, &snap] {
        source::drop_slot(&ctx.db, n).await?;
    }
    repl.execute("SELECT pg_drop_replication_slot($1)", &[&recv_slot]).await?;

    let rows = args.rows as f64;
    let recv_rate = rows / recv_secs;
    let ours_rate = rows / ours_secs;
    let snap_rate = snap_sum.snapshot_rows as f64 / snap_sum.snapshot_secs.max(1e-9);
    println!("fintrail bench cdc — {} rows ({} per transaction), loaded in {load_secs:.1} s", args.rows, LOAD_TXN_ROWS);
    println!("{:<48} {:>10} {:>14}", "", "seconds", "rows/s");
    println!("{:<48} {:>10.2} {:>14.0}", "baseline: pg_recvlogical pgoutput -> /dev/null", recv_secs, recv_rate);
    println!("{:<48} {:>10.2} {:>14.0}", "ours: stream -> DuckDB (committed, LSN stored)", ours_secs, ours_rate);
    println!(
        "{:<48} {:>10.2} {:>14.0}   (target >= 300000)",
        "ours: snapshot COPY -> DuckDB", snap_sum.snapshot_secs, snap_rate
    );
    println!("ratio: {:.3}", ours_rate / recv_rate);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
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

    let mut with = Vec::new();
    let mut without = Vec::new();
    let mut lags: Vec<f64> = Vec::new();
    for round in 0..args.rounds {
        // Without consumer (the slot exists, nobody reads it).
        without.push(pgbench(&ctx, &args, false).await?);
        // With the pipeline streaming.
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = {
            let (ctx, policy, names, path) = (ctx.clone(), policy.clone(), names.clone(), path.clone());
            tokio::spawn(async move {
                let ps = Pseudonymizer::new(&[1u8; 32])?;
                let mut sink = DuckSink::open(&path)?;
                let opts = Options { names, ..Default::default() };
                pipeline::run(&ctx.db, &policy, &ps, &mut sink, &opts, async {
                    let _ = rx.await;
                })
                .await
            })
        };
        // Let it catch up with the backlog of the round without consumer first: the lag
        // figure is about steady state under load, not about draining a backlog.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let with_start_us = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_micros() as i64;
        with.push(pgbench(&ctx, &args, false).await?);
        // Let it drain before stopping (lag samples include the tail).
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ = tx.send(());
        let s = task.await??;
        lags.extend(s.lag_samples_ms.iter().filter(|(ts, _)| *ts >= with_start_us).map(|(_, l)| *l));
        eprintln!(
            "round {}: without {:.0} tps, with {:.0} tps",
            round + 1,
            without.last().copied().unwrap_or(0.0),
            with.last().copied().unwrap_or(0.0)
        );
    }

    // Idle: the pipeline runs, nothing is written; heartbeats keep the slot advancing.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = {
        let (ctx, policy, names, path) = (ctx.clone(), policy.clone(), names.clone(), path.clone());
        tokio::spawn(async move {
            let ps = Pseudonymizer::new(&[1u8; 32])?;
            let mut sink = DuckSink::open(&path)?;
            // The shipped heartbeat interval (`--heartbeat-secs` default), so the figure is what
            // production retains.
            let opts = Options { names, ..Default::default() };
            pipeline::run(&ctx.db, &policy, &ps, &mut sink, &opts, async {
                let _ = rx.await;
            })
            .await
        })
    };
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let repl = ctx.db.connect(DbRole::Replicator).await?;
    let stats = source::slot_stats(&repl, &names).await?;
    let _ = tx.send(());
    task.await??;
    source::drop_slot(&ctx.db, &names).await?;

    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (tw, to) = (mean(&with), mean(&without));
    let retained_mb = stats.retained_wal_bytes.unwrap_or(0) as f64 / (1024.0 * 1024.0);
    println!(
        "fintrail bench cdc-impact — pgbench -c {} -T {} s, scale {}, {} alternating rounds",
        args.clients, args.round_secs, args.scale, args.rounds
    );
    println!("{:<44} {:>12}", "", "TPS (mean)");
    println!("{:<44} {:>12.0}", "baseline: wal_level=logical, no consumer", to);
    println!("{:<44} {:>12.0}", "ours: pipeline streaming into DuckDB", tw);
    println!(
        "commit-to-queryable lag: p50 {:.0} ms, p99 {:.0} ms over {} sink commits (target p99 <= 1000 ms)",
        percentile(&lags, 50.0),
        percentile(&lags, 99.0),
        lags.len()
    );
    println!("retained WAL after {} s idle: {retained_mb:.2} MB (target <= 16 MB)", args.idle_secs);
    println!("ratio: {:.3}", tw / to.max(1e-9));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
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
