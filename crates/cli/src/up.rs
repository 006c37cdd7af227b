//! `fintrail up`: the main job. Starts the private cluster, migrates, starts what exists of
//! the platform (API, CDC, the periodic jobs on their schedules), prints where everything is,
//! and stops it all on Ctrl-C / SIGTERM.
//!
//! One `up` per FINTRAIL_HOME: an advisory lock (flock) on `up.lock` is held for the life of
//! the process; the kernel drops it when the process dies, even by SIGKILL, so a crashed `up`
//! never blocks the next one.

use std::{fs, io::Write as _};

use anyhow::Context as _;
use fintrail_db::{cluster::Cluster, DbRole, Home};

/// Prints a line; a closed stdout (the terminal went away) must not abort a clean shutdown.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Leave the private cluster running on exit (default: stop it).
    #[arg(long)]
    keep_db: bool,
    /// Where the API listens (loopback by default: nothing is exposed to the network).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Do not seed the demo data (customers, KYC cases, an organization).
    #[arg(long)]
    no_demo: bool,
    /// Do not run the CDC pipeline into FINTRAIL_HOME/analytics.duckdb.
    #[arg(long)]
    no_cdc: bool,
    /// Do not run the periodic jobs (`fintrail jobs`) on their schedules.
    #[arg(long)]
    no_jobs: bool,
}

use std::os::unix::fs::OpenOptionsExt as _;

/// The home's `up.lock` (owner-only), locked and holding our pid; `None` (after saying so) when
/// another `fintrail up` holds it. The lock dies with the process, so a crash never blocks.
fn take_up_lock(home: &Home) -> anyhow::Result<Option<fs::File>> {
    let lock_path = home.up_lock();
    let mut lock = fs::OpenOptions::new()
        .mode(fintrail_db::home::owner_only::FILE_MODE)
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let holder = fs::read_to_string(&lock_path).unwrap_or_default();
            eprintln!(
                "error: another `fintrail up` is already running for {} (pid {}); stop it first",
                home.root().display(),
                holder.trim()
            );
            return Ok(None);
        }
        Err(fs::TryLockError::Error(e)) => return Err(e).context("locking up.lock"),
    }
    lock.set_len(0)?;
    write!(lock, "{}", std::process::id())?;

    Ok(Some(lock))
}

/// Starts the CDC pipeline into the home's DuckDB file; it stops when `stop` fires, after
/// committing and confirming what it has.
fn spawn_cdc(
    ctx: &fintrail_db::Context,
    home: &Home,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    let ctx = ctx.clone();
    say!("cdc:       streaming into {}", home.analytics_db().display());
    tokio::spawn(async move {
        let shutdown = async {
            let _ = stop.await;
        };
        fintrail_cdc::run_pipeline(&ctx, shutdown).await
    })
}

/// The exit code the pipeline's end implies (0 when it stopped cleanly or never ran).
fn cdc_exit_code(outcome: Option<Result<anyhow::Result<()>, tokio::task::JoinError>>) -> u8 {
    match outcome {
        Some(Ok(Ok(()))) | None => 0,
        Some(Ok(Err(e))) => {
            eprintln!("error: the CDC pipeline stopped: {e:#}");
            1
        }
        Some(Err(e)) => {
            eprintln!("error: the CDC pipeline task failed: {e}");
            1
        }
    }
}

pub async fn run(args: UpArgs, home: &Home, url: Option<&str>) -> anyhow::Result<u8> {
    let mut shutdown = Shutdown::install()?;
    // Owner-only (0700; see `Home::create`), also when an earlier version left it 0755.
    home.create()?;
    let Some(lock) = take_up_lock(home)? else { return Ok(1) };
    say!("fintrail up: starting (FINTRAIL_HOME={})", home.root().display());
    let ctx = fintrail_db::prepare(home, url).await?;
    if args.keep_db {
        ctx.keep_cluster();
    }
    say!("database ready: {} (TLS {})", ctx.db.display_url(DbRole::App), ctx.db.tls().describe());
    if url.is_none() {
        let cluster = Cluster::new(home.clone())?;
        crate::db_cmd::print_cluster(&cluster, &ctx.db);
    }
    let server = fintrail_api::start_server(&ctx, args.listen)
        .await
        .with_context(|| format!("starting the API on {} (is the port taken? use --listen)", args.listen))?;
    say!("api:       http://{}  (OpenAPI at /openapi.json)", server.local_addr());
    say!("console:   http://{}/console  (log in with a staff token)", server.local_addr());
    if !args.no_demo {
        let demo = fintrail_tooling::seed_demo(&ctx).await.context("seeding the demo data")?;
        say!("demo:      {} customers, organization {:?}", demo.customer_ids.len(), demo.organization_id);
        say!("staff token (role admin, shown once): {}", demo.admin_token);
    }
    // The pipeline stops when this channel fires; it then commits and confirms what it has.
    let (stop_cdc, cdc_stopped) = tokio::sync::oneshot::channel::<()>();
    let cdc = (!args.no_cdc).then(|| spawn_cdc(&ctx, home, cdc_stopped));
    // The periodic jobs, on the schedules Cloud Scheduler uses in production (one table:
    // `fintrail_jobs::JOBS`), with the server's audit writer so the sequencer chains at once.
    let (stop_jobs, jobs_stopped) = tokio::sync::watch::channel(false);
    let jobs = (!args.no_jobs).then(|| {
        say!("jobs:      {} periodic jobs on their schedules (`fintrail jobs list`)", fintrail_jobs::JOBS.len());
        tokio::spawn(fintrail_jobs::run_locally(ctx.clone(), server.state.audit.clone(), jobs_stopped))
    });
    say!("fintrail up: running; press Ctrl-C to stop");

    // Run until a signal, or until the pipeline fails (it stops with a clear error rather
    // than dropping data; the API keeps nothing half-done either way).
    let cdc_outcome = match cdc {
        Some(mut task) => {
            tokio::select! {
                () = shutdown.wait() => { let _ = stop_cdc.send(()); Some(task.await) }
                r = &mut task => Some(r),
            }
        }
        None => {
            shutdown.wait().await;
            None
        }
    };
    say!("fintrail up: shutting down");
    let code = cdc_exit_code(cdc_outcome);
    let _ = stop_jobs.send(true);
    if let Some(jobs) = jobs {
        let _ = jobs.await;
    }
    server.shutdown().await?;
    say!("api stopped");
    if url.is_none() && !args.keep_db {
        let cluster = Cluster::new(home.clone())?;
        tokio::task::spawn_blocking(move || cluster.stop()).await??;
        say!("private PostgreSQL stopped");
    }
    drop(lock);
    Ok(code)
}

/// Ctrl-C (SIGINT) and SIGTERM, caught from the moment it is installed: install it before
/// announcing that we run, or a signal sent right after the announcement would kill the
/// process with the default action instead of stopping it cleanly.
pub struct Shutdown {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Shutdown {
    pub fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self { int: signal(SignalKind::interrupt())?, term: signal(SignalKind::terminate())? })
    }

    /// Resolves on the first SIGINT or SIGTERM.
    pub async fn wait(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}
