//! `fintrail bench console`: the console's list pages at scale. The KYC queue with 10,000 open
//! cases and the audit viewer over 1,000,000 events, each requested again and again by one
//! signed-in staff member over loopback HTTP (keep-alive): the time measured is the server's
//! (session check, the page's queries, HTML) plus a loopback round trip, so an upper bound of
//! the server time the issue bounds (p99 < 100 ms). Baseline, in the same run: the page's own
//! SQL, sent through the same connection pool. Last line: `ratio: X` = the baseline's p99 ÷
//! ours (higher is better; 1.0 would mean the page costs only its SQL).
//!
//! Seeding is server-side (`INSERT ... SELECT generate_series`) in the benchmark's own
//! database: cases and customers with `session_replication_role = replica` (their state-machine
//! and audit-coupling triggers would want a history and an event per row: the pages read, they
//! do not care how the rows came), the events through the trail's own triggers, as `bench
//! audit` does. The sequencer does not run: the viewer's list reads `audit_events` only.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use fintrail_db::{Context, DbRole, Home};
use fintrail_domain::Role;
use http_body_util::Full;

use crate::bench_audit::{bench_database, generate_events};
use crate::http::Client;

/// `fintrail bench console` options.
#[derive(clap::Args, Clone, Debug)]
pub struct BenchArgs {
    #[arg(long, help = "Use this PostgreSQL (admin URL) instead of the private cluster under FINTRAIL_HOME")]
    pub database_url: Option<String>,
    #[arg(long, default_value_t = 10_000, help = "Open KYC cases in the queue")]
    pub cases: i64,
    #[arg(long, default_value_t = 1_000_000, help = "Audit events in the trail")]
    pub events: i64,
    #[arg(long, default_value_t = 300, help = "Measured requests per page (after a warm-up of 20)")]
    pub requests: usize,
}

const BENCH_DB: &str = "fintrail_bench_console";
const WARMUP_REQUESTS: usize = 20;
/// The bound on a page's p99 server time.
const P99_TARGET_MS: f64 = 100.0;

/// The KYC queue page's SQL (`queue.rs`: the first page, oldest first, 25 rows + 1; the counts).
const KYC_PAGE_SQL: &str = "SELECT c.id, c.customer_id, c.state, c.updated_at, c.created_at, \
     (SELECT count(*) FROM fintrail.media_objects m WHERE m.kyc_case_id = c.id) \
     FROM fintrail.kyc_cases c WHERE c.state IN ('documents_submitted', 'in_review') AND c.state = ANY($1) \
     ORDER BY c.updated_at, c.id LIMIT $2";
const KYC_COUNTS_SQL: &str = "SELECT state, count(*) FROM fintrail.kyc_cases \
     WHERE state IN ('documents_submitted', 'in_review') GROUP BY state";
/// The audit viewer's SQL (`audit_view.rs`: newest first, 50 rows + 1).
const AUDIT_PAGE_SQL: &str = "SELECT seq, at, actor, action, subject, permission, allowed, request_id, on_behalf_of \
     FROM fintrail.audit_events ORDER BY seq DESC LIMIT $1";

/// Runs the benchmark.
pub async fn console(args: BenchArgs, home: &Home) -> anyhow::Result<()> {
    anyhow::ensure!(args.cases > 0 && args.cases <= 10_000_000, "--cases must be 1..=10000000");
    anyhow::ensure!(args.events > 0 && args.events <= 100_000_000, "--events must be 1..=100000000");
    anyhow::ensure!(args.requests > 0 && args.requests <= 100_000, "--requests must be 1..=100000");
    let ctx = bench_database(home, args.database_url.as_deref(), BENCH_DB).await?;
    eprintln!("seeding {} open KYC cases and {} audit events ...", args.cases, args.events);
    seed_cases(&ctx, args.cases).await?;
    generate_events(&ctx.db, args.events).await?;
    let config =
        fintrail_api::state::AppConfig { run_sequencer: false, checkpoint_interval_secs: 0, ..Default::default() };
    let server = fintrail_api::start_with(&ctx, "127.0.0.1:0".parse()?, config).await?;
    let token =
        fintrail_api::identity::create_token(&ctx.db, Role::Admin, None, "bench-console", 3600, "system:bench").await?;
    let mut client = Client::new(server.local_addr(), &token.token);
    let cookie = login(&mut client, &token.token).await?;
    let pool = server.state.0.pool.clone();

    let kyc = measure(
        args.requests,
        &mut Probe::Page { client: &mut client, cookie: &cookie, path: "/console/kyc", h1: "KYC review queue" },
    )
    .await?;
    let kyc_sql = measure(args.requests, &mut Probe::KycSql(&pool)).await?;
    let audit = measure(
        args.requests,
        &mut Probe::Page { client: &mut client, cookie: &cookie, path: "/console/audit", h1: "Audit trail" },
    )
    .await?;
    let audit_sql = measure(args.requests, &mut Probe::AuditSql(&pool)).await?;
    server.shutdown().await?;

    println!(
        "fintrail bench console ({} open KYC cases, {} audit events, {} requests each)",
        args.cases, args.events, args.requests
    );
    println!("{:<52} {:>9} {:>9} {:>9}", "measure", "p50 ms", "p99 ms", "max ms");
    for (name, l) in [
        ("GET /console/kyc, first page (ours)", &kyc),
        ("  its SQL through the same pool (baseline)", &kyc_sql),
        ("GET /console/audit, newest page (ours)", &audit),
        ("  its SQL through the same pool (baseline)", &audit_sql),
    ] {
        println!("{name:<52} {:>9.2} {:>9.2} {:>9.2}", l.p50_ms, l.p99_ms, l.max_ms);
    }
    let within = kyc.p99_ms < P99_TARGET_MS && audit.p99_ms < P99_TARGET_MS;
    println!("p99 under {P99_TARGET_MS} ms on both pages: {}", if within { "yes" } else { "NO" });
    let ratio = (kyc_sql.p99_ms + audit_sql.p99_ms) / (kyc.p99_ms + audit.p99_ms).max(1e-9);
    println!("ratio: {ratio:.3}");
    Ok(())
}

