//! Holds (two-phase transfers): a pending hold reserves funds on the debit wallet
//! (`held_minor`, under the floor CHECK); it is then posted (fully or partially: a `hold_post`
//! transfer for the posted amount, the rest released), voided, or expires. Each operation is
//! one transaction of its own (they are rare next to transfers): lock the wallets in id order,
//! then the hold, decide in Rust, write, append the audit event, commit.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use fintrail_domain::ledger::{apply_posting, reserve, HoldState, Posting, TransferKind, WalletId};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::engine::{self, ledger_error, ledger_event, lock_wallets, IdemKey, TransferRow, Who};
use super::{idempotency, parse_amount, parse_currency, TransferView};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;
use fintrail_domain::audit::AuditAction;

/// Default hold lifetime (1 hour).
pub const HOLD_DEFAULT_SECS: i64 = 3600;
/// Longest hold lifetime (30 days; the table CHECKs it too).
pub const HOLD_MAX_SECS: i64 = 30 * 24 * 3600;
/// Most holds expired per maintenance run (bounds the work).
pub const EXPIRE_MAX: i64 = 1000;

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

/// A hold.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HoldView {
    /// Id.
    pub id: i64,
    /// Reserved wallet.
    pub debit_wallet_id: i64,
    /// Wallet to credit.
    pub credit_wallet_id: i64,
    /// Held amount.
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// `pending`, `posted`, `voided` or `expired`.
    pub status: String,
    /// Posted amount (posted holds).
    pub posted_minor: Option<i64>,
    /// The `hold_post` transfer (posted holds).
    pub transfer_id: Option<i64>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Expires.
    pub expires_at: DateTime<Utc>,
    /// Posted, voided or expired at.
    pub settled_at: Option<DateTime<Utc>>,
}

const HOLD_SELECT: &str = "SELECT h.id, h.debit_wallet_id, h.credit_wallet_id, h.amount_minor, h.currency, h.status, \
    h.posted_minor, t.id, h.created_at, h.expires_at, h.settled_at, now() > h.expires_at \
    FROM fintrail.holds h LEFT JOIN fintrail.transfers t ON t.hold_id = h.id WHERE h.id = $1";

fn hold_view(r: &tokio_postgres::Row) -> HoldView {
    HoldView {
        id: r.get(0),
        debit_wallet_id: r.get(1),
        credit_wallet_id: r.get(2),
        amount_minor: r.get(3),
        currency: r.get(4),
        status: r.get(5),
        posted_minor: r.get(6),
        transfer_id: r.get(7),
        created_at: r.get(8),
        expires_at: r.get(9),
        settled_at: r.get(10),
    }
}

/// Writes the key row; `false` when the key was taken concurrently (the caller rolls back and
/// replays).
async fn claim_key(
    tx: &tokio_postgres::Transaction<'_>,
    idem: &IdemKey,
    status: StatusCode,
    body: &impl Serialize,
    transfer_id: Option<i64>,
) -> ApiResult<bool> {
    let value = serde_json::to_value(body).map_err(ApiError::internal)?;
    let conflicts = engine::insert_keys(tx, &[(idem, i32::from(status.as_u16()), value, transfer_id)]).await?;
    Ok(conflicts.is_empty())
}

