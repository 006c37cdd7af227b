//! `fintrail ledger check`: proves the ledger's invariants on a live database, in one
//! repeatable-read snapshot (a consistent view while transfers keep flowing):
//!
//! 1. Σ entries per currency = 0 (no money created or destroyed);
//! 2. every transfer has exactly one debit and one credit entry, summing to 0, in the
//!    transfer's currency, on the transfer's wallets;
//! 3. every wallet's balance equals the sum of its entries, its held amount the sum of its
//!    pending holds, and `balance - held` respects its floor; every entry's currency is its
//!    wallet's; every wallet's currency is an assigned ISO 4217 code (`fintrail.currencies`:
//!    a wallet kept from before migration 0043 may not be).
//!
//! The aggregation runs in SQL (the ledger may be large); the verdicts are the pure functions
//! of `fintrail_domain::ledger`.

use fintrail_domain::ledger::{check_wallet, Currency, Violation, WalletCheck, WalletId};
use futures_util::TryStreamExt as _;

/// Most violations reported (the first ones; the count is exact).
pub const VIOLATIONS_MAX: usize = 1000;

/// What a check found.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// Wallets checked.
    pub wallets: u64,
    /// Transfers checked.
    pub transfers: u64,
    /// Entries checked.
    pub entries: u64,
    /// Currencies seen.
    pub currencies: u64,
    /// The first [`VIOLATIONS_MAX`] violations.
    pub violations: Vec<Violation>,
    /// The number of violations.
    pub violation_count: u64,
}

impl CheckReport {
    fn push(&mut self, v: Violation) {
        self.violation_count += 1;
        if self.violations.len() < VIOLATIONS_MAX {
            self.violations.push(v);
        }
    }
    /// Whether every invariant holds.
    pub fn ok(&self) -> bool {
        self.violation_count == 0
    }
}

fn i128_of(s: &str) -> anyhow::Result<i128> {
    s.parse::<i128>().map_err(|e| anyhow::anyhow!("sum {s:?} is not an integer: {e}"))
}

/// Runs every check in one snapshot.
pub async fn run(client: &mut tokio_postgres::Client) -> anyhow::Result<CheckReport> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let mut report = CheckReport::default();
    // 1. Per currency.
    check_currencies(&tx, &mut report).await?;
    // 2. Per transfer.
    check_transfers(&tx, &mut report).await?;
    check_entry_currencies(&tx, &mut report).await?;
    check_orphan_entries(&tx, &mut report).await?;
    check_hold_postings(&tx, &mut report).await?;
    // 3. Per wallet.
    check_wallets(&tx, &mut report).await?;
    check_wallet_currencies(&tx, &mut report).await?;
    tx.commit().await?;
    debug_assert!(report.violations.len() <= VIOLATIONS_MAX);
    debug_assert!(report.violations.len() as u64 <= report.violation_count);
    Ok(report)
}

/// Invariant 1: Σ entries per currency = 0.
async fn check_currencies(tx: &tokio_postgres::Transaction<'_>, report: &mut CheckReport) -> anyhow::Result<()> {
    for r in tx
        .query(
            "SELECT currency, sum(amount_minor)::text FROM fintrail.entries GROUP BY currency ORDER BY currency",
            &[],
        )
        .await?
    {
        report.currencies += 1;
        let sum = i128_of(r.get(1))?;
        if sum != 0 {
            let currency = Currency::parse(r.get(0)).map_err(|e| anyhow::anyhow!("{e}"))?;
            report.push(Violation::CurrencyNotBalanced { currency, sum_minor: sum });
        }
    }
    Ok(())
}

/// Invariant 2: every transfer has one debit and one credit entry summing to 0, in its
/// currency, on its wallets (only the broken ones come back); counts transfers and entries.
async fn check_transfers(tx: &tokio_postgres::Transaction<'_>, report: &mut CheckReport) -> anyhow::Result<()> {
    let counts = tx
        .query_one("SELECT (SELECT count(*) FROM fintrail.transfers), (SELECT count(*) FROM fintrail.entries)", &[])
        .await?;
    report.transfers = counts.get::<_, i64>(0) as u64;
    report.entries = counts.get::<_, i64>(1) as u64;
    let bad = tx
        .query_raw(
            "SELECT t.id, count(e.id), coalesce(sum(e.amount_minor), 0)::text FROM fintrail.transfers t \
             LEFT JOIN fintrail.entries e ON e.transfer_id = t.id GROUP BY t.id \
             HAVING count(e.id) <> 2 OR coalesce(sum(e.amount_minor), 0) <> 0 \
                OR count(*) FILTER (WHERE e.amount_minor = -t.amount_minor AND e.wallet_id = t.debit_wallet_id) <> 1 \
                OR count(*) FILTER (WHERE e.amount_minor = t.amount_minor AND e.wallet_id = t.credit_wallet_id) <> 1 \
                OR bool_or(e.currency <> t.currency) \
             ORDER BY t.id",
            std::iter::empty::<i64>(),
        )
        .await?;
    futures_util::pin_mut!(bad);
    while let Some(r) = bad.try_next().await? {
        let entries: i64 = r.get(1);
        report.push(Violation::TransferNotBalanced {
            transfer_id: r.get(0),
            sum_minor: i128_of(r.get(2))?,
            entries: entries as usize,
        });
    }
    Ok(())
}

