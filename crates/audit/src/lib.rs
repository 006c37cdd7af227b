//! The tamper-evident audit trail: one append path, the sequencer and hash chain, signed
//! checkpoints, and verification.
//!
//! # What it owns
//! - **Append**: `append` (one event) and `append_many` (a batch, one statement), typed with
//!   `fintrail_domain::audit::AuditAction`, called inside the transaction of the change they
//!   record. This is the only code that writes `audit_events`, and it gives every event the same
//!   canonical JSON encoding of `before`/`after` (stored as text: the chain hashes exactly those
//!   bytes). After commit, the caller wakes the sequencer.
//! - **Sequencer**: one per database (a session advisory lock), running in the server. Writers
//!   insert an unchained row (`seq` from a sequence: no hot row); the sequencer links committed
//!   events in `seq` order, in batches, after commit:
//!   link(n) = SHA-256("fintrail.audit.chain.v1\0" ‖ link(n-1) ‖ canonical(event n)), genesis =
//!   32 zero bytes; links go to `audit_chain` (insert-only).
//!   Commit order ≠ sequence order: it links only a gap-free prefix. The insert trigger takes the
//!   writer's xid before its seq, so a missing seq N below a committed event belongs to a
//!   transaction in the reading snapshot's `xip` list; N is skipped only when every xid of that
//!   snapshot has ended and N is still absent (rolled back). Its session runs with
//!   `synchronous_commit = off` (links are a pure function of committed events) and at most one
//!   round per 100 ms, so under load it batches.
//! - **Checkpoints**: HMAC-SHA256 over (seq, link) with the checkpoint key from `fintrail-db`
//!   (key id = first 8 bytes of SHA-256(key)); stored in `audit_checkpoints` and as JSON files in
//!   `FINTRAIL_HOME/audit-checkpoints/` (ship those off the machine). `fintrail audit checkpoint`
//!   writes one; the server writes one every `--checkpoint-interval-secs` (300) when the head moved.
//! - **Verify** (`fintrail audit verify`, as the app role): checks every checkpoint signature
//!   (database and files), then cuts the trail into `seq` ranges (`scan`): parallel readers,
//!   each with two connections sharing one exported REPEATABLE READ snapshot, stream a range's
//!   events and links with binary `COPY ... TO STDOUT`, parse rows in place (`copy_row`), hash
//!   each event onto its *stored* predecessor link (so ranges are independent: up to the first
//!   break stored and recomputed links agree), and the walk folds the ranges in seq order; it
//!   reports the first broken event: modified or reordered (link mismatch),
//!   deleted (chained but missing), inserted (present but unchained below the head), truncated or
//!   recomputed chain (a signed checkpoint disagrees or covers missing events). Exit 0 intact,
//!   1 tampered, 2 cannot check. Events committed after the head are pending, not flagged.
//! - **Retention** (`retention::purge_through`): `fintrail.audit_purge_through(<checkpoint id>,
//!   <key>)`, as the owner, checks the checkpoint's signature and that it lies on the stored
//!   chain, removes events and links up to it and records it as the verification anchor. It runs
//!   as `fintrail_retention` (NOLOGIN, no member): the only role that may delete from the trail or
//!   write an anchor. `verify` checks every anchor against a signed checkpoint (database or file):
//!   an anchor nobody signed names the erased range.
//!
//! # Invariants enforced in PostgreSQL (migrations 0014, 0034)
//! App role: INSERT + SELECT on events, SELECT on the chain and checkpoints; only
//! `fintrail_sequencer` inserts links and checkpoints. Triggers refuse UPDATE/DELETE, even for the
//! owner, except inside `audit_purge_through` (runs as `fintrail_retention`; no session flag
//! unlocks anything); TRUNCATE always. A BEFORE INSERT trigger assigns `txid`, then `seq`, then
//! `at`: a writer cannot choose them. DDL by the owner or a superuser (DISABLE TRIGGER, replaced
//! functions) is outside what the database can prevent: it is detected by `verify` against the
//! checkpoint files, which it reads by default.
//!
//! Residual risk of any hash chain: events after the last checkpoint can be rewritten by a
//! superuser who also recomputes the chain. Checkpoint often and export the files.
//!
//! # Dependencies
//! `fintrail-domain` (event types), `fintrail-db` (connections, keys); `tokio-postgres`,
//! `deadpool-postgres`, `sha2`, `hmac`, `chrono`, `serde_json`, `futures-util`.
//!
//! # Tests
//! Against the real cluster (`fintrail_db::testing`): update, delete, insert, reorder, tail
//! truncation after a checkpoint, a recomputed chain and a forged checkpoint file each exit 1
//! naming the event; untouched → 0; missing key → 2; append-only for app and owner; retention
//! purge; `sequencer_chains_in_sequence_order_not_commit_order`; `insert_is_detected_at_the_event`
//! (rollback gap); `parallel_readers_name_the_same_first_broken_event_as_a_sequential_walk`
//! (50k events, tampering at and between range boundaries, several readers vs one).

pub mod chain;
pub mod checkpoint;
mod copy_row;
pub mod retention;
mod scan;
pub mod verify;
pub mod writer;

pub use writer::{AuditWriter, Credential, NewEvent};

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