/// Open KYC cases (half submitted, half in review), each of its own customer, waiting from
/// seconds to days.
async fn seed_cases(ctx: &Context, cases: i64) -> anyhow::Result<()> {
    let mut su = ctx.db.connect(DbRole::Admin).await?;
    let tx = su.transaction().await?;
    tx.batch_execute("SET LOCAL session_replication_role = replica").await?;
    tx.execute(
        "INSERT INTO fintrail.customers (display_name, email) \
         SELECT 'Customer ' || g, 'c' || g || '@bench.test' FROM generate_series(1, $1::bigint) g",
        &[&cases],
    )
    .await?;
    tx.execute(
        "INSERT INTO fintrail.kyc_cases (customer_id, state, created_at, updated_at) \
         SELECT c.id, CASE WHEN c.id % 2 = 0 THEN 'documents_submitted' ELSE 'in_review' END, \
                now() - make_interval(secs => c.id * 7), now() - make_interval(secs => c.id * 7) \
         FROM fintrail.customers c",
        &[],
    )
    .await?;
    tx.commit().await?;
    su.batch_execute("ANALYZE fintrail.customers; ANALYZE fintrail.kyc_cases").await?;
    Ok(())
}

/// GET /console/login, then POST it with the token and the form's CSRF token; the session
/// cookie (`name=value`).
async fn login(client: &mut Client, token: &str) -> anyhow::Result<String> {
    let (status, headers, body) = client.send(request("GET", "/console/login", client, None, Bytes::new())?).await?;
    anyhow::ensure!(status == 200, "the login form answered {status}");
    let login_cookie = cookie(&headers, "ft_console_login").context("no login cookie")?;
    let html = String::from_utf8_lossy(&body);
    let at = html.find("name=\"csrf\" value=\"").context("no CSRF field")? + "name=\"csrf\" value=\"".len();
    let csrf = html[at..].split('"').next().context("CSRF value")?.to_owned();
    let form = format!("token={}&csrf={}", form_encode(token), form_encode(&csrf));
    let req = request("POST", "/console/login", client, Some(&login_cookie), Bytes::from(form))?;
    let (status, headers, _) = client.send(req).await?;
    anyhow::ensure!(status == 303, "logging in answered {status}");
    cookie(&headers, "ft_console").context("no session cookie")
}

/// `application/x-www-form-urlencoded` of one value.
fn form_encode(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn cookie(headers: &hyper::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(hyper::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
}

fn request(
    method: &str,
    path: &str,
    client: &Client,
    cookie: Option<&str>,
    body: Bytes,
) -> anyhow::Result<hyper::Request<Full<Bytes>>> {
    let mut req =
        hyper::Request::builder().method(method).uri(path).header(hyper::header::HOST, client.addr().to_string());
    if let Some(c) = cookie {
        req = req.header(hyper::header::COOKIE, c);
    }
    if method == "POST" {
        req = req.header(hyper::header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    }
    Ok(req.body(Full::new(body))?)
}

/// What one measured request does.
enum Probe<'a> {
    /// GET a console page; an error unless it is the page (its `h1`) with status 200.
    Page { client: &'a mut Client, cookie: &'a str, path: &'static str, h1: &'static str },
    /// The KYC queue page's SQL through the server's pool.
    KycSql(&'a deadpool_postgres::Pool),
    /// The audit viewer's SQL through the server's pool.
    AuditSql(&'a deadpool_postgres::Pool),
}

impl Probe<'_> {
    async fn run(&mut self) -> anyhow::Result<()> {
        match self {
            Probe::Page { client, cookie, path, h1 } => {
                let req = request("GET", path, client, Some(cookie), Bytes::new())?;
                let (status, _, body) = client.send(req).await?;
                anyhow::ensure!(status == 200, "{path} answered {status}");
                anyhow::ensure!(
                    String::from_utf8_lossy(&body).contains(&format!("<h1>{h1}</h1>")),
                    "{path} is not the page"
                );
            }
            Probe::KycSql(pool) => {
                let c = pool.get().await?;
                let states = ["documents_submitted", "in_review"];
                c.query(KYC_PAGE_SQL, &[&&states[..], &26i64]).await?;
                c.query(KYC_COUNTS_SQL, &[]).await?;
            }
            Probe::AuditSql(pool) => {
                pool.get().await?.query(AUDIT_PAGE_SQL, &[&51i64]).await?;
            }
        }
        Ok(())
    }
}

/// Latency figures of one measure.
struct Latency {
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

/// Runs `probe` a warm-up then `n` times, one after the other; its latency percentiles.
async fn measure(n: usize, probe: &mut Probe<'_>) -> anyhow::Result<Latency> {
    for _ in 0..WARMUP_REQUESTS {
        probe.run().await?;
    }
    let mut samples: Vec<Duration> = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        probe.run().await?;
        samples.push(t.elapsed());
    }
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_secs_f64() * 1e3
    };
    Ok(Latency { p50_ms: at(0.50), p99_ms: at(0.99), max_ms: at(1.0) })
}
