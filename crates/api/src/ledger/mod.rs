//! The wallets and transfers routes: the HTTP adapter of `fintrail-ledger`.
//!
//! * Handlers (this file and [`holds`]) parse and authorize, resolve the request into a parsed
//!   posting and hand it to the ledger's engine (group commit), holds or wallets; they map its
//!   answer (`fintrail_ledger::Error` through `ApiError::from`) to a response.
//! * Every money-moving request carries an `Idempotency-Key` ([`idempotency`]).
//! * The rules are `fintrail_domain::ledger`'s; the ledger decides them, the database enforces
//!   them again (`0030_ledger.sql`), `fintrail ledger check` proves them on a live database.

pub mod holds;
pub mod idempotency;

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use fintrail_domain::ledger::{Amount, Currency, SystemAccount, TransferKind, WalletId};
use fintrail_domain::Permission as P;
use fintrail_ledger::views::{Statement, TransferView, WalletView};
use fintrail_ledger::wallets::{self, Owner, PAGE_DEFAULT};
use fintrail_ledger::{Outcome, PostingRequest, Who};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::routes::Registry;
use crate::state::AppState;
use fintrail_ledger::IdemKey;

pub use fintrail_ledger::wallets::PAGE_MAX;

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

/// `POST /v1/wallets`: exactly one owner, a customer or an organization (the schema says so
/// with `oneOf`, each alternative closed by `additionalProperties: false`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum OpenWallet {
    /// For a customer.
    Customer(OpenCustomerWallet),
    /// For an organization.
    Organization(OpenOrganizationWallet),
}

/// A customer's wallet (the customer needs an approved KYC case).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenCustomerWallet {
    /// The owner.
    #[schema(minimum = 1)]
    #[serde(deserialize_with = "de::int")]
    pub customer_id: i64,
    /// ISO 4217 code.
    #[schema(min_length = 3, max_length = 3, pattern = "^[A-Z]{3}$")]
    pub currency: String,
}

/// An organization's wallet (the organization needs state `cleared`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenOrganizationWallet {
    /// The owner.
    #[schema(minimum = 1)]
    #[serde(deserialize_with = "de::int")]
    pub organization_id: i64,
    /// ISO 4217 code.
    #[schema(min_length = 3, max_length = 3, pattern = "^[A-Z]{3}$")]
    pub currency: String,
}

/// `POST /v1/me/wallets`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenOwnWallet {
    /// ISO 4217 code.
    #[schema(min_length = 3, max_length = 3, pattern = "^[A-Z]{3}$")]
    pub currency: String,
}

/// `POST /v1/transfers`, `POST /v1/me/transfers`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    /// Debited wallet.
    #[schema(minimum = 1)]
    #[serde(deserialize_with = "de::int")]
    pub from_wallet_id: i64,
    /// Credited wallet (another wallet than the debited one: 409 `same_wallet` otherwise).
    #[schema(minimum = 1)]
    #[serde(deserialize_with = "de::int")]
    pub to_wallet_id: i64,
    /// Positive amount in minor units (at most 10^15).
    #[schema(minimum = 1, maximum = 1_000_000_000_000_000_i64)]
    #[serde(deserialize_with = "de::int")]
    pub amount_minor: i64,
    /// ISO 4217 code; must be both wallets' currency (409 `currency_mismatch` otherwise).
    #[schema(min_length = 3, max_length = 3, pattern = "^[A-Z]{3}$")]
    pub currency: String,
}

/// `POST /v1/deposits`, `POST /v1/withdrawals`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FundsRequest {
    /// The customer's or organization's wallet.
    #[schema(minimum = 1)]
    #[serde(deserialize_with = "de::int")]
    pub wallet_id: i64,
    /// Positive amount in minor units (at most 10^15).
    #[schema(minimum = 1, maximum = 1_000_000_000_000_000_i64)]
    #[serde(deserialize_with = "de::int")]
    pub amount_minor: i64,
    /// ISO 4217 code; must be the wallet's currency (409 `currency_mismatch` otherwise).
    #[schema(min_length = 3, max_length = 3, pattern = "^[A-Z]{3}$")]
    pub currency: String,
}

