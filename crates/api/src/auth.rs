//! The middleware chain, in this order: request id → access log → authentication →
//! authorization (one permission per route) → handler.
//!
//! Authentication resolves `Authorization: Bearer <token>` to a [`Principal`] (the token's
//! SHA-256 is looked up; expired and revoked tokens do not resolve). A request without a valid
//! token is answered 401 here and never reaches authorization or the handler. Authorization
//! checks the route's single permission against the principal's role, and records every
//! denial in the audit trail (in a transaction of its own).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fintrail_domain::audit::AuditAction;
use fintrail_domain::{Permission, Role};
use rand::RngCore;

use crate::error::ApiError;
use crate::state::AppState;
use crate::tokens;
use fintrail_audit::NewEvent;

/// The request id header.
pub const REQUEST_ID: &str = "x-request-id";

/// The request id of this request (from a valid incoming header, or generated).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The token's id (names the session in the trail).
    pub token_id: i64,
    /// The role the token was issued with.
    pub role: Role,
    /// The customer, for customer tokens.
    pub customer_id: Option<i64>,
    /// The token's label (staff name, "customer").
    pub label: String,
    /// The bearer this request was made with (set per request by [`authenticate`]), presented
    /// with the events the request writes so that the database can check their actor.
    pub credential: Option<fintrail_audit::Credential>,
}

impl Principal {
    /// The actor string recorded in the trail.
    pub fn actor(&self) -> String {
        match self.customer_id {
            Some(c) => format!("customer:{c}"),
            None => format!("staff:{}:{}", self.token_id, self.label),
        }
    }

    /// An allowed event of this principal, with its credential presented.
    pub fn event(
        &self,
        action: fintrail_domain::audit::AuditAction,
        subject: impl Into<String>,
        permission: Option<Permission>,
    ) -> NewEvent {
        NewEvent::allowed(self.actor(), action, subject, permission).credential(self.credential.clone())
    }
}

/// The permission the route required and the principal holds (set by authorization).
#[derive(Debug, Clone, Copy)]
pub struct Granted(pub Permission);

/// Everything a protected handler needs to know about the caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who.
    pub principal: Principal,
    /// With which permission.
    pub permission: Permission,
    /// For which request.
    pub request_id: String,
}

impl Caller {
    /// The customer of a customer principal (customer routes are scoped to it).
    pub fn own_customer(&self) -> Result<i64, ApiError> {
        self.principal.customer_id.ok_or_else(|| ApiError::forbidden("customer routes need a customer token"))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let principal = parts.extensions.get::<Principal>().cloned();
        let granted = parts.extensions.get::<Granted>().copied();
        let request_id = parts.extensions.get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default();
        match (principal, granted) {
            (Some(principal), Some(Granted(permission))) => Ok(Caller { principal, permission, request_id }),
            // Only reachable if a route was registered without the middleware: fail closed.
            _ => Err(ApiError::unauthenticated("no authenticated principal")),
        }
    }
}

fn valid_request_id(v: &str) -> bool {
    (1..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Stage 1: request id. Keeps a well-formed incoming `x-request-id` (≤ 64 chars of
/// `[A-Za-z0-9._-]`), otherwise generates one; echoes it on the response.
pub async fn request_id(mut req: Request, next: Next) -> Response {
    let incoming =
        req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).filter(|v| valid_request_id(v)).map(str::to_owned);
    let id = incoming.unwrap_or_else(|| {
        let mut b = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut b);
        hex::encode(b)
    });
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut res = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, v);
    }
    res
}

/// Stage 2: the access log (`log_class = "access"`).
pub async fn access_log(req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default();
    let res = next.run(req).await;
    tracing::info!(
        log_class = "access",
        %method,
        path = %path,
        status = res.status().as_u16(),
        latency_us = started.elapsed().as_micros() as u64,
        request_id = %request_id,
        "request"
    );
    res
}

fn bearer(req: &Request) -> Option<&str> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && token.len() <= tokens::TOKEN_MAX_LEN && !token.is_empty())
        .then_some(token.trim())
}

