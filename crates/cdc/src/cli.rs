//! `fintrail cdc ...` and `fintrail analytics ...` (wired into the binary by the lead).

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use fintrail_db::{Context, DbRole};

use crate::analytics;
use crate::pipeline::{self, Options};
use crate::policy::{Policy, Pseudonymizer};
use crate::sink::bigquery::{self, BigQuerySink};
use crate::sink::duck::DuckSink;
use crate::sink::Sink;
use crate::source::{self, Names};
use crate::status::{Status, STATUS_FILE};

#[derive(Debug, Args)]
pub struct CdcArgs {
    #[command(subcommand)]
    pub command: CdcCommand,
}

#[derive(Debug, Subcommand)]
pub enum CdcCommand {
    /// Run the pipeline (snapshot, then streaming) into the sink (the DuckDB file, or BigQuery)
    /// until Ctrl-C / SIGTERM.
    Run(RunArgs),
    /// Show slot lag (bytes, seconds), retained WAL, rows/s, withheld columns and the last error.
    Status(StatusArgs),
    /// Create or update the publication and the replicator's grants from the policy.
    Setup(PolicyArgs),
    /// Drop the replication slot and the sink's state: the DuckDB file, or BigQuery's state row
    /// (the next run re-snapshots).
    Reset(ResetArgs),
    /// Check the replication policy file and print what it lets out.
    Policy(PolicyArgs),
}

#[derive(Debug, Args, Clone)]
pub struct PolicyArgs {
    /// Replication policy (default: the checked-in analytics/replication.toml).
    #[arg(long, env = "FINTRAIL_REPLICATION_POLICY")]
    pub policy: Option<PathBuf>,
}

/// Where `cdc run` writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum SinkKind {
    /// The DuckDB file (embedded default).
    #[default]
    Duckdb,
    /// BigQuery: FINTRAIL_BIGQUERY_PROJECT, FINTRAIL_BIGQUERY_DATASET (and
    /// FINTRAIL_BIGQUERY_ENDPOINT for an emulator).
    Bigquery,
}

