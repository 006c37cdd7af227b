//! Idempotency keys: every money-moving request carries one. Keys are scoped per principal
//! (`Principal::actor()`), bound to a SHA-256 of the canonical request (route and parsed body),
//! and kept at least [`IDEMPOTENCY_KEEP_SECS`] (purged afterwards by a bounded job). The key
//! row is written in the same transaction as the money movement, so a key is applied at most
//! once even across crashes: either both committed or neither.
//!
//! The row stores the response the adapter gave for the fresh result (its status and body), so
//! that a replay answers the same status and the same JSON value (stored as `jsonb`: equal as a
//! value, not byte for byte; members may come in another order). Parsing the key out of a
//! request is the adapter's business; this module takes it parsed.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// How long idempotency keys are kept (at least).
pub const IDEMPOTENCY_KEEP_SECS: i64 = 24 * 3600;

/// The stored status of a fresh result that created something (a transfer, a hold).
pub const STATUS_CREATED: i32 = 201;
/// The stored status of a fresh result that changed something (a voided hold).
pub const STATUS_OK: i32 = 200;

/// Domain separation of request hashes (versioned).
const HASH_DOMAIN: &[u8] = b"fintrail.ledger.request.v1\0";

/// Idempotency of one request.
#[derive(Debug, Clone)]
pub struct IdemKey {
    /// The principal (`Principal::actor()`): keys are scoped per principal.
    pub principal: String,
    /// The key the client chose (already parsed: 1–128 visible ASCII characters).
    pub key: String,
    /// SHA-256 of the canonical request ([`request_hash`]).
    pub hash: [u8; 32],
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

/// The response stored with a used key.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The status answered the first time.
    pub status_code: i32,
    /// The body answered the first time.
    pub body: serde_json::Value,
}

/// A fresh result, or the stored one of the request that used the key first.
#[derive(Debug)]
pub enum Reply<T> {
    /// Done now.
    Fresh(T),
    /// The key was used before by the same request: its stored response.
    Replayed(Stored),
}

/// The stored response for `idem`, if the key was used: the same response for the same
/// request; a refusal (`idempotency_key_reused`) for another request under the same key.
pub async fn lookup(pool: &deadpool_postgres::Pool, idem: &IdemKey) -> Result<Option<Stored>> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT request_hash, status_code, response FROM fintrail.idempotency_keys WHERE principal = $1 AND key = $2",
            &[&idem.principal, &idem.key],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let hash: Vec<u8> = row.get(0);
    if hash.as_slice() != idem.hash.as_slice() {
        return Err(Error::refused(
            "idempotency_key_reused",
            "this Idempotency-Key was already used with a different request",
        ));
    }
    Ok(Some(Stored { status_code: row.get(1), body: row.get(2) }))
}

/// [`lookup`] after losing a race for the key: the winner's response, or "retry" while the
/// winner has not committed yet.
pub async fn replay_or_retry<T>(pool: &deadpool_postgres::Pool, idem: &IdemKey) -> Result<Reply<T>> {
    lookup(pool, idem).await?.map(Reply::Replayed).ok_or_else(Error::key_in_progress)
}

#[cfg(test)]
mod tests {
    use super::request_hash;

    /// The hash binds the route and the body: same pair, same hash; either one changed, another.
    #[test]
    fn the_request_hash_binds_route_and_body() {
        let a = serde_json::json!({ "amount_minor": 5, "currency": "EUR" });
        assert_eq!(request_hash("POST /v1/transfers", &a), request_hash("POST /v1/transfers", &a.clone()));
        assert_ne!(request_hash("POST /v1/transfers", &a), request_hash("POST /v1/deposits", &a));
        let c = serde_json::json!({ "amount_minor": 6, "currency": "EUR" });
        assert_ne!(request_hash("POST /v1/transfers", &a), request_hash("POST /v1/transfers", &c));
    }
}
