//! The fintrail domain: the types that make invalid states unrepresentable.
//!
//! This crate does no I/O (no files, no network, no database, no clock reads):
//! every other crate depends on it, it depends on none of them. Time is passed
//! in, never read here, so every rule is testable exhaustively.

pub mod access;
pub mod audit;
pub mod db_role;
pub mod ledger;
pub mod media;
pub mod state_machine;

pub use access::{Permission, PrincipalKind, Role};
pub use state_machine::{KybState, KycState, State, Transition};
