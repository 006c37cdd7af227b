//! Wallets, statements and transfers as read: opening a wallet (the Rust eligibility check;
//! the trigger checks again), reading one, paging its entries, finding a system account.

use fintrail_audit::AuditWriter;
use fintrail_domain::audit::AuditAction;
use fintrail_domain::ledger::{Currency, SystemAccount, WalletKind};
use serde_json::json;

use crate::engine::{ledger_event, Who};
use crate::error::{Error, Result};
use crate::views::{EntryView, Statement, TransferView, WalletView};

/// Largest statement page.
pub const PAGE_MAX: i64 = 500;
/// Statement page size when none is asked for.
pub const PAGE_DEFAULT: i64 = 100;

/// Who owns a wallet being opened: exactly one customer or one organization, by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// A customer (needs an approved KYC case).
    Customer(i64),
    /// An organization (needs state `cleared`).
    Organization(i64),
}

const WALLET_COLUMNS: &str =
    "id, kind, customer_id, organization_id, currency, balance_minor, held_minor, floor_minor, created_at";

/// The minor units of a stored code: None only for a code kept from before migration 0043.
fn minor_units_of(code: &str) -> Option<u8> {
    Currency::parse(code).ok().map(|c| c.minor_units())
}

fn wallet_view(r: &tokio_postgres::Row) -> WalletView {
    let currency: String = r.get(4);
    let balance: i64 = r.get(5);
    let held: i64 = r.get(6);
    let floor: Option<i64> = r.get(7);
    WalletView {
        id: r.get(0),
        kind: r.get(1),
        customer_id: r.get(2),
        organization_id: r.get(3),
        minor_units: minor_units_of(&currency),
        currency,
        balance_minor: balance,
        held_minor: held,
        floor_minor: floor,
        available_minor: floor.and_then(|f| i64::try_from(i128::from(balance) - i128::from(held) - i128::from(f)).ok()),
        created_at: r.get(8),
    }
}

/// Wallet `id`; with `owner`, only if that customer owns it (another customer's wallet is
/// not found: existence is not disclosed).
pub async fn load_wallet(pool: &deadpool_postgres::Pool, id: i64, owner: Option<i64>) -> Result<WalletView> {
    let client = pool.get().await?;
    let row = client.query_opt(&format!("SELECT {WALLET_COLUMNS} FROM fintrail.wallets WHERE id = $1"), &[&id]).await?;
    let w = row.as_ref().map(wallet_view).ok_or(Error::NotFound("wallet"))?;
    if owner.is_some() && w.customer_id != owner {
        return Err(Error::NotFound("wallet"));
    }
    Ok(w)
}

/// The id of a system account in `currency`, created on first use.
pub async fn system_wallet(pool: &deadpool_postgres::Pool, account: SystemAccount, currency: Currency) -> Result<i64> {
    let client = pool.get().await?;
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

/// Opens `owner`'s wallet in `currency`, with its audit event, in one transaction. The audit
/// event is on behalf of the customer who owns the wallet (if a customer does).
pub async fn open_wallet(
    pool: &deadpool_postgres::Pool,
    audit: &AuditWriter,
    who: &Who,
    owner: Owner,
    currency: Currency,
) -> Result<WalletView> {
    let (kind, customer_id, organization_id) = match owner {
        Owner::Customer(c) => (WalletKind::Customer, Some(c), None),
        Owner::Organization(o) => (WalletKind::Organization, None, Some(o)),
    };
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // The Rust check (the trigger checks again): approved KYC / cleared organization.
    let eligible = match owner {
        Owner::Customer(c) => tx
            .query_opt("SELECT 1 FROM fintrail.kyc_cases WHERE customer_id = $1 AND state = 'approved' LIMIT 1", &[&c])
            .await?
            .is_some(),
        Owner::Organization(o) => tx
            .query_opt("SELECT 1 FROM fintrail.organizations WHERE id = $1 AND state = 'cleared'", &[&o])
            .await?
            .is_some(),
    };
    if !eligible {
        return Err(Error::refused(
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
        .ok_or_else(|| Error::refused("wallet_exists", format!("the owner already has a {currency} wallet")))?;
    let w = wallet_view(&row);
    let who = Who { on_behalf_of: customer_id.map(|c| format!("customer:{c}")), ..who.clone() };
    let after = json!({ "wallet_id": w.id, "kind": w.kind, "customer_id": customer_id, "organization_id": organization_id, "currency": w.currency });
    let ev = ledger_event(&who, AuditAction::LedgerWalletOpened, format!("wallet:{}", w.id), after);
    audit.append_many(&*tx, &[ev]).await?;
    tx.commit().await?;
    audit.committed();
    Ok(w)
}

/// A page of wallet `id`'s statement: up to `limit` entries (1..=[`PAGE_MAX`]) after entry id
/// `after` (0 or more), oldest first; `owner` as in [`load_wallet`].
pub async fn load_statement(
    pool: &deadpool_postgres::Pool,
    id: i64,
    owner: Option<i64>,
    after: i64,
    limit: i64,
) -> Result<Statement> {
    let w = load_wallet(pool, id, owner).await?;
    if !(1..=PAGE_MAX).contains(&limit) {
        return Err(Error::invalid("unprocessable", format!("limit must be between 1 and {PAGE_MAX}")));
    }
    if after < 0 {
        return Err(Error::invalid("unprocessable", "after must be 0 or more"));
    }
    let client = pool.get().await?;
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
    debug_assert!(entries.len() as i64 <= limit);
    let next_after = if more { entries.last().map(|e| e.entry_id) } else { None };
    Ok(Statement { wallet_id: id, minor_units: w.minor_units, currency: w.currency, entries, next_after })
}

/// Transfer `id`, if it exists.
pub async fn load_transfer(pool: &deadpool_postgres::Pool, id: i64) -> Result<Option<TransferView>> {
    let client = pool.get().await?;
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
