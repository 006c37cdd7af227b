//! `AppState`: what every handler can reach. Extend it (issue 4: a ledger service) by adding
//! a field to [`Inner`] and setting it in [`AppState::new`].

use std::sync::{Arc, Mutex};

use fintrail_db::{Context, DbRole};

use crate::media::signing::UrlSigner;
use crate::media::store::{MediaConfig, MediaStore};
use fintrail_audit::AuditWriter;

/// Tunables of one server instance.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// Write audit events (always true except for the benchmark's baseline).
    pub audit_enabled: bool,
    /// Run the chain sequencer in this process.
    pub run_sequencer: bool,
    /// Record the middleware stages each request passed (tests only).
    pub record_stages: bool,
    /// Most pooled database connections.
    pub pool_size: usize,
    /// Seconds between automatic signed checkpoints (0 = never).
    pub checkpoint_interval_secs: u64,
    /// Seconds of one refusal window: refused unauthenticated downloads are written as one
    /// aggregated event per window ([`crate::refusals`]).
    pub refusal_window_secs: u64,
    /// Header-read, body-read and request timeouts ([`crate::limits`]).
    pub limits: crate::limits::Limits,
    /// Where media bytes live: local files (default) or GCS (`fintrail serve` reads it from
    /// the environment, [`MediaConfig::from_env`]).
    pub media: MediaConfig,
    /// Who may call `/internal/jobs/*` (production: from the typed configuration); `None`
    /// reads `FINTRAIL_JOBS_*` when the router is built (local use, tests).
    pub jobs_oidc: Option<fintrail_jobs::oidc::OidcConfig>,
    /// Ledger batcher lanes: batches in flight at once, one connection each
    /// ([`fintrail_ledger::engine::LANES_DEFAULT`]; 1..=[`fintrail_ledger::engine::LANES_MAX`]).
    pub ledger_lanes: usize,
}

impl Default for AppConfig {
    fn default() -> Self {
        Self {
            audit_enabled: true,
            run_sequencer: true,
            record_stages: false,
            pool_size: 16,
            checkpoint_interval_secs: 300,
            refusal_window_secs: 60,
            limits: crate::limits::Limits::default(),
            media: MediaConfig::Local,
            jobs_oidc: None,
            ledger_lanes: fintrail_ledger::engine::LANES_DEFAULT,
        }
    }
}

/// Shared state (cheap to clone).
#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

/// The parts of [`AppState`].
pub struct Inner {
    /// Pool of `fintrail_app` connections.
    pub pool: deadpool_postgres::Pool,
    /// The audit writer.
    pub audit: AuditWriter,
    /// Where media bytes live.
    pub media: Arc<dyn MediaStore>,
    /// Signs and verifies media download URLs.
    pub signer: UrlSigner,
    /// Middleware stage recorder (tests), bounded.
    pub stages: Option<Stages>,
    /// The database and home (for the sequencer and checkpoints).
    pub ctx: Context,
    /// The configuration it was built with.
    pub config: AppConfig,
    /// The ledger's posting engine (group commit).
    pub ledger: fintrail_ledger::Ledger,
    /// Authenticated tokens, briefly (see [`crate::auth::token_cache`]).
    pub tokens: crate::auth::token_cache::TokenCache,
    /// Unauthenticated refusals: rate limit and aggregation.
    pub refusals: crate::refusals::Refusals,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Builds the state: a connection pool as the app role, the media store of
    /// `config.media` (its local parts under `home.media_dir()`) and the URL signing key under
    /// `home.keys_dir()`.
    pub fn new(ctx: &Context, config: AppConfig) -> anyhow::Result<Self> {
        let mut pg = ctx.db.config(DbRole::App)?;
        // Bounded statements and transactions for every pooled connection (issue 16, item 16).
        pg.options(config.limits.pg_options());
        // TLS as the database says (`verify-full` by default, issue #14): one rustls
        // configuration for the pool; a pooled connection pays its handshake once.
        let mgr = deadpool_postgres::Manager::from_config(
            pg,
            ctx.db.tls().connector(),
            deadpool_postgres::ManagerConfig { recycling_method: deadpool_postgres::RecyclingMethod::Fast },
        );
        let pool = deadpool_postgres::Pool::builder(mgr)
            .max_size(config.pool_size)
            // Most recently returned first: a steady load runs on a few warm backends (their
            // catalog caches, cached plans, CPU caches) instead of rotating through every
            // connection of the pool. Measured (`fintrail bench transfers`, alternated short
            // runs): ratio 0.63-0.67 with FIFO, 0.79-0.85 with LIFO.
            .queue_mode(deadpool_postgres::QueueMode::Lifo)
            .wait_timeout(Some(std::time::Duration::from_secs(10)))
            .create_timeout(Some(std::time::Duration::from_secs(10)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()?;
        let key = fintrail_db::keys::load_or_create(&ctx.home.keys_dir(), fintrail_db::keys::MEDIA_URL_KEY)?;
        let media: Arc<dyn MediaStore> = config.media.build(ctx.home.media_dir())?;
        tracing::info!(log_class = "app", media = %config.media.describe(), "media store");
        Ok(AppState(Arc::new(Inner {
            ledger: fintrail_ledger::Ledger::with_lanes(pool.clone(), config.ledger_lanes)?,
            pool,
            audit: AuditWriter::new(config.audit_enabled),
            media,
            signer: UrlSigner::new(key),
            stages: config.record_stages.then(Stages::default),
            ctx: ctx.clone(),
            config,
            tokens: Default::default(),
            refusals: Default::default(),
        })))
    }

    /// Records that request `request_id` reached `stage` (no-op unless recording).
    pub fn stage(&self, request_id: &str, stage: &'static str) {
        if let Some(s) = &self.stages {
            s.record(request_id, stage);
        }
    }
}

/// Which middleware stages each request reached (bounded ring; tests only).
#[derive(Default)]
pub struct Stages(Mutex<Vec<(String, &'static str)>>);

/// Most stage records kept.
const STAGES_MAX: usize = 100_000;

impl Stages {
    fn record(&self, request_id: &str, stage: &'static str) {
        let mut v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if v.len() >= STAGES_MAX {
            v.remove(0);
        }
        v.push((request_id.to_owned(), stage));
    }
    /// The stages request `request_id` reached, in order.
    pub fn of(&self, request_id: &str) -> Vec<&'static str> {
        let v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        v.iter().filter(|(r, _)| r == request_id).map(|(_, s)| *s).collect()
    }
}
