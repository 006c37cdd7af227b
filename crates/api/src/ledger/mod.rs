//! The wallets and transfers routes: the HTTP adapter of `fintrail-ledger`.
//!
//! * Handlers (this file and [`holds`]) parse and authorize, resolve the request into a parsed
//!   posting and hand it to the ledger's engine (group commit), holds or wallets; they map its
//!   answer (`fintrail_ledger::Error` through `ApiError::from`) to a response.
//! * Every money-moving request carries an `Idempotency-Key` ([`idempotency`]).
//! * The rules are `fintrail_domain::ledger`'s; the ledger decides them, the database enforces
//!   them again (the ledger section of `0000_baseline.sql`), `fintrail ledger check` proves them on a live database.

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

use crate::auth::{record_denial, Caller};
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

/// Integers in request bodies, parsed exactly: only a JSON number written without fraction or
/// exponent (`42`, `-7`) is an integer here. `42.0`, `4.2e1` and `1.00000000000000000001` are
/// refused (422), never rounded through an `f64` (issue 16, item 11: the last one used to post
/// 1). So are integers outside `i64`, strings and `null` where a value is required.
///
/// How: serde_json (without `arbitrary_precision`, which would change every `Value` in the
/// tree) hands a visitor `visit_i64`/`visit_u64` for a literal with neither `.` nor `e`/`E`
/// that fits 64 bits, and `visit_f64` for everything else. The visitor below accepts only the
/// former. The same holds through an untagged enum (serde buffers the same number kinds).
///
/// The schema side: JSON Schema's `integer` admits `42.0`, so a schema-following client could
/// in principle send it. [`crate::openapi::document`] therefore states every bound of an
/// `integer` as an integer (`"minimum": 1`, not `1.0`) and says so in each integer's
/// description: schemathesis (hypothesis-jsonschema) then generates integers as Python `int`s
/// (spelled without a fraction) and takes boundary values from those integral bounds; a float
/// spelling only comes from its negative phase, where a refusal is the expected answer.
pub mod de {
    use serde::de::{Error, Unexpected, Visitor};
    use serde::Deserializer;

    /// What a refusal says.
    pub const EXPECTED: &str = "an integer written without fraction or exponent, within -2^63..2^63";

    struct Exact;

    impl Visitor<'_> for Exact {
        type Value = i64;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(EXPECTED)
        }
        fn visit_i64<E: Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
        }
        fn visit_f64<E: Error>(self, v: f64) -> Result<i64, E> {
            // Any fraction or exponent, and any integer literal beyond 64 bits.
            Err(E::invalid_type(Unexpected::Float(v), &self))
        }
    }

    struct OptExact;

    impl<'de> Visitor<'de> for OptExact {
        type Value = Option<i64>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "null or {EXPECTED}")
        }
        fn visit_none<E: Error>(self) -> Result<Option<i64>, E> {
            Ok(None)
        }
        fn visit_unit<E: Error>(self) -> Result<Option<i64>, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<i64>, D::Error> {
            int(d).map(Some)
        }
    }

    /// A required integer.
    pub fn int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        d.deserialize_i64(Exact)
    }

    /// An optional integer (`null` or absent: `None`; use with `#[serde(default)]`).
    pub fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        d.deserialize_option(OptExact)
    }

    /// An optional non-negative integer.
    pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match opt_int(d)? {
            None => Ok(None),
            Some(v) => u64::try_from(v)
                .map(Some)
                .map_err(|_| D::Error::invalid_value(Unexpected::Signed(v), &"a non-negative integer")),
        }
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
        credential: caller.principal.credential.clone(),
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
    let w = wallets::load_wallet(&state.pool, id, Some(customer)).await;
    Ok(Json(audit_foreign_wallet(&state, &caller, id, w).await?))
}

