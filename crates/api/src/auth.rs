//! The middleware chain, in this order: request id → access log → authentication →
//! authorization (one permission per route) → handler.
//!
//! Authentication resolves `Authorization: Bearer <token>` to a [`Principal`] (the token's
//! SHA-256 is looked up; expired and revoked tokens do not resolve). A request without a valid
//! token is answered 401 here and never reaches authorization or the handler. Authorization
//! checks the route's single permission against the principal's role, and records every
//! denial in the audit trail (in a transaction of its own).

use axum::extract::{FromRequestParts, Request, State};
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
}

impl Principal {
    /// The actor string recorded in the trail.
    pub fn actor(&self) -> String {
        match self.customer_id {
            Some(c) => format!("customer:{c}"),
            None => format!("staff:{}:{}", self.token_id, self.label),
        }
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
    let Some(token) = bearer(&req) else {
        return unauthenticated("missing or malformed bearer token");
    };
    let hash = tokens::hash(token);
    let server = token_cache::server_of(&state);
    let principal = match token_cache::get(server, &hash) {
        Some(p) => p,
        None => match lookup_token(&state, &hash).await {
            Ok(Ok((p, valid_for))) => {
                token_cache::put(server, hash, &p, valid_for);
                p
            }
            Ok(Err(msg)) => return unauthenticated(msg),
            Err(e) => return e.into_response(),
        },
    };
    let revoking = token_cache::revoked_token_of(&req);
    req.extensions_mut().insert(principal);
    let res = next.run(req).await;
    if let Some(token_id) = revoking {
        if res.status().is_success() {
            // Revoked through this server: gone from its cache at once (other processes'
            // revocations, e.g. `fintrail token revoke`, take effect within the cache TTL).
            token_cache::forget(server, token_id);
        }
    }
    res
}

/// The token's principal and how long it stays valid, from the database.
async fn lookup_token(
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
    let principal = Principal { token_id: row.get(0), role, customer_id: row.get(2), label: row.get(3) };
    let valid_for = std::time::Duration::try_from_secs_f64(row.get::<_, f64>(4)).unwrap_or_default();
    Ok(Ok((principal, valid_for)))
}

/// A bounded in-process cache of authenticated tokens, so that a request does not cost a
/// database round trip to resolve its token (measured: a lookup per request was a large share
/// of the ledger's per-transfer work on a 2-core box).
///
/// * Keyed by (server, SHA-256 of the token); only valid tokens are cached (unknown tokens
///   always reach the database, so garbage cannot fill the cache).
/// * An entry lives at most [`TTL`](token_cache::TTL) (2 s) and never past the token's expiry.
/// * **Revocation delay**: a token revoked through this server's API is dropped from its cache
///   when the revocation succeeds (immediately); a token revoked elsewhere (another server
///   process, `fintrail token revoke`) keeps authenticating on this server for at most 2 s.
/// * At most [`ENTRIES_MAX`](token_cache::ENTRIES_MAX) entries: when full, expired entries are
///   swept, and if it is still full the cache is cleared (a cold cache costs lookups, never
///   correctness).
pub mod token_cache {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    use std::time::{Duration, Instant};

    use super::Principal;
    use crate::state::AppState;

    /// Longest time a cached token is trusted without asking the database.
    pub const TTL: Duration = Duration::from_secs(2);
    /// Most cached tokens (across the servers of this process).
    pub const ENTRIES_MAX: usize = 10_000;

    type Key = (usize, [u8; 32]);
    static CACHE: OnceLock<Mutex<HashMap<Key, (Instant, Principal)>>> = OnceLock::new();

    fn cache() -> std::sync::MutexGuard<'static, HashMap<Key, (Instant, Principal)>> {
        // A panic while holding the lock cannot leave the map inconsistent (single inserts
        // and removals): keep using it.
        CACHE.get_or_init(Default::default).lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Identifies one running server (its state), so that servers sharing a process (tests)
    /// never share entries.
    pub fn server_of(state: &AppState) -> usize {
        std::sync::Arc::as_ptr(&state.0) as usize
    }

    /// The cached principal, if fresh.
    pub fn get(server: usize, hash: &[u8; 32]) -> Option<Principal> {
        let mut c = cache();
        let key = (server, *hash);
        match c.get(&key) {
            Some((until, p)) if Instant::now() < *until => Some(p.clone()),
            Some(_) => {
                c.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Caches `p` for min([`TTL`], `valid_for`).
    pub fn put(server: usize, hash: [u8; 32], p: &Principal, valid_for: Duration) {
        let now = Instant::now();
        let mut c = cache();
        if c.len() >= ENTRIES_MAX {
            c.retain(|_, (until, _)| now < *until);
            if c.len() >= ENTRIES_MAX {
                c.clear();
            }
        }
        c.insert((server, hash), (now + TTL.min(valid_for), p.clone()));
        debug_assert!(c.len() <= ENTRIES_MAX);
    }

    /// Drops every cached entry of `token_id` on `server`.
    pub fn forget(server: usize, token_id: i64) {
        cache().retain(|(s, _), (_, p)| !(*s == server && p.token_id == token_id));
    }

    /// The token id a request revokes (`POST /v1/tokens/{token_id}/revoke`), if it is one.
    pub fn revoked_token_of(req: &axum::extract::Request) -> Option<i64> {
        if req.method() != axum::http::Method::POST {
            return None;
        }
        req.uri().path().strip_prefix("/v1/tokens/")?.strip_suffix("/revoke")?.parse().ok()
    }
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

/// Writes an `access.denied` event in its own transaction.
pub async fn record_denial(
    state: &AppState,
    principal: &Principal,
    missing: Permission,
    subject: String,
    request_id: &str,
) -> Result<(), ApiError> {
    let ev = NewEvent::allowed(principal.actor(), AuditAction::AccessDenied, subject, Some(missing))
        .denied()
        .request(Some(request_id));
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    state.audit.append_cached(&tx, &ev).await?;
    tx.commit().await?;
    state.audit.committed();
    tracing::warn!(log_class = "app", actor = %principal.actor(), permission = %missing, request_id, "access denied");
    Ok(())
}
