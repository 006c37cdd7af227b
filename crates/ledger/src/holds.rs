//! Holds (two-phase transfers): a pending hold reserves funds on the debit wallet
//! (`held_minor`, under the floor CHECK); it is then posted (fully or partially: a `hold_post`
//! transfer for the posted amount, the rest released), voided, or expires. Each operation is
//! one transaction of its own (they are rare next to transfers): lock the wallets in id order,
//! then the hold, decide in Rust, write, append the audit event, commit.

use fintrail_audit::AuditWriter;
use fintrail_domain::audit::AuditAction;
use fintrail_domain::ledger::{apply_posting, reserve, Amount, Currency, HoldState, Posting, TransferKind, WalletId};
use serde::Serialize;
use serde_json::json;

use crate::engine::{self, ledger_event, lock_wallets, TransferRow, Who};
use crate::error::{Error, Result};
use crate::idempotency::{self, IdemKey, Reply, STATUS_CREATED, STATUS_OK};
use crate::views::{HoldView, TransferView};

/// Default hold lifetime (1 hour).
pub const HOLD_DEFAULT_SECS: i64 = 3600;
/// Longest hold lifetime (30 days; the table CHECKs it too).
pub const HOLD_MAX_SECS: i64 = 30 * 24 * 3600;
/// Most holds expired per call of [`expire_overdue`] (bounds the work).
pub const EXPIRE_MAX: i64 = 1000;

/// A hold to create, parsed: the amount and currency are valid by construction.
#[derive(Debug, Clone, Copy)]
pub struct NewHold {
    /// Wallet whose funds are reserved (and later debited).
    pub debit: WalletId,
    /// Wallet credited when the hold is posted.
    pub credit: WalletId,
    /// How much.
    pub amount: Amount,
    /// Currency of both wallets.
    pub currency: Currency,
    /// Lifetime, 1..=[`HOLD_MAX_SECS`].
    pub expires_in_secs: i64,
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
    status_code: i32,
    body: &impl Serialize,
    transfer_id: Option<i64>,
) -> Result<bool> {
    let value = serde_json::to_value(body).map_err(|e| Error::Internal(format!("encode response: {e}")))?;
    let conflicts = engine::insert_keys(tx, &[(idem, status_code, value, transfer_id)]).await?;
    Ok(conflicts.is_empty())
}

/// Reserves `hold.amount` on the debit wallet, once per idempotency key.
pub async fn create_hold(
    pool: &deadpool_postgres::Pool,
    audit: &AuditWriter,
    who: &Who,
    idem: &IdemKey,
    hold: NewHold,
) -> Result<Reply<HoldView>> {
    if !(1..=HOLD_MAX_SECS).contains(&hold.expires_in_secs) {
        return Err(Error::invalid("unprocessable", format!("expires_in_secs must be between 1 and {HOLD_MAX_SECS}")));
    }
    if hold.debit == hold.credit {
        return Err(Error::same_wallet());
    }
    if let Some(r) = idempotency::lookup(pool, idem).await? {
        return Ok(Reply::Replayed(r));
    }
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let locked = lock_wallets(&*tx, &[hold.debit.0, hold.credit.0]).await?;
    let (Some(from), Some(to)) = (locked.get(&hold.debit), locked.get(&hold.credit)) else {
        return Err(Error::NotFound("wallet"));
    };
    for w in [from, to] {
        if w.state.currency != hold.currency {
            return Err(fintrail_domain::ledger::LedgerError::CurrencyMismatch(hold.currency, w.state.currency).into());
        }
        if w.state.floor_minor.is_none() {
            return Err(Error::refused("system_wallet", "holds are between customer or organization wallets"));
        }
    }
    reserve(&from.state, hold.debit, hold.amount)?;
    let row = tx
        .query_one(
            "INSERT INTO fintrail.holds (debit_wallet_id, credit_wallet_id, amount_minor, currency, actor, expires_at) \
             VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6)) RETURNING id",
            &[&hold.debit.0, &hold.credit.0, &hold.amount.minor(), &hold.currency.as_str(), &who.actor, &(hold.expires_in_secs as f64)],
        )
        .await?;
    let id: i64 = row.get(0);
    let view = hold_view(&tx.query_one(HOLD_SELECT, &[&id]).await?);
    if !claim_key(&tx, idem, STATUS_CREATED, &view, None).await? {
        tx.rollback().await?;
        return idempotency::replay_or_retry(pool, idem).await;
    }
    let after = json!({ "hold_id": id, "debit_wallet_id": view.debit_wallet_id,
        "credit_wallet_id": view.credit_wallet_id, "amount_minor": view.amount_minor, "currency": view.currency, "expires_at": view.expires_at });
    audit.append_many(&*tx, &[ledger_event(who, AuditAction::LedgerHoldCreated, format!("hold:{id}"), after)]).await?;
    tx.commit().await?;
    audit.committed();
    Ok(Reply::Fresh(view))
}

