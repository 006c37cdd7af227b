//! The compliance console: server-rendered HTML under `/console`, served by `fintrail serve`
//! (the API mounts [`router`]). For the people who review KYC and KYB cases and for the
//! auditor who asks who did what, with which permission.
//!
//! # Pages and actions
//! Every page and action requires exactly one [`Permission`], declared where it is registered
//! ([`registry::Pages::add`], the only way to add one) and listed by [`router`] for the
//! authorization matrix test. Public by design: `GET /console` (a redirect), the login form
//! (`GET`/`POST /console/login`: it exchanges a staff bearer token for a session), `POST
//! /console/logout` (ends one's own session; CSRF-checked) and the stylesheet.
//! - `GET /console/kyc` (`kyc.case.read`): KYC cases awaiting review; `GET /console/kyb`
//!   (`kyb.org.read`): organizations in `potential_match` / `manual_review`. Filter by state,
//!   sort oldest / newest waiting, bounded pages ([`PAGE_SIZES`]), keyset pagination on
//!   `(updated_at, id)` over partial indexes (migration 0042): never an OFFSET.
//! - `GET /console/kyc/{id}` (`kyc.case.read`): the case, its history (actor, reason, request
//!   id), its documents, and one form per transition the viewer's role may perform from the
//!   current state (every transition asks for a reason, as the state machine's history does).
//!   `POST /console/kyc/{id}/transitions` (`kyc.case.review`).
//! - `GET /console/media/{id}` (`kyc.media.read`): issues a 60-second signed URL through the
//!   API's signing (audited as `media.signed_url.issued`) and redirects to it: the case page's
//!   image previews and PDF links. Shown only to roles that hold the permission.
//! - `GET /console/kyb/{id}` (`kyb.org.read`), `POST .../screening` (`kyb.org.screen`),
//!   `POST .../decision` (`kyb.org.decide`): as the API splits them.
//! - `GET /console/audit` (`audit.read`): the trail, newest first, filtered by actor, subject,
//!   action and time, keyset on `seq` over the indexes of migration 0042; `GET
//!   /console/audit/events/{seq}`: one event with before / after and its chain link; `GET
//!   /console/audit/integrity`: chain head, unlinked events, the `audit-verify` job's last
//!   runs and the signed checkpoints. `GET /console/jobs` (`audit.read`): the periodic jobs'
//!   latest run each and the latest runs (`job_runs`).
//! - `GET /console/customers/{id}` (`identity.customer.read`): profile and KYC cases;
//!   `.../wallets` (`wallet.read`): balances and holds (an organization's too:
//!   `GET /console/kyb/{id}/wallets`); `GET /console/wallets/{id}`
//!   (`ledger.read`): the statement. Bounded lists (newest 50).
//! - `GET /console/analytics` (`analytics.read`): the pipeline's views (KYC funnel, time in
//!   state, daily transfer volume, screening outcomes) as server-rendered SVG bar charts
//!   ([`chart`]) with their figures, read through `fintrail_cdc::analytics::query` (the
//!   running pipeline's read-only socket, else the file read-only; bounded rows and time).
//! - `GET /console/iam` (`iam.read`): least privilege: `fintrail iam check`'s findings for
//!   `infra/envs` per environment and the escalation paths, through the `fintrail-iam` library.
//!
//! # Sessions ([`session`])
//! The login form takes a staff bearer token, resolves it through the API's authentication
//! ([`Host::authenticate`]: same lookup, same 401 rate limit) and stores a session: a 256-bit
//! secret in a cookie (`HttpOnly`, `SameSite=Strict`, `Path=/`, `Max-Age` 8 h; `Secure` and the
//! `__Host-` prefix when the request came over TLS, i.e. `X-Forwarded-Proto: https` from the
//! front end), only its SHA-256 in `console_sessions` (0042; the trigger stamps the times). A
//! session unused for 30 minutes is dead too ([`session::SESSION_IDLE_SECS`], migration 0044: the
//! database stamps the last use, renewed at most once a minute, and the actor check agrees).
//! Every request joins the session to `api_tokens`: a revoked or expired token ends its
//! sessions on the next request, with no cache in between. Every POST carries a CSRF token
//! (SHA-256 of the secret under its own domain: the server stores nothing more, and the
//! stored hash does not give it away); without it: 403, logged, not audited (a third-party
//! page could otherwise grow the trail). The login form has its own double-submit token. A
//! forged POST without the action's permission is a 403 audited exactly as the API's
//! ([`Host::record_denial`], subject `route:POST /console/...`). Login and logout are audited
//! (`console.session.opened` / `closed`).
//!
//! # Responses
//! `Content-Security-Policy: default-src 'none'; style-src 'self'; img-src 'self';
//! form-action 'self'; frame-ancestors 'none'; base-uri 'none'` (no script at all, no inline
//! style), `no-store`, `no-referrer`, `nosniff`, on every console response ([`html`]).
//!
//! # Dependencies
//! domain (permissions, roles, state machines), audit (its session events), cdc (the analytics
//! query client and its read-only guard), iam (the analyzer, as a library); axum 0.8 (the
//! API's), maud (compile-time HTML, escaped by construction; no template files, no Node),
//! deadpool-postgres / tokio-postgres (reads), chrono, sha2 / subtle / rand / base64 (sessions).
//! Everything that decides or writes what the API decides or writes goes through [`Host`].
//!
//! # Tests
//! `tests/console_http.rs`: cookies and headers, CSRF, forged POSTs, revocation, the matrix of
//! every page × every role, pagination bounds. `tests/browser.rs`: headless Chromium (Debian's
//! `chromium` + `chromium-driver`, WebDriver through `fantoccini`) logs in, reviews and
//! approves a case, finds it in the audit viewer, logs out, and is refused as it should be;
//! screenshots under `target/console-screenshots/`.

