//! `fintrail up`: the main job. Starts the private cluster, migrates, starts what exists of
//! the platform, prints where everything is, and stops it all on Ctrl-C / SIGTERM.
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
}

pub async fn run(args: UpArgs, home: &Home, url: Option<&str>) -> anyhow::Result<u8> {
    let mut shutdown = Shutdown::install()?;
    fs::create_dir_all(home.root()).with_context(|| format!("creating {}", home.root().display()))?;
    let lock_path = home.up_lock();
    let mut lock = fs::OpenOptions::new()
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
            return Ok(1);
        }
        Err(fs::TryLockError::Error(e)) => return Err(e).context("locking up.lock"),
    }
    lock.set_len(0)?;
    write!(lock, "{}", std::process::id())?;

    say!("fintrail up: starting (FINTRAIL_HOME={})", home.root().display());
    let ctx = fintrail_db::prepare(home, url).await?;
    say!("database ready: {}", ctx.db.display_url(DbRole::App));
    if url.is_none() {
        let cluster = Cluster::new(home.clone())?;
        crate::db_cmd::print_cluster(&cluster, &ctx.db);
    }
    say!("api:       not built yet (issue 3)");
    say!("cdc:       not built yet (issue 5)");
    say!("fintrail up: running; press Ctrl-C to stop");

    shutdown.wait().await;
    say!("fintrail up: shutting down");
    if url.is_none() && !args.keep_db {
        let cluster = Cluster::new(home.clone())?;
        tokio::task::spawn_blocking(move || cluster.stop()).await??;
        say!("private PostgreSQL stopped");
    }
    drop(lock);
    Ok(0)
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
