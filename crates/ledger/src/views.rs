//! What the ledger answers: read views of its rows. They are serialized as they are, both as
//! the stored response of an idempotency key (a replay answers the same status and JSON value;
//! the response is stored as `jsonb`, so its members may come in another order) and by
//! the HTTP adapter; with the `openapi` feature they also describe themselves for its OpenAPI
//! document (one type, not a copy per layer).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A posted transfer (also the stored idempotent response).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// Decimal places of the currency's minor unit (ISO 4217: JPY 0, EUR 2, BHD 3): an amount
    /// is `amount_minor / 10^minor_units` units. Absent only for a wallet opened before
    /// currencies were checked, in a code that is not assigned.
    pub minor_units: Option<u8>,
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

/// One statement line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Statement {
    /// The wallet.
    pub wallet_id: i64,
    /// Its currency.
    pub currency: String,
    /// Decimal places of the currency's minor unit (as the wallet's `minor_units`).
    pub minor_units: Option<u8>,
    /// Entries, oldest first.
    pub entries: Vec<EntryView>,
    /// Pass as `after` to get the next page (absent on the last page).
    pub next_after: Option<i64>,
}

/// A hold.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
