//! Media: customers upload ID documents and selfies to their own case (streamed, bounded,
//! hashed); staff obtain signed URLs; the download endpoint is authorized by the signature
//! alone (it was minted under `kyc.media.read`, names the token that minted it and dies with
//! that token).
//!
//! The bytes live in a [`store::MediaStore`]: local files (embedded default) or GCS
//! ([`gcs`], production). Downloads go through this API on both: our signed URL is checked,
//! the issuing token looked up and the redemption audited before a byte is read from the
//! store, then the object is streamed (see [`gcs`] for why not a redirect to GCS).

pub mod gcs;
pub mod signing;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;

use axum::body::Body;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Json;
use chrono::{DateTime, Utc};
use fintrail_domain::audit::AuditAction;
use fintrail_domain::media::{signed_url_ttl_secs, MediaKind, MAX_UPLOAD_BYTES};
use fintrail_domain::{KycState, Permission as P, State as _};
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt as _;
use utoipa::ToSchema;

use crate::auth::{record_denial, Caller, RequestId};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::routes::Registry;
use crate::state::AppState;
use fintrail_audit::NewEvent;
use fintrail_db::home::owner_only;
use signing::{SignedQuery, UrlSigner};

pub(crate) fn routes(reg: &mut Registry) {
    reg.add(
        Method::POST,
        "/v1/me/kyc/cases/{case_id}/media",
        P::KycMediaUpload,
        // Streams with its own limit (MAX_UPLOAD_BYTES), not the JSON body limit.
        post(upload).layer(axum::extract::DefaultBodyLimit::disable()),
    );
    reg.add(Method::POST, "/v1/media/{media_id}/signed-url", P::KycMediaRead, post(signed_url));
}

/// Kind of media (wire form of `MediaKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MediaKindName {
    /// Passport, ID card, driving licence.
    IdDocument,
    /// Face photo.
    Selfie,
}

impl From<MediaKindName> for MediaKind {
    fn from(k: MediaKindName) -> Self {
        match k {
            MediaKindName::IdDocument => MediaKind::IdDocument,
            MediaKindName::Selfie => MediaKind::Selfie,
        }
    }
}

/// Upload query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// What is uploaded.
    pub kind: MediaKindName,
}

/// A stored media object (metadata only).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MediaObject {
    /// Id.
    pub id: i64,
    /// Case.
    pub kyc_case_id: i64,
    /// Kind.
    pub kind: MediaKindName,
    /// Content type.
    pub content_type: String,
    /// Size.
    pub size_bytes: i64,
    /// Hex SHA-256 of the content.
    pub sha256: String,
    /// Stored.
    pub created_at: DateTime<Utc>,
}

/// `POST /v1/media/{media_id}/signed-url`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignedUrlRequest {
    /// Lifetime (default 900 s, at most 604800 s = 7 days).
    #[schema(minimum = 1, maximum = 604800, value_type = Option<u64>)]
    #[serde(default, deserialize_with = "crate::validate::opt_u64")]
    pub ttl_secs: Option<u64>,
}

/// A signed download URL.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SignedUrl {
    /// Path and query, relative to this server (`/v1/media/download?...`).
    pub url: String,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
    /// Signing key id.
    pub key_id: String,
}

fn now_unix() -> i64 {
    Utc::now().timestamp()
}

