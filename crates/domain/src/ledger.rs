//! The double-entry ledger, as pure functions: money in integer minor units, currencies,
//! wallets with floors, postings, and the invariants `fintrail ledger check` proves.
//!
//! Every transfer moves `amount` from a debit wallet to a credit wallet of the same currency:
//! two entries, `-amount` and `+amount`, so every transfer — and therefore the whole ledger,
//! per currency — sums to zero. Amounts are `i64` minor units (cents), never floats; sums of
//! many amounts are `i128` so that no realistic sum can overflow. The database enforces the
//! same rules again (the ledger section of migration `0000_baseline.sql`): these functions decide before we write, the
//! database refuses what they should have refused.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Largest amount of one transfer, in minor units (10^15: a thousand billion units of a
/// 2-decimal currency). Keeps every single amount far from `i64::MAX`, so balances of real
/// wallets cannot approach overflow through a plausible number of transfers.
pub const AMOUNT_MAX_MINOR: i64 = 1_000_000_000_000_000;

/// A money error: bad input or a rule the posting would break. Never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// Zero, negative or above [`AMOUNT_MAX_MINOR`].
    #[error("amount must be between 1 and {AMOUNT_MAX_MINOR} minor units, got {0}")]
    InvalidAmount(i64),
    /// Not an assigned ISO 4217 code (the table in `crates/domain/data/iso4217.csv`).
    #[error("currency must be an assigned ISO 4217 code such as EUR, got {0:?}")]
    InvalidCurrency(String),
    /// The wallets (or the request) disagree on the currency.
    #[error("currency mismatch: {0} vs {1}")]
    CurrencyMismatch(Currency, Currency),
    /// Debit and credit are the same wallet.
    #[error("a transfer needs two different wallets (got {0} twice)")]
    SameWallet(WalletId),
    /// The debit would take the wallet's available balance below its floor.
    #[error("insufficient funds in wallet {wallet}: available {available_minor}, needed {needed_minor}")]
    InsufficientFunds {
        /// The debited wallet.
        wallet: WalletId,
        /// Balance minus holds minus floor (what may still leave the wallet).
        available_minor: i128,
        /// The amount asked for.
        needed_minor: i64,
    },
    /// The credit would overflow the wallet's balance.
    #[error("wallet {0}: balance would overflow")]
    Overflow(WalletId),
    /// A wallet the posting names is not known.
    #[error("unknown wallet {0}")]
    UnknownWallet(WalletId),
}

/// The ISO 4217 table: the one source of truth for currencies, shared with SQL (migration
/// `0043_iso4217.sql` inserts exactly these rows into `fintrail.currencies`; a test compares).
/// Embedded at compile time: the domain reads no file at run time.
const ISO4217_CSV: &str = include_str!("../data/iso4217.csv");

/// Bound on the table's size (the standard lists fewer than 200 active codes): a runaway file
/// is a parse error, not a large allocation.
const ISO4217_ROWS_MAX: usize = 300;

/// Largest minor-unit exponent in the standard (CLF and UYW: 4 decimals). Formatting and the
/// SQL CHECK on `currencies.minor_units` rely on it.
pub const MINOR_UNITS_MAX: u8 = 4;

/// One row of the ISO 4217 table (`crates/domain/data/iso4217.csv`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Iso4217Row {
    /// Alphabetic code: three uppercase ASCII letters.
    pub code: &'static str,
    /// Numeric code, 1..=999 (written with three digits: `008`).
    pub numeric_code: u16,
    /// Decimal places of the minor unit, 0..=[`MINOR_UNITS_MAX`] (JPY 0, EUR 2, BHD 3).
    pub minor_units: u8,
    /// English name (informative only).
    pub name: &'static str,
}

/// The parsed table, sorted by code (the file is; parsing checks it).
fn iso4217() -> &'static [Iso4217Row] {
    static TABLE: std::sync::OnceLock<Vec<Iso4217Row>> = std::sync::OnceLock::new();
    // The file is part of the source: a malformed one is a bug caught by the unit tests
    // (`the_iso4217_file_parses`), so failing loudly at first use is right.
    TABLE.get_or_init(|| parse_iso4217(ISO4217_CSV).unwrap_or_else(|e| panic!("crates/domain/data/iso4217.csv: {e}")))
}

