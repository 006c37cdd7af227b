//! `fintrail-ledger`: wallets and transfers, a double-entry ledger that never loses or
//! duplicates money. No HTTP here: the adapter (`fintrail-api`) parses and authorizes a
//! request, hands the ledger a parsed posting with [`Who`] asked and its [`IdemKey`], and maps
//! the answer ([`views`], [`Reply`], [`Error`]) to a response.
//!
//! * [`engine`]: the posting engine, a per-process batcher (group commit) that applies queued
//!   postings in one transaction per batch and answers each after commit.
//! * [`holds`]: two-phase transfers (reserve, post, void, expire), one transaction each.
//! * [`wallets`]: opening wallets, reading wallets, statements and transfers.
//! * [`idempotency`]: keys scoped per principal, bound to a hash of the request, written in the
//!   same transaction as the money movement; a replay answers the stored response.
//! * [`check`] and [`cli`]: `fintrail ledger check`, the invariants proven on a live database.
//!
//! Where the invariants live: the rules are `fintrail_domain::ledger`'s (pure); the engine and
//! holds decide in Rust against locked balances before writing; the database enforces them
//! again (`0000_baseline.sql`, ledger section: entries by construction, floor CHECKs, triggers); [`check`]
//! proves them after the fact. Every money movement appends its audit event through
//! `fintrail_audit::AuditWriter` in the same transaction.

pub mod check;
pub mod cli;
pub mod engine;
pub mod error;
pub mod holds;
pub mod idempotency;
pub mod views;
pub mod wallets;

pub use engine::{Ledger, Outcome, PostingRequest, Who};
pub use error::{Error, Result};
pub use idempotency::{IdemKey, Reply, Stored};