/// Stage 3: authentication.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default();
    state.stage(&request_id, "authn");
    let ip = crate::refusals::peer_ip(req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| &c.0));
    let Some(token) = bearer(&req) else {
        return refuse_unauthenticated(&state, ip, "missing or malformed bearer token");
    };
    let hash = tokens::hash(token);
    let mut principal = match state.tokens.get(&hash) {
        Some(p) => p,
        None => match lookup_token(&state, &hash).await {
            Ok(Ok((p, valid_for))) => {
                state.tokens.put(hash, &p, valid_for);
                p
            }
            Ok(Err(msg)) => return refuse_unauthenticated(&state, ip, msg),
            Err(e) => return e.into_response(),
        },
    };
    principal.credential = Some(fintrail_audit::Credential::new(token));
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// The token's principal and how long it stays valid, from the database.
pub(crate) async fn lookup_token(
    state: &AppState,
    hash: &[u8; 32],
) -> Result<Result<(Principal, std::time::Duration), &'static str>, ApiError> {
    let client = state.pool.get().await?;
    let row = client
        .query_opt(
            "SELECT id, role, customer_id, label, extract(epoch FROM expires_at - now())::float8 \
             FROM fintrail.api_tokens WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > now()",
            &[&hash.as_slice()],
        )
        .await?;
    drop(client);
    let Some(row) = row else { return Ok(Err("unknown, expired or revoked token")) };
    let Ok(role) = row.get::<_, &str>(1).parse::<Role>() else {
        // A role removed from the Rust table no longer grants anything.
        return Ok(Err("token role no longer exists"));
    };
    let principal =
        Principal { token_id: row.get(0), role, customer_id: row.get(2), label: row.get(3), credential: None };
    let valid_for = std::time::Duration::try_from_secs_f64(row.get::<_, f64>(4)).unwrap_or_default();
    Ok(Ok((principal, valid_for)))
}

/// A bounded in-process cache of authenticated tokens, so that a request does not cost a
/// database round trip to resolve its token (measured: a lookup per request was a large share
/// of the ledger's per-transfer work on a 2-core box).
///
/// * One cache per server: a field of the application state (servers sharing a process, as
///   tests do, never share entries). Keyed by the SHA-256 of the token; only valid tokens are
///   cached (unknown tokens always reach the database, so garbage cannot fill it).
/// * An entry lives at most [`TTL`](token_cache::TTL) (2 s) and never past the token's expiry.
/// * **Revocation delay**: the revoke handler evicts the token it revoked once its transaction
///   committed (immediately); a token revoked elsewhere (another server process,
///   `fintrail token revoke`) keeps authenticating on this server for at most 2 s.
/// * At most [`ENTRIES_MAX`](token_cache::ENTRIES_MAX) entries: when full, expired entries are
///   swept, and if it is still full the cache is cleared (a cold cache costs lookups, never
///   correctness).
pub mod token_cache {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use super::Principal;

    /// Longest time a cached token is trusted without asking the database.
    pub const TTL: Duration = Duration::from_secs(2);
    /// Most cached tokens of one server.
    pub const ENTRIES_MAX: usize = 10_000;

    /// The cache (one per server, in its state).
    #[derive(Debug, Default)]
    pub struct TokenCache(Mutex<HashMap<[u8; 32], (Instant, Principal)>>);

    impl TokenCache {
        fn map(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (Instant, Principal)>> {
            // A panic while holding the lock cannot leave the map inconsistent (single
            // inserts and removals): keep using it.
            self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
        }

        /// The cached principal, if fresh.
        pub fn get(&self, hash: &[u8; 32]) -> Option<Principal> {
            let mut c = self.map();
            match c.get(hash) {
                Some((until, p)) if Instant::now() < *until => Some(p.clone()),
                Some(_) => {
                    c.remove(hash);
                    None
                }
                None => None,
            }
        }

        /// Caches `p` for min([`TTL`], `valid_for`).
        pub fn put(&self, hash: [u8; 32], p: &Principal, valid_for: Duration) {
            let now = Instant::now();
            let mut c = self.map();
            if c.len() >= ENTRIES_MAX {
                c.retain(|_, (until, _)| now < *until);
                if c.len() >= ENTRIES_MAX {
                    c.clear();
                }
            }
            c.insert(hash, (now + TTL.min(valid_for), p.clone()));
            assert!(c.len() <= ENTRIES_MAX);
        }

        /// Drops every cached entry of `token_id`.
        pub fn forget(&self, token_id: i64) {
            self.map().retain(|_, (_, p)| p.token_id != token_id);
        }

        /// How many entries are cached (tests).
        pub fn len(&self) -> usize {
            self.map().len()
        }

        /// Whether nothing is cached.
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }
    }
}

/// A 401 (logged by the access log, never written to the trail), rate-limited per client
/// address with the signed-URL refusals ([`crate::refusals`]): past the limit, 429.
fn refuse_unauthenticated(state: &AppState, ip: std::net::IpAddr, msg: &str) -> Response {
    if let Err(retry_after) = state.refusals.check(ip) {
        return crate::refusals::rate_limited(retry_after).into_response();
    }
    state.refusals.charge(ip);
    unauthenticated(msg)
}

fn unauthenticated(msg: &str) -> Response {
    let mut res = ApiError::unauthenticated(msg).into_response();
    res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    res
}