/// Parses the table's text: `#` comment lines, one header line, then `code,numeric_code,
/// minor_units,name` rows strictly sorted by code with unique numeric codes.
fn parse_iso4217(text: &'static str) -> Result<Vec<Iso4217Row>, String> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.starts_with('#') && !l.trim().is_empty());
    match lines.next() {
        Some((_, "code,numeric_code,minor_units,name")) => {}
        other => return Err(format!("expected the header line, got {other:?}")),
    }
    let mut rows: Vec<Iso4217Row> = Vec::new();
    for (i, line) in lines {
        let row = parse_iso4217_row(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        if let Some(prev) = rows.last() {
            if prev.code >= row.code {
                return Err(format!("line {}: {} is not after {} (rows sorted by code)", i + 1, row.code, prev.code));
            }
        }
        if rows.iter().any(|r| r.numeric_code == row.numeric_code) {
            return Err(format!("line {}: numeric code {} used twice", i + 1, row.numeric_code));
        }
        if rows.len() == ISO4217_ROWS_MAX {
            return Err(format!("more than {ISO4217_ROWS_MAX} rows"));
        }
        rows.push(row);
    }
    if rows.is_empty() {
        return Err("no rows".into());
    }
    Ok(rows)
}

fn parse_iso4217_row(line: &'static str) -> Result<Iso4217Row, String> {
    let fields: Vec<&'static str> = line.splitn(4, ',').collect();
    let [code, numeric, minor, name] = fields[..] else { return Err(format!("expected 4 fields: {line:?}")) };
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!("code {code:?} is not three uppercase letters"));
    }
    // XTS is reserved for testing and XXX means "no currency": never money (file header).
    if code == "XTS" || code == "XXX" {
        return Err(format!("{code} is not money"));
    }
    if numeric.len() != 3 || !numeric.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("numeric code {numeric:?} is not three digits"));
    }
    let numeric_code: u16 = numeric.parse().map_err(|e| format!("numeric code {numeric:?}: {e}"))?;
    if numeric_code == 0 {
        return Err("numeric code 000".into());
    }
    let minor_units: u8 = minor.parse().map_err(|e| format!("minor units {minor:?}: {e}"))?;
    if minor_units > MINOR_UNITS_MAX {
        return Err(format!("minor units {minor_units} above {MINOR_UNITS_MAX}"));
    }
    if name.is_empty() || name.len() > 60 || name.trim() != name {
        return Err(format!("name {name:?} must be 1-60 characters without outer spaces"));
    }
    Ok(Iso4217Row { code, numeric_code, minor_units, name })
}

/// An assigned ISO 4217 currency (a row of the table above). Parsing is the only way to get
/// one ("parse, don't validate"): three uppercase letters that are not in the table (`ZZZ`)
/// are refused, so a `Currency` always has a known minor unit. Stored as its index in the
/// sorted table: ordering by index is ordering by code.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency(u16);

impl Currency {
    /// Parses `s`: an assigned ISO 4217 alphabetic code (`EUR`), nothing else.
    pub fn parse(s: &str) -> Result<Self, LedgerError> {
        let table = iso4217();
        match table.binary_search_by(|r| r.code.cmp(s)) {
            // The table has at most ISO4217_ROWS_MAX (< u16::MAX) rows.
            Ok(i) => Ok(Currency(i as u16)),
            Err(_) => Err(LedgerError::InvalidCurrency(s.chars().take(16).collect())),
        }
    }

    /// Every currency of the table, ordered by code.
    pub fn all() -> impl Iterator<Item = Currency> {
        // The table has at most ISO4217_ROWS_MAX (< u16::MAX) rows.
        (0..iso4217().len()).map(|i| Currency(i as u16))
    }

    fn row(&self) -> &'static Iso4217Row {
        // The index came from the table (parse/all): always in range.
        &iso4217()[usize::from(self.0)]
    }

    /// The alphabetic code.
    pub fn as_str(&self) -> &'static str {
        self.row().code
    }

    /// The whole table row (numeric code, name).
    pub fn iso4217(&self) -> Iso4217Row {
        *self.row()
    }

    /// Decimal places of the minor unit (ISO 4217 "minor unit"): 0 for JPY, 2 for EUR, 3 for
    /// BHD. Amounts are stored in minor units; this says how to show them as decimals.
    pub fn minor_units(&self) -> u8 {
        self.row().minor_units
    }

    /// Formats minor units as a decimal string in this currency (`12345` EUR → `123.45`).
    pub fn format_minor(&self, minor: i128) -> String {
        let e = u32::from(self.minor_units());
        if e == 0 {
            return minor.to_string();
        }
        let scale = 10u128.pow(e);
        let sign = if minor < 0 { "-" } else { "" };
        let abs = minor.unsigned_abs();
        format!("{sign}{}.{:0width$}", abs / scale, abs % scale, width = e as usize)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.as_str())
    }
}

impl FromStr for Currency {
    type Err = LedgerError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::parse(s)
    }
}

/// A positive amount of minor units, at most [`AMOUNT_MAX_MINOR`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(i64);

