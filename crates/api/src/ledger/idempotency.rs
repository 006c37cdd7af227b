//! Idempotency keys: every money-moving request carries `Idempotency-Key`. Keys are scoped per
//! principal (`Principal::actor()`), bound to a SHA-256 of the canonical request (route and
//! parsed body), and kept at least [`IDEMPOTENCY_KEEP_SECS`] (purged afterwards by a bounded
//! job). The key row is written in the same transaction as the money movement, so a key is
//! applied at most once even across crashes: either both committed or neither.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use fintrail_domain::ledger::IdempotencyKey;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub use super::engine::{IdemKey, IDEMPOTENCY_KEEP_SECS};

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// Set on a replayed response.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// Domain separation of request hashes (versioned).
const HASH_DOMAIN: &[u8] = b"fintrail.ledger.request.v1\0";

/// The request's idempotency key (400 when missing or malformed).
pub fn key<T: Serialize>(headers: &HeaderMap, caller: &Caller, route: &str, body: &T) -> ApiResult<IdemKey> {
    let raw = headers.get(HEADER).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "idempotency_key_required",
            "money-moving requests need an Idempotency-Key header",
        )
    })?;
    let raw = raw
        .to_str()
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "bad_idempotency_key", "Idempotency-Key must be ASCII"))?;
    let key =
        IdempotencyKey::parse(raw).map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, "bad_idempotency_key", m))?;
    Ok(IdemKey { principal: caller.principal.actor(), key: key.as_str().to_owned(), hash: request_hash(route, body) })
}

/// SHA-256 over the route and the parsed body re-serialized (field order fixed by the type,
/// so whitespace or key order in the client's JSON does not matter).
pub fn request_hash<T: Serialize>(route: &str, body: &T) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(HASH_DOMAIN);
    h.update(route.as_bytes());
    h.update([0u8]);
    h.update(serde_json::to_vec(body).unwrap_or_default());
    h.finalize().into()
}

/// The stored response for `idem`, if the key was used: the same response for the same
/// request, 409 for another request under the same key.
pub async fn replay(state: &AppState, idem: &IdemKey) -> ApiResult<Option<Response>> {
    let client = state.pool.get().await?;
    let row = client
        .query_opt(
            "SELECT request_hash, status_code, response FROM fintrail.idempotency_keys WHERE principal = $1 AND key = $2",
            &[&idem.principal, &idem.key],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let hash: Vec<u8> = row.get(0);
    if hash.as_slice() != idem.hash.as_slice() {
        return Err(ApiError::conflict(
            "idempotency_key_reused",
            "this Idempotency-Key was already used with a different request",
        ));
    }
    let status: i32 = row.get(1);
    let body: serde_json::Value = row.get(2);
    let status = u16::try_from(status).ok().and_then(|s| StatusCode::from_u16(s).ok()).unwrap_or(StatusCode::OK);
    let mut res = (status, Json(body)).into_response();
    res.headers_mut().insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    Ok(Some(res))
}