#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// The sink.
    #[arg(long, value_enum, env = "FINTRAIL_CDC_SINK", default_value_t = SinkKind::Duckdb)]
    pub sink: SinkKind,
    /// The DuckDB file (default: FINTRAIL_HOME/analytics.duckdb).
    #[arg(long, value_name = "PATH")]
    pub duckdb_file: Option<PathBuf>,
    /// Throttle the initial snapshot (rows per second; 0 = unlimited).
    #[arg(long)]
    pub snapshot_rows_per_sec: Option<u64>,
    /// Seconds without a published commit before a heartbeat keeps the slot advancing.
    #[arg(long, default_value_t = 10)]
    pub heartbeat_secs: u64,
}

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Args, Clone)]
pub struct StatusArgs {
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Args, Clone)]
pub struct ResetArgs {
    /// Required: the analytics file (or BigQuery's state row) is deleted.
    #[arg(long)]
    pub yes: bool,
    /// The sink.
    #[arg(long, value_enum, env = "FINTRAIL_CDC_SINK", default_value_t = SinkKind::Duckdb)]
    pub sink: SinkKind,
    /// The DuckDB file (default: FINTRAIL_HOME/analytics.duckdb).
    #[arg(long, value_name = "PATH")]
    pub duckdb_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct AnalyticsArgs {
    #[command(subcommand)]
    pub command: AnalyticsCommand,
}

#[derive(Debug, Subcommand)]
pub enum AnalyticsCommand {
    /// Run one read-only SELECT on the analytics (through the running pipeline, else on the
    /// DuckDB file) and print the result. Writes are refused; time and rows are bounded.
    Query(QueryArgs),
}

#[derive(Debug, Args, Clone)]
pub struct QueryArgs {
    /// The SQL (DuckDB dialect), e.g. "SELECT * FROM daily_transfer_volume".
    pub sql: String,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// The DuckDB file (default: FINTRAIL_HOME/analytics.duckdb).
    #[arg(long, value_name = "PATH", alias = "sink")]
    pub duckdb_file: Option<PathBuf>,
    /// At most this many rows are printed (1 to 10000); the output says when the limit cut it.
    #[arg(long, default_value_t = 1_000)]
    pub limit: usize,
    /// The query is interrupted after this long (at most 30000).
    #[arg(long, default_value_t = analytics::TIMEOUT_MS_DEFAULT)]
    pub timeout_ms: u64,
}

/// The analytical views under analytics/views, compiled in (applied by the pipeline).
pub const VIEWS: &[(&str, &str)] = &[
    ("daily_transfer_volume", include_str!("../../../analytics/views/daily_transfer_volume.sql")),
    ("kyc_funnel", include_str!("../../../analytics/views/kyc_funnel.sql")),
    ("kyc_time_in_state", include_str!("../../../analytics/views/kyc_time_in_state.sql")),
    ("screening_outcomes", include_str!("../../../analytics/views/screening_outcomes.sql")),
    ("active_wallets", include_str!("../../../analytics/views/active_wallets.sql")),
];

pub fn views() -> Vec<(String, String)> {
    VIEWS.iter().map(|(n, s)| ((*n).to_owned(), (*s).to_owned())).collect()
}

pub fn status_path(ctx: &Context) -> PathBuf {
    ctx.home.root().join(STATUS_FILE)
}

/// `fintrail cdc ...`; returns the exit code.
pub async fn run_cdc(args: CdcArgs, ctx: &Context) -> anyhow::Result<u8> {
    match args.command {
        CdcCommand::Run(a) => {
            let policy = Policy::load(a.policy.policy.as_deref())?;
            let shutdown = async {
                shutdown_signal().await;
                tracing::info!("stopping the CDC pipeline");
            };
            let opts = Options {
                snapshot_rows_per_sec: a.snapshot_rows_per_sec,
                heartbeat_interval: std::time::Duration::from_secs(a.heartbeat_secs.max(1)),
                // A production service holds the replicator's credentials alone: there the
                // publication and the grants are `fintrail cdc setup`'s job, run with the
                // admin's DATABASE_URL like the migrations (docs/configuration.md).
                setup: ctx.db.has_credentials(DbRole::Admin),
                ..Default::default()
            };
            match a.sink {
                SinkKind::Duckdb => {
                    let path = a.duckdb_file.unwrap_or_else(|| ctx.home.analytics_db());
                    run_with(ctx, &policy, &path, opts, shutdown).await?;
                }
                SinkKind::Bigquery => {
                    let mut sink = BigQuerySink::from_env()?;
                    run_into(ctx, &policy, &mut sink, opts, shutdown).await?;
                }
            }
            Ok(0)
        }
        CdcCommand::Status(a) => status(ctx, a.format).await,
        CdcCommand::Setup(a) => {
            let policy = Policy::load(a.policy.as_deref())?;
            let r = source::setup(&ctx.db, &policy, &Names::default()).await?;
            println!("publication {}: {} table(s)", source::PUBLICATION, r.published.len());
            for t in &r.published {
                println!("  published  {t}");
            }
            for (t, why) in &r.skipped {
                println!("  skipped    {t}: {why}");
            }
            for (t, cols) in &r.withheld_columns {
                if !cols.is_empty() {
                    println!("  withheld   {t}: {}", cols.join(", "));
                }
            }
            for (t, cols) in &r.published_columns {
                println!("  columns    {t}: {}", cols.join(", "));
            }
            for (slot, plugin) in &r.foreign_slots {
                println!(
                    "  WARNING    slot {slot} decodes with {plugin}: it sees every column of every table \
                     (drop it unless you made it)"
                );
            }
            for p in &r.other_publications {
                println!("  WARNING    publication {p} exists too: the replicator can stream it, whatever it holds");
            }
            for (t, cols) in &r.unknown_columns {
                println!("  WARNING    {t}: the policy names columns the table does not have: {}", cols.join(", "));
            }
            Ok(0)
        }
        CdcCommand::Reset(a) => {
            if !a.yes {
                eprintln!("cdc reset drops the slot {} and deletes the analytics file: pass --yes", source::SLOT);
                return Ok(2);
            }
            if a.sink == SinkKind::Bigquery {
                let mut client = bigquery::Client::new(bigquery::Config::from_env()?);
                source::drop_slot(&ctx.db, &Names::default()).await?;
                tokio::task::spawn_blocking(move || bigquery::reset(&mut client)).await??;
                let _ = std::fs::remove_file(status_path(ctx));
                println!("dropped slot {} and the BigQuery sink's state (the next run re-snapshots)", source::SLOT);
                return Ok(0);
            }
            source::drop_slot(&ctx.db, &Names::default()).await?;
            let path = a.duckdb_file.unwrap_or_else(|| ctx.home.analytics_db());
            for p in [path.clone(), path.with_extension("duckdb.wal")] {
                if p.exists() {
                    std::fs::remove_file(&p)?;
                }
            }
            let _ = std::fs::remove_file(status_path(ctx));
            println!("dropped slot {} and removed {}", source::SLOT, path.display());
            Ok(0)
        }
        CdcCommand::Policy(a) => {
            let policy = Policy::load(a.policy.as_deref())?;
            for t in policy.tables() {
                println!("{}.{t}", policy.schema);
            }
            Ok(0)
        }
    }
}

/// The pipeline into `path`, until `shutdown`, on a thread of its own
/// (`pipeline::on_own_thread`), with the query server.
pub async fn run_with(
    ctx: &Context,
    policy: &Policy,
    path: &std::path::Path,
    opts: Options,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let (ctx, policy, path) = (ctx.clone(), policy.clone(), path.to_owned());
    pipeline::on_own_thread("cdc-pipeline", shutdown, move |shutdown| async move {
        serve_and_run(&ctx, &policy, &path, opts, shutdown).await
    })
    .await
}

async fn serve_and_run(
    ctx: &Context,
    policy: &Policy,
    path: &std::path::Path,
    mut opts: Options,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let mut sink = DuckSink::open(path)?;
    sink.one_thread()?;
    // One writer: this process holds the file, so it answers the read-only queries too
    // (`analytics` module), with file access turned off for every connection of the instance.
    analytics::lock_down(sink.conn())?;
    let socket = analytics::socket_path(path);
    // Without its socket the pipeline still replicates: queries then fail clearly, data is safe.
    let server = analytics::Server::start(sink.conn().try_clone()?, &socket)
        .inspect_err(|e| tracing::warn!(error = %e, socket = %socket.display(), "analytics queries not served"))
        .ok();
    opts.views = views();
    let out = run_into(ctx, policy, &mut sink, opts, shutdown).await;
    drop(server);
    out
}

/// The pipeline into `sink` (DuckDB or BigQuery), until `shutdown`.
pub async fn run_into(
    ctx: &Context,
    policy: &Policy,
    sink: &mut dyn Sink,
    mut opts: Options,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let ps = Pseudonymizer::from_env_or_home(ctx.home.root())?;
    opts.progress = std::io::stderr().is_terminal();
    opts.status_path = Some(status_path(ctx));
    pipeline::run(&ctx.db, policy, &ps, sink, &opts, shutdown).await?;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn status(ctx: &Context, format: Format) -> anyhow::Result<u8> {
    let st = Status::read(&status_path(ctx))?;
    let slot = match ctx.db.connect(DbRole::Replicator).await {
        Ok(c) => source::slot_stats(&c, &Names::default()).await.ok(),
        Err(_) => None,
    };
    match format {
        Format::Json => {
            println!("{}", serde_json::json!({ "pipeline": st, "slot": slot }));
        }
        Format::Text => {
            match &st {
                None => println!("pipeline: never ran (no {STATUS_FILE})"),
                Some(s) => {
                    println!(
                        "pipeline:        {} ({}), pid {}",
                        if s.running { "running" } else { "stopped" },
                        s.phase,
                        s.pid
                    );
                    println!("applied LSN:     {}", s.applied_lsn);
                    println!("lag:             {} bytes, {:.1} s", s.lag_bytes, s.lag_secs);
                    println!("rows/s:          {:.0}", s.rows_per_sec);
                    println!("streamed rows:   {}", s.streamed_rows);
                    println!("snapshot rows:   {}", s.snapshot_rows);
                    if let Some(r) = s.retained_wal_bytes {
                        println!("retained WAL:    {r} bytes (as last seen by the pipeline)");
                    }
                    println!("last error:      {}", s.last_error.as_deref().unwrap_or("none"));
                    for (t, cols) in &s.withheld_columns {
                        if !cols.is_empty() {
                            println!("withheld:        {t}: {}", cols.join(", "));
                        }
                    }
                    for t in &s.withheld_tables {
                        println!("withheld table:  {t} (not in the policy)");
                    }
                    for (t, why) in &s.skipped_tables {
                        println!("not published:   {t}: {why}");
                    }
                    for (t, cols) in &s.unknown_policy_columns {
                        println!("policy typo?:    {t}: no such column(s) {}", cols.join(", "));
                    }
                    for (slot, plugin) in &s.foreign_slots {
                        println!("WARNING:         slot {slot} decodes with {plugin}: it sees every column");
                    }
                    for p in &s.other_publications {
                        println!("WARNING:         publication {p} exists too: the replicator can stream it");
                    }
                }
            }
            match &slot {
                Some(s) if s.exists => println!(
                    "slot {}:  {}, confirmed {}, lag {} bytes, retained WAL {} bytes",
                    source::SLOT,
                    if s.active { "active" } else { "inactive" },
                    s.confirmed_flush_lsn.as_deref().unwrap_or("-"),
                    s.lag_bytes.unwrap_or(0),
                    s.retained_wal_bytes.unwrap_or(0)
                ),
                Some(_) => println!("slot {}: does not exist", source::SLOT),
                None => println!("slot {}: database not reachable", source::SLOT),
            }
        }
    }
    Ok(if st.as_ref().is_some_and(|s| s.last_error.is_some()) { 1 } else { 0 })
}

/// `fintrail analytics ...`; returns the exit code (1: the query was refused).
/// Reads only the DuckDB file under `home`: it never touches the transactional database.
pub async fn run_analytics(args: AnalyticsArgs, home: &fintrail_db::Home) -> anyhow::Result<u8> {
    match args.command {
        AnalyticsCommand::Query(q) => {
            let path = q.duckdb_file.clone().unwrap_or_else(|| home.analytics_db());
            let req = analytics::Request { timeout_ms: q.timeout_ms, ..analytics::Request::new(q.sql, q.limit) };
            let out = match tokio::task::spawn_blocking(move || analytics::query(&path, &req)).await? {
                Ok(out) => out,
                // A refused query (a write, a timeout) exits 1; a failure to run it at all, 2.
                Err(e) if e.to_string().starts_with("refused:") => {
                    eprintln!("error: {e:#}");
                    return Ok(1);
                }
                Err(e) => return Err(e),
            };
            match q.format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&out.to_json())?),
                Format::Text => print!("{}", out.to_table()),
            }
            if out.truncated {
                eprintln!("note: the row limit ({}) cut the result", out.rows.len());
            }
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_prints_tables_and_json_and_says_when_the_limit_cut_it() {
        let dir = std::env::temp_dir().join(format!("fintrail-cdc-q-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.duckdb");
        {
            let c = duckdb::Connection::open(&path).unwrap();
            c.execute_batch("CREATE TABLE t (id INTEGER, name VARCHAR); INSERT INTO t VALUES (1, 'a'), (2, NULL);")
                .unwrap();
        }
        let r = analytics::query(&path, &analytics::Request::new("SELECT id, name FROM t ORDER BY id;", 100)).unwrap();
        assert_eq!(r.columns, vec!["id", "name"]);
        assert_eq!(r.rows, vec![vec![Some("1".into()), Some("a".into())], vec![Some("2".into()), None]]);
        let table = r.to_table();
        assert!(table.starts_with("id | name\n"), "{table}");
        assert!(table.ends_with("(2 rows)\n"));
        assert_eq!(r.to_json()[1]["name"], serde_json::Value::Null);
        let cut = analytics::query(&path, &analytics::Request::new("SELECT id FROM t", 1)).unwrap();
        assert!(cut
            .to_table()
            .ends_with("(1 row)\n(row limit 1 reached: the query has more rows; raise --limit, at most 10000)\n"));
        assert!(analytics::query(&path, &analytics::Request::new("DELETE FROM t", 10)).is_err());
        assert!(analytics::query(&path, &analytics::Request::new("SELEC nonsense", 10)).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn run_chooses_its_sink_by_name() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cmd {
            #[command(subcommand)]
            cdc: CdcCommand,
        }
        let parse = |args: &[&str]| Cmd::try_parse_from(std::iter::once("cdc").chain(args.iter().copied()));
        let CdcCommand::Run(a) = parse(&["run", "--sink", "bigquery"]).unwrap().cdc else { panic!() };
        assert_eq!(a.sink, SinkKind::Bigquery);
        let CdcCommand::Run(a) = parse(&["run", "--duckdb-file", "x.duckdb"]).unwrap().cdc else { panic!() };
        assert_eq!(a.duckdb_file, Some(PathBuf::from("x.duckdb")));
        let e = parse(&["run", "--sink", "x.duckdb"]).err().unwrap().to_string();
        assert!(e.contains("possible values: duckdb, bigquery"), "{e}");
        let CdcCommand::Reset(r) = parse(&["reset", "--yes", "--sink", "bigquery"]).unwrap().cdc else { panic!() };
        assert_eq!(r.sink, SinkKind::Bigquery);
    }

    #[test]
    fn every_view_file_is_compiled_in() {
        let on_disk = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../analytics/views")).unwrap().count();
        assert_eq!(on_disk, VIEWS.len());
    }
}

#[cfg(test)]
mod view_tests {
    use super::*;

    #[test]
    fn views_compute_on_sink_shaped_tables() {
        let c = duckdb::Connection::open_in_memory().unwrap();
        c.execute_batch(
            "SET TimeZone = 'UTC';
             CREATE TABLE transfers (id UUID, amount_minor BIGINT, currency VARCHAR, created_at TIMESTAMPTZ);
             INSERT INTO transfers VALUES (gen_random_uuid(), 100, 'EUR', '2024-05-01 10:00:00+00'),
                                          (gen_random_uuid(), 250, 'EUR', '2024-05-01 23:00:00+00'),
                                          (gen_random_uuid(), 7, 'USD', '2024-05-02 01:00:00+00');
             CREATE TABLE kyc_cases (id BIGINT, state VARCHAR, created_at TIMESTAMPTZ);
             INSERT INTO kyc_cases VALUES (1, 'approved', '2024-05-01 00:00:00+00'), (2, 'in_review', '2024-05-01 00:00:00+00');
             CREATE TABLE kyc_case_transitions (id BIGINT, case_id BIGINT, from_state VARCHAR, to_state VARCHAR, \"at\" TIMESTAMPTZ);
             INSERT INTO kyc_case_transitions VALUES
               (1, 1, 'started', 'documents_submitted', '2024-05-01 00:01:00+00'),
               (2, 1, 'documents_submitted', 'in_review', '2024-05-01 00:02:00+00'),
               (3, 1, 'in_review', 'approved', '2024-05-01 00:12:00+00'),
               (4, 2, 'started', 'documents_submitted', '2024-05-01 00:03:00+00'),
               (5, 2, 'documents_submitted', 'in_review', '2024-05-01 00:03:30+00');
             CREATE TABLE organization_transitions (id BIGINT, organization_id BIGINT, to_state VARCHAR, \"at\" TIMESTAMPTZ);
             INSERT INTO organization_transitions VALUES (1, 1, 'screening', '2024-05-01 00:00:00+00'), (2, 1, 'clear', '2024-05-01 00:00:01+00');
             CREATE TABLE wallets (id BIGINT, kind VARCHAR, currency VARCHAR);
             INSERT INTO wallets VALUES (1, 'customer', 'EUR'), (2, 'customer', 'EUR'), (3, 'system', 'EUR'), (4, 'customer', 'USD');
             CREATE TABLE entries (id BIGINT, wallet_id BIGINT, amount_minor BIGINT, created_at TIMESTAMPTZ);
             INSERT INTO entries VALUES (1, 1, 5, now()), (2, 3, -5, now()), (3, 4, 1, now() - INTERVAL 40 DAY);
",
        )
        .unwrap();
        for (name, sql) in VIEWS {
            c.execute_batch(sql).unwrap_or_else(|e| panic!("view {name}: {e}"));
        }
        let q = |sql: &str| -> String { c.query_row(sql, [], |r| r.get::<_, String>(0)).unwrap() };
        assert_eq!(q("SELECT string_agg(concat_ws(':', day, currency, transfers, volume_minor), ',') FROM daily_transfer_volume"),
                   "2024-05-01:EUR:2:350,2024-05-02:USD:1:7");
        assert_eq!(
            q("SELECT string_agg(concat_ws(':', state, cases_reached, cases_now), ',') FROM kyc_funnel"),
            "documents_submitted:2:0,in_review:2:1,started:2:0,approved:1:1"
        );
        // started (from the case's creation): 60 s and 180 s -> median 120 s;
        // documents_submitted: 60 s and 30 s -> 45 s; in_review: 600 s.
        assert_eq!(
            q("SELECT string_agg(concat_ws(':', state, exits, median_secs::BIGINT), ',') FROM kyc_time_in_state"),
            "documents_submitted:2:45,in_review:1:600,started:2:120"
        );
        assert_eq!(
            q("SELECT string_agg(concat_ws(':', outcome, organizations), ',') FROM screening_outcomes"),
            "clear:1"
        );
        assert_eq!(
            q("SELECT string_agg(concat_ws(':', currency, active_wallets_30d, wallets), ',') FROM active_wallets"),
            "EUR:1:2,USD:0:1"
        );
    }
}
