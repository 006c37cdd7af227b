//! Wallets and transfers: a double-entry ledger that never loses or duplicates money.
//!
//! * Handlers (this file) parse and authorize, resolve the request into a posting and hand it
//!   to the [`engine`] (group commit) or, for holds, to [`holds`].
//! * Every money-moving request carries an `Idempotency-Key` ([`idempotency`]).
//! * The rules are `fintrail_domain::ledger`'s; the database enforces them again
//!   (`0030_ledger.sql`); [`check`] proves them on a live database (`fintrail ledger check`).

pub mod bench;
pub mod check;
pub mod cli;
pub mod engine;
pub mod fixtures;
pub mod holds;
pub mod idempotency;

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use chrono::{DateTime, Utc};
use fintrail_domain::ledger::{Amount, Currency, SystemAccount, TransferKind, WalletId, WalletKind};
use fintrail_domain::Permission as P;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::routes::Registry;
use crate::state::AppState;
use engine::{ledger_error, LedgerEvent, Outcome, PostingRequest};
use idempotency::IdemKey;

pub use engine::Ledger;

pub(crate) fn routes(reg: &mut Registry) {
    reg.add(Method::POST, "/v1/wallets", P::WalletOpen, post(open_wallet));
    reg.add(Method::POST, "/v1/me/wallets", P::WalletOwnOpen, post(open_own_wallet));
    reg.add(Method::GET, "/v1/wallets/{wallet_id}", P::WalletRead, get(get_wallet));
    reg.add(Method::GET, "/v1/me/wallets/{wallet_id}", P::WalletOwnRead, get(get_own_wallet));
    reg.add(Method::GET, "/v1/wallets/{wallet_id}/entries", P::LedgerRead, get(statement));
    reg.add(Method::GET, "/v1/me/wallets/{wallet_id}/entries", P::WalletOwnRead, get(own_statement));
    reg.add(Method::POST, "/v1/transfers", P::WalletTransferCreate, post(create_transfer));
    reg.add(Method::POST, "/v1/me/transfers", P::WalletOwnTransfer, post(create_own_transfer));
    reg.add(Method::GET, "/v1/transfers/{transfer_id}", P::WalletRead, get(get_transfer));
    reg.add(Method::POST, "/v1/transfers/{transfer_id}/reversal", P::WalletTransferReverse, post(reverse_transfer));
    reg.add(Method::POST, "/v1/deposits", P::WalletDeposit, post(deposit));
    reg.add(Method::POST, "/v1/withdrawals", P::WalletWithdraw, post(withdraw));
    reg.add(Method::POST, "/v1/holds", P::WalletHoldCreate, post(holds::create_hold));
    reg.add(Method::GET, "/v1/holds/{hold_id}", P::WalletRead, get(holds::get_hold));
    reg.add(Method::POST, "/v1/holds/{hold_id}/post", P::WalletHoldSettle, post(holds::post_hold));
    reg.add(Method::POST, "/v1/holds/{hold_id}/void", P::WalletHoldSettle, post(holds::void_hold));
}

/// The ledger's part of the OpenAPI document (merged into `crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    open_wallet,
    open_own_wallet,
    get_wallet,
    get_own_wallet,
    statement,
    own_statement,
    create_transfer,
    create_own_transfer,
    get_transfer,
    reverse_transfer,
    deposit,
    withdraw,
    holds::create_hold,
    holds::get_hold,
    holds::post_hold,
    holds::void_hold,
))]
pub struct LedgerDoc;

// ------------------------------------------------------------------------------------------
// Wire types.
// ------------------------------------------------------------------------------------------

/// A posted transfer (also the stored idempotent response).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TransferView {
    /// Id.
    pub id: i64,
    /// `transfer`, `deposit`, `withdrawal`, `reversal` or `hold_post`.
    pub kind: String,
    /// Debited wallet.
    pub debit_wallet_id: i64,
    /// Credited wallet.
    pub credit_wallet_id: i64,
    /// Amount in minor units (cents).
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// The reversed transfer (reversals only).
    pub reverses_transfer_id: Option<i64>,
    /// The posted hold (hold postings only).
    pub hold_id: Option<i64>,
    /// When it was posted (transaction time).
    pub created_at: DateTime<Utc>,
}

