//! The `Idempotency-Key` header: parsed into the ledger's [`IdemKey`] (400 when missing or
//! malformed), and a stored response turned back into the response answered the first time.
//! What a key means (scope, hash, lifetime) is `fintrail_ledger::idempotency`'s.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use fintrail_domain::ledger::IdempotencyKey;
use fintrail_ledger::idempotency::request_hash;
use fintrail_ledger::{IdemKey, Reply, Stored};
use serde::Serialize;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// Set on a replayed response.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

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

/// A stored status as HTTP (the ledger stores only the ones it names; anything else, which
/// cannot come from us, answers 200 rather than fail a replay).
fn status_of(status_code: i32) -> StatusCode {
    u16::try_from(status_code).ok().and_then(|s| StatusCode::from_u16(s).ok()).unwrap_or(StatusCode::OK)
}

/// The response stored with a key, answered again, marked as a replay.
pub fn replayed(stored: Stored) -> Response {
    let mut res = (status_of(stored.status_code), Json(stored.body)).into_response();
    res.headers_mut().insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    res
}

/// A ledger reply: a fresh result with the status the ledger stored with its key
/// (`fintrail_ledger::idempotency::STATUS_*`, so a replay answers the same), or the stored
/// response.
pub fn respond<T: Serialize>(status_code: i32, reply: Reply<T>) -> Response {
    match reply {
        Reply::Fresh(v) => (status_of(status_code), Json(v)).into_response(),
        Reply::Replayed(stored) => replayed(stored),
    }
}
