//! Media in Google Cloud Storage (production), through the XML API with V4 signed URLs whose
//! signature comes from the IAM Credentials `signBlob` of the media signer service account
//! (keyless: no HMAC key, no service account key).
//!
//! # Why the XML API over `ureq`, not `object_store`
//!
//! `infra/` gives the API no object permission at all: the `media-signer` account holds object
//! create / get / delete on the media bucket, and the API may only `signBlob` as that account.
//! So every object request is made with a V4 URL signed as the signer, never with the API's own
//! bearer token. `object_store`'s GCS backend authenticates its requests with the caller's own
//! token (and, when it signs URLs, signs as the caller's own account): it would need the API to
//! hold the bucket permissions itself, and it brings `reqwest` (issue #17 wants none in the
//! default build) or a non-default feature that `./dev test`, `./dev lint` and the container build
//! would all have to enable. The three calls we need (PUT, GET, DELETE of one object) and the V4
//! signature are small; `ureq` with rustls is already in the binary (fintrail-jobs,
//! fintrail-trace), so this adds no crate to the build.
//!
//! # How downloads work
//!
//! Clients never see a GCS URL. They get our own signed URL ([`super::signing`]): bound to the
//! object, expiring (15 min by default), refused when tampered, dying with the token that
//! obtained it, audited when redeemed. After those checks the API fetches the object with a
//! V4 URL that lives [`INTERNAL_URL_TTL_SECS`] and streams it. The guarantees are therefore the
//! same on both backends, and the URL that could open the bucket never leaves the server.
//!
//! # Testing
//!
//! `signBlob` cannot be reached from a test machine: it sits behind [`BlobSigner`], whose real
//! implementation is [`IamCredentialsSigner`] and whose fake (`FakeBlobSigner`, feature
//! `testing`) signs with a locally generated RSA key. The V4 construction is checked against
//! Google's published conformance vectors (their signatures verify over our string to sign),
//! and the store runs against `fake-gcs-server` in the tests.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use rand::RngCore as _;
use sha2::{Digest, Sha256};

use super::store::{MediaReader, MediaStore, StoreError};
use fintrail_db::home::owner_only;

/// The public GCS endpoint (path-style XML API).
pub const DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";
/// The metadata server of Cloud Run / GCE (the runtime identity's access token).
pub const METADATA_ENDPOINT: &str = "http://metadata.google.internal";
/// The IAM Credentials API.
pub const IAM_CREDENTIALS_ENDPOINT: &str = "https://iamcredentials.googleapis.com";
/// Lifetime of the V4 URLs the API signs for its own requests (they never leave the server).
pub const INTERNAL_URL_TTL_SECS: u64 = 300;
const ALGORITHM: &str = "GOOG4-RSA-SHA256";
/// Most bytes of an error answer kept for the log.
const ERROR_BODY_MAX: u64 = 4096;

// ------------------------------------------------------------------------------- V4 signing

/// RFC 3986 percent-encoding of everything but unreserved characters (and `/` when `keep_slash`).
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
        if unreserved || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One V4 URL to sign (path style, only the `host` header signed, unsigned payload).
#[derive(Debug, Clone)]
pub struct V4Request<'a> {
    /// `GET`, `PUT`, `DELETE`.
    pub method: &'a str,
    /// `https` or `http` (the emulator).
    pub scheme: &'a str,
    /// The `Host` header: `storage.googleapis.com`, or `127.0.0.1:PORT`.
    pub host: &'a str,
    /// The bucket.
    pub bucket: &'a str,
    /// The object name (unencoded; encoded here, slashes kept).
    pub object: &'a str,
    /// The signing service account (the credential's email).
    pub email: &'a str,
    /// Signing time.
    pub at: DateTime<Utc>,
    /// Lifetime in seconds (1..=604800).
    pub expires_secs: u64,
}

/// What is signed, and the URL without its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V4Prepared {
    /// The canonical request.
    pub canonical_request: String,
    /// The string to sign (what `signBlob` signs).
    pub string_to_sign: String,
    /// `scheme://host/bucket/object?X-Goog-...` without `X-Goog-Signature`.
    pub unsigned_url: String,
}

