//! What only the binary and the tests use, kept out of the production library: the
//! benchmarks (`fintrail bench transfers`, `bench audit`, `bench console`), `fintrail up`'s demo data
//! and the fixtures the integration tests and benchmarks build on.
//!
//! Why a crate of its own: a benchmark drives the real server over HTTP, so it needs an HTTP
//! client ([`http`], on hyper, already in the tree through axum); keeping it here leaves
//! `fintrail-api` the HTTP adapter only. Dependencies point inward: tooling → api, ledger, audit, db, domain; nothing
//! of ours depends on tooling except the binary and tests.

pub mod bench_audit;
pub mod bench_console;
pub mod bench_transfers;
pub mod demo;
pub mod fixtures;
pub mod http;

pub use demo::{seed_demo, DemoInfo};