/// A wallet and its balances.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WalletView {
    /// Id.
    pub id: i64,
    /// `customer`, `organization` or `system`.
    pub kind: String,
    /// Owner (customer wallets).
    pub customer_id: Option<i64>,
    /// Owner (organization wallets).
    pub organization_id: Option<i64>,
    /// ISO 4217 code.
    pub currency: String,
    /// Posted balance, minor units (= Σ entries).
    pub balance_minor: i64,
    /// Reserved by pending holds.
    pub held_minor: i64,
    /// Lowest allowed `balance - held` (none for system accounts).
    pub floor_minor: Option<i64>,
    /// What may still leave the wallet (`balance - held - floor`; none when unbounded).
    pub available_minor: Option<i64>,
    /// Opened.
    pub created_at: DateTime<Utc>,
}

/// `POST /v1/wallets`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenWallet {
    /// Open for this customer (needs an approved KYC case) ...
    pub customer_id: Option<i64>,
    /// ... or for this organization (needs state `cleared`).
    pub organization_id: Option<i64>,
    /// ISO 4217 code.
    pub currency: String,
}

/// `POST /v1/me/wallets`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenOwnWallet {
    /// ISO 4217 code.
    pub currency: String,
}

/// `POST /v1/transfers`, `POST /v1/me/transfers`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    /// Debited wallet.
    pub from_wallet_id: i64,
    /// Credited wallet.
    pub to_wallet_id: i64,
    /// Positive amount in minor units (at most 10^15).
    pub amount_minor: i64,
    /// ISO 4217 code; must be both wallets' currency.
    pub currency: String,
}

/// `POST /v1/deposits`, `POST /v1/withdrawals`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FundsRequest {
    /// The customer's or organization's wallet.
    pub wallet_id: i64,
    /// Positive amount in minor units (at most 10^15).
    pub amount_minor: i64,
    /// ISO 4217 code; must be the wallet's currency.
    pub currency: String,
}

/// One statement line.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EntryView {
    /// Entry id (the pagination cursor).
    pub entry_id: i64,
    /// Its transfer.
    pub transfer_id: i64,
    /// The transfer's kind.
    pub kind: String,
    /// Signed amount: negative debit, positive credit.
    pub amount_minor: i64,
    /// The wallet's balance after this entry.
    pub balance_after_minor: i64,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// A page of a statement.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Statement {
    /// The wallet.
    pub wallet_id: i64,
    /// Its currency.
    pub currency: String,
    /// Entries, oldest first.
    pub entries: Vec<EntryView>,
    /// Pass as `after` to get the next page (absent on the last page).
    pub next_after: Option<i64>,
}

/// Statement pagination.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// Return entries after this entry id.
    pub after: Option<i64>,
    /// Page size, 1–500 (default 100).
    pub limit: Option<i64>,
}

/// Largest statement page.
pub const PAGE_MAX: i64 = 500;

// ------------------------------------------------------------------------------------------
// Parsing helpers.
// ------------------------------------------------------------------------------------------

pub(crate) fn parse_currency(s: &str) -> ApiResult<Currency> {
    Currency::parse(s).map_err(ledger_error)
}

pub(crate) fn parse_amount(minor: i64) -> ApiResult<Amount> {
    Amount::new(minor).map_err(ledger_error)
}

fn wallet_view(r: &tokio_postgres::Row) -> WalletView {
    let balance: i64 = r.get(5);
    let held: i64 = r.get(6);
    let floor: Option<i64> = r.get(7);
    WalletView {
        id: r.get(0),
        kind: r.get(1),
        customer_id: r.get(2),
        organization_id: r.get(3),
        currency: r.get(4),
        balance_minor: balance,
        held_minor: held,
        floor_minor: floor,
        available_minor: floor.and_then(|f| i64::try_from(i128::from(balance) - i128::from(held) - i128::from(f)).ok()),
        created_at: r.get(8),
    }
}

const WALLET_COLUMNS: &str =
    "id, kind, customer_id, organization_id, currency, balance_minor, held_minor, floor_minor, created_at";

