//! The `fintrail serve`, `fintrail audit` and `fintrail token` subcommands (wired into the
//! binary by the lead).

use std::net::SocketAddr;
use std::path::PathBuf;

use fintrail_db::{Context, DbRole};
use fintrail_domain::Role;

use crate::identity::{insert_token, revoke, Issuer};
use crate::media::store::MediaConfig;
use crate::state::AppConfig;
use fintrail_audit::checkpoint;
use fintrail_audit::verify::Outcome;

/// `fintrail serve`.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080; in production (FINTRAIL_ENVIRONMENT
    /// set) 0.0.0.0:$PORT].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Most pooled database connections.
    #[arg(long, default_value_t = 16)]
    pub pool_size: usize,
    /// Seconds between automatic signed audit checkpoints (0 = never).
    #[arg(long, default_value_t = 300)]
    pub checkpoint_interval_secs: u64,
}

/// `fintrail audit`.
#[derive(clap::Args, Debug, Clone)]
pub struct AuditArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: AuditCommand,
}

/// `fintrail audit verify|checkpoint`.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum AuditCommand {
    /// Check the whole trail: exit 0 intact, 1 tampered (names the first broken event), 2 cannot check.
    Verify {
        /// Directory of checkpoint files to check as well (default FINTRAIL_HOME/audit-checkpoints).
        #[arg(long)]
        checkpoint_dir: Option<PathBuf>,
    },
    /// Write a signed checkpoint of the chain head to the database and to a file.
    Checkpoint {
        /// Directory for the checkpoint file (default FINTRAIL_HOME/audit-checkpoints).
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

/// `fintrail token`.
#[derive(clap::Args, Debug, Clone)]
pub struct TokenArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: TokenCommand,
}

/// `fintrail token create|revoke`.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum TokenCommand {
    /// Issue a bearer token; prints the token (only time it is shown) on stdout.
    Create {
        /// Role name: customer, kyc_analyst, compliance_officer, auditor, admin.
        #[arg(long)]
        role: String,
        /// Lifetime, e.g. 30m, 8h, 7d (at most 30d).
        #[arg(long, default_value = "8h")]
        ttl: String,
        /// Who the token is for (staff name).
        #[arg(long)]
        label: Option<String>,
        /// The customer id (required for --role customer).
        #[arg(long)]
        customer: Option<i64>,
    },
    /// Revoke a token by id.
    Revoke {
        /// The token id printed by `create`.
        token_id: i64,
    },
}

/// Where `fintrail serve` listens without `--listen` (local use).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// What production's typed configuration decided for `fintrail serve` (read once, from the
/// environment, by the binary before anything starts).
#[derive(Debug, Clone)]
pub struct Deployed {
    pub listen: SocketAddr,
    pub jobs_oidc: fintrail_jobs::oidc::OidcConfig,
    pub media: MediaConfig,
}

/// `fintrail serve`: runs until Ctrl-C / SIGTERM. In production the binary passes what its
/// typed configuration read ([`Deployed`]); locally `None`, and media go to GCS when
/// `FINTRAIL_MEDIA_BUCKET` is set ([`MediaConfig::from_env`]; a malformed or incomplete
/// setting stops it before it listens).
pub async fn run_serve(args: ServeArgs, ctx: &Context, deployed: Option<Deployed>) -> anyhow::Result<u8> {
    let default_listen: SocketAddr = DEFAULT_LISTEN.parse()?;
    let (listen, jobs_oidc, media) = match deployed {
        Some(d) => (d.listen, Some(d.jobs_oidc), d.media),
        None => (args.listen.unwrap_or(default_listen), None, MediaConfig::from_env()?),
    };
    let config = AppConfig {
        pool_size: args.pool_size,
        checkpoint_interval_secs: args.checkpoint_interval_secs,
        jobs_oidc,
        media,
        ..AppConfig::default()
    };
    let handle = crate::server::start_with(ctx, listen, config).await?;
    eprintln!("fintrail API listening on http://{}", handle.local_addr());
    crate::server::shutdown_signal().await;
    handle.shutdown().await?;
    Ok(0)
}