async fn replay_or_conflict(state: &AppState, idem: &IdemKey) -> ApiResult<Response> {
    idempotency::replay(state, idem).await?.ok_or_else(|| {
        ApiError::conflict("retry", "a concurrent request with the same Idempotency-Key is in progress; retry")
    })
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
    let amount = parse_amount(body.amount_minor)?;
    let currency = parse_currency(&body.currency)?;
    let secs = body.expires_in_secs.unwrap_or(HOLD_DEFAULT_SECS);
    if !(1..=HOLD_MAX_SECS).contains(&secs) {
        return Err(ApiError::unprocessable(format!("expires_in_secs must be between 1 and {HOLD_MAX_SECS}")));
    }
    if body.from_wallet_id == body.to_wallet_id {
        return Err(super::same_wallet());
    }
    if let Some(r) = idempotency::replay(&state, &idem).await? {
        return Ok(r);
    }
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let locked = lock_wallets(&*tx, &[body.from_wallet_id, body.to_wallet_id]).await?;
    let (Some(from), Some(to)) = (locked.get(&WalletId(body.from_wallet_id)), locked.get(&WalletId(body.to_wallet_id)))
    else {
        return Err(ApiError::not_found("wallet"));
    };
    for w in [from, to] {
        if w.state.currency != currency {
            return Err(ledger_error(fintrail_domain::ledger::LedgerError::CurrencyMismatch(
                currency,
                w.state.currency,
            )));
        }
        if w.state.floor_minor.is_none() {
            return Err(ApiError::conflict("system_wallet", "holds are between customer or organization wallets"));
        }
    }
    reserve(&from.state, WalletId(body.from_wallet_id), amount).map_err(ledger_error)?;
    let row = tx
        .query_one(
            "INSERT INTO fintrail.holds (debit_wallet_id, credit_wallet_id, amount_minor, currency, actor, expires_at) \
             VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6)) RETURNING id",
            &[&body.from_wallet_id, &body.to_wallet_id, &amount.minor(), &currency.as_str(), &caller.principal.actor(), &(secs as f64)],
        )
        .await?;
    let id: i64 = row.get(0);
    let view = hold_view(&tx.query_one(HOLD_SELECT, &[&id]).await?);
    if !claim_key(&tx, &idem, StatusCode::CREATED, &view, None).await? {
        tx.rollback().await?;
        return replay_or_conflict(&state, &idem).await;
    }
    let ev = event(
        &caller,
        AuditAction::LedgerHoldCreated,
        id,
        json!({ "hold_id": id, "debit_wallet_id": view.debit_wallet_id,
        "credit_wallet_id": view.credit_wallet_id, "amount_minor": view.amount_minor, "currency": view.currency, "expires_at": view.expires_at }),
    );
    state.audit.append_many(&*tx, &[ev]).await?;
    tx.commit().await?;
    state.audit.committed();
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

fn event(caller: &Caller, action: AuditAction, hold_id: i64, after: serde_json::Value) -> fintrail_audit::NewEvent {
    let actor = caller.principal.actor();
    let on_behalf_of = caller.principal.customer_id.map(|c| format!("customer:{c}"));
    let who = Who {
        actor: &actor,
        on_behalf_of: on_behalf_of.as_deref(),
        permission: caller.permission,
        request_id: Some(caller.request_id.as_str()),
    };
    ledger_event(&who, action, format!("hold:{hold_id}"), after)
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
    let client = state.pool.get().await?;
    client.query_opt(HOLD_SELECT, &[&id]).await?.map(|r| Json(hold_view(&r))).ok_or_else(|| ApiError::not_found("hold"))
}

/// Locks the hold's wallets (id order) and then the hold; returns its view and whether it is
/// past its expiry.
async fn lock_hold(tx: &tokio_postgres::Transaction<'_>, id: i64) -> ApiResult<(HoldView, bool)> {
    let r = tx
        .query_opt("SELECT debit_wallet_id, credit_wallet_id FROM fintrail.holds WHERE id = $1", &[&id])
        .await?
        .ok_or_else(|| ApiError::not_found("hold"))?;
    let (d, c): (i64, i64) = (r.get(0), r.get(1));
    lock_wallets(tx, &[d, c]).await?;
    tx.execute("SELECT 1 FROM fintrail.holds WHERE id = $1 FOR UPDATE", &[&id]).await?;
    let r = tx.query_one(HOLD_SELECT, &[&id]).await?;
    let overdue: bool = r.get(11);
    Ok((hold_view(&r), overdue))
}

fn require_pending(h: &HoldView, overdue: bool) -> ApiResult<()> {
    if HoldState::parse(&h.status) != Some(HoldState::Pending) {
        return Err(ApiError::conflict("hold_not_pending", format!("hold {} is {}", h.id, h.status)));
    }
    if overdue {
        return Err(ApiError::conflict("hold_expired", format!("hold {} expired at {}", h.id, h.expires_at)));
    }
    Ok(())
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
    if let Some(r) = idempotency::replay(&state, &idem).await? {
        return Ok(r);
    }
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let (hold, overdue) = lock_hold(&tx, id).await?;
    require_pending(&hold, overdue)?;
    let amount = parse_amount(body.amount_minor.unwrap_or(hold.amount_minor))?;
    if amount.minor() > hold.amount_minor {
        return Err(ApiError::conflict("exceeds_hold", format!("amount_minor exceeds the held {}", hold.amount_minor)));
    }
    let currency = parse_currency(&hold.currency)?;
    // The Rust decision (the reservation turns into the debit; the trigger and CHECK agree).
    let locked = lock_wallets(&*tx, &[hold.debit_wallet_id, hold.credit_wallet_id]).await?;
    let mut balances = locked.iter().map(|(k, v)| (*k, v.state)).collect();
    let p =
        Posting { debit: WalletId(hold.debit_wallet_id), credit: WalletId(hold.credit_wallet_id), amount, currency };
    apply_posting(&mut balances, &p, hold.amount_minor).map_err(ledger_error)?;
    tx.execute("UPDATE fintrail.holds SET status = 'posted', posted_minor = $2 WHERE id = $1", &[&id, &amount.minor()])
        .await?;
    let r = tx.query_one("SELECT nextval('fintrail.transfers_id_seq'), now()", &[]).await?;
    let view = TransferView {
        id: r.get(0),
        kind: TransferKind::HoldPost.as_str().to_owned(),
        debit_wallet_id: hold.debit_wallet_id,
        credit_wallet_id: hold.credit_wallet_id,
        amount_minor: amount.minor(),
        currency: hold.currency.clone(),
        reverses_transfer_id: None,
        hold_id: Some(id),
        created_at: r.get(1),
    };
    let row = TransferRow {
        view: view.clone(),
        actor: caller.principal.actor(),
        idempotency_key: Some(idem.key.clone()),
        request_id: caller.request_id.clone(),
    };
    engine::insert_transfers(&*tx, &[row]).await?;
    if !claim_key(&tx, &idem, StatusCode::CREATED, &view, Some(view.id)).await? {
        tx.rollback().await?;
        return replay_or_conflict(&state, &idem).await;
    }
    let mut after = engine::transfer_after(&view);
    after["released_minor"] = json!(hold.amount_minor - amount.minor());
    state.audit.append_many(&*tx, &[event(&caller, engine::action_of(TransferKind::HoldPost), id, after)]).await?;
    tx.commit().await?;
    state.audit.committed();
    Ok((StatusCode::CREATED, Json(view)).into_response())
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
    if let Some(r) = idempotency::replay(&state, &idem).await? {
        return Ok(r);
    }
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let (hold, overdue) = lock_hold(&tx, id).await?;
    require_pending(&hold, overdue)?;
    tx.execute("UPDATE fintrail.holds SET status = 'voided' WHERE id = $1", &[&id]).await?;
    let view = hold_view(&tx.query_one(HOLD_SELECT, &[&id]).await?);
    if !claim_key(&tx, &idem, StatusCode::OK, &view, None).await? {
        tx.rollback().await?;
        return replay_or_conflict(&state, &idem).await;
    }
    let ev = event(
        &caller,
        AuditAction::LedgerHoldVoided,
        id,
        json!({ "hold_id": id, "released_minor": hold.amount_minor }),
    );
    state.audit.append_many(&*tx, &[ev]).await?;
    tx.commit().await?;
    state.audit.committed();
    Ok((StatusCode::OK, Json(view)).into_response())
}

/// Expires up to [`EXPIRE_MAX`] overdue pending holds, each in its own short transaction
/// (wallets locked in id order first, like every other writer); returns how many.
pub async fn expire_overdue(
    client: &mut tokio_postgres::Client,
    audit: &fintrail_audit::AuditWriter,
) -> Result<u64, tokio_postgres::Error> {
    let due = client
        .query(
            "SELECT id, debit_wallet_id, credit_wallet_id FROM fintrail.holds \
             WHERE status = 'pending' AND expires_at < now() ORDER BY expires_at LIMIT $1",
            &[&EXPIRE_MAX],
        )
        .await?;
    let mut n = 0;
    for r in due {
        let (id, d, c): (i64, i64, i64) = (r.get(0), r.get(1), r.get(2));
        let tx = client.transaction().await?;
        lock_wallets(&tx, &[d, c]).await?;
        let changed = tx
            .execute("UPDATE fintrail.holds SET status = 'expired' WHERE id = $1 AND status = 'pending' AND expires_at < now()", &[&id])
            .await?;
        if changed == 1 {
            let who = Who {
                actor: "system:ledger",
                on_behalf_of: None,
                permission: fintrail_domain::Permission::WalletHoldSettle,
                request_id: None,
            };
            let ev = ledger_event(&who, AuditAction::LedgerHoldExpired, format!("hold:{id}"), json!({ "hold_id": id }));
            audit.append_many(&tx, &[ev]).await?;
        }
        tx.commit().await?;
        if changed == 1 {
            audit.committed();
        }
        n += changed;
    }
    Ok(n)
}
