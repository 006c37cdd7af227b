//! A small blocking JSON-over-HTTP client with bounded retries, for the tracker adapters.

use serde_json::Value;
use std::time::Duration;

/// A credential. Its `Debug` prints `***`; it has no `Display`; the only way to the value
/// is [`Secret::expose`], called where the `Authorization` header is set.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// HTTP methods the adapters use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// A request as the adapter builds it, before the credential is attached. Printable
/// (`--dry-run`) and comparable (tests) without ever holding the token.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiRequest {
    pub method: Method,
    pub url: String,
    /// Headers other than `Authorization`.
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<Value>,
}

/// How the `Authorization` header is formed from the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthScheme {
    /// The token as is (ClickUp personal tokens).
    Raw,
    /// `Bearer <token>` (GitHub).
    Bearer,
}

/// Limits on one logical call (all attempts together).
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts including the first; at least 1.
    pub max_attempts: u32,
    /// Timeout of one attempt (connect, send, receive together).
    pub timeout_ms: u64,
    /// First back-off after a 5xx or transport failure; doubled each time.
    pub backoff_ms: u64,
    /// The longest `Retry-After` we wait; a longer one fails fast instead of hanging.
    pub max_retry_after_ms: u64,
    /// The largest response body read.
    pub max_body_bytes: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            timeout_ms: 10_000,
            backoff_ms: 500,
            max_retry_after_ms: 60_000,
            max_body_bytes: 4 * 1024 * 1024,
        }
    }
}

/// Why a call failed, by what the caller can do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 401/403: the token is wrong, expired or lacks the scope.
    Unauthorized { status: u16 },
    /// 404: no such task / repository / commit (or no access to it).
    NotFound,
    /// 429 after all attempts, or a `Retry-After` longer than the policy allows.
    RateLimited { retry_after_s: Option<u64> },
    /// 5xx after all attempts.
    Server { status: u16 },
    /// Another 4xx, with the start of the body.
    Rejected { status: u16, body: String },
    /// No answer within the timeout, on every attempt.
    Timeout,
    /// Connection refused, DNS, TLS...
    Transport(String),
    /// A 2xx whose body is not the JSON we expected.
    MalformedResponse(String),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Unauthorized { status } => {
                write!(f, "HTTP {status}: the token was refused (check it and its scopes)")
            }
            ApiError::NotFound => write!(f, "HTTP 404: not found (or the token cannot see it)"),
            ApiError::RateLimited { retry_after_s: Some(s) } => write!(f, "HTTP 429: rate limited, retry after {s} s"),
            ApiError::RateLimited { retry_after_s: None } => write!(f, "HTTP 429: rate limited"),
            ApiError::Server { status } => write!(f, "HTTP {status}: server error, retries exhausted"),
            ApiError::Rejected { status, body } => write!(f, "HTTP {status}: {body}"),
            ApiError::Timeout => write!(f, "no answer within the timeout, retries exhausted"),
            ApiError::Transport(e) => write!(f, "connection failed: {e}"),
            ApiError::MalformedResponse(e) => write!(f, "unexpected response: {e}"),
        }
    }
}

impl std::error::Error for ApiError {}

/// Sends requests with a credential, retrying what is safe to retry.
pub struct Client {
    agent: ureq::Agent,
    token: Secret,
    scheme: AuthScheme,
    policy: RetryPolicy,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("token", &self.token)
            .field("scheme", &self.scheme)
            .field("policy", &self.policy)
            .finish()
    }
}

enum Attempt {
    Done(Result<Value, ApiError>),
    /// `wait_ms`: what the server asked for (`Retry-After`); None: our exponential back-off.
    Retry {
        error: ApiError,
        wait_ms: Option<u64>,
    },
}