impl Amount {
    /// Parses a raw minor-unit count (must be in `1..=AMOUNT_MAX_MINOR`).
    pub fn new(minor: i64) -> Result<Self, LedgerError> {
        if (1..=AMOUNT_MAX_MINOR).contains(&minor) {
            Ok(Amount(minor))
        } else {
            Err(LedgerError::InvalidAmount(minor))
        }
    }
    /// The minor units.
    pub fn minor(self) -> i64 {
        self.0
    }
}

/// A wallet's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WalletId(pub i64);

impl fmt::Display for WalletId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Who a wallet belongs to, which decides its floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WalletKind {
    /// A customer's wallet (needs an approved KYC case); floor 0.
    Customer,
    /// An organization's wallet (needs a cleared organization); floor 0.
    Organization,
    /// A system account (external funding, settlement): no floor, may go negative by design —
    /// its negative balance is the money that entered the ledger from outside.
    System,
}

impl WalletKind {
    /// Every kind.
    pub const ALL: [WalletKind; 3] = [WalletKind::Customer, WalletKind::Organization, WalletKind::System];
    /// Stable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            WalletKind::Customer => "customer",
            WalletKind::Organization => "organization",
            WalletKind::System => "system",
        }
    }
    /// The lowest balance a wallet of this kind may reach (`None`: unbounded).
    pub const fn floor_minor(self) -> Option<i64> {
        match self {
            WalletKind::Customer | WalletKind::Organization => Some(0),
            WalletKind::System => None,
        }
    }
    /// Parses a stable name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The system accounts, one per currency each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SystemAccount {
    /// Money entering the ledger (deposits debit it; it goes negative).
    ExternalFunding,
    /// Money leaving the ledger (withdrawals credit it).
    Settlement,
}

impl SystemAccount {
    /// Stable name (stored in `wallets.system_name`).
    pub const fn as_str(self) -> &'static str {
        match self {
            SystemAccount::ExternalFunding => "external_funding",
            SystemAccount::Settlement => "settlement",
        }
    }
}

/// What a transfer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransferKind {
    /// Wallet to wallet.
    Transfer,
    /// External funding → wallet.
    Deposit,
    /// Wallet → settlement.
    Withdrawal,
    /// The mirror image of an earlier transfer (at most one per original).
    Reversal,
    /// The posting of a hold (two-phase transfer), for up to the held amount.
    HoldPost,
}

impl TransferKind {
    /// Every kind.
    pub const ALL: [TransferKind; 5] = [
        TransferKind::Transfer,
        TransferKind::Deposit,
        TransferKind::Withdrawal,
        TransferKind::Reversal,
        TransferKind::HoldPost,
    ];
    /// Stable name (stored in `transfers.kind`).
    pub const fn as_str(self) -> &'static str {
        match self {
            TransferKind::Transfer => "transfer",
            TransferKind::Deposit => "deposit",
            TransferKind::Withdrawal => "withdrawal",
            TransferKind::Reversal => "reversal",
            TransferKind::HoldPost => "hold_post",
        }
    }
    /// Parses a stable name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The state of a hold (two-phase transfer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HoldState {
    /// Funds reserved; may be posted or voided until it expires.
    Pending,
    /// Posted (fully or partially); the rest was released.
    Posted,
    /// Released without moving money.
    Voided,
    /// Released because it was not settled in time.
    Expired,
}

impl HoldState {
    /// Every state.
    pub const ALL: [HoldState; 4] = [HoldState::Pending, HoldState::Posted, HoldState::Voided, HoldState::Expired];
    /// Stable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            HoldState::Pending => "pending",
            HoldState::Posted => "posted",
            HoldState::Voided => "voided",
            HoldState::Expired => "expired",
        }
    }
    /// Parses a stable name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
    /// Only a pending hold changes, and only into a final state.
    pub fn may_become(self, to: HoldState) -> bool {
        self == HoldState::Pending && to != HoldState::Pending
    }
}

/// A wallet as the ledger sees it when deciding a posting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalletState {
    /// Its currency.
    pub currency: Currency,
    /// Posted balance (sum of its entries).
    pub balance_minor: i64,
    /// Reserved by pending holds (never negative).
    pub held_minor: i64,
    /// Lowest allowed `balance - held` (`None`: unbounded, system accounts).
    pub floor_minor: Option<i64>,
}

impl WalletState {
    /// What may still leave the wallet: `balance - held - floor` (`None`: unbounded).
    pub fn available_minor(&self) -> Option<i128> {
        self.floor_minor.map(|f| i128::from(self.balance_minor) - i128::from(self.held_minor) - i128::from(f))
    }
    /// Whether the wallet respects its floor.
    pub fn within_floor(&self) -> bool {
        self.held_minor >= 0 && self.available_minor().is_none_or(|a| a >= 0)
    }
}

