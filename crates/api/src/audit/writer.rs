//! Appends audit events inside the caller's transaction. Writers only take a sequence number
//! and insert a row: no shared "last hash" row, so writers never serialize on the chain.

use std::sync::Arc;

use fintrail_domain::audit::AuditAction;
use fintrail_domain::Permission;
use serde_json::Value;
use tokio::sync::Notify;
use tokio_postgres::GenericClient;

/// One event to append. PII is referenced by id in `before` / `after`, never copied.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Who acted.
    pub actor: String,
    /// The data subject (`customer:<id>`), if any.
    pub on_behalf_of: Option<String>,
    /// What happened.
    pub action: AuditAction,
    /// What it happened to (`kyc_case:<id>`).
    pub subject: String,
    /// The permission that allowed it (or the one that was missing).
    pub permission: Option<Permission>,
    /// Allowed or denied.
    pub allowed: bool,
    /// The request id.
    pub request_id: Option<String>,
    /// Before.
    pub before: Option<Value>,
    /// After.
    pub after: Option<Value>,
}

impl NewEvent {
    /// An allowed action with no before/after.
    pub fn allowed(
        actor: impl Into<String>,
        action: AuditAction,
        subject: impl Into<String>,
        permission: Option<Permission>,
    ) -> Self {
        Self {
            actor: actor.into(),
            on_behalf_of: None,
            action,
            subject: subject.into(),
            permission,
            allowed: true,
            request_id: None,
            before: None,
            after: None,
        }
    }
    /// Sets `on_behalf_of`.
    pub fn on_behalf_of(mut self, who: Option<String>) -> Self {
        self.on_behalf_of = who;
        self
    }
    /// Sets the request id.
    pub fn request(mut self, request_id: Option<&str>) -> Self {
        self.request_id = request_id.map(str::to_owned);
        self
    }
    /// Sets before / after.
    pub fn change(mut self, before: Option<Value>, after: Option<Value>) -> Self {
        self.before = before;
        self.after = after;
        self
    }
    /// Marks the event as a denial.
    pub fn denied(mut self) -> Self {
        self.allowed = false;
        self
    }
}

/// The audit writer (cheap to clone). `enabled = false` exists only for the benchmark's
/// baseline ("audit off"); the server always runs with it on.
#[derive(Clone, Debug)]
pub struct AuditWriter {
    enabled: bool,
    chain_wakeup: Arc<Notify>,
}

const INSERT: &str = "INSERT INTO fintrail.audit_events \
    (actor, on_behalf_of, action, subject, permission, allowed, request_id, before, after) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING seq";

impl AuditWriter {
    /// A writer; `enabled` must be true outside benchmarks.
    pub fn new(enabled: bool) -> Self {
        Self { enabled, chain_wakeup: Arc::new(Notify::new()) }
    }

    /// Whether events are written.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Woken after commits so the sequencer chains promptly.
    pub fn chain_wakeup(&self) -> Arc<Notify> {
        self.chain_wakeup.clone()
    }

    /// Appends `ev` in the caller's transaction; returns its sequence number.
    pub async fn append<C: GenericClient + Sync>(
        &self,
        tx: &C,
        ev: &NewEvent,
    ) -> Result<Option<i64>, tokio_postgres::Error> {
        if !self.enabled {
            return Ok(None);
        }
        let stmt = tx.prepare(INSERT).await?;
        self.insert(tx, &stmt, ev).await
    }

    /// [`AuditWriter::append`] with the pool's per-connection statement cache (request path:
    /// one round trip instead of two).
    pub async fn append_cached(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        ev: &NewEvent,
    ) -> Result<Option<i64>, tokio_postgres::Error> {
        if !self.enabled {
            return Ok(None);
        }
        let stmt = tx.prepare_cached(INSERT).await?;
        self.insert(&**tx, &stmt, ev).await
    }

    async fn insert<C: GenericClient + Sync>(
        &self,
        tx: &C,
        stmt: &tokio_postgres::Statement,
        ev: &NewEvent,
    ) -> Result<Option<i64>, tokio_postgres::Error> {
        let permission = ev.permission.map(|p| p.as_str());
        // Compact JSON with sorted keys (serde_json's map is ordered): the exact bytes chained.
        let before = ev.before.as_ref().map(|v| v.to_string());
        let after = ev.after.as_ref().map(|v| v.to_string());
        let row = tx
            .query_one(
                stmt,
                &[
                    &ev.actor,
                    &ev.on_behalf_of,
                    &ev.action.as_str(),
                    &ev.subject,
                    &permission,
                    &ev.allowed,
                    &ev.request_id,
                    &before,
                    &after,
                ],
            )
            .await?;
        let seq: i64 = row.get(0);
        tracing::info!(
            log_class = "audit",
            seq,
            actor = %ev.actor,
            action = ev.action.as_str(),
            subject = %ev.subject,
            permission = permission.unwrap_or(""),
            allowed = ev.allowed,
            request_id = ev.request_id.as_deref().unwrap_or(""),
            "audit event"
        );
        Ok(Some(seq))
    }

    /// Call after the transaction that appended events committed.
    pub fn committed(&self) {
        if self.enabled {
            self.chain_wakeup.notify_one();
        }
    }

    /// Appends `ev` in a transaction of its own (denied access: the request's own work, if
    /// any, was rolled back, but the denial must stay on record).
    pub async fn append_alone(
        &self,
        client: &mut tokio_postgres::Client,
        ev: &NewEvent,
    ) -> Result<Option<i64>, tokio_postgres::Error> {
        let tx = client.transaction().await?;
        let seq = self.append(&tx, ev).await?;
        tx.commit().await?;
        self.committed();
        Ok(seq)
    }
}
