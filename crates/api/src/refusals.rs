//! Refusals of unauthenticated requests (issue 16, item 14): rate-limited per client address,
//! and aggregated into at most one audit event per window, never one event each.
//!
//! * **Who is unauthenticated**: a request without a valid bearer token (answered 401 by
//!   authentication; logged, never written to the trail) and a signed-URL download whose URL
//!   is refused (forged, tampered, expired, unknown key, issuing token revoked or expired).
//! * **Rate limit**: a token bucket per client IP address ([`BURST`] refusals at once, then
//!   [`REFILL_PER_SEC`] per second). An address with an empty bucket is answered 429
//!   `rate_limited` with `Retry-After` before any signature is checked or the database is
//!   asked. At most [`ADDRS_MAX`] addresses are tracked (when full, idle buckets are dropped,
//!   then all: a reset costs an attacker nothing it did not have, and memory stays bounded).
//! * **Aggregation**: refused downloads are counted in memory by reason and subject (at most
//!   [`SUBJECTS_MAX`] subjects per window; the rest are counted under `other`) and written by
//!   the server's refusal task as ONE `media.signed_url.refused` event per window
//!   (`AppConfig::refusal_window_secs`, default 60 s) when the window saw any, and at shutdown.
//!   So however many requests an anonymous client sends, it adds at most one event per window.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::json;

/// Refusals an address may cause at once.
pub const BURST: f64 = 60.0;
/// Refusals per second an address earns back.
pub const REFILL_PER_SEC: f64 = 10.0;
/// Most addresses tracked.
pub const ADDRS_MAX: usize = 10_000;
/// Most distinct subjects one aggregated event names.
pub const SUBJECTS_MAX: usize = 32;
/// The aggregated event's subject.
pub const AGGREGATE_SUBJECT: &str = "signed_url:refusals";
/// The aggregated event's actor: nobody authenticated.
pub const AGGREGATE_ACTOR: &str = "anonymous:signed_url";

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// One window's counts.
#[derive(Default)]
struct Window {
    started: Option<DateTime<Utc>>,
    total: u64,
    rate_limited: u64,
    by_reason: BTreeMap<&'static str, u64>,
    by_subject: BTreeMap<String, u64>,
    other_subjects: u64,
}

/// The limiter and the aggregator (one per server, in its state).
#[derive(Default)]
pub struct Refusals {
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
    window: Mutex<Window>,
}

/// One window's summary, ready to be written as an event's `after`.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Refusals counted.
    pub total: u64,
    /// The event's `after` payload.
    pub after: serde_json::Value,
}