impl Client {
    pub fn new(token: Secret, scheme: AuthScheme, policy: RetryPolicy) -> Self {
        assert!(policy.max_attempts >= 1, "at least one attempt");
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_millis(policy.timeout_ms)))
            .user_agent("fintrail-trace")
            .max_redirects(0)
            .build();
        Self { agent: config.into(), token, scheme, policy }
    }

    /// Sends `req`; returns the JSON body of a 2xx answer (`Value::Null` for an empty one).
    ///
    /// Retried: 429 (after `Retry-After`, or the back-off), 5xx, and transport failures.
    /// A POST that timed out is not retried: the server may have acted on it, and a
    /// second comment is worse than a reported timeout.
    pub fn send(&self, req: &ApiRequest) -> Result<Value, ApiError> {
        let mut last = ApiError::Timeout;
        for attempt in 0..self.policy.max_attempts {
            match self.attempt(req) {
                Attempt::Done(result) => return result,
                Attempt::Retry { error, wait_ms } => {
                    last = error;
                    if attempt + 1 < self.policy.max_attempts {
                        let backoff = self.policy.backoff_ms.saturating_mul(1 << attempt.min(16));
                        std::thread::sleep(Duration::from_millis(wait_ms.unwrap_or(backoff)));
                    }
                }
            }
        }
        Err(last)
    }

    fn attempt(&self, req: &ApiRequest) -> Attempt {
        let auth = match self.scheme {
            AuthScheme::Raw => self.token.expose().to_owned(),
            AuthScheme::Bearer => format!("Bearer {}", self.token.expose()),
        };
        let result = match (req.method, &req.body) {
            (Method::Get, _) => {
                let mut b = self.agent.get(&req.url).header("Authorization", &auth);
                for (k, v) in &req.headers {
                    b = b.header(*k, v);
                }
                b.call()
            }
            (Method::Post, body) => {
                let mut b = self.agent.post(&req.url).header("Authorization", &auth);
                for (k, v) in &req.headers {
                    b = b.header(*k, v);
                }
                let bytes = body.as_ref().map(Value::to_string).unwrap_or_default();
                b.send(bytes.as_bytes())
            }
        };
        let mut resp = match result {
            Ok(r) => r,
            Err(ureq::Error::Timeout(_)) => {
                return if req.method == Method::Post {
                    Attempt::Done(Err(ApiError::Timeout))
                } else {
                    Attempt::Retry { error: ApiError::Timeout, wait_ms: None }
                }
            }
            Err(e) => {
                // The error text never holds the token: ureq reports the URL and cause only.
                return Attempt::Retry { error: ApiError::Transport(e.to_string()), wait_ms: None };
            }
        };
        let status = resp.status().as_u16();
        let retry_after_s =
            resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
        let body = resp.body_mut().with_config().limit(self.policy.max_body_bytes).read_to_string();
        match status {
            200..=299 => {
                let body = match body {
                    Ok(b) => b,
                    Err(ureq::Error::Timeout(_)) => return Attempt::Done(Err(ApiError::Timeout)),
                    Err(e) => return Attempt::Done(Err(ApiError::MalformedResponse(e.to_string()))),
                };
                if body.trim().is_empty() {
                    return Attempt::Done(Ok(Value::Null));
                }
                Attempt::Done(
                    serde_json::from_str(&body)
                        .map_err(|e| ApiError::MalformedResponse(format!("body is not JSON: {e}"))),
                )
            }
            401 | 403 => Attempt::Done(Err(ApiError::Unauthorized { status })),
            404 => Attempt::Done(Err(ApiError::NotFound)),
            429 => {
                let wait_ms = retry_after_s.map(|s| s.saturating_mul(1000));
                if wait_ms.is_some_and(|w| w > self.policy.max_retry_after_ms) {
                    return Attempt::Done(Err(ApiError::RateLimited { retry_after_s }));
                }
                Attempt::Retry { error: ApiError::RateLimited { retry_after_s }, wait_ms }
            }
            500..=599 => Attempt::Retry { error: ApiError::Server { status }, wait_ms: None },
            _ => {
                let text: String = body.unwrap_or_default().chars().take(200).collect();
                Attempt::Done(Err(ApiError::Rejected { status, body: text }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_hides_the_value() {
        let s = Secret::new("pk_live_123");
        assert_eq!(format!("{s:?}"), "***");
        let c = Client::new(s, AuthScheme::Raw, RetryPolicy::default());
        assert!(!format!("{c:?}").contains("pk_live_123"));
    }
}