async fn load_wallet(state: &AppState, id: i64, owner: Option<i64>) -> ApiResult<WalletView> {
    let client = state.pool.get().await?;
    let row = client.query_opt(&format!("SELECT {WALLET_COLUMNS} FROM fintrail.wallets WHERE id = $1"), &[&id]).await?;
    let w = row.as_ref().map(wallet_view).ok_or_else(|| ApiError::not_found("wallet"))?;
    if owner.is_some() && w.customer_id != owner {
        return Err(ApiError::not_found("wallet"));
    }
    Ok(w)
}

/// The id of a system account in `currency`, created on first use.
pub(crate) async fn system_wallet(state: &AppState, account: SystemAccount, currency: Currency) -> ApiResult<i64> {
    let client = state.pool.get().await?;
    let find = "SELECT id FROM fintrail.wallets WHERE kind = 'system' AND system_name = $1 AND currency = $2";
    if let Some(r) = client.query_opt(find, &[&account.as_str(), &currency.as_str()]).await? {
        return Ok(r.get(0));
    }
    client
        .execute(
            "INSERT INTO fintrail.wallets (kind, system_name, currency) VALUES ('system', $1, $2) \
             ON CONFLICT (system_name, currency) WHERE kind = 'system' DO NOTHING",
            &[&account.as_str(), &currency.as_str()],
        )
        .await?;
    let r = client.query_one(find, &[&account.as_str(), &currency.as_str()]).await?;
    Ok(r.get(0))
}

// ------------------------------------------------------------------------------------------
// Wallets.
// ------------------------------------------------------------------------------------------

async fn insert_wallet(
    state: &AppState,
    caller: &Caller,
    customer_id: Option<i64>,
    organization_id: Option<i64>,
    currency: Currency,
) -> ApiResult<WalletView> {
    let kind = if customer_id.is_some() { WalletKind::Customer } else { WalletKind::Organization };
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    // The Rust check (the trigger checks again): approved KYC / cleared organization.
    let eligible = match (customer_id, organization_id) {
        (Some(c), None) => tx
            .query_opt("SELECT 1 FROM fintrail.kyc_cases WHERE customer_id = $1 AND state = 'approved' LIMIT 1", &[&c])
            .await?
            .is_some(),
        (None, Some(o)) => tx
            .query_opt("SELECT 1 FROM fintrail.organizations WHERE id = $1 AND state = 'cleared'", &[&o])
            .await?
            .is_some(),
        _ => return Err(ApiError::unprocessable("give exactly one of customer_id or organization_id")),
    };
    if !eligible {
        return Err(ApiError::conflict(
            "not_eligible",
            "a wallet opens only for a customer with an approved KYC case or a cleared organization",
        ));
    }
    let row = tx
        .query_opt(
            &format!(
                "INSERT INTO fintrail.wallets (kind, customer_id, organization_id, currency) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT DO NOTHING RETURNING {WALLET_COLUMNS}"
            ),
            &[&kind.as_str(), &customer_id, &organization_id, &currency.as_str()],
        )
        .await?
        .ok_or_else(|| ApiError::conflict("wallet_exists", format!("the owner already has a {currency} wallet")))?;
    let w = wallet_view(&row);
    let ev = LedgerEvent {
        actor: caller.principal.actor(),
        on_behalf_of: customer_id.map(|c| format!("customer:{c}")),
        action: "ledger.wallet.opened",
        subject: format!("wallet:{}", w.id),
        permission: caller.permission,
        request_id: caller.request_id.clone(),
        after: json!({ "wallet_id": w.id, "kind": w.kind, "customer_id": customer_id, "organization_id": organization_id, "currency": w.currency }),
    };
    engine::append_events(&*tx, &state.audit, &[ev]).await?;
    tx.commit().await?;
    state.audit.committed();
    Ok(w)
}