impl V4Request<'_> {
    /// The canonical request and string to sign (Google's "V4 signing process").
    pub fn prepare(&self) -> V4Prepared {
        assert!(self.expires_secs >= 1 && self.expires_secs <= 604_800, "V4 signed URLs live 1 s to 7 days");
        let datetime = self.at.format("%Y%m%dT%H%M%SZ").to_string();
        let date = self.at.format("%Y%m%d").to_string();
        let scope = format!("{date}/auto/storage/goog4_request");
        // Already in sorted order.
        let params = [
            ("X-Goog-Algorithm", ALGORITHM.to_owned()),
            ("X-Goog-Credential", format!("{}/{scope}", self.email)),
            ("X-Goog-Date", datetime.clone()),
            ("X-Goog-Expires", self.expires_secs.to_string()),
            ("X-Goog-SignedHeaders", "host".to_owned()),
        ];
        let canonical_query = params
            .iter()
            .map(|(k, v)| format!("{}={}", uri_encode(k, false), uri_encode(v, false)))
            .collect::<Vec<_>>()
            .join("&");
        let path = format!("/{}/{}", uri_encode(self.bucket, false), uri_encode(self.object, true));
        let canonical_request =
            format!("{}\n{path}\n{canonical_query}\nhost:{}\n\nhost\nUNSIGNED-PAYLOAD", self.method, self.host);
        let string_to_sign =
            format!("{ALGORITHM}\n{datetime}\n{scope}\n{}", hex::encode(Sha256::digest(canonical_request.as_bytes())));
        let unsigned_url = format!("{}://{}{path}?{canonical_query}", self.scheme, self.host);
        V4Prepared { canonical_request, string_to_sign, unsigned_url }
    }

    /// The signed URL, the signature made by `signer` (which must be `self.email`'s key).
    pub fn presign(&self, signer: &dyn BlobSigner) -> Result<String, StoreError> {
        let p = self.prepare();
        let signature = signer.sign_blob(p.string_to_sign.as_bytes())?;
        Ok(format!("{}&X-Goog-Signature={}", p.unsigned_url, hex::encode(signature)))
    }
}

// ---------------------------------------------------------------------------- blob signing

/// Signs bytes as one service account: RSASSA-PKCS1-v1_5 with SHA-256, what IAM Credentials'
/// `signBlob` returns. Blocking (called on a blocking thread).
pub trait BlobSigner: Send + Sync + std::fmt::Debug {
    /// The service account whose key signs (the V4 credential names it).
    fn email(&self) -> &str;
    /// The signature of `blob`.
    fn sign_blob(&self, blob: &[u8]) -> Result<Vec<u8>, StoreError>;
}

/// The production signer: the runtime identity's access token from the metadata server, then
/// `projects/-/serviceAccounts/{email}:signBlob` (the API holds `iam.serviceAccounts.signBlob`
/// on the signer account only; see `infra/stack/main.tf`).
pub struct IamCredentialsSigner {
    email: String,
    metadata: String,
    iam: String,
    agent: ureq::Agent,
    /// The access token and when to stop using it.
    token: Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for IamCredentialsSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("IamCredentialsSigner").field("email", &self.email).field("iam", &self.iam).finish()
    }
}

#[derive(serde::Deserialize)]
struct MetadataToken {
    access_token: String,
    expires_in: u64,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignBlobResponse {
    signed_blob: String,
}

impl IamCredentialsSigner {
    /// Signs as `email` through Google's endpoints.
    pub fn new(email: impl Into<String>) -> Self {
        Self::with_endpoints(email, METADATA_ENDPOINT, IAM_CREDENTIALS_ENDPOINT)
    }

    /// Signs as `email` through other endpoints (tests: a local stand-in for both).
    pub fn with_endpoints(email: impl Into<String>, metadata: &str, iam: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(Some(Duration::from_secs(15)))
            .max_redirects(0)
            .user_agent("fintrail-api")
            .build()
            .into();
        Self {
            email: email.into(),
            metadata: metadata.trim_end_matches('/').to_owned(),
            iam: iam.trim_end_matches('/').to_owned(),
            agent,
            token: Mutex::new(None),
        }
    }

    fn access_token(&self) -> Result<String, StoreError> {
        let mut cached = self.token.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((token, until)) = cached.as_ref() {
            if Instant::now() < *until {
                return Ok(token.clone());
            }
        }
        let url = format!("{}/computeMetadata/v1/instance/service-accounts/default/token", self.metadata);
        let mut resp = self
            .agent
            .get(&url)
            .header("Metadata-Flavor", "Google")
            .call()
            .map_err(|e| transport("metadata server token", &e))?;
        let status = resp.status().as_u16();
        let body = read_limited(&mut resp, 64 * 1024);
        if status != 200 {
            return Err(classify("metadata server token", status, &body));
        }
        let t: MetadataToken = serde_json::from_str(&body)
            .map_err(|e| StoreError::Backend(format!("metadata server token: unexpected answer: {e}")))?;
        // Refreshed a minute before Google's expiry.
        let until = Instant::now() + Duration::from_secs(t.expires_in.saturating_sub(60));
        *cached = Some((t.access_token.clone(), until));
        Ok(t.access_token)
    }