/// One money movement to decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Posting {
    /// Loses `amount`.
    pub debit: WalletId,
    /// Gains `amount`.
    pub credit: WalletId,
    /// How much.
    pub amount: Amount,
    /// In which currency (must be both wallets').
    pub currency: Currency,
}

/// Checks `p` against the wallets and, if every rule holds, applies it (debit and credit);
/// otherwise changes nothing. `release_held_minor` is first released from the debit wallet's
/// holds (posting a hold: the reservation turns into the debit).
pub fn apply_posting(
    wallets: &mut BTreeMap<WalletId, WalletState>,
    p: &Posting,
    release_held_minor: i64,
) -> Result<(), LedgerError> {
    if p.debit == p.credit {
        return Err(LedgerError::SameWallet(p.debit));
    }
    let d = *wallets.get(&p.debit).ok_or(LedgerError::UnknownWallet(p.debit))?;
    let c = *wallets.get(&p.credit).ok_or(LedgerError::UnknownWallet(p.credit))?;
    if d.currency != p.currency {
        return Err(LedgerError::CurrencyMismatch(p.currency, d.currency));
    }
    if c.currency != p.currency {
        return Err(LedgerError::CurrencyMismatch(p.currency, c.currency));
    }
    assert!(release_held_minor >= 0 && release_held_minor <= d.held_minor, "releasing more than is held");
    let amount = p.amount.minor();
    let mut d2 = d;
    d2.held_minor -= release_held_minor;
    d2.balance_minor = d.balance_minor.checked_sub(amount).ok_or(LedgerError::Overflow(p.debit))?;
    if !d2.within_floor() {
        return Err(LedgerError::InsufficientFunds {
            wallet: p.debit,
            available_minor: d.available_minor().unwrap_or(i128::MAX) + i128::from(release_held_minor),
            needed_minor: amount,
        });
    }
    let mut c2 = c;
    c2.balance_minor = c.balance_minor.checked_add(amount).ok_or(LedgerError::Overflow(p.credit))?;
    wallets.insert(p.debit, d2);
    wallets.insert(p.credit, c2);
    Ok(())
}

/// Checks that `amount` may be reserved on `w` (a hold) and returns the new state.
pub fn reserve(w: &WalletState, wallet: WalletId, amount: Amount) -> Result<WalletState, LedgerError> {
    let mut w2 = *w;
    w2.held_minor = w.held_minor.checked_add(amount.minor()).ok_or(LedgerError::Overflow(wallet))?;
    if !w2.within_floor() {
        return Err(LedgerError::InsufficientFunds {
            wallet,
            available_minor: w.available_minor().unwrap_or(i128::MAX),
            needed_minor: amount.minor(),
        });
    }
    Ok(w2)
}

/// One ledger entry as read back for checking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRow {
    /// The transfer it belongs to.
    pub transfer_id: i64,
    /// The wallet it moves.
    pub wallet: WalletId,
    /// Signed: negative debit, positive credit.
    pub amount_minor: i64,
    /// The entry's currency.
    pub currency: Currency,
}

