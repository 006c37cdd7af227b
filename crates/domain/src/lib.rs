//! The fintrail domain: the types and rules that make invalid states unrepresentable.
//!
//! This crate does no I/O: no files, no network, no database, no clock reads. Time is passed in,
//! never read here, so every rule is testable exhaustively. Every other crate of ours may depend
//! on it; it depends on none of them.
//!
//! # What it owns
//! - `access`: the one `Permission` enum (`as_str()`, `ALL`) and the one `Role` table (role → set
//!   of permissions; roles: customer, KYC analyst, compliance officer, auditor, admin).
//! - `state_machine`: `KycState`, `KybState` and their transition tables `(from, to, permission)`
//!   behind the `State` trait (`State::transition(from, to)` names the permission a transition
//!   needs, or refuses it). The database's `*_allowed_transitions` tables (the baseline) hold a copy of these tables,
//!   written by hand; tests prove the two equal pair by pair.
//! - `ledger`: money. `Currency` (an assigned ISO 4217 code of `data/iso4217.csv`, embedded at
//!   compile time and shared with SQL's `currencies` table; its `minor_units`), `Amount` (positive, at most
//!   `AMOUNT_MAX_MINOR` = 10^15 minor units), wallet kinds and their floors, transfer kinds, hold
//!   states, `WalletState`, `apply_posting` / `reserve` (checked i64 arithmetic, i128 sums,
//!   `balance - held >= floor`), `check_entries` / `check_wallet` (what `ledger check` proves),
//!   `IdempotencyKey`, and `LedgerError`.
//! - `audit`: the audit event types: `AuditAction` (every action, with its stable stored name,
//!   including the ledger's) and `AuditRecord` (one stored event exactly as the chain covers it).
//! - `media`: media kinds, their exact content types, the upload size limit (10 MiB), signed-URL
//!   TTL bounds (default 15 min, hard cap 7 days).
//! - `db_role`: `DbRole`, the PostgreSQL roles by name (admin, owner, app, replicator).
//!
//! # Extending
//! - A permission: a variant in `Permission`, its name in `as_str` and `ALL`, then list it in the
//!   roles of `Role::permissions`. The API's authorization matrix test walks every endpoint ×
//!   every role automatically.
//! - A transition: add it to the Rust table and to the SQL table in a new migration; the
//!   state-machine tests fail until both agree.
//! - An audit action: a variant in `AuditAction` with a stable name (never rename a stored one).
//!
//! # Dependencies
//! `serde`, `thiserror`; `sha2` (pure hashing for the audit chain). Dev: `proptest`,
//! `fintrail-testseed` (replayable seeds).
//!
//! # Tests
//! Unit tests and proptests beside the code: permission names unique and well formed, customers
//! self-service only, auditors change nothing; both machines consistent, no transition mixing
//! customer and review permissions; posting rules and holds at the bounds, each ledger violation
//! found; currency, amount and idempotency-key parsing; audit action names unique, the chain link
//! depends on the previous link and on every field; media types and TTL bounds.

pub mod access;
pub mod audit;
pub mod db_role;
pub mod ledger;
pub mod media;
pub mod state_machine;

pub use access::{Permission, PrincipalKind, Role};
pub use state_machine::{KybState, KycState, State, Transition};