impl Refusals {
    fn buckets(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Bucket>> {
        self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `ip` may still be refused normally: `Err(retry_after)` when its bucket is empty
    /// (answer 429 then). Does not take a token.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        let b = self.buckets();
        match b.get(&ip) {
            Some(bucket) => {
                let tokens = refill(bucket, now);
                if tokens >= 1.0 {
                    Ok(())
                } else {
                    Err(Duration::from_secs_f64((1.0 - tokens) / REFILL_PER_SEC).max(Duration::from_secs(1)))
                }
            }
            None => Ok(()),
        }
    }

    /// Takes one token from `ip`'s bucket (a refusal happened).
    pub fn charge(&self, ip: IpAddr) {
        let now = Instant::now();
        let mut b = self.buckets();
        if b.len() >= ADDRS_MAX && !b.contains_key(&ip) {
            b.retain(|_, bucket| refill(bucket, now) < BURST);
            if b.len() >= ADDRS_MAX {
                b.clear();
            }
        }
        let bucket = b.entry(ip).or_insert(Bucket { tokens: BURST, at: now });
        bucket.tokens = (refill(bucket, now) - 1.0).max(0.0);
        bucket.at = now;
        assert!(b.len() <= ADDRS_MAX);
    }

    /// Counts one refused download of `subject` for `reason`.
    pub fn note(&self, subject: String, reason: &'static str) {
        let mut w = self.window();
        w.started.get_or_insert_with(Utc::now);
        w.total += 1;
        *w.by_reason.entry(reason).or_default() += 1;
        if w.by_subject.len() < SUBJECTS_MAX || w.by_subject.contains_key(&subject) {
            *w.by_subject.entry(subject).or_default() += 1;
        } else {
            w.other_subjects += 1;
        }
    }

    /// Counts one request answered 429 (it is also a refusal).
    pub fn note_rate_limited(&self, subject: String) {
        self.note(subject, "rate_limited");
        self.window().rate_limited += 1;
    }

    /// Ends the current window: its summary, or `None` when nothing was refused.
    pub fn take(&self) -> Option<Summary> {
        let w = std::mem::take(&mut *self.window());
        if w.total == 0 {
            return None;
        }
        let mut subjects: serde_json::Map<String, serde_json::Value> =
            w.by_subject.into_iter().map(|(k, v)| (k, json!(v))).collect();
        if w.other_subjects > 0 {
            subjects.insert("other".into(), json!(w.other_subjects));
        }
        let after = json!({
            "refusals": w.total,
            "rate_limited": w.rate_limited,
            "by_reason": w.by_reason,
            "by_subject": subjects,
            "window_start": w.started.map(|t| t.to_rfc3339()),
            "window_end": Utc::now().to_rfc3339(),
        });
        Some(Summary { total: w.total, after })
    }
}

/// The client's address (unspecified when the server did not record it: one shared bucket).
pub fn peer_ip(peer: Option<&std::net::SocketAddr>) -> IpAddr {
    peer.map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), std::net::SocketAddr::ip)
}

/// 429 `rate_limited`, with `Retry-After` in whole seconds.
pub fn rate_limited(retry_after: Duration) -> crate::error::ApiError {
    let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    crate::error::ApiError::new(
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many refused requests from this address; retry in {secs} s"),
    )
    .retry_after(secs)
}

/// Writes the current window's summary as one `media.signed_url.refused` event (nothing when
/// the window saw no refusal). Returns how many refusals it summarised.
pub async fn write_window(state: &crate::state::AppState) -> Result<u64, crate::error::ApiError> {
    let Some(summary) = state.refusals.take() else { return Ok(0) };
    let ev = fintrail_audit::NewEvent::allowed(
        AGGREGATE_ACTOR,
        fintrail_domain::audit::AuditAction::SignedUrlRefused,
        AGGREGATE_SUBJECT,
        Some(fintrail_domain::Permission::KycMediaRead),
    )
    .denied()
    .change(None, Some(summary.after));
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    state.audit.append_cached(&tx, &ev).await?;
    tx.commit().await?;
    state.audit.committed();
    Ok(summary.total)
}

fn refill(b: &Bucket, now: Instant) -> f64 {
    (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * REFILL_PER_SEC).min(BURST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_limited_and_counts_are_aggregated_and_bounded() {
        let r = Refusals::default();
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        let other: IpAddr = "127.0.0.10".parse().unwrap();
        for _ in 0..BURST as usize {
            assert!(r.check(ip).is_ok());
            r.charge(ip);
        }
        assert!(r.check(ip).is_err(), "the bucket is empty after a burst");
        assert!(r.check(other).is_ok(), "per address");
        for i in 0..(SUBJECTS_MAX + 10) {
            r.note(format!("media:{i}"), "bad_signature");
        }
        r.note_rate_limited("media:0".into());
        let s = r.take().expect("summary");
        assert_eq!(s.total, SUBJECTS_MAX as u64 + 11);
        assert_eq!(s.after["by_subject"].as_object().unwrap().len(), SUBJECTS_MAX + 1);
        assert_eq!(s.after["by_subject"]["other"], 10);
        assert_eq!(s.after["by_reason"]["rate_limited"], 1);
        assert_eq!(s.after["rate_limited"], 1);
        assert!(r.take().is_none(), "a window is written once");
        for i in 0..(ADDRS_MAX + 5) {
            let a = IpAddr::from(std::net::Ipv6Addr::from(i as u128));
            r.charge(a);
            assert!(r.buckets().len() <= ADDRS_MAX);
        }
    }
}