/// Open a wallet for a customer or an organization.
#[utoipa::path(post, path = "/v1/wallets", tag = "ledger", security(("bearer" = [])),
    description = "Requires `wallet.open`. The customer needs an approved KYC case, the organization state `cleared`.",
    request_body = OpenWallet,
    responses((status = 201, body = WalletView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn open_wallet(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<OpenWallet>,
) -> ApiResult<(StatusCode, Json<WalletView>)> {
    let currency = parse_currency(&body.currency)?;
    let w = insert_wallet(&state, &caller, body.customer_id, body.organization_id, currency).await?;
    Ok((StatusCode::CREATED, Json(w)))
}

/// Open one's own wallet.
#[utoipa::path(post, path = "/v1/me/wallets", tag = "ledger", security(("bearer" = [])),
    description = "Requires `wallet.own.open` (customers; needs an approved KYC case).",
    request_body = OpenOwnWallet,
    responses((status = 201, body = WalletView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn open_own_wallet(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<OpenOwnWallet>,
) -> ApiResult<(StatusCode, Json<WalletView>)> {
    let customer = caller.own_customer()?;
    let currency = parse_currency(&body.currency)?;
    let w = insert_wallet(&state, &caller, Some(customer), None, currency).await?;
    Ok((StatusCode::CREATED, Json(w)))
}

/// A wallet and its balance.
#[utoipa::path(get, path = "/v1/wallets/{wallet_id}", tag = "ledger", security(("bearer" = [])),
    description = "Requires `wallet.read`.",
    params(("wallet_id" = i64, Path, description = "Wallet id")),
    responses((status = 200, body = WalletView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_wallet(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<WalletView>> {
    Ok(Json(load_wallet(&state, id, None).await?))
}

/// One's own wallet and its balance.
#[utoipa::path(get, path = "/v1/me/wallets/{wallet_id}", tag = "ledger", security(("bearer" = [])),
    description = "Requires `wallet.own.read` (other customers' wallets are not found).",
    params(("wallet_id" = i64, Path, description = "Wallet id")),
    responses((status = 200, body = WalletView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_own_wallet(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<WalletView>> {
    let customer = caller.own_customer()?;
    Ok(Json(load_wallet(&state, id, Some(customer)).await?))
}

async fn load_statement(state: &AppState, id: i64, owner: Option<i64>, page: Page) -> ApiResult<Statement> {
    let w = load_wallet(state, id, owner).await?;
    let limit = page.limit.unwrap_or(100);
    if !(1..=PAGE_MAX).contains(&limit) {
        return Err(ApiError::unprocessable(format!("limit must be between 1 and {PAGE_MAX}")));
    }
    let after = page.after.unwrap_or(0);
    let client = state.pool.get().await?;
    let rows = client
        .query(
            "SELECT e.id, e.transfer_id, t.kind, e.amount_minor, e.balance_after_minor, e.created_at \
             FROM fintrail.entries e JOIN fintrail.transfers t ON t.id = e.transfer_id \
             WHERE e.wallet_id = $1 AND e.id > $2 ORDER BY e.id LIMIT $3",
            &[&id, &after, &(limit + 1)],
        )
        .await?;
    let more = rows.len() as i64 > limit;
    let entries: Vec<EntryView> = rows
        .iter()
        .take(limit as usize)
        .map(|r| EntryView {
            entry_id: r.get(0),
            transfer_id: r.get(1),
            kind: r.get(2),
            amount_minor: r.get(3),
            balance_after_minor: r.get(4),
            created_at: r.get(5),
        })
        .collect();
    let next_after = if more { entries.last().map(|e| e.entry_id) } else { None };
    Ok(Statement { wallet_id: id, currency: w.currency, entries, next_after })
}

/// A wallet's statement: entries with the running balance, paginated by entry id.
#[utoipa::path(get, path = "/v1/wallets/{wallet_id}/entries", tag = "ledger", security(("bearer" = [])),
    description = "Requires `ledger.read`.",
    params(("wallet_id" = i64, Path, description = "Wallet id"), Page),
    responses((status = 200, body = Statement), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn statement(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<Statement>> {
    Ok(Json(load_statement(&state, id, None, page).await?))
}

/// One's own wallet's statement.
#[utoipa::path(get, path = "/v1/me/wallets/{wallet_id}/entries", tag = "ledger", security(("bearer" = [])),
    description = "Requires `wallet.own.read`.",
    params(("wallet_id" = i64, Path, description = "Wallet id"), Page),
    responses((status = 200, body = Statement), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn own_statement(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<Statement>> {
    let customer = caller.own_customer()?;
    Ok(Json(load_statement(&state, id, Some(customer), page).await?))
}

// ------------------------------------------------------------------------------------------
// Money movement (through the engine).
// ------------------------------------------------------------------------------------------

/// Runs `req` through the engine with idempotency: replay a stored result, refuse a reused
/// key with another body, otherwise post and answer after commit.
async fn post_idempotent(state: &AppState, req: PostingRequest) -> ApiResult<Response> {
    // No lookup here: the batch checks the keys in the same round trip as its locks and answers
    // `KeyTaken` for a used key, which is then replayed (or refused: other body).
    // A concurrent request with the same key: the winner's result is replayed. Twice at most
    // (the winner may have been refused, freeing the key).
    for _ in 0..2 {
        match state.ledger.submit(&state.audit, req.clone()).await? {
            Outcome::Posted(v) => return Ok((StatusCode::CREATED, Json(v)).into_response()),
            Outcome::KeyTaken => {
                if let Some(r) = idempotency::replay(state, &req.idem).await? {
                    return Ok(r);
                }
            }
        }
    }
    Err(ApiError::conflict("retry", "a concurrent request with the same Idempotency-Key is in progress; retry"))
}

#[allow(clippy::too_many_arguments)]
fn posting(
    caller: &Caller,
    idem: IdemKey,
    kind: TransferKind,
    debit: i64,
    credit: i64,
    amount_minor: i64,
    currency: &str,
    reverses: Option<i64>,
) -> ApiResult<PostingRequest> {
    let amount = parse_amount(amount_minor)?;
    let currency = parse_currency(currency)?;
    if debit == credit {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "from and to must be different wallets",
        ));
    }
    Ok(PostingRequest {
        kind,
        debit: WalletId(debit),
        credit: WalletId(credit),
        amount,
        currency,
        reverses,
        debit_owner: None,
        actor: caller.principal.actor(),
        on_behalf_of: caller.principal.customer_id.map(|c| format!("customer:{c}")),
        permission: caller.permission,
        request_id: caller.request_id.clone(),
        idem,
    })
}

/// Transfer between two wallets of the same currency.
#[utoipa::path(post, path = "/v1/transfers", tag = "ledger", security(("bearer" = [])),
    description = "Requires `wallet.transfer.create`. Needs an `Idempotency-Key` header: a retry with the same key and body returns the original result; the same key with another body is a 409.",
    params(("Idempotency-Key" = String, Header, description = "1–128 visible ASCII characters, unique per request")),
    request_body = TransferRequest,
    responses((status = 201, body = TransferView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_transfer(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<TransferRequest>,
) -> ApiResult<Response> {
    let idem = idempotency::key(&headers, &caller, "POST /v1/transfers", &body)?;
    let req = posting(
        &caller,
        idem,
        TransferKind::Transfer,
        body.from_wallet_id,
        body.to_wallet_id,
        body.amount_minor,
        &body.currency,
        None,
    )?;
    post_idempotent(&state, req).await
}

/// Transfer from one's own wallet.
#[utoipa::path(post, path = "/v1/me/transfers", tag = "ledger", security(("bearer" = [])),
    description = "Requires `wallet.own.transfer` (customers; the debited wallet must be one's own). Needs an `Idempotency-Key` header.",
    params(("Idempotency-Key" = String, Header, description = "1–128 visible ASCII characters, unique per request")),
    request_body = TransferRequest,
    responses((status = 201, body = TransferView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_own_transfer(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<TransferRequest>,
) -> ApiResult<Response> {
    let customer = caller.own_customer()?;
    let idem = idempotency::key(&headers, &caller, "POST /v1/me/transfers", &body)?;
    let mut req = posting(
        &caller,
        idem,
        TransferKind::Transfer,
        body.from_wallet_id,
        body.to_wallet_id,
        body.amount_minor,
        &body.currency,
        None,
    )?;
    req.debit_owner = Some(customer);
    post_idempotent(&state, req).await
}

/// Deposit external funds (debits the currency's external-funding system account).
#[utoipa::path(post, path = "/v1/deposits", tag = "ledger", security(("bearer" = [])),
    description = "Requires `wallet.deposit`. Needs an `Idempotency-Key` header.",
    params(("Idempotency-Key" = String, Header, description = "1–128 visible ASCII characters, unique per request")),
    request_body = FundsRequest,
    responses((status = 201, body = TransferView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn deposit(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<FundsRequest>,
) -> ApiResult<Response> {
    let idem = idempotency::key(&headers, &caller, "POST /v1/deposits", &body)?;
    let currency = parse_currency(&body.currency)?;
    parse_amount(body.amount_minor)?;
    let funding = system_wallet(&state, SystemAccount::ExternalFunding, currency).await?;
    let req = posting(
        &caller,
        idem,
        TransferKind::Deposit,
        funding,
        body.wallet_id,
        body.amount_minor,
        &body.currency,
        None,
    )?;
    post_idempotent(&state, req).await
}

/// Withdraw funds (credits the currency's settlement system account).
#[utoipa::path(post, path = "/v1/withdrawals", tag = "ledger", security(("bearer" = [])),
    description = "Requires `wallet.withdraw`. Needs an `Idempotency-Key` header.",
    params(("Idempotency-Key" = String, Header, description = "1–128 visible ASCII characters, unique per request")),
    request_body = FundsRequest,
    responses((status = 201, body = TransferView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn withdraw(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<FundsRequest>,
) -> ApiResult<Response> {
    let idem = idempotency::key(&headers, &caller, "POST /v1/withdrawals", &body)?;
    let currency = parse_currency(&body.currency)?;
    parse_amount(body.amount_minor)?;
    let settlement = system_wallet(&state, SystemAccount::Settlement, currency).await?;
    let req = posting(
        &caller,
        idem,
        TransferKind::Withdrawal,
        body.wallet_id,
        settlement,
        body.amount_minor,
        &body.currency,
        None,
    )?;
    post_idempotent(&state, req).await
}

async fn load_transfer(state: &AppState, id: i64) -> ApiResult<Option<TransferView>> {
    let client = state.pool.get().await?;
    let row = client
        .query_opt(
            "SELECT id, kind, debit_wallet_id, credit_wallet_id, amount_minor, currency, reverses_transfer_id, hold_id, created_at \
             FROM fintrail.transfers WHERE id = $1",
            &[&id],
        )
        .await?;
    Ok(row.map(|r| TransferView {
        id: r.get(0),
        kind: r.get(1),
        debit_wallet_id: r.get(2),
        credit_wallet_id: r.get(3),
        amount_minor: r.get(4),
        currency: r.get(5),
        reverses_transfer_id: r.get(6),
        hold_id: r.get(7),
        created_at: r.get(8),
    }))
}

/// One transfer.
#[utoipa::path(get, path = "/v1/transfers/{transfer_id}", tag = "ledger", security(("bearer" = [])),
    description = "Requires `wallet.read`.",
    params(("transfer_id" = i64, Path, description = "Transfer id")),
    responses((status = 200, body = TransferView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_transfer(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<TransferView>> {
    load_transfer(&state, id).await?.map(Json).ok_or_else(|| ApiError::not_found("transfer"))
}

/// Reverse a transfer: a new transfer mirroring it (at most once; never a reversal).
#[utoipa::path(post, path = "/v1/transfers/{transfer_id}/reversal", tag = "ledger", security(("bearer" = [])),
    description = "Requires `wallet.transfer.reverse`. Needs an `Idempotency-Key` header. A transfer is reversed at most once; a reversal is never reversed.",
    params(("transfer_id" = i64, Path, description = "Transfer id"),
        ("Idempotency-Key" = String, Header, description = "1–128 visible ASCII characters, unique per request")),
    responses((status = 201, body = TransferView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn reverse_transfer(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Response> {
    let idem = idempotency::key(&headers, &caller, &format!("POST /v1/transfers/{id}/reversal"), &json!({}))?;
    if let Some(r) = idempotency::replay(&state, &idem).await? {
        return Ok(r);
    }
    let orig = load_transfer(&state, id).await?.ok_or_else(|| ApiError::not_found("transfer"))?;
    if orig.kind == TransferKind::Reversal.as_str() {
        return Err(ApiError::conflict("not_reversible", "a reversal cannot be reversed"));
    }
    let req = posting(
        &caller,
        idem,
        TransferKind::Reversal,
        orig.credit_wallet_id,
        orig.debit_wallet_id,
        orig.amount_minor,
        &orig.currency,
        Some(orig.id),
    )?;
    post_idempotent(&state, req).await
}
