//! `fintrail serve`: the HTTP adapter. Axum routes, authentication and authorization, media,
//! KYC/KYB handlers, the mapping of ledger and audit types to HTTP responses, and the OpenAPI
//! document (35 operations). Business rules live in `fintrail-domain`; wallets, transfers and
//! holds in `fintrail-ledger` (its errors map to responses in `error.rs`); the trail is written
//! through `fintrail-audit`.
//!
//! # Request path
//! Our accept loop (`server::serve`: hyper HTTP/1 with a header-read timeout, the peer
//! address as `ConnectInfo`), then middleware, in order: request id (an incoming id is kept
//! only if ≤ 64 chars of `[A-Za-z0-9._-]`) → access log (`log_class = "access"`) → request and
//! body-read timeouts → panic guard (JSON 500 without details) → authentication →
//! authorization → handler marker → handler (`limits`). Handlers take `State<AppState>` and
//! `Caller` (principal, granted permission, request id). No tower-http (docs/adr/0001).
//!
//! # Invariants enforced here
//! - **One permission per endpoint**: `routes::Registry::add(method, path, permission, route)` is
//!   the only way to add a protected route. Public by design: `GET /healthz`, `GET /openapi.json`,
//!   `GET /v1/media/download` (authorized by our HMAC signature, which only `kyc.media.read` can
//!   obtain and which names the issuing token; the URL dies with that token; redemptions are
//!   audited, refusals rate-limited per address and aggregated, one event per window), and
//!   `POST /internal/jobs/{name}` (`internal_jobs`: Cloud Scheduler's Google-signed OIDC token,
//!   not a bearer token of ours; every refusal, 401 included, is audited as issue #15 asks).
//! - **The compliance console** (`/console`, [`console`]): `fintrail-console`'s router, mounted
//!   here; its pages are guarded by its own session check (cookie → session → token, CSRF, the
//!   page's one permission) and everything it decides or writes runs this crate's code through
//!   [`fintrail_console::Host`] (token lookup, `record_denial`, `transition`, media signing).
//! - **Customers reach only their own data**: `/v1/me/...` routes scope by the token's customer
//!   id; another customer's id answers 404 and is audited as `access.denied` (KYC, media and
//!   ledger routes). 401s are logged and rate-limited per address (`refusals`), never audited
//!   (an unauthenticated client must not grow the trail); 403s are audited, the subject cut
//!   to 200 characters with a marker (`auth::bounded_subject`).
//! - **KYC/KYB transitions**: the transition procedure (`transition`, `machines::apply_transition`)
//!   locks the record (`SELECT ... FOR UPDATE`), checks the domain table and the endpoint's
//!   permission, writes the history row, the state change and the audit event in one transaction.
//!   Triggers (migrations 0011/0012) check it again: only listed transitions, history from this
//!   transaction, no insert in a non-initial state, no delete, history immutable, one winner.
//! - **Tokens**: SHA-256 of 256-bit random tokens is stored, never the token. Resolved tokens are
//!   cached in-process ≤ 2 s and never past expiry; revoking through this server drops the entry
//!   at once, elsewhere within 2 s.
//! - **Media**: one `MediaStore` interface: local files under `FINTRAIL_HOME/media` (staging +
//!   rename, our keys, no path traversal) by default, a GCS bucket when `FINTRAIL_MEDIA_BUCKET`
//!   is set (`media::gcs`: XML API over ureq, V4 URLs signed keylessly by the media signer's IAM
//!   `signBlob`, never handed out). Uploads ≤ 10 MiB, exact content types, streamed to a staging
//!   file with SHA-256, only while the case is `started` or `needs_resubmission`; the object is
//!   stored before its row and removed again if the row is refused; a store that is down answers
//!   503. Signed URLs (both stores): ours, HMAC-SHA256 over (method, object, expiry, key id,
//!   issuing token), default 15 min, cap 7 days, verified in constant time, then the object is
//!   streamed; downloads send `no-store`, `nosniff`, `attachment`.
//! - **HTTP status contract**: 400 malformed JSON/path/query/`Idempotency-Key`; 413 (64 KiB JSON
//!   body); 415; 422 only for what the OpenAPI schema states; 404 unknown or other customers' ids;
//!   409 for every ledger rule with its own `code`. A rule JSON Schema cannot state must not be a
//!   422. Integers in bodies are integer literals only (`42`; `42.0`, `4.2e1` → 422, nothing
//!   rounded through an `f64`); the OpenAPI document writes integer bounds as integers.
//!
//! # Extending
//! A route module has `pub(crate) fn routes(reg: &mut Registry)`, one line in `routes::build`, and
//! its handler in the OpenAPI `paths(...)` (the matrix test fails otherwise, or if the description
//! does not name the permission in backticks). State: a field in `AppState`'s `Inner`.
//!
//! # Dependencies
//! domain, db, audit, ledger (with its `openapi` feature: its views describe themselves), console; axum 0.8 (http1/json/query/tokio),
//! hyper 1 / hyper-util / tower-service / http-body (the accept loop and the body timeout; all
//! already under axum), deadpool-postgres 0.14, utoipa 5,
//! sha2/hmac/subtle, base64, rand, chrono (the one time crate), tokio-util, futures-util, ureq
//! with rustls (GCS media and IAM Credentials only; already in the binary through
//! fintrail-jobs), thiserror. Feature `testing`: the fake blob signer and the fake-gcs-server
//! harness (`media::testing`, ring), for tests only.
//!
//! # Tests
//! Real cluster, real HTTP on 127.0.0.1:0: every (from, to) pair of KYC/KYB through raw SQL with
//! the app's credentials and through the API (the accepted set equals the Rust table); the
//! authorization matrix (every endpoint × every role); cross-customer access → 404 + audited
//! denial; middleware order; bad input; OpenAPI covers every endpoint; media limits and signed
//! URLs on both stores (GCS on the `fake-gcs-server` emulator the tests start, installed by
//! `./dev setup`); ledger HTTP contract. schemathesis (`schemathesis.sh`, `--checks all`, run by `./dev test`).

pub mod audit_api;
pub mod auth;
pub mod cli;
pub mod console;
pub mod error;
pub mod extract;
pub mod identity;
pub mod internal_jobs;
pub mod kyb;
pub mod kyc;
pub mod ledger;
pub mod limits;
/// Where each state machine lives in the database (moved to `fintrail-jobs`: the periodic jobs
/// transition records through the same code; re-exported so paths stay `fintrail_api::machines`).
pub use fintrail_jobs::machines;
pub mod media;
pub mod openapi;
pub mod refusals;
pub mod routes;
pub mod server;
pub mod state;
pub mod tokens;
pub mod transition;
pub mod validate;

pub use server::{start_server, start_with, ServerHandle};
pub use state::{AppConfig, AppState};