/// Upload an ID document or selfie to one's own case.
#[utoipa::path(post, path = "/v1/me/kyc/cases/{case_id}/media", tag = "media", security(("bearer" = [])),
    description = "Requires `kyc.media.upload` (customers). Raw body, at most 10 MiB; the case must be `started` or `needs_resubmission`.",
    params(("case_id" = i64, Path, description = "Case id"), UploadQuery),
    request_body(content(("image/jpeg"), ("image/png"), ("application/pdf")), description = "The file"),
    responses((status = 201, body = MediaObject), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, description = "The media store (GCS) is unavailable; nothing was stored", body = ErrorBody)))]
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(case_id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<MediaObject>)> {
    let customer = caller.own_customer()?;
    let kind: MediaKind = q.kind.into();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .unwrap_or_default();
    if !kind.accepts(&content_type) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("{kind} accepts {}", kind.allowed_content_types().join(", ")),
        ));
    }
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_UPLOAD_BYTES) {
        return Err(too_large());
    }
    // The case must be the caller's and accept uploads.
    let client = state.pool.get().await?;
    let row = client.query_opt("SELECT customer_id, state FROM fintrail.kyc_cases WHERE id = $1", &[&case_id]).await?;
    drop(client);
    let Some(row) = row else { return Err(ApiError::not_found("kyc_case")) };
    if row.get::<_, i64>(0) != customer {
        record_denial(&state, &caller.principal, caller.permission, format!("kyc_case:{case_id}"), &caller.request_id)
            .await?;
        return Err(ApiError::not_found("kyc_case"));
    }
    let case_state = KycState::parse(row.get::<_, &str>(1)).map_err(ApiError::internal)?;
    if !matches!(case_state, KycState::Started | KycState::NeedsResubmission) {
        return Err(ApiError::conflict(
            "case_closed_for_uploads",
            format!("case is {case_state}; uploads need started or needs_resubmission"),
        ));
    }
    // Stream to a staging file, hashing and counting; never buffer the whole body.
    let staged = state.media.staging_path();
    let result = stream_to(&staged, body).await;
    let (size, digest) = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = tokio::fs::remove_file(&staged).await;
            return Err(e);
        }
    };
    if size == 0 {
        let _ = tokio::fs::remove_file(&staged).await;
        return Err(ApiError::unprocessable("empty upload"));
    }
    // The object first, then its row: no row ever names a missing object. A store that is
    // down answers 503 here and nothing is registered (the commit removes the staging file).
    let key = store::new_key();
    if let Err(e) = state.media.commit(&staged, &key, &content_type).await {
        // An upload whose answer was lost (a timeout) may still have landed: remove it.
        match state.media.remove(&key).await {
            Ok(()) | Err(store::StoreError::NotFound) => {}
            Err(r) => {
                tracing::warn!(log_class = "app", error = %r, storage_key = %key, "a failed upload may have left an object without a row")
            }
        }
        return Err(e.into());
    }
    let stored = Stored { customer, case_id, kind, content_type: &content_type, size, digest: &digest, key: &key };
    let saved = save_row(&state, &caller, stored).await;
    if saved.is_err() {
        // Nothing half-written: the row was not committed, so the bytes go too.
        if let Err(e) = state.media.remove(&key).await {
            tracing::error!(log_class = "app", error = %e, storage_key = %key, "media object left without a row: remove it");
        }
    }
    Ok((StatusCode::CREATED, Json(saved?)))
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("uploads are limited to {MAX_UPLOAD_BYTES} bytes"),
    )
}

async fn stream_to(path: &std::path::Path, body: Body) -> ApiResult<(u64, [u8; 32])> {
    // 0600 from its first byte (the one owner-only helper; the folder is 0700).
    let mut file = tokio::fs::File::from_std(owner_only::create_new(path).map_err(ApiError::internal)?);
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
        size += chunk.len() as u64;
        if size > MAX_UPLOAD_BYTES {
            return Err(too_large());
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(ApiError::internal)?;
    }
    file.sync_all().await.map_err(ApiError::internal)?;
    Ok((size, hasher.finalize().into()))
}

/// An uploaded object, stored and hashed, whose row is to be written.
struct Stored<'a> {
    customer: i64,
    case_id: i64,
    kind: MediaKind,
    content_type: &'a str,
    size: u64,
    digest: &'a [u8; 32],
    key: &'a str,
}

async fn save_row(state: &AppState, caller: &Caller, stored: Stored<'_>) -> ApiResult<MediaObject> {
    let Stored { customer, case_id, kind, content_type, size, digest, key } = stored;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let size = size as i64;
    let row = tx
        .query_one(
            "INSERT INTO fintrail.media_objects (customer_id, kyc_case_id, kind, content_type, size_bytes, sha256, storage_key) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id, created_at",
            &[&customer, &case_id, &kind.as_str(), &content_type, &size, &digest.as_slice(), &key],
        )
        .await?;
    let id: i64 = row.get(0);
    let ev = caller.principal.event(AuditAction::MediaUploaded, format!("media:{id}"), Some(caller.permission))
        .on_behalf_of(Some(format!("customer:{customer}")))
        .request(Some(&caller.request_id))
        .change(None, Some(json!({ "media_id": id, "kyc_case_id": case_id, "kind": kind.as_str(), "size_bytes": size, "sha256": hex::encode(digest) })));
    state.audit.append_cached(&tx, &ev).await?;
    tx.commit().await?;
    state.audit.committed();
    Ok(MediaObject {
        id,
        kyc_case_id: case_id,
        kind: match kind {
            MediaKind::IdDocument => MediaKindName::IdDocument,
            MediaKind::Selfie => MediaKindName::Selfie,
        },
        content_type: content_type.to_owned(),
        size_bytes: size,
        sha256: hex::encode(digest),
        created_at: row.get(1),
    })
}