pub mod analytics_view;
pub mod audit_view;
pub mod case;
pub mod chart;
pub mod customer;
pub mod host;
pub mod html;
pub mod iam_view;
pub mod jobs_view;
pub mod org;
pub mod queue;
pub mod registry;
pub mod session;

use std::sync::Arc;

use axum::http::Method;
use axum::routing::{get, post};
use axum::Router;
use fintrail_domain::Permission as P;

pub use host::{Acting, BoxFut, Host, HostError, Staff};
pub use registry::Page;

/// The page sizes a list page offers; anything else is refused (bounded pages).
pub const PAGE_SIZES: [i64; 4] = [10, 25, 50, 100];
/// The default page size.
pub const PAGE_SIZE_DEFAULT: i64 = 25;

/// The console's state: the host it is mounted in.
#[derive(Clone)]
pub struct Console(pub Arc<dyn Host>);

impl std::ops::Deref for Console {
    type Target = dyn Host;
    fn deref(&self) -> &(dyn Host + 'static) {
        &*self.0
    }
}

/// The console's routes (to merge into the server's router) and its protected pages.
pub fn router<S: Clone + Send + Sync + 'static>(host: Arc<dyn Host>) -> (Router<S>, Vec<Page>) {
    let console = Console(host);
    let mut pages = registry::Pages::new(console.clone());
    pages.add(Method::GET, "/console/kyc", P::KycCaseRead, get(queue::kyc_queue));
    pages.add(Method::GET, "/console/kyc/{id}", P::KycCaseRead, get(case::show));
    pages.add(Method::POST, "/console/kyc/{id}/transitions", P::KycCaseReview, post(case::transition));
    pages.add(Method::GET, "/console/media/{id}", P::KycMediaRead, get(case::media));
    pages.add(Method::GET, "/console/kyb", P::KybOrgRead, get(queue::kyb_queue));
    pages.add(Method::GET, "/console/kyb/{id}", P::KybOrgRead, get(org::show));
    pages.add(Method::POST, "/console/kyb/{id}/screening", P::KybOrgScreen, post(org::transition));
    pages.add(Method::POST, "/console/kyb/{id}/decision", P::KybOrgDecide, post(org::transition));
    pages.add(Method::GET, "/console/audit", P::AuditRead, get(audit_view::list));
    pages.add(Method::GET, "/console/audit/events/{seq}", P::AuditRead, get(audit_view::event));
    pages.add(Method::GET, "/console/audit/integrity", P::AuditRead, get(audit_view::integrity));
    pages.add(Method::GET, "/console/jobs", P::AuditRead, get(jobs_view::list));
    pages.add(Method::GET, "/console/customers/{id}", P::IdentityCustomerRead, get(customer::show));
    pages.add(Method::GET, "/console/customers/{id}/wallets", P::WalletRead, get(customer::wallets));
    pages.add(Method::GET, "/console/kyb/{id}/wallets", P::WalletRead, get(customer::org_wallets));
    pages.add(Method::GET, "/console/wallets/{id}", P::LedgerRead, get(customer::statement));
    pages.add(Method::GET, "/console/analytics", P::AnalyticsRead, get(analytics_view::show));
    pages.add(Method::GET, "/console/iam", P::IamRead, get(iam_view::show));
    let (protected, list) = pages.finish();
    let public = Router::new()
        .route("/console", get(session::home))
        .route("/console/login", get(session::login_form).post(session::login))
        .route("/console/logout", post(session::logout))
        .route("/console/static/console.css", get(html::stylesheet));
    let app = protected.merge(public).layer(axum::middleware::map_response(html::security_headers));
    (app.with_state(console), list)
}
