//! The audit trail: the writer (one event per change, in the change's transaction), the
//! sequencer (links committed events into the hash chain, after commit, in sequence order),
//! signed checkpoints, and verification.

pub mod chain;
pub mod checkpoint;
pub mod verify;
pub mod writer;

pub use writer::{AuditWriter, NewEvent};

/// SELECT list shared by the sequencer and the verifier: both must read an event exactly the
/// same way (jsonb as its canonical text), or links would not match.
pub const EVENT_COLUMNS: &str =
    "e.seq, e.at, e.actor, e.on_behalf_of, e.action, e.subject, e.permission, e.allowed, e.request_id, e.before, e.after";

/// Decodes a row selected with [`EVENT_COLUMNS`] starting at column `base`.
pub fn record_from_row(
    row: &tokio_postgres::Row,
    base: usize,
) -> Result<fintrail_domain::audit::AuditRecord, tokio_postgres::Error> {
    let at: chrono::DateTime<chrono::Utc> = row.try_get(base + 1)?;
    Ok(fintrail_domain::audit::AuditRecord {
        seq: row.try_get(base)?,
        at_unix_micros: at.timestamp_micros(),
        actor: row.try_get(base + 2)?,
        on_behalf_of: row.try_get(base + 3)?,
        action: row.try_get(base + 4)?,
        subject: row.try_get(base + 5)?,
        permission: row.try_get(base + 6)?,
        allowed: row.try_get(base + 7)?,
        request_id: row.try_get(base + 8)?,
        before: row.try_get(base + 9)?,
        after: row.try_get(base + 10)?,
    })
}
