//! The check of Cloud Scheduler's calls: a Google-signed OIDC ID token (RS256) whose
//! signature verifies against Google's JWKS, whose `iss` is Google, whose `aud` is this
//! service's URL, whose `email` is the configured scheduler identity (verified), unexpired.
//!
//! Keys are cached for the JWKS response's `max-age` (clamped to 1 min..24 h; 1 h without
//! one) and refreshed when they are stale or a token names an unknown `kid` (at most one
//! refresh per [`REFRESH_MIN_INTERVAL`]: a flood of made-up `kid`s cannot hammer Google).
//! Refusals are typed: [`Refusal::Unauthenticated`] (401: no, malformed, unsigned, badly
//! signed, expired token, wrong issuer or audience) and [`Refusal::Forbidden`] (403: a valid
//! Google token of another identity). The HTTP route records each refusal as an audit event.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tokio::sync::Mutex;

/// Google's JWKS for ID tokens.
pub const GOOGLE_JWKS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";
/// The issuers Google's ID tokens carry.
pub const GOOGLE_ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];
/// Least time between two JWKS fetches.
pub const REFRESH_MIN_INTERVAL: Duration = Duration::from_secs(10);
/// Largest JWKS body read.
const JWKS_MAX_BYTES: u64 = 64 * 1024;
/// Longest token looked at.
const TOKEN_MAX_BYTES: usize = 8 * 1024;
/// Clock skew tolerated on `exp` / `nbf` / `iat`.
const LEEWAY_SECS: u64 = 10;

/// What the check accepts.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The expected `aud`: this service's URL (Cloud Scheduler's `oidc_token.audience`).
    pub audience: String,
    /// The expected `email`: the scheduler's service account.
    pub email: String,
    /// Where the JWKS is fetched.
    pub jwks_url: String,
    /// Accepted `iss` values.
    pub issuers: Vec<String>,
    /// Least time between two JWKS fetches ([`REFRESH_MIN_INTERVAL`]; tests lower it).
    pub refresh_min: Duration,
}

impl OidcConfig {
    /// From `FINTRAIL_JOBS_OIDC_AUDIENCE`, `FINTRAIL_JOBS_INVOKER` and (optional)
    /// `FINTRAIL_JOBS_OIDC_JWKS_URL`; `None` when the first two are not both set (then every
    /// call is refused).
    pub fn from_env() -> Option<OidcConfig> {
        let audience = std::env::var("FINTRAIL_JOBS_OIDC_AUDIENCE").ok().filter(|s| !s.is_empty())?;
        let email = std::env::var("FINTRAIL_JOBS_INVOKER").ok().filter(|s| !s.is_empty())?;
        let jwks_url = std::env::var("FINTRAIL_JOBS_OIDC_JWKS_URL").unwrap_or_else(|_| GOOGLE_JWKS_URL.into());
        Some(OidcConfig {
            audience,
            email,
            jwks_url,
            issuers: GOOGLE_ISSUERS.map(String::from).to_vec(),
            refresh_min: REFRESH_MIN_INTERVAL,
        })
    }
}

/// Why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 401.
    Unauthenticated(String),
    /// 403 (the token is Google's and valid, for another identity).
    Forbidden {
        /// The token's `email`.
        email: String,
        /// Why.
        reason: String,
    },
}

/// The verified caller.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Claims {
    /// The caller's identity.
    #[serde(default)]
    pub email: String,
    /// Google verified the email.
    #[serde(default)]
    pub email_verified: bool,
    /// The subject (the service account's unique id).
    #[serde(default)]
    pub sub: String,
}

struct Keys {
    by_kid: HashMap<String, DecodingKey>,
    fetched: Option<Instant>,
    ttl: Duration,
}

/// Verifies tokens; cheap to share (`Arc`).
pub struct Verifier {
    config: OidcConfig,
    keys: Mutex<Keys>,
    agent: ureq::Agent,
}

fn unauth(why: impl Into<String>) -> Refusal {
    Refusal::Unauthenticated(why.into())
}