/// A broken invariant, named precisely enough to find the row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// Σ entries of a currency is not zero (money created or destroyed).
    CurrencyNotBalanced {
        /// The currency.
        currency: Currency,
        /// The sum.
        sum_minor: i128,
    },
    /// A transfer's entries do not sum to zero, or it does not have exactly one debit and one
    /// credit.
    TransferNotBalanced {
        /// The transfer.
        transfer_id: i64,
        /// The sum of its entries.
        sum_minor: i128,
        /// How many entries it has.
        entries: usize,
    },
    /// A wallet's stored balance differs from the sum of its entries.
    BalanceMismatch {
        /// The wallet.
        wallet: WalletId,
        /// Stored.
        stored_minor: i64,
        /// Σ entries.
        entries_minor: i128,
    },
    /// A wallet is below its floor.
    BelowFloor {
        /// The wallet.
        wallet: WalletId,
        /// Balance.
        balance_minor: i64,
        /// Held.
        held_minor: i64,
        /// Floor.
        floor_minor: i64,
    },
    /// A wallet's held amount differs from the sum of its pending holds.
    HeldMismatch {
        /// The wallet.
        wallet: WalletId,
        /// Stored.
        stored_minor: i64,
        /// Σ pending holds.
        pending_minor: i128,
    },
    /// An entry's currency differs from its wallet's.
    EntryCurrency {
        /// The transfer.
        transfer_id: i64,
        /// The wallet.
        wallet: WalletId,
    },
    /// An entry whose transfer or wallet does not exist (entries reference both by
    /// construction, not by foreign key: migration 0032).
    OrphanEntry {
        /// The entry.
        entry_id: i64,
        /// The transfer it names.
        transfer_id: i64,
        /// The wallet it names.
        wallet: WalletId,
    },
    /// A hold and its `hold_post` transfer disagree: posted without the transfer of its posted
    /// amount, or such a transfer for a hold that is not posted.
    HoldPosting {
        /// The hold.
        hold_id: i64,
        /// Its status.
        status: String,
    },
    /// A wallet's currency is not an assigned ISO 4217 code: only a wallet opened before
    /// migration 0043 can be one (its key stays NOT VALID until no such wallet is left).
    UnassignedCurrency {
        /// The wallet.
        wallet: WalletId,
        /// Its stored code (at most 16 characters kept).
        code: String,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::CurrencyNotBalanced { currency, sum_minor } => {
                write!(f, "currency {currency}: entries sum to {sum_minor}, not 0")
            }
            Violation::TransferNotBalanced { transfer_id, sum_minor, entries } => {
                write!(f, "transfer {transfer_id}: {entries} entries summing to {sum_minor} (need 2 summing to 0)")
            }
            Violation::BalanceMismatch { wallet, stored_minor, entries_minor } => {
                write!(f, "wallet {wallet}: stored balance {stored_minor} but entries sum to {entries_minor}")
            }
            Violation::BelowFloor { wallet, balance_minor, held_minor, floor_minor } => {
                write!(
                    f,
                    "wallet {wallet}: balance {balance_minor} minus held {held_minor} is below floor {floor_minor}"
                )
            }
            Violation::HeldMismatch { wallet, stored_minor, pending_minor } => {
                write!(f, "wallet {wallet}: held {stored_minor} but pending holds sum to {pending_minor}")
            }
            Violation::HoldPosting { hold_id, status } => {
                write!(
                    f,
                    "hold {hold_id}: {status}, but its hold_post transfer disagrees (missing, or for another amount)"
                )
            }
            Violation::EntryCurrency { transfer_id, wallet } => {
                write!(f, "transfer {transfer_id}: entry on wallet {wallet} has another currency than the wallet")
            }
            Violation::UnassignedCurrency { wallet, code } => {
                write!(f, "wallet {wallet}: currency {code:?} is not an assigned ISO 4217 code (opened before 0043)")
            }
            Violation::OrphanEntry { entry_id, transfer_id, wallet } => {
                write!(
                    f,
                    "entry {entry_id}: names transfer {transfer_id} and wallet {wallet}, one of which does not exist"
                )
            }
        }
    }
}

/// Per-transfer and per-currency sums of `entries` (the first two invariants).
pub fn check_entries(entries: &[EntryRow]) -> Vec<Violation> {
    let mut per_currency: BTreeMap<Currency, i128> = BTreeMap::new();
    let mut per_transfer: BTreeMap<i64, (i128, usize, bool, bool)> = BTreeMap::new();
    for e in entries {
        *per_currency.entry(e.currency).or_default() += i128::from(e.amount_minor);
        let t = per_transfer.entry(e.transfer_id).or_default();
        t.0 += i128::from(e.amount_minor);
        t.1 += 1;
        t.2 |= e.amount_minor < 0;
        t.3 |= e.amount_minor > 0;
    }
    let mut out = Vec::new();
    for (currency, sum_minor) in per_currency {
        if sum_minor != 0 {
            out.push(Violation::CurrencyNotBalanced { currency, sum_minor });
        }
    }
    for (transfer_id, (sum_minor, entries, has_debit, has_credit)) in per_transfer {
        if sum_minor != 0 || entries != 2 || !has_debit || !has_credit {
            out.push(Violation::TransferNotBalanced { transfer_id, sum_minor, entries });
        }
    }
    out
}

/// A wallet's stored figures and the sums recomputed from entries and holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalletCheck {
    /// The wallet.
    pub wallet: WalletId,
    /// Stored balance.
    pub balance_minor: i64,
    /// Stored held.
    pub held_minor: i64,
    /// Floor (`None`: unbounded).
    pub floor_minor: Option<i64>,
    /// Σ entries.
    pub entries_minor: i128,
    /// Σ pending holds.
    pub pending_holds_minor: i128,
}

/// The per-wallet invariants: balance = Σ entries, held = Σ pending holds, floor respected.
pub fn check_wallet(w: &WalletCheck) -> Vec<Violation> {
    let mut out = Vec::new();
    if i128::from(w.balance_minor) != w.entries_minor {
        out.push(Violation::BalanceMismatch {
            wallet: w.wallet,
            stored_minor: w.balance_minor,
            entries_minor: w.entries_minor,
        });
    }
    if i128::from(w.held_minor) != w.pending_holds_minor {
        out.push(Violation::HeldMismatch {
            wallet: w.wallet,
            stored_minor: w.held_minor,
            pending_minor: w.pending_holds_minor,
        });
    }
    if let Some(floor_minor) = w.floor_minor {
        if i128::from(w.balance_minor) - i128::from(w.held_minor) < i128::from(floor_minor) || w.held_minor < 0 {
            out.push(Violation::BelowFloor {
                wallet: w.wallet,
                balance_minor: w.balance_minor,
                held_minor: w.held_minor,
                floor_minor,
            });
        }
    }
    out
}