/// Hold `id`.
pub async fn load_hold(pool: &deadpool_postgres::Pool, id: i64) -> Result<HoldView> {
    let client = pool.get().await?;
    client.query_opt(HOLD_SELECT, &[&id]).await?.map(|r| hold_view(&r)).ok_or(Error::NotFound("hold"))
}

/// Locks the hold's wallets (id order) and then the hold; returns its view and whether it is
/// past its expiry.
async fn lock_hold(tx: &tokio_postgres::Transaction<'_>, id: i64) -> Result<(HoldView, bool)> {
    let r = tx
        .query_opt("SELECT debit_wallet_id, credit_wallet_id FROM fintrail.holds WHERE id = $1", &[&id])
        .await?
        .ok_or(Error::NotFound("hold"))?;
    let (d, c): (i64, i64) = (r.get(0), r.get(1));
    lock_wallets(tx, &[d, c]).await?;
    tx.execute("SELECT 1 FROM fintrail.holds WHERE id = $1 FOR UPDATE", &[&id]).await?;
    let r = tx.query_one(HOLD_SELECT, &[&id]).await?;
    let overdue: bool = r.get(11);
    Ok((hold_view(&r), overdue))
}

fn require_pending(h: &HoldView, overdue: bool) -> Result<()> {
    if HoldState::parse(&h.status) != Some(HoldState::Pending) {
        return Err(Error::refused("hold_not_pending", format!("hold {} is {}", h.id, h.status)));
    }
    if overdue {
        return Err(Error::refused("hold_expired", format!("hold {} expired at {}", h.id, h.expires_at)));
    }
    Ok(())
}

/// Posts hold `id`, fully (`amount_minor` none) or partially; the rest of the reservation is
/// released. Once per idempotency key.
pub async fn post_hold(
    pool: &deadpool_postgres::Pool,
    audit: &AuditWriter,
    who: &Who,
    idem: &IdemKey,
    id: i64,
    amount_minor: Option<i64>,
) -> Result<Reply<TransferView>> {
    if let Some(r) = idempotency::lookup(pool, idem).await? {
        return Ok(Reply::Replayed(r));
    }
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let (hold, overdue) = lock_hold(&tx, id).await?;
    require_pending(&hold, overdue)?;
    let amount = Amount::new(amount_minor.unwrap_or(hold.amount_minor))?;
    if amount.minor() > hold.amount_minor {
        return Err(Error::refused("exceeds_hold", format!("amount_minor exceeds the held {}", hold.amount_minor)));
    }
    let currency = Currency::parse(&hold.currency)?;
    // The Rust decision (the reservation turns into the debit; the trigger and CHECK agree).
    let locked = lock_wallets(&*tx, &[hold.debit_wallet_id, hold.credit_wallet_id]).await?;
    let mut balances = locked.iter().map(|(k, v)| (*k, v.state)).collect();
    let p =
        Posting { debit: WalletId(hold.debit_wallet_id), credit: WalletId(hold.credit_wallet_id), amount, currency };
    apply_posting(&mut balances, &p, hold.amount_minor)?;
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
        actor: who.actor.clone(),
        idempotency_key: Some(idem.key.clone()),
        request_id: who.request_id.clone().unwrap_or_default(),
    };
    // The event first: the transfers' statement trigger checks it is there (migration 0036).
    let mut after = engine::transfer_after(&view);
    after["released_minor"] = json!(hold.amount_minor - amount.minor());
    let ev = ledger_event(who, engine::action_of(TransferKind::HoldPost), format!("hold:{id}"), after);
    audit.append_many(&*tx, &[ev]).await?;
    engine::insert_transfers(&*tx, &[row]).await?;
    if !claim_key(&tx, idem, STATUS_CREATED, &view, Some(view.id)).await? {
        tx.rollback().await?;
        return idempotency::replay_or_retry(pool, idem).await;
    }
    tx.commit().await?;
    audit.committed();
    Ok(Reply::Fresh(view))
}

