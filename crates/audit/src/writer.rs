//! Appends audit events inside the caller's transaction. Writers only take a sequence number
//! and insert a row: no shared "last hash" row, so writers never serialize on the chain.
//!
//! This module is the one place that appends to `fintrail.audit_events` (the benchmark's
//! bulk generator aside): [`AuditWriter::append`] for one event, [`AuditWriter::append_many`]
//! for a batch in one statement (the ledger's group commit). Both encode an event the same
//! way ([`encode_json`]): `before`/`after` as compact JSON with sorted keys, the exact bytes
//! the chain hashes.

use std::sync::Arc;

use fintrail_domain::audit::AuditAction;
use fintrail_domain::Permission;
use serde_json::Value;
use tokio::sync::Notify;
use tokio_postgres::GenericClient;

/// The bearer token a request was made with, presented with the events it writes so that the
/// database can check the actor they name (migration 0037: it hashes it, finds the live token,
/// and requires the actor to be that token's; the column is cleared before the row is stored).
/// Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential(Arc<str>);

impl Credential {
    /// The bearer text, as the client sent it (after trimming).
    pub fn new(bearer: &str) -> Self {
        Self(Arc::from(bearer))
    }
    fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential(<redacted>)")
    }
}

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
    /// The request's bearer token, when the actor is a person (checked, never stored).
    pub credential: Option<Credential>,
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
            credential: None,
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
    /// Presents the request's bearer token (see [`Credential`]).
    pub fn credential(mut self, credential: Option<Credential>) -> Self {
        self.credential = credential;
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
    (actor, on_behalf_of, action, subject, permission, allowed, request_id, before, after, credential) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING seq";

/// Appends many events in one statement, in array order (the insert trigger assigns their
/// sequence numbers in that order). Public so a caller that pipelines its statements can
/// prepare it ahead (see [`AuditWriter::append_many_prepared`]).
pub const APPEND_MANY_SQL: &str = "INSERT INTO fintrail.audit_events \
    (actor, on_behalf_of, action, subject, permission, allowed, request_id, before, after, credential) \
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bool[], $7::text[], \
    $8::text[], $9::text[], $10::text[])";

/// Most events one `append_many` may carry (a batch of the ledger is at most 1 024 postings).
pub const APPEND_MANY_MAX: usize = 4096;

/// The one encoding of `before`/`after`: compact JSON, object keys sorted (serde_json's map is
/// a `BTreeMap`: no crate in the tree enables its `preserve_order`). These bytes are stored
/// as they are and chained; `verify` reads them back unchanged.
pub fn encode_json(v: Option<&Value>) -> Option<String> {
    v.map(Value::to_string)
}

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
        let (before, after) = (encode_json(ev.before.as_ref()), encode_json(ev.after.as_ref()));
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
                    &ev.credential.as_ref().map(Credential::as_str),
                ],
            )
            .await?;
        let seq: i64 = row.get(0);
        log_event(Some(seq), ev);
        Ok(Some(seq))
    }

    /// Appends `events` in the caller's transaction with one statement, in order.
    pub async fn append_many<C: GenericClient + Sync>(
        &self,
        tx: &C,
        events: &[NewEvent],
    ) -> Result<(), tokio_postgres::Error> {
        if !self.enabled || events.is_empty() {
            return Ok(());
        }
        let stmt = tx.prepare(APPEND_MANY_SQL).await?;
        self.append_many_prepared(tx, &stmt, events).await
    }

    /// [`AuditWriter::append_many`] with `stmt` prepared from [`APPEND_MANY_SQL`] by the caller
    /// (the ledger prepares its batch's statements together and pipelines them).
    pub async fn append_many_prepared<C: GenericClient + Sync>(
        &self,
        tx: &C,
        stmt: &tokio_postgres::Statement,
        events: &[NewEvent],
    ) -> Result<(), tokio_postgres::Error> {
        if !self.enabled || events.is_empty() {
            return Ok(());
        }
        assert!(
            events.len() <= APPEND_MANY_MAX,
            "{} audit events in one statement (max {APPEND_MANY_MAX})",
            events.len()
        );
        let actors: Vec<&str> = events.iter().map(|e| e.actor.as_str()).collect();
        let behalf: Vec<Option<&str>> = events.iter().map(|e| e.on_behalf_of.as_deref()).collect();
        let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
        let subjects: Vec<&str> = events.iter().map(|e| e.subject.as_str()).collect();
        let permissions: Vec<Option<&str>> = events.iter().map(|e| e.permission.map(|p| p.as_str())).collect();
        let allowed: Vec<bool> = events.iter().map(|e| e.allowed).collect();
        let request_ids: Vec<Option<&str>> = events.iter().map(|e| e.request_id.as_deref()).collect();
        let befores: Vec<Option<String>> = events.iter().map(|e| encode_json(e.before.as_ref())).collect();
        let afters: Vec<Option<String>> = events.iter().map(|e| encode_json(e.after.as_ref())).collect();
        let credentials: Vec<Option<&str>> =
            events.iter().map(|e| e.credential.as_ref().map(Credential::as_str)).collect();
        tx.execute(
            stmt,
            &[
                &actors,
                &behalf,
                &actions,
                &subjects,
                &permissions,
                &allowed,
                &request_ids,
                &befores,
                &afters,
                &credentials,
            ],
        )
        .await?;
        for e in events {
            log_event(None, e);
        }
        Ok(())
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

/// The `audit` log line of an appended event (its sequence number when known).
fn log_event(seq: Option<i64>, ev: &NewEvent) {
    tracing::info!(
        log_class = "audit",
        seq = seq.unwrap_or(0),
        actor = %ev.actor,
        action = ev.action.as_str(),
        subject = %ev.subject,
        permission = ev.permission.map(|p| p.as_str()).unwrap_or(""),
        allowed = ev.allowed,
        request_id = ev.request_id.as_deref().unwrap_or(""),
        "audit event"
    );
}