    fn forget_token(&self) {
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn sign_once(&self, blob: &[u8]) -> Result<Result<Vec<u8>, (u16, String)>, StoreError> {
        let token = self.access_token()?;
        let url = format!("{}/v1/projects/-/serviceAccounts/{}:signBlob", self.iam, uri_encode(&self.email, false));
        let payload = serde_json::json!({ "payload": base64::engine::general_purpose::STANDARD.encode(blob) });
        let mut resp = self
            .agent
            .post(&url)
            .header("Authorization", &format!("Bearer {token}"))
            .header("Content-Type", "application/json")
            .send(payload.to_string())
            .map_err(|e| transport("signBlob", &e))?;
        let status = resp.status().as_u16();
        let body = read_limited(&mut resp, 64 * 1024);
        if status != 200 {
            return Ok(Err((status, body)));
        }
        let r: SignBlobResponse = serde_json::from_str(&body)
            .map_err(|e| StoreError::Backend(format!("signBlob: unexpected answer: {e}")))?;
        let sig = base64::engine::general_purpose::STANDARD
            .decode(r.signed_blob)
            .map_err(|e| StoreError::Backend(format!("signBlob: signature is not base64: {e}")))?;
        Ok(Ok(sig))
    }
}

impl BlobSigner for IamCredentialsSigner {
    fn email(&self) -> &str {
        &self.email
    }

    fn sign_blob(&self, blob: &[u8]) -> Result<Vec<u8>, StoreError> {
        match self.sign_once(blob)? {
            Ok(sig) => Ok(sig),
            // A token revoked or expired early: fetch a new one, once.
            Err((401, _)) => {
                self.forget_token();
                self.sign_once(blob)?.map_err(|(status, body)| classify("signBlob", status, &body))
            }
            Err((status, body)) => Err(classify("signBlob", status, &body)),
        }
    }
}

// ------------------------------------------------------------------------------ the store

/// Where GCS media go.
#[derive(Debug, Clone)]
pub struct GcsConfig {
    /// The bucket (`FINTRAIL_MEDIA_BUCKET`).
    pub bucket: String,
    /// The endpoint (`FINTRAIL_GCS_ENDPOINT`, default [`DEFAULT_ENDPOINT`]).
    pub endpoint: Endpoint,
    /// Signs the V4 URLs (production: [`IamCredentialsSigner`] for `FINTRAIL_MEDIA_SIGNER`).
    pub signer: Arc<dyn BlobSigner>,
}

/// A GCS endpoint: scheme and host (with a port when not the default one), no path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    scheme: &'static str,
    host: String,
}

impl Endpoint {
    /// Parses `https://host[:port]` (or `http://` for a loopback emulator only: signed URLs
    /// and media bytes never cross a network in clear).
    pub fn parse(s: &str) -> Result<Endpoint, String> {
        let (scheme, rest) = if let Some(r) = s.strip_prefix("https://") {
            ("https", r)
        } else if let Some(r) = s.strip_prefix("http://") {
            ("http", r)
        } else {
            return Err(format!("{s:?} is not an http(s):// URL"));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        let ok = !authority.is_empty()
            && authority.len() <= 255
            && authority.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
        if !ok {
            return Err(format!("{s:?}: expected scheme://host[:port] with no path, query or credentials"));
        }
        let host = authority.to_ascii_lowercase();
        // The Host header ureq sends omits a default port; the signature must match it.
        let default_port = if scheme == "https" { ":443" } else { ":80" };
        let host = host.strip_suffix(default_port).unwrap_or(&host).to_owned();
        if scheme == "http" {
            let name = if host.starts_with('[') {
                host.split(']').next().map(|h| format!("{h}]")).unwrap_or_default()
            } else {
                host.split(':').next().unwrap_or_default().to_owned()
            };
            let loopback = name == "localhost" || name == "[::1]" || name.starts_with("127.");
            if !loopback {
                return Err(format!("{s:?}: plain http is accepted for a loopback emulator only; use https"));
            }
        }
        Ok(Endpoint { scheme, host })
    }

    /// `https://storage.googleapis.com`.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.host)
    }
}

impl Default for Endpoint {
    fn default() -> Self {
        Endpoint { scheme: "https", host: "storage.googleapis.com".into() }
    }
}

/// Checks a bucket name (Google's rules, without the dotted-name variants' length).
pub fn check_bucket_name(name: &str) -> Result<(), String> {
    let ok = (3..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'))
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a bucket name (3-63 of a-z 0-9 - _ ., starting and ending with a letter or digit)"
        ))
    }
}