/// Statement pagination (query parameters: without `parameter_in`, utoipa cannot tell from
/// our own `ApiQuery` extractor and would declare them path parameters).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// Return entries after this entry id (default 0: from the first).
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// Page size, 1–500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// JSON Schema pattern of an ISO 4217 code (with `minLength`/`maxLength` 3, so that a regex
/// engine whose `$` also matches before a final newline cannot widen it).
pub const CURRENCY_PATTERN: &str = "^[A-Z]{3}$";
/// JSON Schema pattern of an `Idempotency-Key` (1–128 visible ASCII characters, as
/// `fintrail_domain::ledger::IdempotencyKey::parse`).
pub const IDEMPOTENCY_KEY_PATTERN: &str = "^[!-~]+$";

/// Integers in request bodies, as JSON Schema's `integer` defines them: `42` and `42.0` are the
/// same integer (a schema-valid request spelling it `42.0` must not be refused). Anything else
/// (a fraction, out of `i64`, not a number) is a deserialization error, i.e. 422.
pub mod de {
    use serde::{Deserialize, Deserializer};

    /// Largest magnitude accepted in float spelling: 2^50 (above every amount, 10^15).
    /// serde_json (default features) parses floats to within one ULP, not always exactly;
    /// below 2^50 one ULP is at most 1/8, so an inexact parse is never integral and is
    /// refused, never silently turned into another integer. Integer spellings are exact.
    const FLOAT_INT_MAX: f64 = 1_125_899_906_842_624.0;

    fn from_number<E: serde::de::Error>(n: &serde_json::Number) -> Result<i64, E> {
        if let Some(i) = n.as_i64() {
            return Ok(i);
        }
        match n.as_f64() {
            // In range and without fraction: the cast is exact.
            #[allow(clippy::cast_possible_truncation)]
            Some(f) if f.is_finite() && f.fract() == 0.0 && f.abs() <= FLOAT_INT_MAX => Ok(f as i64),
            _ => Err(E::custom(format!(
                "expected an integer (in -2^63..2^63, or spelled as a float within ±2^50), got {n}"
            ))),
        }
    }

    /// A required integer.
    pub fn int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        from_number(&serde_json::Number::deserialize(d)?)
    }

    /// An optional integer (`null` or absent: `None`; use with `#[serde(default)]`).
    pub fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        Option::<serde_json::Number>::deserialize(d)?.map(|n| from_number(&n)).transpose()
    }
}

// ------------------------------------------------------------------------------------------
// Parsing helpers.
// ------------------------------------------------------------------------------------------

pub(crate) fn parse_currency(s: &str) -> ApiResult<Currency> {
    Currency::parse(s).map_err(|e| fintrail_ledger::Error::from(e).into())
}

pub(crate) fn parse_amount(minor: i64) -> ApiResult<Amount> {
    Amount::new(minor).map_err(|e| fintrail_ledger::Error::from(e).into())
}

/// Who asks, for the ledger: the caller, under the permission that admitted the request.
pub(crate) fn who(caller: &Caller) -> Who {
    Who {
        actor: caller.principal.actor(),
        on_behalf_of: caller.principal.customer_id.map(|c| format!("customer:{c}")),
        permission: caller.permission,
        request_id: Some(caller.request_id.clone()),
    }
}

