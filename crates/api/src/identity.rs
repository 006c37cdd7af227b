//! Customers, the caller's own profile, and bearer tokens.

use axum::http::{Method, StatusCode};
use axum::routing::{get, post};
use axum::Json;
use chrono::{DateTime, Utc};
use fintrail_domain::audit::AuditAction;
use fintrail_domain::{Permission as P, Role};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath};
use crate::routes::Registry;
use crate::state::AppState;
use crate::tokens;
use fintrail_audit::NewEvent;

pub(crate) fn routes(reg: &mut Registry) {
    reg.add(Method::GET, "/v1/me", P::IdentitySelfRead, get(me));
    reg.add(Method::POST, "/v1/customers", P::IdentityCustomerCreate, post(create_customer));
    reg.add(Method::GET, "/v1/customers/{customer_id}", P::IdentityCustomerRead, get(get_customer));
    reg.add(Method::POST, "/v1/customers/{customer_id}/tokens", P::TokenIssue, post(issue_customer_token));
    reg.add(Method::POST, "/v1/tokens/{token_id}/revoke", P::TokenRevoke, post(revoke_token));
}

/// A customer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Customer {
    /// Id.
    pub id: i64,
    /// Display name.
    pub display_name: String,
    /// E-mail.
    pub email: String,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// `POST /v1/customers`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCustomer {
    /// 1–200 characters, not blank.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000]*[^\\u0000\\t\\n\\u000b\\f\\r \\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff][^\\u0000]*$"
    )]
    pub display_name: String,
    /// 3–320 characters, `local@domain`, no spaces.
    #[schema(min_length = 3, max_length = 320, pattern = "^[^@\\s\\u0000]+@[^@\\s\\u0000]+$")]
    pub email: String,
}

/// `POST /v1/customers/{customer_id}/tokens`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueToken {
    /// Lifetime in seconds (default 24 h, at most 30 days).
    #[schema(minimum = 1, maximum = 2592000, value_type = Option<u64>)]
    #[serde(default, deserialize_with = "crate::validate::opt_u64")]
    pub ttl_secs: Option<u64>,
}

/// A freshly issued token (its only appearance in clear text).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IssuedToken {
    /// Token id (for revocation).
    pub token_id: i64,
    /// The bearer token.
    pub token: String,
    /// Role.
    pub role: String,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
}

/// A revoked token.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RevokedToken {
    /// Token id.
    pub token_id: i64,
    /// When.
    pub revoked_at: DateTime<Utc>,
}

fn customer_from_row(r: &tokio_postgres::Row) -> Customer {
    Customer { id: r.get(0), display_name: r.get(1), email: r.get(2), created_at: r.get(3) }
}

async fn load_customer(state: &AppState, id: i64) -> ApiResult<Customer> {
    let client = state.pool.get().await?;
    let row = client
        .query_opt("SELECT id, display_name, email, created_at FROM fintrail.customers WHERE id = $1", &[&id])
        .await?
        .ok_or_else(|| ApiError::not_found("customer"))?;
    Ok(customer_from_row(&row))
}