/// Stage 4: authorization of the route's single permission.
pub async fn authorize(
    State((state, permission)): State<(AppState, Permission)>,
    mut req: Request,
    next: Next,
) -> Response {
    let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default();
    state.stage(&request_id, "authz");
    let Some(principal) = req.extensions().get::<Principal>().cloned() else {
        return unauthenticated("not authenticated");
    };
    if !principal.role.grants(permission) {
        let subject = format!("route:{} {}", req.method(), req.uri().path());
        if let Err(e) = record_denial(&state, &principal, permission, subject, &request_id).await {
            return e.into_response();
        }
        return ApiError::forbidden(format!("role {} lacks permission {}", principal.role, permission)).into_response();
    }
    req.extensions_mut().insert(Granted(permission));
    next.run(req).await
}

/// Stage 5 marker: the handler is about to run (lets tests prove who got this far).
pub async fn handler_stage(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(r) = req.extensions().get::<RequestId>() {
        state.stage(&r.0.clone(), "handler");
    }
    next.run(req).await
}

/// Longest `subject` the trail stores (the `audit_events.subject` CHECK, in characters).
pub const SUBJECT_MAX_CHARS: usize = 200;
/// Ends a subject that was cut to [`SUBJECT_MAX_CHARS`].
pub const TRUNCATED_MARKER: &str = "...[truncated]";

/// `subject` as the trail can store it: unchanged when it fits, otherwise cut (on a character
/// boundary) and ended with [`TRUNCATED_MARKER`], never more than [`SUBJECT_MAX_CHARS`]
/// characters. Without it a request path over 200 characters made the denial record fail the
/// CHECK, turned the 403 into a 422 and left no trace of the probe (issue 16, item 13).
pub fn bounded_subject(subject: String) -> String {
    if subject.chars().count() <= SUBJECT_MAX_CHARS {
        return subject;
    }
    let keep = SUBJECT_MAX_CHARS - TRUNCATED_MARKER.chars().count();
    let mut cut: String = subject.chars().take(keep).collect();
    cut.push_str(TRUNCATED_MARKER);
    debug_assert_eq!(cut.chars().count(), SUBJECT_MAX_CHARS);
    cut
}

/// Writes an `access.denied` event in its own transaction (the subject bounded by
/// [`bounded_subject`]).
pub async fn record_denial(
    state: &AppState,
    principal: &Principal,
    missing: Permission,
    subject: String,
    request_id: &str,
) -> Result<(), ApiError> {
    let subject = bounded_subject(subject);
    let ev = principal.event(AuditAction::AccessDenied, subject, Some(missing)).denied().request(Some(request_id));
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    state.audit.append_cached(&tx, &ev).await?;
    tx.commit().await?;
    state.audit.committed();
    tracing::warn!(log_class = "app", actor = %principal.actor(), permission = %missing, request_id, "access denied");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::token_cache::{TokenCache, ENTRIES_MAX};
    use super::Principal;
    use std::time::Duration;

    fn principal(token_id: i64) -> Principal {
        Principal {
            token_id,
            role: fintrail_domain::Role::Auditor,
            customer_id: None,
            label: "t".into(),
            credential: None,
        }
    }

    #[test]
    fn subjects_are_bounded_with_a_marker() {
        use super::{bounded_subject, SUBJECT_MAX_CHARS, TRUNCATED_MARKER};
        assert_eq!(bounded_subject("wallet:1".into()), "wallet:1");
        let exact = "a".repeat(SUBJECT_MAX_CHARS);
        assert_eq!(bounded_subject(exact.clone()), exact);
        for long in ["b".repeat(SUBJECT_MAX_CHARS + 1), "é".repeat(5_000), format!("route:GET /{}", "%2F".repeat(900))]
        {
            let s = bounded_subject(long.clone());
            assert_eq!(s.chars().count(), SUBJECT_MAX_CHARS, "{long}");
            assert!(s.ends_with(TRUNCATED_MARKER));
            assert!(long.starts_with(s.trim_end_matches(TRUNCATED_MARKER)));
        }
    }

    #[test]
    fn the_cache_serves_fresh_entries_forgets_revoked_tokens_and_stays_bounded() {
        let c = TokenCache::default();
        c.put([1; 32], &principal(1), Duration::from_secs(60));
        c.put([2; 32], &principal(2), Duration::ZERO);
        assert_eq!(c.get(&[1; 32]).map(|p| p.token_id), Some(1));
        assert!(c.get(&[2; 32]).is_none(), "never past the token's own expiry");
        assert!(c.get(&[3; 32]).is_none());
        c.forget(1);
        assert!(c.get(&[1; 32]).is_none(), "a revoked token is gone at once");
        // Two servers' caches are two values: nothing is shared.
        let other = TokenCache::default();
        other.put([1; 32], &principal(1), Duration::from_secs(60));
        assert!(c.get(&[1; 32]).is_none());
        for i in 0..(ENTRIES_MAX + 10) {
            let mut h = [0u8; 32];
            h[..8].copy_from_slice(&(i as u64).to_be_bytes());
            c.put(h, &principal(i as i64), Duration::from_secs(60));
            assert!(c.len() <= ENTRIES_MAX);
        }
    }
}