/// Media in a GCS bucket. Uploads are staged on local disk first (hashed and bounded before any
/// byte is sent), then `PUT`; compensation is a `DELETE`. Cheap to clone.
#[derive(Clone)]
pub struct GcsStore(Arc<GcsInner>);

struct GcsInner {
    config: GcsConfig,
    agent: ureq::Agent,
    staging: PathBuf,
}

impl std::fmt::Debug for GcsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcsStore")
            .field("bucket", &self.0.config.bucket)
            .field("endpoint", &self.0.config.endpoint)
            .finish()
    }
}

impl GcsStore {
    /// A store for `config`, staging uploads under `media_dir/staging` (owner-only).
    pub fn new(config: GcsConfig, media_dir: &Path) -> std::io::Result<Self> {
        check_bucket_name(&config.bucket).map_err(std::io::Error::other)?;
        let staging = media_dir.join("staging");
        for dir in [media_dir, staging.as_path()] {
            owner_only::create_dir(dir).map_err(std::io::Error::other)?;
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            // 10 MiB each way at a modest rate; a stuck transfer ends.
            .timeout_global(Some(Duration::from_secs(120)))
            .max_redirects(0)
            .user_agent("fintrail-api")
            .build()
            .into();
        Ok(Self(Arc::new(GcsInner { config, agent, staging })))
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.0.config.bucket
    }

    fn signed_url(&self, method: &str, key: &str) -> Result<String, StoreError> {
        super::store::check_key(key)?;
        V4Request {
            method,
            scheme: self.0.config.endpoint.scheme,
            host: &self.0.config.endpoint.host,
            bucket: &self.0.config.bucket,
            object: key,
            email: self.0.config.signer.email(),
            at: Utc::now(),
            expires_secs: INTERNAL_URL_TTL_SECS,
        }
        .presign(self.0.config.signer.as_ref())
    }

    fn put_blocking(&self, staged: &Path, key: &str, content_type: &str) -> Result<(), StoreError> {
        let url = self.signed_url("PUT", key)?;
        let file = std::fs::File::open(staged)?;
        let mut resp = self
            .0
            .agent
            .put(&url)
            .header("Content-Type", content_type)
            .send(file)
            .map_err(|e| transport("upload", &e))?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        Err(classify("upload", status, &read_limited(&mut resp, ERROR_BODY_MAX)))
    }

    fn get_blocking(&self, key: &str) -> Result<ureq::Body, StoreError> {
        let url = self.signed_url("GET", key)?;
        let mut resp = self.0.agent.get(&url).call().map_err(|e| transport("download", &e))?;
        let status = resp.status().as_u16();
        if status == 200 {
            return Ok(resp.into_body());
        }
        Err(classify("download", status, &read_limited(&mut resp, ERROR_BODY_MAX)))
    }

    fn delete_blocking(&self, key: &str) -> Result<(), StoreError> {
        let url = self.signed_url("DELETE", key)?;
        let mut resp = self.0.agent.delete(&url).call().map_err(|e| transport("delete", &e))?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        Err(classify("delete", status, &read_limited(&mut resp, ERROR_BODY_MAX)))
    }
}

/// Runs `f` on a blocking thread with a clone of the store.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| StoreError::Backend(format!("storage task: {e}")))?
}

impl MediaStore for GcsStore {
    fn staging_path(&self) -> PathBuf {
        let mut b = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut b);
        self.0.staging.join(hex::encode(b))
    }

    fn commit<'a>(
        &'a self,
        staged: &'a Path,
        key: &'a str,
        content_type: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let (this, staged_owned, key, ct) =
                (self.clone(), staged.to_owned(), key.to_owned(), content_type.to_owned());
            let result = blocking(move || this.put_blocking(&staged_owned, &key, &ct)).await;
            // The bytes are in the bucket (or the upload failed): the staging copy goes either way.
            let _ = tokio::fs::remove_file(staged).await;
            result
        })
    }

    fn open<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<MediaReader, StoreError>> {
        Box::pin(async move {
            let (this, key) = (self.clone(), key.to_owned());
            // The status is known before this returns (a missing object is NotFound here, not a
            // broken stream later); the body is then read on the same blocking thread and handed
            // over in chunks, bounded (backpressure from the client).
            let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
            tokio::task::spawn_blocking(move || {
                let body = match this.get_blocking(&key) {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<axum::body::Bytes>>(4);
                if ready_tx.send(Ok(rx)).is_err() {
                    return;
                }
                let mut reader = body.into_reader();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let item = match reader.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => Ok(axum::body::Bytes::copy_from_slice(&buf[..n])),
                        Err(e) => Err(e),
                    };
                    let failed = item.is_err();
                    if tx.blocking_send(item).is_err() || failed {
                        break;
                    }
                }
            });
            let rx = ready_rx.await.map_err(|_| StoreError::Backend("storage task ended".into()))??;
            let stream =
                futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
            Ok(Box::pin(tokio_util::io::StreamReader::new(stream)) as MediaReader)
        })
    }

    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let (this, key) = (self.clone(), key.to_owned());
            blocking(move || this.delete_blocking(&key)).await
        })
    }
}