impl Verifier {
    /// A verifier for `config`; keys are fetched on first use.
    pub fn new(config: OidcConfig) -> Verifier {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .http_status_as_error(true)
            .user_agent("fintrail-jobs")
            .build()
            .into();
        Verifier {
            config,
            keys: Mutex::new(Keys { by_kid: HashMap::new(), fetched: None, ttl: Duration::ZERO }),
            agent,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// Checks `token` (the bearer value) and returns its claims.
    pub async fn verify(&self, token: &str) -> Result<Claims, Refusal> {
        if token.len() > TOKEN_MAX_BYTES {
            return Err(unauth("token too long"));
        }
        // `alg: none` (or any algorithm but RS256) is refused here, before any key is looked up.
        let header = jsonwebtoken::decode_header(token).map_err(|e| unauth(format!("malformed token: {e}")))?;
        if header.alg != Algorithm::RS256 {
            return Err(unauth(format!("algorithm {:?} is not RS256", header.alg)));
        }
        let kid = header.kid.ok_or_else(|| unauth("token names no key (kid)"))?;
        let key = self.key(&kid).await?;
        let mut v = Validation::new(Algorithm::RS256);
        v.set_audience(&[&self.config.audience]);
        v.set_issuer(&self.config.issuers);
        v.set_required_spec_claims(&["exp", "iat", "iss", "aud"]);
        v.leeway = LEEWAY_SECS;
        let data =
            jsonwebtoken::decode::<Claims>(token, &key, &v).map_err(|e| unauth(format!("token refused: {e}")))?;
        let c = data.claims;
        if c.email != self.config.email || !c.email_verified {
            return Err(Refusal::Forbidden {
                email: c.email.chars().take(200).collect(),
                reason: format!("token of {:?} (verified: {}), not the scheduler identity", c.email, c.email_verified),
            });
        }
        Ok(c)
    }

    async fn key(&self, kid: &str) -> Result<DecodingKey, Refusal> {
        let mut keys = self.keys.lock().await;
        let stale = keys.fetched.is_none_or(|t| t.elapsed() >= keys.ttl);
        let may_refresh = keys.fetched.is_none_or(|t| t.elapsed() >= self.config.refresh_min);
        if (stale || !keys.by_kid.contains_key(kid)) && may_refresh {
            match self.fetch().await {
                Ok((by_kid, ttl)) => *keys = Keys { by_kid, fetched: Some(Instant::now()), ttl },
                // Keep serving the cached keys when Google is briefly unreachable.
                Err(e) => tracing::warn!(log_class = "app", error = %e, "JWKS refresh failed"),
            }
        }
        keys.by_kid.get(kid).cloned().ok_or_else(|| unauth(format!("unknown signing key {kid:?}")))
    }

    async fn fetch(&self) -> anyhow::Result<(HashMap<String, DecodingKey>, Duration)> {
        let (agent, url) = (self.agent.clone(), self.config.jwks_url.clone());
        let (body, max_age) = tokio::task::spawn_blocking(move || -> anyhow::Result<(String, Option<u64>)> {
            let mut resp = agent.get(&url).call()?;
            let max_age = resp
                .headers()
                .get("cache-control")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').find_map(|d| d.trim().strip_prefix("max-age=")?.parse().ok()));
            Ok((resp.body_mut().with_config().limit(JWKS_MAX_BYTES).read_to_string()?, max_age))
        })
        .await??;
        let jwks: Jwks = serde_json::from_str(&body)?;
        let mut by_kid = HashMap::new();
        for k in jwks.keys.into_iter().filter(|k| k.kty == "RSA").take(32) {
            by_kid.insert(k.kid, DecodingKey::from_rsa_components(&k.n, &k.e)?);
        }
        anyhow::ensure!(!by_kid.is_empty(), "the JWKS at {} holds no RSA key", self.config.jwks_url);
        let ttl = Duration::from_secs(max_age.unwrap_or(3600).clamp(60, 24 * 3600));
        Ok((by_kid, ttl))
    }
}

#[derive(serde::Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(serde::Deserialize)]
struct Jwk {
    kid: String,
    kty: String,
    #[serde(default)]
    n: String,
    #[serde(default)]
    e: String,
}
