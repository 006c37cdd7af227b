//! `fintrail bench audit`: (1) `audit verify` speed on 1M events (target ≥ 500k events/s on
//! one core), next to the I/O floor (the same rows read without hashing); (2) API write
//! throughput (KYB screening transitions over real HTTP) with the audit trail on vs off, in
//! the same run, alternating order per round. Last line: `ratio: X` = on ÷ off.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use fintrail_db::{Context, DbRole, Home};
use fintrail_domain::Role;
use futures_util::TryStreamExt as _;
use serde_json::json;

use fintrail_api::state::AppConfig;
use fintrail_audit::chain::Sequencer;
use fintrail_audit::verify::{record_ref, EVENT_TYPES};
use fintrail_audit::EVENT_COLUMNS;
use tokio_postgres::binary_copy::BinaryCopyOutStream;

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
    #[arg(long, default_value_t = 5)]
    pub write_secs: u64,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Rounds of (audit on, audit off); the order alternates between rounds.
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
}

const BENCH_DB: &str = "fintrail_bench_audit";
/// Rows inserted per statement when generating the trail.
const INSERT_BATCH: i64 = 100_000;

/// Runs the benchmark.
pub async fn audit(args: BenchArgs, home: &Home) -> anyhow::Result<()> {
    anyhow::ensure!(args.events > 0 && args.events <= 100_000_000, "--events must be 1..=100000000");
    anyhow::ensure!(args.concurrency > 0 && args.concurrency <= 256, "--concurrency must be 1..=256");
    anyhow::ensure!(args.write_secs > 0 && args.write_secs <= 600, "--write-secs must be 1..=600");
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
    let floor = read_floor(&db).await?;
    let dir = home.root().join("bench-audit-checkpoints");
    let _ = std::fs::remove_dir_all(&dir);
    let t = Instant::now();
    let outcome = fintrail_audit::verify::verify_trail(&ctx, &dir).await;
    let verify_secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(outcome.exit_code() == 0, "the generated trail must verify: {outcome:?}");
    let n = args.events as f64;

    // 2. Write throughput, audit on vs off.
    let mut on = Vec::new();
    let mut off = Vec::new();
    for round in 0..args.rounds {
        let order = if round % 2 == 0 { [true, false] } else { [false, true] };
        for audit_on in order {
            let ops = write_throughput(&ctx, audit_on, &args).await?;
            eprintln!("round {} audit {:<3}: {ops:.0} transitions/s", round + 1, if audit_on { "on" } else { "off" });
            if audit_on {
                on.push(ops)
            } else {
                off.push(ops)
            }
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (on_mean, off_mean) = (mean(&on), mean(&off));
    let ratio = if off_mean > 0.0 { on_mean / off_mean } else { 0.0 };

    println!("fintrail bench audit");
    println!("{:<44} {:>16}", "measure", "value");
    println!("{:<44} {:>16}", "events in trail", args.events);
    println!("{:<44} {:>16.0}", "chaining (sequencer), events/s", linked as f64 / chain_secs.max(1e-9));
    println!("{:<44} {:>16.0}", "verify, events/s (target >= 500000)", n / verify_secs.max(1e-9));
    println!("{:<44} {:>16.0}", "I/O floor: same rows read, no hashing, rows/s", floor);
    println!("{:<44} {:>16.0}", "API transitions/s, audit ON (ours)", on_mean);
    println!("{:<44} {:>16.0}", "API transitions/s, audit OFF (baseline)", off_mean);
    println!("ratio: {ratio:.3}");
    Ok(())
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

/// Reads the events exactly as verification does (same binary COPY, same decoding), without
/// hashing and without the chain: the floor any verifier on this connection would hit.
async fn read_floor(db: &fintrail_db::Database) -> anyhow::Result<f64> {
    let mut c = db.connect(DbRole::App).await?;
    let tx = c.build_transaction().read_only(true).start().await?;
    let t = Instant::now();
    let sql =
        format!("COPY (SELECT {EVENT_COLUMNS} FROM fintrail.audit_events e ORDER BY e.seq) TO STDOUT (FORMAT binary)");
    let stream = BinaryCopyOutStream::new(tx.copy_out(&sql).await?, &EVENT_TYPES);
    futures_util::pin_mut!(stream);
    let mut n = 0u64;
    while let Some(row) = stream.try_next().await? {
        let r = record_ref(&row)?;
        n += u64::from(r.seq > 0);
    }
    Ok(n as f64 / t.elapsed().as_secs_f64().max(1e-9))
}

async fn write_throughput(ctx: &Context, audit_on: bool, args: &BenchArgs) -> anyhow::Result<f64> {
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
    let deadline = Instant::now() + Duration::from_secs(args.write_secs);
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let token = token.clone();
        workers.push(tokio::spawn(async move {
            let mut http = crate::http::Client::new(addr, &token);
            let org = json!({"legal_name": "Bench GmbH", "registration_number": "B-1", "country": "DE"});
            let (status, body) = http.post_json("/v1/kyb/organizations", None, &org).await?;
            anyhow::ensure!(status == 201, "creating an organization failed: {status}");
            let org: serde_json::Value = serde_json::from_slice(&body)?;
            let id = org["id"].as_i64().context("organization id")?;
            // registered → screening → clear → screening → clear ... (periodic re-screening).
            let mut next = "screening";
            let mut ops = 0u64;
            while Instant::now() < deadline {
                let path = format!("/v1/kyb/organizations/{id}/screening");
                let (status, _) = http.post_json(&path, None, &json!({"to": next, "reason": "bench"})).await?;
                anyhow::ensure!((200..300).contains(&status), "transition failed: {status}");
                ops += 1;
                next = if next == "screening" { "clear" } else { "screening" };
            }
            Ok::<u64, anyhow::Error>(ops)
        }));
    }
    let started = Instant::now();
    let mut total = 0u64;
    for w in workers {
        total += w.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    handle.shutdown().await?;
    Ok(total as f64 / secs.max(1e-9))
}