// -------------------------------------------------------------------------------- helpers

fn read_limited(resp: &mut ureq::http::Response<ureq::Body>, limit: u64) -> String {
    resp.body_mut().with_config().limit(limit).read_to_string().unwrap_or_default()
}

/// Signatures are credentials: never in a message.
fn redact(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("X-Goog-Signature=") {
        out.push_str(&rest[..i]);
        out.push_str("X-Goog-Signature=[redacted]");
        let after = &rest[i + "X-Goog-Signature=".len()..];
        rest = after.find(|c: char| !c.is_ascii_hexdigit()).map(|j| &after[j..]).unwrap_or("");
    }
    out.push_str(rest);
    out
}

fn transport(op: &str, e: &ureq::Error) -> StoreError {
    StoreError::Unavailable(format!("{op}: {}", redact(&e.to_string())))
}

/// A non-success answer: 404 is a missing object; throttling and server errors are an
/// unavailable store (503 to our client); anything else is our misconfiguration (500, logged).
fn classify(op: &str, status: u16, body: &str) -> StoreError {
    let snippet: String = redact(body).chars().take(300).collect();
    match status {
        404 => StoreError::NotFound,
        408 | 429 | 500..=599 => StoreError::Unavailable(format!("{op}: HTTP {status}: {snippet}")),
        _ => StoreError::Backend(format!("{op}: HTTP {status}: {snippet}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    /// The public half of the dummy service account of Google's storage conformance tests
    /// (`test-iam-credentials@dummy-project-id.iam.gserviceaccount.com`, "inactive, fine to be
    /// public"): the modulus, exponent 65537. Their expected signatures verify against it.
    // pragma: allowlist nextline secret (a public RSA modulus)
    const CONFORMANCE_N: &str = "ac3f3322ac8a2db5f436af28d098f5a871211e1a8edfed0e3fb4c4171e55c5ce8f77006814dadf9c9448fd2f99683612d5abebe4faa9a7c83cf9434e32f23556c8c633cc634dac6456ff2698aa7aa52990b2d4eddb9a736357b1036c2fe313564b058d14dc76921df9fa4bd343f0c5dd803d3fba54535b0ababd4f3fc3a8b9b58b14ee7d8b2e54139757d0eff7a63bd9d87021497b31d955ad0799e5ac747c16b28934b24c10610348ccfdc917d0694798094f680d81ee8aa290deb0978ba0bcda5fb7149c39fe0809e72ee2c3c304ac2152b257184116c1573e9960a5a411c261b3c046dffd7a6df6aa36eb0d943209f7d23b0e68a9527805fc712e95885fad";
    const CONFORMANCE_EMAIL: &str = "test-iam-credentials@dummy-project-id.iam.gserviceaccount.com";

    /// (bucket, object, method, expiration, timestamp, expected URL) from Google's
    /// `storage/v1/v4_signatures.json` (googleapis/conformance-tests): the cases that sign only
    /// the host header, path style, as we do.
    const VECTORS: [(&str, &str, &str, u64, &str, &str); 4] = [
        ("test-bucket", "test-object", "GET", 10, "2019-02-01T09:00:00Z",
         // pragma: allowlist nextline secret (a published test vector)
         "https://storage.googleapis.com/test-bucket/test-object?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=test-iam-credentials%40dummy-project-id.iam.gserviceaccount.com%2F20190201%2Fauto%2Fstorage%2Fgoog4_request&X-Goog-Date=20190201T090000Z&X-Goog-Expires=10&X-Goog-SignedHeaders=host&X-Goog-Signature=95e6a13d43a1d1962e667f17397f2b80ac9bdd1669210d5e08e0135df9dff4e56113485dbe429ca2266487b9d1796ebdee2d7cf682a6ef3bb9fbb4c351686fba90d7b621cf1c4eb1fdf126460dd25fa0837dfdde0a9fd98662ce60844c458448fb2b352c203d9969cb74efa4bdb742287744a4f2308afa4af0e0773f55e32e92973619249214b97283b2daa14195244444e33f938138d1e5f561088ce8011f4986dda33a556412594db7c12fc40e1ff3f1bedeb7a42f5bcda0b9567f17f65855f65071fabb88ea12371877f3f77f10e1466fff6ff6973b74a933322ff0949ce357e20abe96c3dd5cfab42c9c83e740a4d32b9e11e146f0eb3404d2e975896f74"),
        ("test-bucket", "test-object", "PUT", 10, "2019-02-01T09:00:00Z",
         // pragma: allowlist nextline secret (a published test vector)
         "https://storage.googleapis.com/test-bucket/test-object?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=test-iam-credentials%40dummy-project-id.iam.gserviceaccount.com%2F20190201%2Fauto%2Fstorage%2Fgoog4_request&X-Goog-Date=20190201T090000Z&X-Goog-Expires=10&X-Goog-SignedHeaders=host&X-Goog-Signature=8adff1d4285739e31aa68e73767a46bc5511fde377497dbe08481bf5ceb34e29cc9a59921748d8ec3dd4085b7e9b7772a952afedfcdaecb3ae8352275b8b7c867f204e3db85076220a3127a8a9589302fc1181eae13b9b7fe41109ec8cdc93c1e8bac2d7a0cc32a109ca02d06957211326563ab3d3e678a0ba296e298b5fc5e14593c99d444c94724cc4be97015dbff1dca377b508fa0cb7169195de98d0e4ac96c42b918d28c8d92d33e1bd125ce0fb3cd7ad2c45dae65c22628378f6584971b8bf3945b26f2611eb651e9b6a8648970c1ecf386bb71327b082e7296c4e1ee2fc0bdd8983da80af375c817fb1ad491d0bc22c0f51dba0d66e2cffbc90803e47"),
        ("test-bucket", "test-object", "GET", 20, "2019-03-01T09:00:00Z",
         // pragma: allowlist nextline secret (a published test vector)
         "https://storage.googleapis.com/test-bucket/test-object?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=test-iam-credentials%40dummy-project-id.iam.gserviceaccount.com%2F20190301%2Fauto%2Fstorage%2Fgoog4_request&X-Goog-Date=20190301T090000Z&X-Goog-Expires=20&X-Goog-SignedHeaders=host&X-Goog-Signature=9669ed5b10664dc594c758296580662912cf4bcc5a4ba0b6bf055bcbf6f34eed7bdad664f534962174a924741a0c273a4f67bc1847cef20192a6beab44223bd9d4fbbd749c407b79997598c30f82ddc269ff47ec09fa3afe74e00616d438df0d96a7d8ad0adacfad1dc3286f864d924fe919fb0dce45d3d975c5afe8e13af2db9cc37ba77835f92f7669b61e94c6d562196c1274529e76cfff1564cc2cad7d5387dc8e12f7a5dfd925685fe92c30b43709eee29fa2f66067472cee5423d1a3a4182fe8cea75c9329d181dc6acad7c393cd04f8bf5bc0515127d8ebd65d80c08e19ad03316053ea60033fd1b1fd85a69c576415da3bf0a3718d9ea6d03e0d66f0"),
        ("test-bucket2", "test-object2", "GET", 10, "2019-02-01T09:00:00Z",
         // pragma: allowlist nextline secret (a published test vector)
         "https://storage.googleapis.com/test-bucket2/test-object2?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=test-iam-credentials%40dummy-project-id.iam.gserviceaccount.com%2F20190201%2Fauto%2Fstorage%2Fgoog4_request&X-Goog-Date=20190201T090000Z&X-Goog-Expires=10&X-Goog-SignedHeaders=host&X-Goog-Signature=36e3d58dfd3ec1d2dd2f24b5ee372a71e811ffaa2162a2b871d26728d0354270bc116face87127532969c4a3967ed05b7309af741e19c7202f3167aa8c2ac420b61417d6451442bb91d7c822cd17be8783f01e05372769c88913561d27e6660dd8259f0081a71f831be6c50283626cbf04494ac10c394b29bb3bce74ab91548f58a37118a452693cf0483d77561fc9cac8f1765d2c724994cca46a83517a10157ee0347a233a2aaeae6e6ab5e204ff8fc5f54f90a3efdb8301d9fff5475d58cd05b181affd657f48203f4fb133c3a3d355b8eefbd10d5a0a5fd70d06e9515460ad74e22334b2cba4b29cae4f6f285cdb92d8f3126d7a1479ca3bdb69c207d860"),
    ];

    /// Our URL equals Google's up to the signature, and Google's signature verifies (with the
    /// dummy account's public key) over our string to sign: the canonical request, the scope,
    /// the hashing and the encoding are byte for byte what GCS checks.
    #[test]
    fn google_conformance_vectors_verify_over_our_string_to_sign() {
        let n = hex::decode(CONFORMANCE_N).expect("hex");
        let public = ring::signature::RsaPublicKeyComponents { n: n.as_slice(), e: [1u8, 0, 1].as_slice() };
        for (bucket, object, method, expires_secs, at, expected) in VECTORS {
            let at = DateTime::parse_from_rfc3339(at).expect("time").with_timezone(&Utc);
            let req = V4Request {
                method,
                scheme: "https",
                host: "storage.googleapis.com",
                bucket,
                object,
                email: CONFORMANCE_EMAIL,
                at,
                expires_secs,
            };
            let p = req.prepare();
            let (unsigned, sig) = expected.split_once("&X-Goog-Signature=").expect("signature");
            assert_eq!(p.unsigned_url, unsigned, "{method} {bucket}/{object}");
            let sig = hex::decode(sig).expect("hex");
            public
                .verify(&ring::signature::RSA_PKCS1_2048_8192_SHA256, p.string_to_sign.as_bytes(), &sig)
                .unwrap_or_else(|_| panic!("Google's signature does not verify over {:?}", p.string_to_sign));
            // One changed byte in what we sign and it no longer does.
            let tampered = p.string_to_sign.replacen("GOOG4", "GOOG5", 1);
            assert!(public.verify(&ring::signature::RSA_PKCS1_2048_8192_SHA256, tampered.as_bytes(), &sig).is_err());
        }
    }

    #[test]
    fn emulator_urls_sign_the_host_with_its_port_and_encode_the_path() {
        let req = V4Request {
            method: "DELETE",
            scheme: "http",
            host: "127.0.0.1:4443",
            bucket: "b",
            object: "media/ab/x y+z",
            email: "signer@p.iam.gserviceaccount.com",
            at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).single().expect("time"),
            expires_secs: INTERNAL_URL_TTL_SECS,
        };
        let p = req.prepare();
        let lines: Vec<&str> = p.canonical_request.split('\n').collect();
        assert_eq!(lines[0], "DELETE");
        assert_eq!(lines[1], "/b/media/ab/x%20y%2Bz", "slashes kept, the rest encoded");
        assert_eq!(lines[3], "host:127.0.0.1:4443");
        assert_eq!(lines[6], "UNSIGNED-PAYLOAD");
        assert!(p
            .unsigned_url
            .starts_with("http://127.0.0.1:4443/b/media/ab/x%20y%2Bz?X-Goog-Algorithm=GOOG4-RSA-SHA256&"));
        let sts: Vec<&str> = p.string_to_sign.split('\n').collect();
        assert_eq!(sts[..3], ["GOOG4-RSA-SHA256", "20260102T030405Z", "20260102/auto/storage/goog4_request"]);
        assert_eq!(sts[3], hex::encode(Sha256::digest(p.canonical_request.as_bytes())));
    }

    #[test]
    fn endpoints_and_bucket_names() {
        assert_eq!(Endpoint::parse("https://storage.googleapis.com").expect("ok"), Endpoint::default());
        assert_eq!(Endpoint::parse("https://storage.googleapis.com:443/").expect("ok"), Endpoint::default());
        assert_eq!(Endpoint::parse("http://127.0.0.1:4443").expect("ok").base_url(), "http://127.0.0.1:4443");
        assert_eq!(Endpoint::parse("http://localhost:9000").expect("ok").host, "localhost:9000");
        assert_eq!(Endpoint::parse("http://[::1]:9000").expect("ok").host, "[::1]:9000");
        for bad in [
            "storage.googleapis.com",
            "ftp://x",
            "https://",
            "https://h/path",
            "https://u@h",
            "https://h?x=1",
            "http://10.0.0.1:80",
            "http://gcs.example",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
        assert!(check_bucket_name("fintrail-prod-media-1a2b3c").is_ok());
        for bad in ["", "ab", "Upper", "-x-", "a/b", &"x".repeat(64)] {
            assert!(check_bucket_name(bad).is_err(), "{bad}");
        }
    }

    /// A stand-in for the metadata server and IAM Credentials on one loopback port: answers
    /// `answers` in order (one connection each) and records each request's head and body.
    fn stand_in(answers: Vec<(u16, String)>) -> (String, std::thread::JoinHandle<Vec<String>>) {
        use std::io::{BufRead as _, BufReader, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for (status, body) in answers {
                let (stream, _) = listener.accept().expect("accept");
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut head = String::new();
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).expect("line");
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().expect("length");
                    }
                    if line == "\r\n" || line.is_empty() {
                        break;
                    }
                    head.push_str(&line);
                }
                let mut req_body = vec![0u8; len];
                reader.read_exact(&mut req_body).expect("body");
                seen.push(format!("{head}\n{}", String::from_utf8_lossy(&req_body)));
                let mut stream = stream;
                write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .expect("answer");
            }
            seen
        });
        (base, handle)
    }

    fn token(t: &str) -> (u16, String) {
        (200, serde_json::json!({ "access_token": t, "expires_in": 3599, "token_type": "Bearer" }).to_string())
    }

    /// The production signer's two calls, against a local stand-in: the metadata token (with
    /// `Metadata-Flavor: Google`), then `signBlob` for the signer account with that token and
    /// the payload in base64; the token is reused, refreshed once on a 401, and a 503 is an
    /// unavailable store (our 503), a 403 a refusal (our 500).
    #[test]
    fn iam_credentials_sign_blob_over_http() {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let signed = |sig: &[u8]| (200, serde_json::json!({ "keyId": "k1", "signedBlob": b64(sig) }).to_string());
        let (base, server) = stand_in(vec![
            token("tok-1"),
            signed(b"sig-1"),
            signed(b"sig-2"),
            (401, "{}".into()),
            token("tok-2"),
            signed(b"sig-3"),
            (503, "{}".into()),
            (403, r#"{"error":{"message":"Permission 'iam.serviceAccounts.signBlob' denied"}}"#.into()),
        ]);
        let email = "fintrail-dev-media-signer@fintrail-dev.iam.gserviceaccount.com";
        let signer = IamCredentialsSigner::with_endpoints(email, &base, &format!("{base}/"));
        assert_eq!(signer.email(), email);
        assert_eq!(signer.sign_blob(b"blob one").expect("signed"), b"sig-1");
        assert_eq!(signer.sign_blob(b"blob two").expect("signed"), b"sig-2");
        assert_eq!(signer.sign_blob(b"blob three").expect("signed after a refresh"), b"sig-3");
        assert!(matches!(signer.sign_blob(b"x"), Err(StoreError::Unavailable(m)) if m.contains("503")));
        assert!(
            matches!(signer.sign_blob(b"x"), Err(StoreError::Backend(m)) if m.contains("403") && m.contains("signBlob"))
        );
        assert!(!format!("{signer:?}").contains("tok-"), "the token never in Debug");
        let seen = server.join().expect("stand-in");
        assert!(seen[0].starts_with("GET /computeMetadata/v1/instance/service-accounts/default/token "), "{}", seen[0]);
        assert!(seen[0].to_ascii_lowercase().contains("metadata-flavor: google"), "{}", seen[0]);
        let path = format!("POST /v1/projects/-/serviceAccounts/{}:signBlob ", uri_encode(email, false));
        for (i, (tok, blob)) in
            [(1, "tok-1", "blob one"), (2, "tok-1", "blob two"), (3, "tok-1", "blob three"), (5, "tok-2", "blob three")]
                .map(|(i, t, b)| (i, (t, b)))
        {
            assert!(seen[i].starts_with(&path), "{}", seen[i]);
            assert!(seen[i].to_ascii_lowercase().contains(&format!("authorization: bearer {tok}")), "{}", seen[i]);
            let body: serde_json::Value = serde_json::from_str(seen[i].split("\n\n").last().unwrap_or_default())
                .unwrap_or_else(|e| panic!("{e}: {}", seen[i]));
            assert_eq!(body["payload"], b64(blob.as_bytes()));
        }
        assert!(seen[4].starts_with("GET /computeMetadata/"), "a new token after the 401: {}", seen[4]);
    }

    /// Nothing listening: unavailable, with the operation named.
    #[test]
    fn an_unreachable_signer_is_unavailable() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let base = format!("http://127.0.0.1:{port}");
        let signer = IamCredentialsSigner::with_endpoints("a@b.iam.gserviceaccount.com", &base, &base);
        assert!(
            matches!(signer.sign_blob(b"x"), Err(StoreError::Unavailable(m)) if m.contains("metadata server token"))
        );
    }

    #[test]
    fn signatures_never_reach_a_message() {
        let s = redact("GET http://h/b/o?X-Goog-Date=1&X-Goog-Signature=0123abcdef&x=1 failed; X-Goog-Signature=ff");
        assert_eq!(
            s,
            "GET http://h/b/o?X-Goog-Date=1&X-Goog-Signature=[redacted]&x=1 failed; X-Goog-Signature=[redacted]"
        );
        assert!(matches!(classify("get", 404, ""), StoreError::NotFound));
        assert!(matches!(classify("get", 503, ""), StoreError::Unavailable(_)));
        assert!(matches!(classify("get", 429, ""), StoreError::Unavailable(_)));
        assert!(matches!(classify("get", 403, "AccessDenied"), StoreError::Backend(m) if m.contains("403")));
    }
}