/// The caller's own customer record.
#[utoipa::path(get, path = "/v1/me", tag = "identity", security(("bearer" = [])),
    description = "Requires `identity.self.read` (customers).",
    responses((status = 200, body = Customer), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn me(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Customer>> {
    let id = caller.own_customer()?;
    Ok(Json(load_customer(&state, id).await?))
}

/// Create a customer.
#[utoipa::path(post, path = "/v1/customers", tag = "identity", security(("bearer" = [])),
    description = "Requires `identity.customer.create`.",
    request_body = CreateCustomer,
    responses((status = 201, body = Customer), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_customer(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateCustomer>,
) -> ApiResult<(StatusCode, Json<Customer>)> {
    let name = body.display_name.as_str();
    crate::validate::text("display_name", name, 200)?;
    let email = body.email.as_str();
    crate::validate::text("email", email, 320)?;
    if email.chars().count() < 3 || !email.contains('@') {
        return Err(ApiError::unprocessable("email must be 3-320 characters and contain @"));
    }
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_one(
            "INSERT INTO fintrail.customers (display_name, email) VALUES ($1, $2) RETURNING id, display_name, email, created_at",
            &[&name, &email],
        )
        .await?;
    let c = customer_from_row(&row);
    let ev = caller
        .principal
        .event(AuditAction::CustomerCreated, format!("customer:{}", c.id), Some(caller.permission))
        .on_behalf_of(Some(format!("customer:{}", c.id)))
        .request(Some(&caller.request_id))
        .change(None, Some(json!({ "customer_id": c.id })));
    state.audit.append_cached(&tx, &ev).await?;
    tx.commit().await?;
    state.audit.committed();
    Ok((StatusCode::CREATED, Json(c)))
}

/// Read any customer.
#[utoipa::path(get, path = "/v1/customers/{customer_id}", tag = "identity", security(("bearer" = [])),
    description = "Requires `identity.customer.read`.",
    params(("customer_id" = i64, Path, description = "Customer id")),
    responses((status = 200, body = Customer), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_customer(
    axum::extract::State(state): axum::extract::State<AppState>,
    _caller: Caller,
    ApiPath(customer_id): ApiPath<i64>,
) -> ApiResult<Json<Customer>> {
    Ok(Json(load_customer(&state, customer_id).await?))
}

/// Who performs a token operation (for the audit event).
#[derive(Debug, Clone, Copy)]
pub struct Issuer<'a> {
    pub actor: &'a str,
    pub permission: Option<P>,
    pub request_id: Option<&'a str>,
    /// The request's bearer token when the actor is a person (see `fintrail_audit::Credential`).
    pub credential: Option<&'a fintrail_audit::Credential>,
}

/// Insert a token row and its audit event in `tx`; returns (id, token, expires_at).
pub async fn insert_token<C: tokio_postgres::GenericClient + Sync>(
    state_audit: &fintrail_audit::AuditWriter,
    tx: &C,
    role: Role,
    customer_id: Option<i64>,
    label: &str,
    ttl_secs: u64,
    by: &Issuer<'_>,
) -> Result<IssuedToken, tokio_postgres::Error> {
    let Issuer { actor, permission, request_id, credential } = *by;
    let (token, hash) = tokens::generate();
    let ttl = ttl_secs as f64;
    let row = tx
        .query_one(
            "INSERT INTO fintrail.api_tokens (token_hash, role, customer_id, label, expires_at) \
             VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5)) RETURNING id, expires_at",
            &[&hash.as_slice(), &role.as_str(), &customer_id, &label, &ttl],
        )
        .await?;
    let issued = IssuedToken { token_id: row.get(0), token, role: role.as_str().to_owned(), expires_at: row.get(1) };
    let ev = NewEvent::allowed(actor, AuditAction::TokenIssued, format!("token:{}", issued.token_id), permission)
        .credential(credential.cloned())
        .on_behalf_of(customer_id.map(|c| format!("customer:{c}")))
        .request(request_id)
        .change(
            None,
            Some(json!({ "token_id": issued.token_id, "role": role.as_str(), "expires_at": issued.expires_at })),
        );
    state_audit.append(tx, &ev).await?;
    Ok(issued)
}

/// Issue a customer token.
#[utoipa::path(post, path = "/v1/customers/{customer_id}/tokens", tag = "identity", security(("bearer" = [])),
    description = "Requires `token.issue`.",
    params(("customer_id" = i64, Path, description = "Customer id")),
    request_body = IssueToken,
    responses((status = 201, body = IssuedToken), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn issue_customer_token(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: Caller,
    ApiPath(customer_id): ApiPath<i64>,
    ApiJson(body): ApiJson<IssueToken>,
) -> ApiResult<(StatusCode, Json<IssuedToken>)> {
    let ttl = body.ttl_secs.unwrap_or(tokens::TOKEN_DEFAULT_TTL_SECS);
    if ttl == 0 || ttl > tokens::TOKEN_MAX_TTL_SECS {
        return Err(ApiError::unprocessable("ttl_secs must be between 1 and 2592000 (30 days)"));
    }
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    if tx.query_opt("SELECT 1 FROM fintrail.customers WHERE id = $1", &[&customer_id]).await?.is_none() {
        return Err(ApiError::not_found("customer"));
    }
    let issued = insert_token(
        &state.audit,
        &*tx,
        Role::Customer,
        Some(customer_id),
        "customer",
        ttl,
        &Issuer {
            actor: &caller.principal.actor(),
            permission: Some(caller.permission),
            request_id: Some(&caller.request_id),
            credential: caller.principal.credential.as_ref(),
        },
    )
    .await?;
    tx.commit().await?;
    state.audit.committed();
    Ok((StatusCode::CREATED, Json(issued)))
}

/// Revoke a token in `tx` with its audit event. `Ok(None)`: no such token.
pub(crate) async fn revoke<C: tokio_postgres::GenericClient + Sync>(
    audit: &fintrail_audit::AuditWriter,
    tx: &C,
    token_id: i64,
    by: &Issuer<'_>,
) -> ApiResult<RevokedToken> {
    let Issuer { actor, permission, request_id, credential } = *by;
    let row = tx
        .query_opt(
            "SELECT revoked_at, customer_id, role FROM fintrail.api_tokens WHERE id = $1 FOR UPDATE",
            &[&token_id],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("token"))?;
    if row.get::<_, Option<DateTime<Utc>>>(0).is_some() {
        return Err(ApiError::conflict("already_revoked", "token is already revoked"));
    }
    let customer_id: Option<i64> = row.get(1);
    let role: String = row.get(2);
    let revoked_at: DateTime<Utc> = tx
        .query_one("UPDATE fintrail.api_tokens SET revoked_at = now() WHERE id = $1 RETURNING revoked_at", &[&token_id])
        .await?
        .get(0);
    let ev = NewEvent::allowed(actor, AuditAction::TokenRevoked, format!("token:{token_id}"), permission)
        .credential(credential.cloned())
        .on_behalf_of(customer_id.map(|c| format!("customer:{c}")))
        .request(request_id)
        .change(Some(json!({ "revoked": false, "role": role })), Some(json!({ "revoked": true })));
    audit.append(tx, &ev).await?;
    Ok(RevokedToken { token_id, revoked_at })
}

/// Revoke any token.
#[utoipa::path(post, path = "/v1/tokens/{token_id}/revoke", tag = "identity", security(("bearer" = [])),
    description = "Requires `token.revoke`.",
    params(("token_id" = i64, Path, description = "Token id")),
    responses((status = 200, body = RevokedToken), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn revoke_token(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: Caller,
    ApiPath(token_id): ApiPath<i64>,
) -> ApiResult<Json<RevokedToken>> {
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let r = revoke(
        &state.audit,
        &*tx,
        token_id,
        &Issuer {
            actor: &caller.principal.actor(),
            permission: Some(caller.permission),
            request_id: Some(&caller.request_id),
            credential: caller.principal.credential.as_ref(),
        },
    )
    .await?;
    tx.commit().await?;
    state.audit.committed();
    // Revoked through this server: gone from its token cache at once (revocations made
    // elsewhere, e.g. `fintrail token revoke`, take effect within the cache's TTL).
    state.tokens.forget(token_id);
    Ok(Json(r))
}

/// Issues a token directly in the database (operators: `fintrail token create`; tests; demo),
/// with its `token.issued` audit event.
pub async fn create_token(
    db: &fintrail_db::Database,
    role: Role,
    customer_id: Option<i64>,
    label: &str,
    ttl_secs: u64,
    actor: &str,
) -> anyhow::Result<IssuedToken> {
    anyhow::ensure!(ttl_secs > 0 && ttl_secs <= tokens::TOKEN_MAX_TTL_SECS, "ttl must be 1 s to 30 days");
    // An administrative session: the database lets only a credentialed actor issue a token
    // through the application role (migration 0037); operators and fixtures are not one.
    let mut client = db.connect(fintrail_db::DbRole::Admin).await?;
    let tx = client.transaction().await?;
    let audit = fintrail_audit::AuditWriter::new(true);
    let issued = insert_token(
        &audit,
        &tx,
        role,
        customer_id,
        label,
        ttl_secs,
        &Issuer { actor, permission: None, request_id: None, credential: None },
    )
    .await?;
    tx.commit().await?;
    Ok(issued)
}