/// Entries in another currency than their wallet (the first [`VIOLATIONS_MAX`]).
async fn check_entry_currencies(tx: &tokio_postgres::Transaction<'_>, report: &mut CheckReport) -> anyhow::Result<()> {
    for r in tx
        .query(
            "SELECT e.transfer_id, e.wallet_id FROM fintrail.entries e JOIN fintrail.wallets w ON w.id = e.wallet_id \
             WHERE e.currency <> w.currency ORDER BY e.id LIMIT $1",
            &[&(VIOLATIONS_MAX as i64)],
        )
        .await?
    {
        report.push(Violation::EntryCurrency { transfer_id: r.get(0), wallet: WalletId(r.get(1)) });
    }
    Ok(())
}

/// Wallets whose currency is not in `fintrail.currencies` (the first [`VIOLATIONS_MAX`]): the
/// rows migration 0043 kept, which an operator must deal with before validating its key.
async fn check_wallet_currencies(tx: &tokio_postgres::Transaction<'_>, report: &mut CheckReport) -> anyhow::Result<()> {
    for r in tx
        .query(
            "SELECT w.id, left(w.currency, 16) FROM fintrail.wallets w \
             WHERE NOT EXISTS (SELECT 1 FROM fintrail.currencies c WHERE c.code = w.currency) ORDER BY w.id LIMIT $1",
            &[&(VIOLATIONS_MAX as i64)],
        )
        .await?
    {
        report.push(Violation::UnassignedCurrency { wallet: WalletId(r.get(0)), code: r.get(1) });
    }
    Ok(())
}

/// Entries whose transfer or wallet does not exist (no foreign key since migration 0032).
async fn check_orphan_entries(tx: &tokio_postgres::Transaction<'_>, report: &mut CheckReport) -> anyhow::Result<()> {
    for r in tx
        .query(
            "SELECT e.id, e.transfer_id, e.wallet_id FROM fintrail.entries e \
             WHERE NOT EXISTS (SELECT 1 FROM fintrail.transfers t WHERE t.id = e.transfer_id) \
                OR NOT EXISTS (SELECT 1 FROM fintrail.wallets w WHERE w.id = e.wallet_id) \
             ORDER BY e.id LIMIT $1",
            &[&(VIOLATIONS_MAX as i64)],
        )
        .await?
    {
        report.push(Violation::OrphanEntry { entry_id: r.get(0), transfer_id: r.get(1), wallet: WalletId(r.get(2)) });
    }
    Ok(())
}

/// A posted hold has exactly its `hold_post` transfer of the posted amount, and only posted
/// holds have one (the database checks the first at commit since migration 0035).
async fn check_hold_postings(tx: &tokio_postgres::Transaction<'_>, report: &mut CheckReport) -> anyhow::Result<()> {
    for r in tx
        .query(
            "SELECT h.id, h.status FROM fintrail.holds h \
             LEFT JOIN fintrail.transfers t ON t.hold_id = h.id AND t.kind = 'hold_post' \
             WHERE (h.status = 'posted') IS DISTINCT FROM (t.id IS NOT NULL) \
                OR (h.status = 'posted' AND t.amount_minor IS DISTINCT FROM h.posted_minor) \
             ORDER BY h.id LIMIT $1",
            &[&(VIOLATIONS_MAX as i64)],
        )
        .await?
    {
        report.push(Violation::HoldPosting { hold_id: r.get(0), status: r.get(1) });
    }
    Ok(())
}

/// Invariant 3: every wallet's balance, held amount and floor against its entries and holds.
async fn check_wallets(tx: &tokio_postgres::Transaction<'_>, report: &mut CheckReport) -> anyhow::Result<()> {
    let wallets = tx
        .query_raw(
            "SELECT w.id, w.balance_minor, w.held_minor, w.floor_minor, coalesce(e.s, 0)::text, coalesce(h.s, 0)::text \
             FROM fintrail.wallets w \
             LEFT JOIN (SELECT wallet_id, sum(amount_minor) AS s FROM fintrail.entries GROUP BY wallet_id) e ON e.wallet_id = w.id \
             LEFT JOIN (SELECT debit_wallet_id, sum(amount_minor) AS s FROM fintrail.holds WHERE status = 'pending' \
                        GROUP BY debit_wallet_id) h ON h.debit_wallet_id = w.id \
             ORDER BY w.id",
            std::iter::empty::<i64>(),
        )
        .await?;
    futures_util::pin_mut!(wallets);
    while let Some(r) = wallets.try_next().await? {
        report.wallets += 1;
        let w = WalletCheck {
            wallet: WalletId(r.get(0)),
            balance_minor: r.get(1),
            held_minor: r.get(2),
            floor_minor: r.get(3),
            entries_minor: i128_of(r.get(4))?,
            pending_holds_minor: i128_of(r.get(5))?,
        };
        for v in check_wallet(&w) {
            report.push(v);
        }
    }
    Ok(())
}