/// Voids pending hold `id` (releases the reservation, moves no money). Once per idempotency key.
pub async fn void_hold(
    pool: &deadpool_postgres::Pool,
    audit: &AuditWriter,
    who: &Who,
    idem: &IdemKey,
    id: i64,
) -> Result<Reply<HoldView>> {
    if let Some(r) = idempotency::lookup(pool, idem).await? {
        return Ok(Reply::Replayed(r));
    }
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let (hold, overdue) = lock_hold(&tx, id).await?;
    require_pending(&hold, overdue)?;
    tx.execute("UPDATE fintrail.holds SET status = 'voided' WHERE id = $1", &[&id]).await?;
    let view = hold_view(&tx.query_one(HOLD_SELECT, &[&id]).await?);
    if !claim_key(&tx, idem, STATUS_OK, &view, None).await? {
        tx.rollback().await?;
        return idempotency::replay_or_retry(pool, idem).await;
    }
    let after = json!({ "hold_id": id, "released_minor": hold.amount_minor });
    audit.append_many(&*tx, &[ledger_event(who, AuditAction::LedgerHoldVoided, format!("hold:{id}"), after)]).await?;
    tx.commit().await?;
    audit.committed();
    Ok(Reply::Fresh(view))
}

/// Expires up to `max` (at most [`EXPIRE_MAX`]) overdue pending holds, each in its own short
/// transaction (wallets locked in id order first, like every other writer) that re-checks,
/// under the locks, that the hold is still pending and overdue: concurrent callers release
/// each hold exactly once. Run by the `hold-expiry` job (`fintrail-jobs`) as `who`. Returns
/// how many it expired.
pub async fn expire_overdue(
    client: &mut tokio_postgres::Client,
    audit: &AuditWriter,
    who: &Who,
    max: i64,
) -> std::result::Result<u64, tokio_postgres::Error> {
    let max = max.clamp(0, EXPIRE_MAX);
    let due = client
        .query(
            "SELECT id, debit_wallet_id, credit_wallet_id FROM fintrail.holds \
             WHERE status = 'pending' AND expires_at < now() ORDER BY expires_at, id LIMIT $1",
            &[&max],
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
            let ev = ledger_event(who, AuditAction::LedgerHoldExpired, format!("hold:{id}"), json!({ "hold_id": id }));
            audit.append_many(&tx, &[ev]).await?;
        }
        tx.commit().await?;
        if changed == 1 {
            audit.committed();
        }
        n += changed;
    }
    debug_assert!(n <= max as u64);
    Ok(n)
}

/// How many pending holds are overdue, counting at most `max` (a dry run of [`expire_overdue`]).
pub async fn count_overdue(
    client: &tokio_postgres::Client,
    max: i64,
) -> std::result::Result<u64, tokio_postgres::Error> {
    let n: i64 = client
        .query_one(
            "SELECT count(*) FROM (SELECT 1 FROM fintrail.holds WHERE status = 'pending' AND expires_at < now() LIMIT $1) d",
            &[&max.clamp(0, EXPIRE_MAX)],
        )
        .await?
        .get(0);
    Ok(n as u64)
}
