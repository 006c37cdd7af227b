//! The holds routes (two-phase transfers): parse, authorize, hand the parsed hold to
//! `fintrail_ledger::holds`, answer its reply.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use fintrail_domain::ledger::WalletId;
use fintrail_ledger::holds::{self as ledger_holds, NewHold, HOLD_DEFAULT_SECS};
use fintrail_ledger::idempotency::{STATUS_CREATED, STATUS_OK};
use fintrail_ledger::views::{HoldView, TransferView};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::{idempotency, parse_amount, parse_currency, who};
use crate::auth::Caller;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;

pub use fintrail_ledger::holds::HOLD_MAX_SECS;

/// `POST /v1/holds`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldRequest {
    /// Wallet whose funds are reserved (and later debited).
    #[schema(minimum = 1)]
    #[serde(deserialize_with = "super::de::int")]
    pub from_wallet_id: i64,
    /// Wallet credited when the hold is posted (another wallet: 409 `same_wallet` otherwise).
    #[schema(minimum = 1)]
    #[serde(deserialize_with = "super::de::int")]
    pub to_wallet_id: i64,
    /// Positive amount in minor units (at most 10^15).
    #[schema(minimum = 1, maximum = 1_000_000_000_000_000_i64)]
    #[serde(deserialize_with = "super::de::int")]
    pub amount_minor: i64,
    /// ISO 4217 code; must be both wallets' currency (409 `currency_mismatch` otherwise).
    #[schema(min_length = 3, max_length = 3, pattern = "^[A-Z]{3}$")]
    pub currency: String,
    /// Lifetime in seconds (default 3600, at most 30 days).
    #[schema(minimum = 1, maximum = 2592000)]
    #[serde(default, deserialize_with = "super::de::opt_int")]
    pub expires_in_secs: Option<i64>,
}

/// `POST /v1/holds/{id}/post`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldPostRequest {
    /// How much to post (default: the whole hold; more than the held amount: 409
    /// `exceeds_hold`).
    #[schema(minimum = 1, maximum = 1_000_000_000_000_000_i64)]
    #[serde(default, deserialize_with = "super::de::opt_int")]
    pub amount_minor: Option<i64>,
}

/// Reserve funds for a later posting.
#[utoipa::path(post, path = "/v1/holds", tag = "ledger", security(("bearer" = [])),
    description = "Requires `wallet.hold.create`. Needs an `Idempotency-Key` header.",
    params(("Idempotency-Key" = String, Header, min_length = 1, max_length = 128, pattern = "^[!-~]+$", description = "1–128 visible ASCII characters, unique per request (scoped to the caller)")),
    request_body = HoldRequest,
    responses((status = 201, body = HoldView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_hold(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<HoldRequest>,
) -> ApiResult<Response> {
    let idem = idempotency::key(&headers, &caller, "POST /v1/holds", &body)?;
    let hold = NewHold {
        debit: WalletId(body.from_wallet_id),
        credit: WalletId(body.to_wallet_id),
        amount: parse_amount(body.amount_minor)?,
        currency: parse_currency(&body.currency)?,
        expires_in_secs: body.expires_in_secs.unwrap_or(HOLD_DEFAULT_SECS),
    };
    let reply = ledger_holds::create_hold(&state.pool, &state.audit, &who(&caller), &idem, hold).await?;
    Ok(idempotency::respond(STATUS_CREATED, reply))
}

/// A hold.
#[utoipa::path(get, path = "/v1/holds/{hold_id}", tag = "ledger", security(("bearer" = [])),
    description = "Requires `wallet.read`.",
    params(("hold_id" = i64, Path, minimum = 1, description = "Hold id")),
    responses((status = 200, body = HoldView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_hold(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<HoldView>> {
    Ok(Json(ledger_holds::load_hold(&state.pool, id).await?))
}

/// Post a hold, fully or partially; the rest of the reservation is released.
#[utoipa::path(post, path = "/v1/holds/{hold_id}/post", tag = "ledger", security(("bearer" = [])),
    description = "Requires `wallet.hold.settle`. Needs an `Idempotency-Key` header.",
    params(("hold_id" = i64, Path, minimum = 1, description = "Hold id"),
        ("Idempotency-Key" = String, Header, min_length = 1, max_length = 128, pattern = "^[!-~]+$", description = "1–128 visible ASCII characters, unique per request (scoped to the caller)")),
    request_body = HoldPostRequest,
    responses((status = 201, body = TransferView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn post_hold(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<HoldPostRequest>,
) -> ApiResult<Response> {
    let idem = idempotency::key(&headers, &caller, &format!("POST /v1/holds/{id}/post"), &body)?;
    let reply = ledger_holds::post_hold(&state.pool, &state.audit, &who(&caller), &idem, id, body.amount_minor).await?;
    Ok(idempotency::respond::<TransferView>(STATUS_CREATED, reply))
}

/// Void a pending hold (releases the reservation, moves no money).
#[utoipa::path(post, path = "/v1/holds/{hold_id}/void", tag = "ledger", security(("bearer" = [])),
    description = "Requires `wallet.hold.settle`. Needs an `Idempotency-Key` header.",
    params(("hold_id" = i64, Path, minimum = 1, description = "Hold id"),
        ("Idempotency-Key" = String, Header, min_length = 1, max_length = 128, pattern = "^[!-~]+$", description = "1–128 visible ASCII characters, unique per request (scoped to the caller)")),
    responses((status = 200, body = HoldView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn void_hold(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Response> {
    let idem = idempotency::key(&headers, &caller, &format!("POST /v1/holds/{id}/void"), &json!({}))?;
    let reply = ledger_holds::void_hold(&state.pool, &state.audit, &who(&caller), &idem, id).await?;
    Ok(idempotency::respond(STATUS_OK, reply))
}
