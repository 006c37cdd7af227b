//! The ledger's one error type. It names what went wrong in ledger terms; the HTTP adapter
//! (`fintrail-api`) decides the status code. The ledger never speaks HTTP.

use fintrail_domain::ledger::LedgerError;

/// Why a ledger operation did not happen. A business refusal (`NotFound`, `Refused`,
/// `Invalid`) changed nothing; so did every other variant, since each operation is one
/// transaction that was not committed.
#[derive(Debug)]
pub enum Error {
    /// The object does not exist, or is not the caller's (existence is not disclosed).
    NotFound(&'static str),
    /// A ledger rule refused the request (funds, currencies, states); `code` is stable and
    /// machine-readable (`insufficient_funds`, `same_wallet`, `hold_expired`, ...).
    Refused {
        /// Machine-readable.
        code: &'static str,
        /// Human-readable.
        message: String,
    },
    /// The request itself is malformed in a way its schema states (an amount out of range, a
    /// page size too large); `code` is machine-readable.
    Invalid {
        /// Machine-readable.
        code: &'static str,
        /// Human-readable.
        message: String,
    },
    /// The database refused or failed (its SQLSTATE says which: the adapter maps it).
    Db(tokio_postgres::Error),
    /// No database connection could be had.
    Pool(deadpool_postgres::PoolError),
    /// A broken internal expectation (a stopped batcher, an unencodable value).
    Internal(String),
}

/// A ledger result.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A refusal by a ledger rule.
    pub fn refused(code: &'static str, message: impl Into<String>) -> Self {
        Self::Refused { code, message: message.into() }
    }

    /// A malformed request.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { code, message: message.into() }
    }

    /// The refusal of a posting between a wallet and itself. A ledger rule, not a shape a
    /// schema can state (JSON Schema cannot say "two fields differ"), hence a refusal.
    pub fn same_wallet() -> Self {
        Self::refused("same_wallet", "from and to must be different wallets")
    }

    /// A concurrent request with the same idempotency key is still in progress.
    pub fn key_in_progress() -> Self {
        Self::refused("retry", "a concurrent request with the same Idempotency-Key is in progress; retry")
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::NotFound(what) => write!(f, "{what} not found"),
            Error::Refused { code, message } | Error::Invalid { code, message } => write!(f, "{code}: {message}"),
            Error::Db(e) => write!(f, "database: {e}"),
            Error::Pool(e) => write!(f, "database pool: {e}"),
            Error::Internal(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for Error {}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        Error::Db(e)
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Error::Pool(e)
    }
}

/// A domain rule's refusal. `Invalid` only for what a request schema states (amount range,
/// currency: an assigned ISO 4217 code, the schema's `enum`: a client that follows the schema
/// never sees it); a rule that depends on
/// the wallets or on two fields together (same wallet, currency of the wallets, funds,
/// balance overflow) is a refusal with its own `code`.
impl From<LedgerError> for Error {
    fn from(e: LedgerError) -> Self {
        match &e {
            LedgerError::InvalidAmount(_) | LedgerError::InvalidCurrency(_) => {
                Error::invalid("invalid_request", e.to_string())
            }
            LedgerError::SameWallet(_) => Error::refused("same_wallet", e.to_string()),
            LedgerError::CurrencyMismatch(..) => Error::refused("currency_mismatch", e.to_string()),
            LedgerError::InsufficientFunds { .. } => Error::refused("insufficient_funds", e.to_string()),
            LedgerError::Overflow(_) => Error::refused("overflow", e.to_string()),
            LedgerError::UnknownWallet(_) => Error::NotFound("wallet"),
        }
    }
}

#[cfg(test)]
mod tests {
    use fintrail_domain::ledger::{Amount, Currency, LedgerError, WalletId};

    use super::Error;

    /// Every domain refusal keeps a stable code; only the schema-stated ones are `Invalid`.
    #[test]
    fn domain_refusals_keep_their_codes() {
        let eur = Currency::parse("EUR").unwrap();
        let usd = Currency::parse("USD").unwrap();
        let code = |e: LedgerError| match Error::from(e) {
            Error::Refused { code, .. } => ("refused", code),
            Error::Invalid { code, .. } => ("invalid", code),
            Error::NotFound(what) => ("not_found", what),
            other => panic!("unexpected {other}"),
        };
        assert_eq!(code(Amount::new(0).unwrap_err()), ("invalid", "invalid_request"));
        assert_eq!(code(Currency::parse("eur").unwrap_err()), ("invalid", "invalid_request"));
        assert_eq!(code(Currency::parse("ZZZ").unwrap_err()), ("invalid", "invalid_request"));
        assert_eq!(code(LedgerError::SameWallet(WalletId(1))), ("refused", "same_wallet"));
        assert_eq!(code(LedgerError::CurrencyMismatch(eur, usd)), ("refused", "currency_mismatch"));
        assert_eq!(code(LedgerError::UnknownWallet(WalletId(7))), ("not_found", "wallet"));
    }
}
