//! `fintrail db start|status|migrate|stop`: the private PostgreSQL cluster.

use fintrail_db::{cluster::Cluster, cluster::Started, cluster::Status, DbRole, Home};

#[derive(Debug, clap::Args)]
pub struct DbArgs {
    #[command(subcommand)]
    command: DbCommand,
}

#[derive(Debug, clap::Subcommand)]
enum DbCommand {
    /// Start the private cluster under FINTRAIL_HOME (initializing it on first use); idempotent
    Start,
    /// Report the cluster: exit 0 when running, 1 when not
    Status,
    /// Apply pending migrations as the owner role (starts the private cluster if needed)
    Migrate,
    /// Stop the private cluster (fast shutdown)
    Stop,
}

pub async fn run(args: DbArgs, home: &Home, url: Option<&str>) -> anyhow::Result<u8> {
    if let Some(url) = url {
        return run_external(args, url).await;
    }
    let cluster = Cluster::new(home.clone())?;
    match args.command {
        DbCommand::Start => {
            let c = cluster.clone();
            let outcome = tokio::task::spawn_blocking(move || c.start(fintrail_db::DURABLE)).await??;
            let db = cluster.database(fintrail_db::DEFAULT_DBNAME)?;
            fintrail_db::ensure_database(&db).await?;
            let verb = if outcome == Started::AlreadyRunning { "already running" } else { "started" };
            println!("private PostgreSQL {verb}");
            print_cluster(&cluster, &db);
            Ok(0)
        }
        DbCommand::Status => match cluster.status()? {
            Status::Running { pid, port } => {
                println!("running: pid {pid}, 127.0.0.1:{port}");
                print_cluster(&cluster, &cluster.database(fintrail_db::DEFAULT_DBNAME)?);
                Ok(0)
            }
            Status::Stopped => {
                println!("stopped: {}", home.pg_data().display());
                Ok(1)
            }
            Status::NotInitialized => {
                println!("not initialized: no cluster under {} (run `fintrail db start`)", home.root().display());
                Ok(1)
            }
        },
        DbCommand::Migrate => {
            let ctx = fintrail_db::prepare(home, None).await?;
            resync_cdc(&ctx.db).await?;
            report_migrations(&ctx.db).await
        }
        DbCommand::Stop => {
            let c = cluster.clone();
            let was_running = tokio::task::spawn_blocking(move || c.stop()).await??;
            println!("{}", if was_running { "stopped" } else { "was not running" });
            Ok(0)
        }
    }
}

async fn run_external(args: DbArgs, url: &str) -> anyhow::Result<u8> {
    let db = fintrail_db::Database::external(url)?;
    match args.command {
        DbCommand::Start | DbCommand::Stop => {
            eprintln!("--database-url points at an external server: fintrail does not start or stop it");
            Ok(2)
        }
        DbCommand::Status => match db.connect(DbRole::Admin).await {
            Ok(client) => {
                let row = client.query_one("SELECT version()", &[]).await?;
                println!("reachable: {} ({})", db.display_url(DbRole::Admin), row.get::<_, String>(0));
                Ok(0)
            }
            Err(e) => {
                println!("unreachable: {e:#}");
                Ok(1)
            }
        },
        DbCommand::Migrate => {
            fintrail_db::migrate::migrate(&db).await?;
            resync_cdc(&db).await?;
            report_migrations(&db).await
        }
    }
}

/// After migrating: the CDC publication's column lists and the replicator's grants follow the
/// schema (issue #16), so a column a migration added leaves only if the policy names it.
async fn resync_cdc(db: &fintrail_db::Database) -> anyhow::Result<()> {
    let policy = fintrail_cdc::policy::Policy::load(None)?;
    let names = fintrail_cdc::source::Names::default();
    if let Some(r) = fintrail_cdc::source::resync_if_published(db, &policy, &names).await? {
        println!(
            "publication {}: re-synced with the replication policy ({} tables)",
            names.publication,
            r.published.len()
        );
    }
    Ok(())
}

async fn report_migrations(db: &fintrail_db::Database) -> anyhow::Result<u8> {
    let client = db.connect(DbRole::Admin).await?;
    let rows = client
        .query("SELECT version, name, applied_at::text FROM fintrail_meta.schema_migrations ORDER BY version", &[])
        .await?;
    for row in &rows {
        println!("{:04}_{}  applied {}", row.get::<_, i32>(0), row.get::<_, String>(1), row.get::<_, String>(2));
    }
    println!("schema up to date: {} migrations", rows.len());
    Ok(0)
}

pub fn print_cluster(cluster: &Cluster, db: &fintrail_db::Database) {
    let home = cluster.home();
    println!("  data:      {}", home.pg_data().display());
    println!("  log:       {}", home.pg_log().display());
    println!(
        "  app url:   {}  (password in {}/fintrail_app.password)",
        db.display_url(DbRole::App),
        home.secrets_dir().display()
    );
    println!("  admin url: {}", db.display_url(DbRole::Admin));
    println!("  tls:       {} (pg_hba: TLS only)", db.tls().describe());
}
