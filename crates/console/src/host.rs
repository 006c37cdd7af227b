//! What the console needs from the server that mounts it. `fintrail-api` implements [`Host`]
//! over its own state, so that every check and every write the console causes runs the API's
//! code: the token lookup (and its cache), the refusal rate limit, `record_denial`, the one
//! transition procedure (`fintrail_jobs::machines` underneath) and the media URL signing.
//! The console itself only reads (through [`Host::pool`]) and writes its own session events.

use std::future::Future;
use std::pin::Pin;

use axum::http::Extensions;
use fintrail_audit::AuditWriter;
use fintrail_domain::{KybState, KycState, Permission, Role};

/// A boxed future (the trait is used as `Arc<dyn Host>`).
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A staff member, as their bearer token names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staff {
    /// The token's id (sessions and signed URLs name it; revoking it ends them).
    pub token_id: i64,
    /// The token's role.
    pub role: Role,
    /// The token's label (the staff member's name).
    pub label: String,
    /// What this request proved itself with: the bearer at login, the session's secret after
    /// it. Presented with the events the request writes, so that the database can check their
    /// actor (migrations 0037, 0042). Never printed.
    pub credential: Option<fintrail_audit::Credential>,
}

/// A staff member acting under one permission, in one request: the console's equivalent of
/// the API's `Caller`, so the host records actor, permission and request id as the API does.
#[derive(Debug, Clone)]
pub struct Acting {
    /// Who.
    pub staff: Staff,
    /// The page's or action's one permission (granted by the role).
    pub permission: Permission,
    /// The request id (the API's middleware chose it).
    pub request_id: String,
}

/// An error answered by the host: the HTTP status and code the API would have answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostError {
    /// HTTP status.
    pub status: u16,
    /// Machine-readable code (`invalid_transition`, `forbidden`, ...).
    pub code: String,
    /// Human-readable explanation (never internal details: the host logs those).
    pub message: String,
}

impl HostError {
    /// Any status.
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self { status, code: code.to_owned(), message: message.into() }
    }
    /// 500, logged with its details, shown without them.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(log_class = "app", error = %err, "console: internal error");
        Self::new(500, "internal", "internal error")
    }
}

impl From<tokio_postgres::Error> for HostError {
    fn from(e: tokio_postgres::Error) -> Self {
        if e.as_db_error().is_some_and(|d| d.code().code() == "57014") {
            tracing::warn!(log_class = "app", error = %e, "console: statement canceled");
            return Self::new(503, "timeout", "the database took too long; retry later");
        }
        Self::internal(e)
    }
}

impl From<deadpool_postgres::PoolError> for HostError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        tracing::error!(log_class = "app", error = %e, "console: database pool");
        Self::new(503, "unavailable", "database unavailable")
    }
}

/// The server the console is mounted in.
pub trait Host: Send + Sync + 'static {
    /// Connections as the application role (bounded statements, as every API request's).
    fn pool(&self) -> &deadpool_postgres::Pool;
    /// The audit writer (the console's own events: session opened / closed).
    fn audit(&self) -> &AuditWriter;
    /// The request id the server's middleware assigned to this request.
    fn request_id(&self, ext: &Extensions) -> String;
    /// Charges one unauthenticated refusal to the client's address; `Err(retry_after_secs)`
    /// when the address is over the limit (the API's 401 rate limit, shared).
    fn refuse_unauthenticated(&self, ext: &Extensions) -> Result<(), u64>;
    /// Resolves a bearer token as the API's authentication does. `Ok(None)`: unknown, expired
    /// or revoked. Customer tokens resolve to `Err` 403 (the console is for staff).
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFut<'a, Result<Option<Staff>, HostError>>;
    /// The actor string the trail records for `staff` (`staff:<token id>:<label>`).
    fn actor(&self, staff: &Staff) -> String;
    /// Records an `access.denied` event exactly as the API's authorization does.
    fn record_denial<'a>(
        &'a self,
        staff: &'a Staff,
        missing: Permission,
        subject: String,
        request_id: &'a str,
    ) -> BoxFut<'a, Result<(), HostError>>;
    /// The API's KYC transition procedure (lock, table, permission, history, state, event).
    fn transition_kyc<'a>(
        &'a self,
        acting: &'a Acting,
        case_id: i64,
        to: KycState,
        reason: &'a str,
    ) -> BoxFut<'a, Result<(), HostError>>;
    /// The API's KYB transition procedure.
    fn transition_kyb<'a>(
        &'a self,
        acting: &'a Acting,
        org_id: i64,
        to: KybState,
        reason: &'a str,
    ) -> BoxFut<'a, Result<(), HostError>>;
    /// The analytics DuckDB file the CDC pipeline writes (`FINTRAIL_HOME/analytics.duckdb`);
    /// the console reads it through the pipeline's read-only query socket beside it.
    fn analytics_file(&self) -> std::path::PathBuf;
    /// A short-lived signed download URL for a media object, issued and audited as the API's
    /// `POST /v1/media/{id}/signed-url` does (it names the session's token and dies with it).
    fn media_url<'a>(&'a self, acting: &'a Acting, media_id: i64) -> BoxFut<'a, Result<String, HostError>>;
}
