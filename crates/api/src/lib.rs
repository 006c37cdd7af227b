//! `fintrail serve`: the HTTP API — identity, KYC/KYB state machines (checked here and by
//! PostgreSQL triggers), single-permission access, signed media URLs, and the tamper-evident
//! audit trail.
//!
//! Request path: request id → access log → authentication → authorization (one permission per
//! route, from `fintrail_domain::access`) → handler. Every change writes its audit event in
//! the same transaction; a single sequencer links events into a hash chain after commit.

pub mod audit_api;
pub mod auth;
pub mod cli;
pub mod error;
pub mod extract;
pub mod identity;
pub mod kyb;
pub mod kyc;
pub mod ledger;
pub mod machines;
pub mod media;
pub mod openapi;
pub mod routes;
pub mod server;
pub mod state;
pub mod tokens;
pub mod transition;
pub mod validate;

pub use server::{start_server, start_with, ServerHandle};
pub use state::{AppConfig, AppState};