/// `fintrail audit ...`.
pub async fn run_audit(args: AuditArgs, ctx: &Context) -> anyhow::Result<u8> {
    match args.command {
        AuditCommand::Verify { checkpoint_dir } => {
            let dir = checkpoint_dir.unwrap_or_else(|| checkpoint::checkpoint_dir(&ctx.home));
            let outcome = fintrail_audit::verify::verify_trail(ctx, &dir).await;
            match &outcome {
                Outcome::Intact(r) => println!(
                    "audit trail intact: {} events, {} linked (head {}), {} pending, {} checkpoints checked, {} ms",
                    r.events, r.linked, r.head_seq, r.pending, r.checkpoints, r.elapsed_ms
                ),
                Outcome::Tampered { reason, seq, .. } => {
                    println!("audit trail TAMPERED: first broken event {seq}: {reason}")
                }
                Outcome::CannotCheck(why) => eprintln!("audit trail cannot be checked: {why}"),
            }
            Ok(outcome.exit_code())
        }
        AuditCommand::Checkpoint { out_dir } => {
            let dir = out_dir.unwrap_or_else(|| checkpoint::checkpoint_dir(&ctx.home));
            let (cp, path) = checkpoint::write(ctx, &dir).await?;
            println!(
                "checkpoint at event {} (link {}, key {}) written to the database and {}",
                cp.seq,
                hex::encode(cp.link),
                cp.key_id,
                path.display()
            );
            Ok(0)
        }
    }
}

fn operator() -> String {
    let user: String = std::env::var("USER")
        .unwrap_or_else(|_| "unknown".into())
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(40)
        .collect();
    format!("operator:{user}")
}

/// `fintrail token ...`.
pub async fn run_token(args: TokenArgs, ctx: &Context) -> anyhow::Result<u8> {
    // An administrative session: an operator is no bearer the database could check, and only
    // a credentialed actor may issue or revoke through the application role (migration 0037).
    let mut client = ctx.db.connect(DbRole::Admin).await?;
    let audit = fintrail_audit::AuditWriter::new(true);
    let actor = operator();
    match args.command {
        TokenCommand::Create { role, ttl, label, customer } => {
            let role: Role = match role.parse() {
                Ok(r) => r,
                Err(e) => {
                    let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
                    eprintln!("{e}; roles: {}", names.join(", "));
                    return Ok(2);
                }
            };
            let ttl_secs = match crate::tokens::parse_ttl_secs(&ttl) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("--ttl: {e}");
                    return Ok(2);
                }
            };
            if (role == Role::Customer) != customer.is_some() {
                eprintln!("--customer ID is required for --role customer and refused for staff roles");
                return Ok(2);
            }
            let label = label.unwrap_or_else(|| {
                if customer.is_some() {
                    "customer".into()
                } else {
                    actor.trim_start_matches("operator:").to_owned()
                }
            });
            if label.is_empty() || label.chars().count() > 200 {
                eprintln!("--label must be 1-200 characters");
                return Ok(2);
            }
            let tx = client.transaction().await?;
            let issued = insert_token(
                &audit,
                &tx,
                role,
                customer,
                &label,
                ttl_secs,
                &Issuer { actor: &actor, permission: None, request_id: None, credential: None },
            )
            .await;
            let issued = match issued {
                Ok(i) => i,
                Err(e) if e.as_db_error().is_some() => {
                    eprintln!(
                        "token refused by the database: {}",
                        e.as_db_error().map(|d| d.message()).unwrap_or_default()
                    );
                    return Ok(2);
                }
                Err(e) => return Err(e.into()),
            };
            tx.commit().await?;
            eprintln!("token {} for role {} expires {}", issued.token_id, issued.role, issued.expires_at.to_rfc3339());
            println!("{}", issued.token);
            Ok(0)
        }
        TokenCommand::Revoke { token_id } => {
            let tx = client.transaction().await?;
            let by = Issuer { actor: &actor, permission: None, request_id: None, credential: None };
            match revoke(&audit, &tx, token_id, &by).await {
                Ok(r) => {
                    tx.commit().await?;
                    println!("token {} revoked at {}", r.token_id, r.revoked_at.to_rfc3339());
                    Ok(0)
                }
                Err(e) => {
                    eprintln!("{}", e.message);
                    Ok(1)
                }
            }
        }
    }
}
