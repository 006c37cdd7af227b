//! Signed media URLs for the local store: HMAC-SHA256 with a key id, bound to the object, the
//! HTTP method, the expiry and the issuing token; verified in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

use fintrail_db::keys::Key;
use fintrail_domain::media::SIGNED_URL_MAX_TTL_SECS;

/// Domain separation of media URL signatures.
const DOMAIN: &str = "fintrail.media.url.v1";

/// The signed parameters of a download URL.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SignedQuery {
    /// The media object id.
    pub object: i64,
    /// The HTTP method the URL is good for (`GET`).
    pub method: String,
    /// Expiry, seconds since the Unix epoch.
    pub expires: i64,
    /// The signing key's id.
    pub key_id: String,
    /// The token that obtained the URL (named in the redemption's audit event).
    pub by: i64,
    /// Hex HMAC-SHA256.
    pub signature: String,
}

/// Why a signed URL was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Past its expiry.
    Expired,
    /// Expiry further away than the hard cap (cannot have been issued by us).
    TooLong,
    /// Signed by a key we do not hold.
    UnknownKey,
    /// Signature does not match (tampered, or replayed for another object / method).
    BadSignature,
    /// Used with another HTTP method.
    WrongMethod,
    /// The token that obtained the URL was revoked or expired since (checked against the
    /// database at download, after the signature).
    IssuerRevoked,
}

impl Refusal {
    /// Stable name (logs, audit).
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Expired => "expired",
            Refusal::TooLong => "expiry_beyond_cap",
            Refusal::UnknownKey => "unknown_key",
            Refusal::BadSignature => "bad_signature",
            Refusal::WrongMethod => "wrong_method",
            Refusal::IssuerRevoked => "issuing_token_revoked",
        }
    }
}

/// Signs and verifies.
#[derive(Debug, Clone)]
pub struct UrlSigner {
    key: Key,
}

impl UrlSigner {
    /// A signer with `key`.
    pub fn new(key: Key) -> Self {
        Self { key }
    }

    fn mac(&self, method: &str, object: i64, expires: i64, by: i64) -> Hmac<Sha256> {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(self.key.secret()).expect("HMAC accepts any key length");
        m.update(format!("{DOMAIN}\n{method}\n{object}\n{expires}\n{}\n{by}", self.key.id).as_bytes());
        m
    }

    /// The signed query for `object`, good for `method` until `now + ttl`.
    pub fn sign(&self, method: &str, object: i64, by: i64, now_unix: i64, ttl_secs: u64) -> SignedQuery {
        assert!(ttl_secs > 0 && ttl_secs <= SIGNED_URL_MAX_TTL_SECS, "ttl is validated by the caller");
        let expires = now_unix + ttl_secs as i64;
        let sig = self.mac(method, object, expires, by).finalize().into_bytes();
        SignedQuery {
            object,
            method: method.to_owned(),
            expires,
            key_id: self.key.id.clone(),
            by,
            signature: hex::encode(sig),
        }
    }

    /// Checks `q` for a request with `method` at `now`.
    pub fn verify(&self, q: &SignedQuery, method: &str, now_unix: i64) -> Result<(), Refusal> {
        if q.key_id != self.key.id {
            return Err(Refusal::UnknownKey);
        }
        // Compute and compare the MAC before looking at time, so timing says nothing about
        // which check failed first for a forged URL.
        let expected = self.mac(&q.method, q.object, q.expires, q.by).finalize().into_bytes();
        let given = hex::decode(&q.signature).unwrap_or_default();
        let sig_ok = given.len() == expected.len() && bool::from(given.as_slice().ct_eq(expected.as_slice()));
        if !sig_ok {
            return Err(Refusal::BadSignature);
        }
        if q.method != method {
            return Err(Refusal::WrongMethod);
        }
        if q.expires > now_unix.saturating_add(SIGNED_URL_MAX_TTL_SECS as i64) {
            return Err(Refusal::TooLong);
        }
        if now_unix >= q.expires {
            return Err(Refusal::Expired);
        }
        Ok(())
    }

    /// The query string of `q`.
    pub fn query_string(q: &SignedQuery) -> String {
        format!(
            "object={}&method={}&expires={}&key_id={}&by={}&signature={}",
            q.object, q.method, q.expires, q.key_id, q.by, q.signature
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn signer(b: u8) -> UrlSigner {
        UrlSigner::new(Key::from_secret([b; 32]))
    }

    #[test]
    fn valid_url_verifies_until_expiry() {
        let s = signer(1);
        let q = s.sign("GET", 42, 7, 1_000, 900);
        assert_eq!(s.verify(&q, "GET", 1_000), Ok(()));
        assert_eq!(s.verify(&q, "GET", 1_899), Ok(()));
        assert_eq!(s.verify(&q, "GET", 1_900), Err(Refusal::Expired));
        assert_eq!(s.verify(&q, "PUT", 1_000), Err(Refusal::WrongMethod));
    }

    #[test]
    fn tampering_any_field_is_refused() {
        let s = signer(1);
        let q = s.sign("GET", 42, 7, 1_000, 900);
        let variants = [
            SignedQuery { object: 43, ..q.clone() },
            SignedQuery { expires: q.expires + 1, ..q.clone() },
            SignedQuery { by: 8, ..q.clone() },
            SignedQuery { method: "PUT".into(), ..q.clone() },
            SignedQuery { signature: "00".repeat(32), ..q.clone() },
            SignedQuery { signature: "zz".into(), ..q.clone() },
            SignedQuery { signature: String::new(), ..q.clone() },
        ];
        for v in variants {
            assert_eq!(s.verify(&v, &v.method.clone(), 1_000), Err(Refusal::BadSignature), "{v:?}");
        }
        assert_eq!(signer(2).verify(&q, "GET", 1_000), Err(Refusal::UnknownKey));
    }

    #[test]
    fn a_key_holder_cannot_exceed_the_cap_unnoticed() {
        let s = signer(1);
        let q = s.sign("GET", 1, 1, 0, SIGNED_URL_MAX_TTL_SECS);
        assert_eq!(s.verify(&q, "GET", 0), Ok(()));
        let forged = SignedQuery { expires: q.expires + 10, ..q };
        // Re-signed with the right key but an expiry beyond the cap:
        let resigned = {
            let sig = s.mac("GET", forged.object, forged.expires, forged.by).finalize().into_bytes();
            SignedQuery { signature: hex::encode(sig), ..forged }
        };
        assert_eq!(s.verify(&resigned, "GET", 0), Err(Refusal::TooLong));
    }

    proptest! {
        #![proptest_config(fintrail_testseed::proptest_config!())]
        #[test]
        fn a_signature_for_one_object_never_opens_another(a in 0i64..1_000_000, b in 0i64..1_000_000) {
            prop_assume!(a != b);
            let s = signer(3);
            let q = s.sign("GET", a, 1, 0, 60);
            let replay = SignedQuery { object: b, ..q };
            prop_assert_eq!(s.verify(&replay, "GET", 1), Err(Refusal::BadSignature));
        }
    }
}