/// A customer route answered "wallet not found": when the wallet exists and is not the
/// caller's (another customer's, an organization's or a system account), the probe is
/// recorded as `access.denied` on `wallet:<id>` (issue 16, item 12), as the KYC and media
/// routes do. The answer stays the same 404: existence is not disclosed.
async fn audit_foreign_wallet<T>(
    state: &AppState,
    caller: &Caller,
    wallet_id: i64,
    result: Result<T, fintrail_ledger::Error>,
) -> ApiResult<T> {
    let err = match result {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    if matches!(err, fintrail_ledger::Error::NotFound("wallet")) {
        let client = state.pool.get().await?;
        let foreign = client
            .query_opt(
                "SELECT 1 FROM fintrail.wallets WHERE id = $1 AND customer_id IS DISTINCT FROM $2",
                &[&wallet_id, &caller.principal.customer_id],
            )
            .await?
            .is_some();
        drop(client);
        if foreign {
            record_denial(
                state,
                &caller.principal,
                caller.permission,
                format!("wallet:{wallet_id}"),
                &caller.request_id,
            )
            .await?;
        }
    }
    Err(err.into())
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
    let (after, limit) = (page.after.unwrap_or(0), page.limit.unwrap_or(PAGE_DEFAULT));
    let s = wallets::load_statement(&state.pool, id, Some(customer), after, limit).await;
    Ok(Json(audit_foreign_wallet(&state, &caller, id, s).await?))
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
    let posted = post_idempotent(state, req).await;
    match (posted, debit_owner) {
        // Another's wallet as the debited side: recorded (the answer stays 404).
        (Err(e), Some(_)) if e.status == StatusCode::NOT_FOUND => {
            let refused = Err(fintrail_ledger::Error::NotFound("wallet"));
            audit_foreign_wallet(state, caller, body.from_wallet_id, refused).await
        }
        (posted, _) => posted,
    }
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
        let mut currency_fields = 0;
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
                // Exactly the assigned codes (issue 16, item 7): `ZZZ` matches the pattern only.
                let codes: Vec<&str> = c["enum"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
                assert_eq!(codes, Currency::all().map(|c| c.as_str()).collect::<Vec<_>>(), "{name}");
                assert!(c["description"].as_str().is_some_and(|d| d.contains("ISO 4217")), "{name}");
                currency_fields += 1;
            }
        }
        assert!(currency_fields >= 5, "{currency_fields}");
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

    /// Issue 16, item 11: money is an integer written as one. A fraction or an exponent is
    /// refused however close to an integer it is (nothing is rounded through an `f64`).
    #[test]
    fn integers_only_no_fraction_or_exponent() {
        let p = |s: &str| serde_json::from_str::<TransferRequest>(s).map(|t| (t.from_wallet_id, t.amount_minor));
        let body =
            |a: &str| format!(r#"{{"from_wallet_id": 1, "to_wallet_id": 2, "amount_minor": {a}, "currency": "EUR"}}"#);
        assert_eq!(p(&body("250")).ok(), Some((1, 250)));
        // serde_json reads `-0` as the float -0.0: refused too (every bound here is ≥ 0 or ≥ 1,
        // and a schema generator writes zero as `0`).
        assert!(p(&body("-0")).is_err());
        for bad in [
            "1.00000000000000000001",
            "0.99999999999999999999",
            "250.0",
            "2.5e2",
            "25E1",
            "1e0",
            "2.5",
            "\"250\"",
            "null",
            "92233720368547758070",
            "9223372036854775808",
            "9.3e18",
            "1e400",
            "true",
        ] {
            let e = p(&body(bad)).expect_err(bad);
            // (`1e400` is refused by the JSON parser itself: out of range.)
            let ours = !(bad.starts_with('"') || ["null", "true", "1e400"].contains(&bad));
            assert!(!ours || e.to_string().contains("without fraction"), "{bad}: {e}");
        }
        // Largest and smallest i64 still parse (the domain then refuses them as amounts).
        assert_eq!(p(&body("9223372036854775807")).ok(), Some((1, i64::MAX)));
        assert_eq!(p(&body("-9223372036854775808")).ok(), Some((1, i64::MIN)));
        // Ids too, and through the untagged `OpenWallet`.
        assert!(p(r#"{"from_wallet_id": 1.0, "to_wallet_id": 2, "amount_minor": 1, "currency": "EUR"}"#).is_err());
        let open = |s: &str| serde_json::from_str::<OpenWallet>(s);
        assert!(matches!(open(r#"{"customer_id": 3, "currency": "EUR"}"#), Ok(OpenWallet::Customer(_))));
        assert!(matches!(open(r#"{"organization_id": 3, "currency": "EUR"}"#), Ok(OpenWallet::Organization(_))));
        assert!(open(r#"{"organization_id": 3.0, "currency": "EUR"}"#).is_err());
        assert!(open(r#"{"customer_id": 3, "organization_id": 4, "currency": "EUR"}"#).is_err());
        assert!(open(r#"{"currency": "EUR"}"#).is_err());
        // Optional integers: absent or null is None; a float spelling is refused.
        let hold = |s: &str| serde_json::from_str::<holds::HoldPostRequest>(s).map(|h| h.amount_minor);
        assert_eq!(hold("{}").ok(), Some(None));
        assert_eq!(hold(r#"{"amount_minor": null}"#).ok(), Some(None));
        assert_eq!(hold(r#"{"amount_minor": 5}"#).ok(), Some(Some(5)));
        assert!(hold(r#"{"amount_minor": 5.0}"#).is_err());
    }

    /// Every `integer` in the document has integral bounds written as JSON integers (so that a
    /// client that copies a bound never sends `1.0`), and says it takes no fraction.
    #[test]
    fn integer_bounds_are_written_as_integers() {
        fn walk(v: &Value, found: &mut usize) {
            match v {
                Value::Object(m) => {
                    let is_int = m.get("type").is_some_and(|t| {
                        t == "integer" || t.as_array().is_some_and(|a| a.iter().any(|x| x == "integer"))
                    });
                    if is_int {
                        for k in ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"] {
                            if let Some(b) = m.get(k) {
                                assert!(b.is_i64() || b.is_u64(), "{k} {b} in {v}");
                                *found += 1;
                            }
                        }
                    }
                    m.values().for_each(|x| walk(x, found));
                }
                Value::Array(a) => a.iter().for_each(|x| walk(x, found)),
                _ => {}
            }
        }
        let mut found = 0;
        walk(&doc(), &mut found);
        assert!(found > 20, "bounds found: {found}");
        let d = doc();
        let amount = &schema(&d, "TransferRequest")["properties"]["amount_minor"];
        assert_eq!(amount["minimum"], serde_json::json!(1));
        assert!(amount["description"].as_str().is_some_and(|d| d.contains("without fraction or exponent")), "{amount}");
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

        /// `^[A-Z]{3}$` (length 3) and the `enum` of assigned codes admit exactly what
        /// `Currency::parse` accepts (half the draws are three capitals, so both sides occur).
        #[test]
        fn currency_schema_agrees_with_the_parser(s in "[A-Z]{3}|[A-Za-z0-9 \u{c0}-\u{ff}]{0,5}") {
            let by_pattern = s.chars().count() == 3 && s.chars().all(|c| c.is_ascii_uppercase());
            let by_enum = Currency::all().any(|c| c.as_str() == s);
            prop_assert_eq!(Currency::parse(&s).is_ok(), by_pattern && by_enum);
        }

        /// Any i64 spelled as an integer is itself; the same value spelled with a fraction
        /// or an exponent is refused.
        #[test]
        fn integers_parse_exactly_and_float_spellings_never(n in any::<i64>()) {
            let v: TransferRequest = serde_json::from_str(&format!(
                r#"{{"from_wallet_id": {n}, "to_wallet_id": {n}, "amount_minor": {n}, "currency": "EUR"}}"#)).unwrap();
            prop_assert_eq!((v.from_wallet_id, v.to_wallet_id, v.amount_minor), (n, n, n));
            for spelled in [format!("{n}.0"), format!("{n}e0"), format!("{n}.00000000000000000001")] {
                let r = serde_json::from_str::<TransferRequest>(&format!(
                    r#"{{"from_wallet_id": 1, "to_wallet_id": 2, "amount_minor": {spelled}, "currency": "EUR"}}"#));
                prop_assert!(r.is_err(), "{}", spelled);
            }
        }
    }
}