/// Obtain a signed download URL (staff).
#[utoipa::path(post, path = "/v1/media/{media_id}/signed-url", tag = "media", security(("bearer" = [])),
    description = "Requires `kyc.media.read`. Default lifetime 15 min, hard cap 7 days.",
    params(("media_id" = i64, Path, description = "Media object id")),
    request_body = SignedUrlRequest,
    responses((status = 200, body = SignedUrl), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn signed_url(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(media_id): ApiPath<i64>,
    ApiJson(body): ApiJson<SignedUrlRequest>,
) -> ApiResult<Json<SignedUrl>> {
    let ttl = signed_url_ttl_secs(body.ttl_secs).map_err(ApiError::unprocessable)?;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let customer: i64 = tx
        .query_opt("SELECT customer_id FROM fintrail.media_objects WHERE id = $1", &[&media_id])
        .await?
        .ok_or_else(|| ApiError::not_found("media"))?
        .get(0);
    let q = state.signer.sign("GET", media_id, caller.principal.token_id, now_unix(), ttl);
    let expires_at = DateTime::from_timestamp(q.expires, 0).unwrap_or_default();
    let ev = caller
        .principal
        .event(AuditAction::SignedUrlIssued, format!("media:{media_id}"), Some(caller.permission))
        .on_behalf_of(Some(format!("customer:{customer}")))
        .request(Some(&caller.request_id))
        .change(None, Some(json!({ "method": "GET", "expires_at": expires_at, "key_id": q.key_id })));
    state.audit.append_cached(&tx, &ev).await?;
    tx.commit().await?;
    state.audit.committed();
    Ok(Json(SignedUrl {
        url: format!("/v1/media/download?{}", UrlSigner::query_string(&q)),
        expires_at,
        key_id: q.key_id,
    }))
}

/// Download with a signed URL (no bearer token: the signature is the authorization).
///
/// Refusals are unauthenticated: they are rate-limited per client address and aggregated into
/// one event per window ([`crate::refusals`]), never one event each. A URL dies with its
/// issuing token: once that token is revoked (or expired) the download is refused.
#[utoipa::path(get, path = "/v1/media/download", tag = "media",
    description = "Authorized by the signature, which only `kyc.media.read` can obtain. Refuses tampered, expired and other-object signatures, and URLs whose issuing token was revoked or expired; `Cache-Control: no-store`. Refusals are rate-limited per client address (429 with `Retry-After`).",
    params(SignedQuery),
    responses((status = 200, description = "The file", content_type = "application/octet-stream"), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 503, description = "The media store (GCS) is unavailable", body = ErrorBody)))]
pub async fn download(
    State(state): State<AppState>,
    request_id: Option<axum::Extension<RequestId>>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    ApiQuery(q): ApiQuery<SignedQuery>,
) -> ApiResult<Response> {
    let request_id = request_id.map(|r| r.0 .0.clone());
    let ip = crate::refusals::peer_ip(peer.as_ref().map(|c| &c.0 .0));
    let subject = format!("media:{}", q.object);
    if let Err(retry_after) = state.refusals.check(ip) {
        state.refusals.note_rate_limited(subject);
        return Err(crate::refusals::rate_limited(retry_after));
    }
    let refuse = |refusal: signing::Refusal| {
        state.refusals.charge(ip);
        state.refusals.note(subject.clone(), refusal.as_str());
        tracing::warn!(log_class = "app", refusal = refusal.as_str(), %ip, object = q.object, "signed URL refused");
        ApiError::forbidden(format!("signed URL refused: {}", refusal.as_str()))
    };
    if let Err(refusal) = state.signer.verify(&q, "GET", now_unix()) {
        return Err(refuse(refusal));
    }
    let actor = format!("signed_url:{}:token:{}", q.key_id.chars().take(16).collect::<String>(), q.by);
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "SELECT m.customer_id, m.content_type, m.storage_key, m.size_bytes, \
             EXISTS (SELECT 1 FROM fintrail.api_tokens t WHERE t.id = $2 AND t.revoked_at IS NULL AND t.expires_at > now()) \
             FROM fintrail.media_objects m WHERE m.id = $1",
            &[&q.object, &q.by],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("media"))?;
    if !row.get::<_, bool>(4) {
        // The URL outlived the token that obtained it.
        return Err(refuse(signing::Refusal::IssuerRevoked));
    }
    let customer: i64 = row.get(0);
    let content_type: String = row.get(1);
    let key: String = row.get(2);
    let size: i64 = row.get(3);
    let file = match state.media.open(&key).await {
        Ok(f) => f,
        Err(store::StoreError::NotFound) => {
            // A row whose object is gone: an integrity failure, not the caller's.
            tracing::error!(log_class = "app", media_id = q.object, storage_key = %key, "media row without its object");
            return Err(ApiError::not_found("media object"));
        }
        Err(e) => return Err(e.into()),
    };
    let ev =
        NewEvent::allowed(actor, AuditAction::SignedUrlRedeemed, format!("media:{}", q.object), Some(P::KycMediaRead))
            .on_behalf_of(Some(format!("customer:{customer}")))
            .request(request_id.as_deref())
            .change(None, Some(json!({ "issued_by_token": q.by, "key_id": q.key_id })));
    state.audit.append_cached(&tx, &ev).await?;
    tx.commit().await?;
    state.audit.committed();
    let stream = tokio_util::io::ReaderStream::new(file);
    let mut res = Response::new(Body::from_stream(stream));
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    Ok(res)
}