/// Largest idempotency key length.
pub const IDEMPOTENCY_KEY_MAX_LEN: usize = 128;

/// An `Idempotency-Key` header value: 1–128 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Parses a header value.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > IDEMPOTENCY_KEY_MAX_LEN {
            return Err(format!("Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX_LEN} characters"));
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("Idempotency-Key must be visible ASCII characters".into());
        }
        Ok(IdempotencyKey(s.to_owned()))
    }
    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn eur() -> Currency {
        Currency::parse("EUR").unwrap()
    }

    #[test]
    fn currency_parses_only_assigned_codes() {
        assert_eq!(eur().as_str(), "EUR");
        for bad in ["", "eur", "EU", "EURO", "E1R", "ÉUR", "EU ", " EUR", "ZZZ", "XXX", "XTS", "XAU", "HRK"] {
            assert_eq!(Currency::parse(bad), Err(LedgerError::InvalidCurrency(bad.into())), "{bad:?} accepted");
        }
        let code = |c: &str| Currency::parse(c).unwrap();
        assert_eq!((code("JPY").minor_units(), eur().minor_units(), code("BHD").minor_units()), (0, 2, 3));
        assert_eq!((code("CLF").minor_units(), code("KWD").minor_units()), (4, 3));
        assert_eq!(eur().iso4217().numeric_code, 978);
        assert_eq!(code("ALL").iso4217().numeric_code, 8);
        assert_eq!(eur().format_minor(12345), "123.45");
        assert_eq!(eur().format_minor(-5), "-0.05");
        assert_eq!(code("JPY").format_minor(500), "500");
        assert_eq!(code("KWD").format_minor(1001), "1.001");
        assert_eq!(code("CLF").format_minor(-12345), "-1.2345");
        assert_eq!(format!("{:?}", code("USD")), "Currency(USD)");
    }

    /// Issue 16, item 7: of all 17,576 strings of three uppercase letters, `Currency::parse`
    /// accepts exactly the codes of the data file (read here independently of the parser).
    #[test]
    fn currency_parse_accepts_exactly_the_table_of_all_three_letter_strings() {
        let in_file: std::collections::BTreeSet<&str> =
            ISO4217_CSV.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).skip(1).map(|l| &l[..3]).collect();
        let mut accepted = std::collections::BTreeSet::new();
        for a in b'A'..=b'Z' {
            for b in b'A'..=b'Z' {
                for c in b'A'..=b'Z' {
                    let s = String::from_utf8(vec![a, b, c]).unwrap();
                    if let Ok(cur) = Currency::parse(&s) {
                        assert_eq!(cur.as_str(), s);
                        accepted.insert(cur.as_str());
                    }
                }
            }
        }
        assert_eq!(accepted, in_file);
        assert!((150..ISO4217_ROWS_MAX).contains(&accepted.len()), "{}", accepted.len());
        assert_eq!(Currency::all().map(|c| c.as_str()).collect::<std::collections::BTreeSet<_>>(), in_file);
        // Index order is code order (the derived `Ord` relies on it).
        assert!(Currency::all().zip(Currency::all().skip(1)).all(|(a, b)| a < b && a.as_str() < b.as_str()));
    }

    #[test]
    fn a_malformed_table_is_refused_with_its_line() {
        let head = "# c\ncode,numeric_code,minor_units,name\n";
        let leaked = |body: &str| -> &'static str { Box::leak(format!("{head}{body}").into_boxed_str()) };
        for (body, why) in [
            ("EUR,978,2,Euro\nAED,784,2,Dirham", "line 4: AED is not after EUR"),
            ("AED,784,2,Dirham\nEUR,784,2,Euro", "numeric code 784 used twice"),
            ("EUR,978,5,Euro", "minor units 5 above 4"),
            ("EUR,978,2", "expected 4 fields"),
            ("eur,978,2,Euro", "not three uppercase"),
            ("XXX,999,2,No currency", "XXX is not money"),
            ("XTS,963,2,Testing", "XTS is not money"),
            ("EUR,97,2,Euro", "not three digits"),
            ("EUR,000,2,Euro", "numeric code 000"),
            ("EUR,978,2, Euro", "outer spaces"),
            ("", "no rows"),
        ] {
            let e = parse_iso4217(leaked(body)).unwrap_err();
            assert!(e.contains(why), "{body:?}: {e}");
        }
        assert!(parse_iso4217("code,numeric,minor_units,name\n").unwrap_err().contains("header"));
        let many: String = (0..=ISO4217_ROWS_MAX)
            .map(|i| {
                format!(
                    "A{}{},{:03},2,N\n",
                    (b'A' + (i / 26 % 26) as u8) as char,
                    (b'A' + (i % 26) as u8) as char,
                    i + 1
                )
            })
            .collect();
        assert!(parse_iso4217(leaked(&many)).unwrap_err().contains("more than"));
    }

    #[test]
    fn the_iso4217_file_parses() {
        let rows = parse_iso4217(ISO4217_CSV).unwrap();
        assert_eq!(rows.len(), Currency::all().count());
        assert!(rows.iter().all(|r| r.minor_units <= MINOR_UNITS_MAX));
    }

    #[test]
    fn amount_rejects_zero_negative_and_huge() {
        for bad in [0, -1, i64::MIN, AMOUNT_MAX_MINOR + 1, i64::MAX] {
            assert_eq!(Amount::new(bad), Err(LedgerError::InvalidAmount(bad)));
        }
        assert_eq!(Amount::new(1).unwrap().minor(), 1);
        assert_eq!(Amount::new(AMOUNT_MAX_MINOR).unwrap().minor(), AMOUNT_MAX_MINOR);
    }

    #[test]
    fn kinds_round_trip() {
        for k in TransferKind::ALL {
            assert_eq!(TransferKind::parse(k.as_str()), Some(k));
        }
        for k in WalletKind::ALL {
            assert_eq!(WalletKind::parse(k.as_str()), Some(k));
        }
        for s in HoldState::ALL {
            assert_eq!(HoldState::parse(s.as_str()), Some(s));
            assert_eq!(s.may_become(HoldState::Posted), s == HoldState::Pending);
            assert!(!s.may_become(HoldState::Pending));
        }
    }

    #[test]
    fn idempotency_keys() {
        assert!(IdempotencyKey::parse("abc-123").is_ok());
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse("a b").is_err());
        assert!(IdempotencyKey::parse(&"x".repeat(129)).is_err());
        assert!(IdempotencyKey::parse(&"x".repeat(128)).is_ok());
    }

    fn wallet(balance: i64, floor: Option<i64>) -> WalletState {
        WalletState { currency: eur(), balance_minor: balance, held_minor: 0, floor_minor: floor }
    }

    #[test]
    fn posting_rules() {
        let mut w = BTreeMap::from([
            (WalletId(1), wallet(100, Some(0))),
            (WalletId(2), wallet(0, Some(0))),
            (WalletId(3), WalletState { currency: Currency::parse("USD").unwrap(), ..wallet(0, Some(0)) }),
            (WalletId(4), wallet(0, None)),
            (WalletId(5), wallet(i64::MAX - 5, Some(0))),
        ]);
        let p = |d, c, a| Posting {
            debit: WalletId(d),
            credit: WalletId(c),
            amount: Amount::new(a).unwrap(),
            currency: eur(),
        };
        let before = w.clone();
        assert!(matches!(apply_posting(&mut w, &p(1, 2, 101), 0), Err(LedgerError::InsufficientFunds { .. })));
        assert!(matches!(apply_posting(&mut w, &p(1, 3, 1), 0), Err(LedgerError::CurrencyMismatch(..))));
        assert_eq!(apply_posting(&mut w, &p(1, 1, 1), 0), Err(LedgerError::SameWallet(WalletId(1))));
        assert_eq!(apply_posting(&mut w, &p(1, 9, 1), 0), Err(LedgerError::UnknownWallet(WalletId(9))));
        assert_eq!(apply_posting(&mut w, &p(4, 5, 6), 0), Err(LedgerError::Overflow(WalletId(5))));
        assert_eq!(w, before, "refused postings change nothing");
        apply_posting(&mut w, &p(1, 2, 100), 0).unwrap();
        assert_eq!(w[&WalletId(1)].balance_minor, 0);
        assert_eq!(w[&WalletId(2)].balance_minor, 100);
        // System accounts go negative by design.
        apply_posting(&mut w, &p(4, 2, 1_000), 0).unwrap();
        assert_eq!(w[&WalletId(4)].balance_minor, -1_000);
    }

    #[test]
    fn holds_reserve_and_release() {
        let w = wallet(100, Some(0));
        let r = reserve(&w, WalletId(1), Amount::new(60).unwrap()).unwrap();
        assert_eq!(r.available_minor(), Some(40));
        assert!(reserve(&r, WalletId(1), Amount::new(41).unwrap()).is_err());
        let mut m = BTreeMap::from([(WalletId(1), r), (WalletId(2), wallet(0, Some(0)))]);
        let p = Posting { debit: WalletId(1), credit: WalletId(2), amount: Amount::new(50).unwrap(), currency: eur() };
        // A partial post of a 60 hold: 60 released, 50 debited.
        apply_posting(&mut m, &p, 60).unwrap();
        assert_eq!(m[&WalletId(1)], WalletState { balance_minor: 50, held_minor: 0, ..w });
    }

    #[test]
    fn checks_find_each_violation() {
        let e = |t, w, a| EntryRow { transfer_id: t, wallet: WalletId(w), amount_minor: a, currency: eur() };
        assert!(check_entries(&[e(1, 1, -5), e(1, 2, 5)]).is_empty());
        let v = check_entries(&[e(1, 1, -5), e(1, 2, 6)]);
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(matches!(v[0], Violation::CurrencyNotBalanced { sum_minor: 1, .. }));
        assert!(matches!(v[1], Violation::TransferNotBalanced { transfer_id: 1, .. }));
        // Three entries summing to zero is still not a double entry.
        assert_eq!(check_entries(&[e(2, 1, -5), e(2, 2, 5), e(2, 3, 0)]).len(), 1);
        let ok = WalletCheck {
            wallet: WalletId(1),
            balance_minor: 10,
            held_minor: 4,
            floor_minor: Some(0),
            entries_minor: 10,
            pending_holds_minor: 4,
        };
        assert!(check_wallet(&ok).is_empty());
        assert_eq!(check_wallet(&WalletCheck { entries_minor: 11, ..ok }).len(), 1);
        assert_eq!(check_wallet(&WalletCheck { pending_holds_minor: 3, ..ok }).len(), 1);
        assert_eq!(check_wallet(&WalletCheck { held_minor: 11, pending_holds_minor: 11, ..ok }).len(), 1);
        assert!(check_wallet(&WalletCheck { balance_minor: -5, entries_minor: -5, floor_minor: None, ..ok }).is_empty());
        assert!(Violation::CurrencyNotBalanced { currency: eur(), sum_minor: 1 }.to_string().contains("EUR"));
        let v = Violation::UnassignedCurrency { wallet: WalletId(4), code: "ZZZ".into() };
        assert!(v.to_string().contains("wallet 4: currency \"ZZZ\" is not an assigned ISO 4217 code"), "{v}");
    }

    proptest! {
        #![proptest_config(fintrail_testseed::proptest_config!())]
        /// Any sequence of postings, accepted or refused, conserves money, keeps every floored
        /// wallet at or above its floor, and leaves entries that pass every check.
        #[test]
        fn postings_conserve_money_and_respect_floors(
            ops in prop::collection::vec((0usize..6, 0usize..6, 1i64..2_000, any::<bool>()), 0..200),
        ) {
            let usd = Currency::parse("USD").unwrap();
            let mut w: BTreeMap<WalletId, WalletState> = (0..6)
                .map(|i| {
                    let floor = if i == 0 || i == 3 { None } else { Some(0) };
                    let cur = if i < 3 { eur() } else { usd };
                    (WalletId(i as i64), WalletState { currency: cur, balance_minor: 0, held_minor: 0, floor_minor: floor })
                })
                .collect();
            let mut entries = Vec::new();
            for (n, (d, c, a, eur_req)) in ops.into_iter().enumerate() {
                let currency = if eur_req { eur() } else { usd };
                let p = Posting { debit: WalletId(d as i64), credit: WalletId(c as i64), amount: Amount::new(a).unwrap(), currency };
                let before = w.clone();
                match apply_posting(&mut w, &p, 0) {
                    Ok(()) => {
                        entries.push(EntryRow { transfer_id: n as i64, wallet: p.debit, amount_minor: -a, currency });
                        entries.push(EntryRow { transfer_id: n as i64, wallet: p.credit, amount_minor: a, currency });
                    }
                    Err(_) => prop_assert_eq!(&w, &before),
                }
                for s in w.values() {
                    prop_assert!(s.within_floor());
                }
            }
            prop_assert!(check_entries(&entries).is_empty());
            for cur in [eur(), usd] {
                let total: i128 = w.values().filter(|s| s.currency == cur).map(|s| i128::from(s.balance_minor)).sum();
                prop_assert_eq!(total, 0);
            }
            for (id, s) in &w {
                let sum: i128 = entries.iter().filter(|e| e.wallet == *id).map(|e| i128::from(e.amount_minor)).sum();
                let check = WalletCheck { wallet: *id, balance_minor: s.balance_minor, held_minor: 0, floor_minor: s.floor_minor, entries_minor: sum, pending_holds_minor: 0 };
                prop_assert!(check_wallet(&check).is_empty());
            }
        }
    }
}