/// Open a wallet for a customer or an organization.
#[utoipa::path(post, path = "/v1/wallets", tag = "ledger", security(("bearer" = [])),
    description = "Requires `wallet.open`. The customer needs an approved KYC case, the organization state `cleared`.",
    request_body = OpenWallet,
    responses((status = 201, body = WalletView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn open_wallet(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<OpenWallet>,
) -> ApiResult<(StatusCode, Json<WalletView>)> {
    let (owner, currency) = match &body {
        OpenWallet::Customer(b) => (Owner::Customer(b.customer_id), &b.currency),
        OpenWallet::Organization(b) => (Owner::Organization(b.organization_id), &b.currency),
    };
    let currency = parse_currency(currency)?;
    let w = wallets::open_wallet(&state.pool, &state.audit, &who(&caller), owner, currency).await?;
    Ok((StatusCode::CREATED, Json(w)))
}

/// Open one's own wallet.
#[utoipa::path(post, path = "/v1/me/wallets", tag = "ledger", security(("bearer" = [])),
    description = "Requires `wallet.own.open` (customers; needs an approved KYC case).",
    request_body = OpenOwnWallet,
    responses((status = 201, body = WalletView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn open_own_wallet(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<OpenOwnWallet>,
) -> ApiResult<(StatusCode, Json<WalletView>)> {
    let customer = caller.own_customer()?;
    let currency = parse_currency(&body.currency)?;
    let w = wallets::open_wallet(&state.pool, &state.audit, &who(&caller), Owner::Customer(customer), currency).await?;
    Ok((StatusCode::CREATED, Json(w)))
}

/// A wallet and its balance.
#[utoipa::path(get, path = "/v1/wallets/{wallet_id}", tag = "ledger", security(("bearer" = [])),
    description = "Requires `wallet.read`.",
    params(("wallet_id" = i64, Path, minimum = 1, description = "Wallet id")),
    responses((status = 200, body = WalletView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_wallet(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<WalletView>> {
    Ok(Json(wallets::load_wallet(&state.pool, id, None).await?))
}

/// One's own wallet and its balance.
#[utoipa::path(get, path = "/v1/me/wallets/{wallet_id}", tag = "ledger", security(("bearer" = [])),
    description = "Requires `wallet.own.read` (other customers' wallets are not found).",
    params(("wallet_id" = i64, Path, minimum = 1, description = "Wallet id")),
    responses((status = 200, body = WalletView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_own_wallet(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<WalletView>> {
    let customer = caller.own_customer()?;
    Ok(Json(wallets::load_wallet(&state.pool, id, Some(customer)).await?))
}

async fn load_statement(state: &AppState, id: i64, owner: Option<i64>, page: Page) -> ApiResult<Statement> {
    let (after, limit) = (page.after.unwrap_or(0), page.limit.unwrap_or(PAGE_DEFAULT));
    Ok(wallets::load_statement(&state.pool, id, owner, after, limit).await?)
}

/// A wallet's statement: entries with the running balance, paginated by entry id.
#[utoipa::path(get, path = "/v1/wallets/{wallet_id}/entries", tag = "ledger", security(("bearer" = [])),
    description = "Requires `ledger.read`.",
    params(("wallet_id" = i64, Path, minimum = 1, description = "Wallet id"), Page),
    responses((status = 200, body = Statement), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
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
    params(("wallet_id" = i64, Path, minimum = 1, description = "Wallet id"), Page),
    responses((status = 200, body = Statement), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
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
                if let Some(stored) = fintrail_ledger::idempotency::lookup(&state.pool, &req.idem).await? {
                    return Ok(idempotency::replayed(stored));
                }
            }
        }
    }
    Err(fintrail_ledger::Error::key_in_progress().into())
}

/// The money a request moves, before it is parsed into a posting.
struct Move<'a> {
    kind: TransferKind,
    debit: i64,
    credit: i64,
    amount_minor: i64,
    currency: &'a str,
    reverses: Option<i64>,
}

fn posting(caller: &Caller, idem: IdemKey, m: Move<'_>) -> ApiResult<PostingRequest> {
    let Move { kind, debit, credit, amount_minor, currency, reverses } = m;
    let amount = parse_amount(amount_minor)?;
    let currency = parse_currency(currency)?;
    if debit == credit {
        return Err(fintrail_ledger::Error::same_wallet().into());
    }
    Ok(PostingRequest {
        kind,
        debit: WalletId(debit),
        credit: WalletId(credit),
        amount,
        currency,
        reverses,
        debit_owner: None,
        who: who(caller),
        idem,
    })
}

/// Transfer between two wallets of the same currency.
#[utoipa::path(post, path = "/v1/transfers", tag = "ledger", security(("bearer" = [])),
    description = "Requires `wallet.transfer.create`. Needs an `Idempotency-Key` header: a retry with the same key and body returns the original result; the same key with another body is a 409.",
    params(("Idempotency-Key" = String, Header, min_length = 1, max_length = 128, pattern = "^[!-~]+$", description = "1–128 visible ASCII characters, unique per request (scoped to the caller)")),
    request_body = TransferRequest,
    responses((status = 201, body = TransferView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_transfer(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<TransferRequest>,
) -> ApiResult<Response> {
    transfer(&state, &caller, &headers, &body, "POST /v1/transfers", None).await
}

/// Transfer from one's own wallet.
#[utoipa::path(post, path = "/v1/me/transfers", tag = "ledger", security(("bearer" = [])),
    description = "Requires `wallet.own.transfer` (customers; the debited wallet must be one's own). Needs an `Idempotency-Key` header.",
    params(("Idempotency-Key" = String, Header, min_length = 1, max_length = 128, pattern = "^[!-~]+$", description = "1–128 visible ASCII characters, unique per request (scoped to the caller)")),
    request_body = TransferRequest,
    responses((status = 201, body = TransferView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_own_transfer(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<TransferRequest>,
) -> ApiResult<Response> {
    let customer = caller.own_customer()?;
    transfer(&state, &caller, &headers, &body, "POST /v1/me/transfers", Some(customer)).await
}

/// Both transfer routes: `debit_owner`, when set, must own the debited wallet.
async fn transfer(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    body: &TransferRequest,
    route: &'static str,
    debit_owner: Option<i64>,
) -> ApiResult<Response> {
    let idem = idempotency::key(headers, caller, route, body)?;
    let m = Move {
        kind: TransferKind::Transfer,
        debit: body.from_wallet_id,
        credit: body.to_wallet_id,
        amount_minor: body.amount_minor,
        currency: &body.currency,
        reverses: None,
    };
    let mut req = posting(caller, idem, m)?;
    req.debit_owner = debit_owner;
    post_idempotent(state, req).await
}

/// Deposit external funds (debits the currency's external-funding system account).
#[utoipa::path(post, path = "/v1/deposits", tag = "ledger", security(("bearer" = [])),
    description = "Requires `wallet.deposit`. Needs an `Idempotency-Key` header.",
    params(("Idempotency-Key" = String, Header, min_length = 1, max_length = 128, pattern = "^[!-~]+$", description = "1–128 visible ASCII characters, unique per request (scoped to the caller)")),
    request_body = FundsRequest,
    responses((status = 201, body = TransferView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn deposit(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<FundsRequest>,
) -> ApiResult<Response> {
    external_funds(&state, &caller, &headers, &body, "POST /v1/deposits", TransferKind::Deposit).await
}

/// Withdraw funds (credits the currency's settlement system account).
#[utoipa::path(post, path = "/v1/withdrawals", tag = "ledger", security(("bearer" = [])),
    description = "Requires `wallet.withdraw`. Needs an `Idempotency-Key` header.",
    params(("Idempotency-Key" = String, Header, min_length = 1, max_length = 128, pattern = "^[!-~]+$", description = "1–128 visible ASCII characters, unique per request (scoped to the caller)")),
    request_body = FundsRequest,
    responses((status = 201, body = TransferView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn withdraw(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<FundsRequest>,
) -> ApiResult<Response> {
    external_funds(&state, &caller, &headers, &body, "POST /v1/withdrawals", TransferKind::Withdrawal).await
}

/// Deposits and withdrawals: money moves between a wallet and the currency's system account
/// (external funding is debited by a deposit; settlement is credited by a withdrawal).
async fn external_funds(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    body: &FundsRequest,
    route: &'static str,
    kind: TransferKind,
) -> ApiResult<Response> {
    let idem = idempotency::key(headers, caller, route, body)?;
    let currency = parse_currency(&body.currency)?;
    parse_amount(body.amount_minor)?;
    let (debit, credit) = match kind {
        TransferKind::Deposit => {
            (wallets::system_wallet(&state.pool, SystemAccount::ExternalFunding, currency).await?, body.wallet_id)
        }
        TransferKind::Withdrawal => {
            (body.wallet_id, wallets::system_wallet(&state.pool, SystemAccount::Settlement, currency).await?)
        }
        other => unreachable!("external_funds moves deposits and withdrawals only, not {other:?}"),
    };
    let m = Move { kind, debit, credit, amount_minor: body.amount_minor, currency: &body.currency, reverses: None };
    let req = posting(caller, idem, m)?;
    post_idempotent(state, req).await
}

/// One transfer.
#[utoipa::path(get, path = "/v1/transfers/{transfer_id}", tag = "ledger", security(("bearer" = [])),
    description = "Requires `wallet.read`.",
    params(("transfer_id" = i64, Path, minimum = 1, description = "Transfer id")),
    responses((status = 200, body = TransferView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_transfer(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<TransferView>> {
    wallets::load_transfer(&state.pool, id).await?.map(Json).ok_or_else(|| ApiError::not_found("transfer"))
}

/// Reverse a transfer: a new transfer mirroring it (at most once; never a reversal).
#[utoipa::path(post, path = "/v1/transfers/{transfer_id}/reversal", tag = "ledger", security(("bearer" = [])),
    description = "Requires `wallet.transfer.reverse`. Needs an `Idempotency-Key` header. A transfer is reversed at most once; a reversal is never reversed.",
    params(("transfer_id" = i64, Path, minimum = 1, description = "Transfer id"),
        ("Idempotency-Key" = String, Header, min_length = 1, max_length = 128, pattern = "^[!-~]+$", description = "1–128 visible ASCII characters, unique per request (scoped to the caller)")),
    responses((status = 201, body = TransferView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn reverse_transfer(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Response> {
    let idem = idempotency::key(&headers, &caller, &format!("POST /v1/transfers/{id}/reversal"), &json!({}))?;
    if let Some(stored) = fintrail_ledger::idempotency::lookup(&state.pool, &idem).await? {
        return Ok(idempotency::replayed(stored));
    }
    let orig = wallets::load_transfer(&state.pool, id).await?.ok_or_else(|| ApiError::not_found("transfer"))?;
    if orig.kind == TransferKind::Reversal.as_str() {
        return Err(ApiError::conflict("not_reversible", "a reversal cannot be reversed"));
    }
    let m = Move {
        kind: TransferKind::Reversal,
        debit: orig.credit_wallet_id,
        credit: orig.debit_wallet_id,
        amount_minor: orig.amount_minor,
        currency: &orig.currency,
        reverses: Some(orig.id),
    };
    let req = posting(&caller, idem, m)?;
    post_idempotent(&state, req).await
}

#[cfg(test)]
mod tests {
    use fintrail_domain::ledger::{IdempotencyKey, AMOUNT_MAX_MINOR, IDEMPOTENCY_KEY_MAX_LEN};
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;

    fn doc() -> Value {
        crate::openapi::document()
    }

    fn schema<'a>(d: &'a Value, name: &str) -> &'a Value {
        &d["components"]["schemas"][name]
    }

    /// The document states the handlers' real constraints (schemathesis generates from it; a
    /// looser schema makes it send requests the handler refuses).
    #[test]
    fn the_schema_states_the_constraints_the_handlers_enforce() {
        let d = doc();
        for (name, amount_fields, id_fields) in [
            ("TransferRequest", &["amount_minor"][..], &["from_wallet_id", "to_wallet_id"][..]),
            ("FundsRequest", &["amount_minor"][..], &["wallet_id"][..]),
            ("HoldRequest", &["amount_minor"][..], &["from_wallet_id", "to_wallet_id"][..]),
            ("HoldPostRequest", &["amount_minor"][..], &[][..]),
            ("OpenCustomerWallet", &[][..], &["customer_id"][..]),
            ("OpenOrganizationWallet", &[][..], &["organization_id"][..]),
        ] {
            let s = schema(&d, name);
            assert_eq!(s["additionalProperties"], false, "{name}");
            for f in amount_fields {
                let p = &s["properties"][f];
                assert_eq!(p["minimum"].as_f64(), Some(1.0), "{name}.{f}");
                assert_eq!(p["maximum"].as_f64(), Some(AMOUNT_MAX_MINOR as f64), "{name}.{f}");
            }
            for f in id_fields {
                assert_eq!(s["properties"][f]["minimum"].as_f64(), Some(1.0), "{name}.{f}");
            }
            if let Some(c) = s["properties"].get("currency") {
                assert_eq!(
                    (c["pattern"].as_str(), c["minLength"].as_u64(), c["maxLength"].as_u64()),
                    (Some(CURRENCY_PATTERN), Some(3), Some(3)),
                    "{name}"
                );
            }
        }
        assert_eq!(
            schema(&d, "HoldRequest")["properties"]["expires_in_secs"]["maximum"].as_f64(),
            Some(holds::HOLD_MAX_SECS as f64)
        );
        assert_eq!(schema(&d, "OpenWallet")["oneOf"].as_array().map(Vec::len), Some(2));
        // Every money-moving route: the header is a required parameter with the parser's rules,
        // and every status the route can answer is documented.
        let mut money = 0;
        for (path, item) in d["paths"].as_object().unwrap() {
            if !path.contains("wallets")
                && !path.contains("transfers")
                && !path.contains("holds")
                && !path.contains("deposits")
                && !path.contains("withdrawals")
            {
                continue;
            }
            for (method, op) in item.as_object().unwrap() {
                let statuses: Vec<&str> = op["responses"].as_object().unwrap().keys().map(String::as_str).collect();
                for s in ["401", "403"] {
                    assert!(statuses.contains(&s), "{method} {path}: {s} undocumented");
                }
                let params = op["parameters"].as_array().cloned().unwrap_or_default();
                for p in &params {
                    if p["in"] == "path" {
                        assert_eq!(p["schema"]["minimum"].as_f64(), Some(1.0), "{method} {path}");
                        assert!(path.contains(&format!("{{{}}}", p["name"].as_str().unwrap())), "{method} {path}: {p}");
                        assert!(statuses.contains(&"400") && statuses.contains(&"404"), "{method} {path}");
                    }
                }
                if op.get("requestBody").is_some() {
                    for s in ["400", "413", "415", "422"] {
                        assert!(statuses.contains(&s), "{method} {path}: {s} undocumented");
                    }
                }
                if method == "post" && !path.ends_with("/wallets") {
                    money += 1;
                    let h = params.iter().find(|p| p["name"] == "Idempotency-Key").expect("Idempotency-Key declared");
                    assert_eq!((h["in"].as_str(), h["required"].as_bool()), (Some("header"), Some(true)), "{path}");
                    assert_eq!(h["schema"]["pattern"].as_str(), Some(IDEMPOTENCY_KEY_PATTERN), "{path}");
                    assert_eq!(h["schema"]["minLength"].as_u64(), Some(1), "{path}");
                    assert_eq!(h["schema"]["maxLength"].as_u64(), Some(IDEMPOTENCY_KEY_MAX_LEN as u64), "{path}");
                    assert!(statuses.contains(&"409"), "{method} {path}");
                }
            }
        }
        assert_eq!(money, 8, "money-moving routes found");
    }

    #[test]
    fn json_integers_may_be_spelled_as_floats() {
        let p = |s: &str| serde_json::from_str::<TransferRequest>(s).map(|t| (t.from_wallet_id, t.amount_minor));
        let body = |a: &str| {
            format!(r#"{{"from_wallet_id": 1.0, "to_wallet_id": 2, "amount_minor": {a}, "currency": "EUR"}}"#)
        };
        assert_eq!(p(&body("250")).ok(), Some((1, 250)));
        assert_eq!(p(&body("250.0")).ok(), Some((1, 250)));
        assert_eq!(p(&body("2.5e2")).ok(), Some((1, 250)));
        for bad in ["2.5", "\"250\"", "null", "92233720368547758070", "9.3e18", "1e400", "true", "1125899906842625.0"] {
            assert!(p(&body(bad)).is_err(), "{bad}");
        }
        // Largest and smallest i64 still parse (the domain then refuses them as amounts).
        assert_eq!(p(&body("9223372036854775807")).ok(), Some((1, i64::MAX)));
        assert_eq!(p(&body("-9223372036854775808")).ok(), Some((1, i64::MIN)));
        let open = |s: &str| serde_json::from_str::<OpenWallet>(s);
        assert!(matches!(open(r#"{"customer_id": 3, "currency": "EUR"}"#), Ok(OpenWallet::Customer(_))));
        assert!(matches!(open(r#"{"organization_id": 3.0, "currency": "EUR"}"#), Ok(OpenWallet::Organization(_))));
        assert!(open(r#"{"customer_id": 3, "organization_id": 4, "currency": "EUR"}"#).is_err());
        assert!(open(r#"{"currency": "EUR"}"#).is_err());
    }

    proptest! {
        #![proptest_config(fintrail_testseed::proptest_config!())]
        /// What the header pattern `^[!-~]+$` with length 1–128 admits is exactly what the
        /// parser accepts.
        #[test]
        fn idempotency_key_pattern_agrees_with_the_parser(s in "[ -~\u{80}-\u{ff}]{0,140}") {
            let by_pattern = (1..=IDEMPOTENCY_KEY_MAX_LEN).contains(&s.chars().count()) && s.chars().all(|c| ('!'..='~').contains(&c));
            prop_assert_eq!(IdempotencyKey::parse(&s).is_ok(), by_pattern);
        }

        /// `^[A-Z]{3}$` (length 3) is exactly what `Currency::parse` accepts.
        #[test]
        fn currency_pattern_agrees_with_the_parser(s in "[A-Za-z0-9 \u{c0}-\u{ff}]{0,5}") {
            let by_pattern = s.chars().count() == 3 && s.chars().all(|c| c.is_ascii_uppercase());
            prop_assert_eq!(Currency::parse(&s).is_ok(), by_pattern);
        }

        /// Any integer within ±2^50, spelled as an integer or as an integral float,
        /// deserializes to itself.
        #[test]
        fn integral_floats_are_integers(n in -(1i64 << 50)..=(1i64 << 50)) {
            let v: TransferRequest = serde_json::from_str(&format!(
                r#"{{"from_wallet_id": {n}, "to_wallet_id": {n}.0, "amount_minor": {n}e0, "currency": "EUR"}}"#)).unwrap();
            prop_assert_eq!((v.from_wallet_id, v.to_wallet_id, v.amount_minor), (n, n, n));
        }
    }
}
