//! The posting engine: a per-process batcher (group commit) that applies up to
//! `batch_max` queued postings in one database transaction and answers each request only
//! after its batch committed.
//!
//! One batch: lock every touched wallet in id order (`FOR UPDATE`, fixed order: no
//! deadlock), decide every posting in Rust in queue order against the locked balances
//! (`fintrail_domain::ledger::apply_posting`), then write all accepted transfers with one
//! INSERT (the database trigger writes the entries and moves each touched balance once),
//! their idempotency keys and their audit events, and commit. A hot wallet receiving from many
//! clients is thus locked and updated once per batch instead of once per transfer.
//!
//! If a batch fails in the database (it should not: Rust decided first), every posting of it
//! is retried alone, so one bad posting never fails the others.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use fintrail_domain::ledger::{apply_posting, Amount, Currency, Posting, TransferKind, WalletId, WalletState};
use fintrail_domain::Permission;
use serde_json::json;
use tokio::sync::{mpsc, oneshot, Mutex, Notify};
use tokio_postgres::ToStatement;
use tokio_postgres::{GenericClient, Statement};

use crate::error::Error;
use crate::idempotency::{IdemKey, IDEMPOTENCY_KEEP_SECS, STATUS_CREATED};
use fintrail_audit::{AuditWriter, NewEvent};
use fintrail_domain::audit::AuditAction;

use crate::views::TransferView;

/// Most postings applied in one transaction (bounds transaction size and lock time).
pub const BATCH_MAX_LIMIT: usize = 1024;
/// Default batch size limit.
pub const BATCH_MAX_DEFAULT: usize = 256;
/// Batcher lanes: batches run in parallel (one connection each), except that a batch sharing
/// a wallet with one in flight gathers until that one committed (see `InFlight::decide`).
/// Measured (`fintrail bench transfers --lanes N --hot-secs 0`, 8 clients, 2 idle cores, one
/// release binary, ratio to pgbench in the same run): 1 lane 0.67 (one backend runs every
/// batch), 2 lanes 0.78-0.82, 3 lanes 0.71, 4 lanes 0.63 (smaller batches: PostgreSQL CPU per
/// transfer 277 us with 2 lanes, 375 with 3, 419 with 4). Earlier, on a contended machine:
/// 2 lanes 1,560-2,000 transfers/s, 3 lanes 1,450-1,540.
pub const LANES_DEFAULT: usize = 2;
/// Most lanes (each holds a pooled connection while its batch runs).
pub const LANES_MAX: usize = 16;
/// Longest a batch waits for a conflicting batch in flight to commit before it starts anyway
/// (and then waits on the row lock in PostgreSQL): bounds the latency gathering adds.
const GATHER_MAX_US: u64 = 3_000;
/// Queued postings before submitters wait (back-pressure).
pub const QUEUE_MAX: usize = 8192;
/// Serialization/deadlock retries of a single posting before answering 409 retry.
const RETRIES_MAX: usize = 3;
/// One posting request, as the handler resolved it.
#[derive(Debug, Clone)]
pub struct PostingRequest {
    /// Kind.
    pub kind: TransferKind,
    /// Loses money.
    pub debit: WalletId,
    /// Gains money.
    pub credit: WalletId,
    /// How much.
    pub amount: Amount,
    /// Currency asked for.
    pub currency: Currency,
    /// For reversals.
    pub reverses: Option<i64>,
    /// For customer requests: the debit wallet must belong to this customer.
    pub debit_owner: Option<i64>,
    /// Who asked, under which permission.
    pub who: Who,
    /// Idempotency.
    pub idem: IdemKey,
}

/// What the engine answers.
#[derive(Debug)]
pub enum Outcome {
    /// Applied and committed.
    Posted(TransferView),
    /// Another request with the same key won: look the key up and replay.
    KeyTaken,
}

struct Job {
    req: PostingRequest,
    reply: oneshot::Sender<Result<Outcome, Error>>,
}

/// The ledger service held in `AppState`.
pub struct Ledger {
    pool: deadpool_postgres::Pool,
    batch_max: Arc<AtomicUsize>,
    lanes: usize,
    tx: OnceLock<mpsc::Sender<Job>>,
}

impl Ledger {
    /// A ledger over `pool` whose batcher runs `lanes` batches at once (1..=[`LANES_MAX`];
    /// [`LANES_DEFAULT`] unless measured otherwise). The batcher starts on first use (inside
    /// the runtime, with the server's audit writer).
    pub fn with_lanes(pool: deadpool_postgres::Pool, lanes: usize) -> Result<Self, Error> {
        if !(1..=LANES_MAX).contains(&lanes) {
            return Err(Error::Internal(format!("ledger lanes must be 1..={LANES_MAX}, not {lanes}")));
        }
        Ok(Self { pool, batch_max: Arc::new(AtomicUsize::new(BATCH_MAX_DEFAULT)), lanes, tx: OnceLock::new() })
    }

    /// Sets the batch size limit (1 = a transaction and a row lock per transfer: the
    /// benchmark's baseline for hot accounts).
    pub fn set_batch_max(&self, n: usize) {
        self.batch_max.store(n.clamp(1, BATCH_MAX_LIMIT), Ordering::Relaxed);
    }

    /// The pool.
    pub fn pool(&self) -> &deadpool_postgres::Pool {
        &self.pool
    }

    fn sender(&self, audit: &AuditWriter) -> &mpsc::Sender<Job> {
        self.tx.get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Job>(QUEUE_MAX);
            let rx = Arc::new(Mutex::new(rx));
            let in_flight = Arc::new(InFlight::new(self.lanes));
            for lane in 0..self.lanes {
                let worker = Worker {
                    pool: self.pool.clone(),
                    audit: audit.clone(),
                    batch_max: self.batch_max.clone(),
                    in_flight: in_flight.clone(),
                };
                tokio::spawn(worker.run(lane, rx.clone()));
            }
            tx
        })
    }

    /// Queues `req` and waits until its batch committed (or it was refused).
    pub async fn submit(&self, audit: &AuditWriter, req: PostingRequest) -> Result<Outcome, Error> {
        let (reply, rx) = oneshot::channel();
        self.sender(audit)
            .send(Job { req, reply })
            .await
            .map_err(|_| Error::Internal("ledger batcher stopped".into()))?;
        rx.await.map_err(|_| Error::Internal("ledger batcher dropped a request".into()))?
    }
}

struct Worker {
    pool: deadpool_postgres::Pool,
    audit: AuditWriter,
    batch_max: Arc<AtomicUsize>,
    /// Wallets of the batches in flight across lanes.
    in_flight: Arc<InFlight>,
}

/// The batches in flight across lanes: the wallets they hold (or are about to lock), with a
/// count per wallet (two lanes may share a wallet when a gather timed out), their sizes, and a
/// wake-up for gatherers.
struct InFlight {
    state: std::sync::Mutex<InFlightState>,
    released: Notify,
}

#[derive(Default)]
struct InFlightState {
    wallets: HashMap<i64, u32>,
    /// Sizes of the batches in flight, by lane (0: the lane is gathering or idle).
    sizes: Vec<usize>,
}

/// What a gathering batch should do, given the batches in flight.
#[derive(Debug, PartialEq, Eq)]
enum Gather {
    /// Start now.
    Go,
    /// Wait for more postings or a batch in flight to finish.
    Wait,
}

impl InFlight {
    fn new(lanes: usize) -> Self {
        Self {
            state: std::sync::Mutex::new(InFlightState { wallets: HashMap::new(), sizes: vec![0; lanes] }),
            released: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, InFlightState> {
        // Every update below completes without panicking, so a poisoned lock holds a
        // consistent state and stays usable.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Go when nothing is in flight; wait while `batch` shares a wallet with a batch in flight
    /// (it would only queue behind that batch's row locks); otherwise go once `batch` is as large
    /// as the smallest batch in flight (the lanes share the load evenly; a lone client never
    /// waits, as nothing else is in flight).
    fn decide(&self, batch: &[Job]) -> Gather {
        self.decide_pairs(batch.len(), batch.iter().map(|j| (j.req.debit.0, j.req.credit.0)))
    }

    /// [`InFlight::decide`] for a batch of `len` postings between the wallet `pairs`.
    fn decide_pairs(&self, len: usize, mut pairs: impl Iterator<Item = (i64, i64)>) -> Gather {
        let st = self.state();
        let Some(smallest) = st.sizes.iter().copied().filter(|n| *n > 0).min() else { return Gather::Go };
        let shares = pairs.any(|(d, c)| st.wallets.contains_key(&d) || st.wallets.contains_key(&c));
        if shares || len < smallest {
            Gather::Wait
        } else {
            Gather::Go
        }
    }

    fn enter(&self, lane: usize, size: usize, ids: &[i64]) {
        debug_assert!(size > 0);
        let mut st = self.state();
        debug_assert_eq!(st.sizes[lane], 0, "lane {lane} entered twice");
        st.sizes[lane] = size;
        for id in ids {
            *st.wallets.entry(*id).or_insert(0) += 1;
        }
    }

    fn leave(&self, lane: usize, ids: &[i64]) {
        {
            let mut st = self.state();
            st.sizes[lane] = 0;
            for id in ids {
                match st.wallets.get_mut(id) {
                    Some(n) if *n > 1 => *n -= 1,
                    Some(_) => {
                        st.wallets.remove(id);
                    }
                    None => debug_assert!(false, "wallet {id} left without entering"),
                }
            }
        }
        self.released.notify_waiters();
    }
}

/// The distinct wallets of `reqs`, ascending (the one lock order).
fn wallets_of<'a>(reqs: impl IntoIterator<Item = &'a PostingRequest>) -> Vec<i64> {
    sorted_distinct(reqs.into_iter().flat_map(|r| [r.debit.0, r.credit.0]).collect())
}

fn sorted_distinct(mut ids: Vec<i64>) -> Vec<i64> {
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Moves queued jobs into `batch` without waiting, up to `max`.
fn drain(rx: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>, max: usize) {
    while batch.len() < max {
        match rx.try_recv() {
            Ok(j) => batch.push(j),
            Err(_) => break,
        }
    }
}

impl Worker {
    async fn run(self, lane: usize, rx: Arc<Mutex<mpsc::Receiver<Job>>>) {
        let mut batch: Vec<Job> = Vec::with_capacity(BATCH_MAX_LIMIT);
        loop {
            let wallets = {
                let mut rx = rx.lock().await;
                let Some(first) = rx.recv().await else { return };
                batch.push(first);
                let max = self.batch_max.load(Ordering::Relaxed);
                drain(&mut rx, &mut batch, max);
                self.gather(&mut rx, &mut batch, max).await;
                // Entered before the queue is released: the next lane to gather sees these wallets.
                let wallets = wallets_of(batch.iter().map(|j| &j.req));
                self.in_flight.enter(lane, batch.len(), &wallets);
                wallets
            };
            let size = batch.len();
            let t0 = std::time::Instant::now();
            self.process(std::mem::take(&mut batch)).await;
            tracing::debug!(
                log_class = "app",
                lane,
                size,
                elapsed_us = t0.elapsed().as_micros() as u64,
                "ledger batch"
            );
            self.in_flight.leave(lane, &wallets);
        }
    }

    /// Group commit across lanes (see `InFlight::decide`): a batch sharing a wallet with one in
    /// flight (a hot merchant wallet) waits here, collecting postings, until that batch
    /// committed, instead of queueing behind its row lock in PostgreSQL: the hot wallet is then
    /// locked and updated once for many postings. Random wallets: the lanes run in parallel with
    /// batches of similar size. Bounded by the batch size and `GATHER_MAX_US`.
    async fn gather(&self, rx: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>, max: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_micros(GATHER_MAX_US);
        while batch.len() < max {
            // Registered before the check: a release between the check and the wait is not lost.
            let released = self.in_flight.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if self.in_flight.decide(batch) == Gather::Go {
                break;
            }
            tokio::select! {
                biased;
                () = &mut released => {}
                job = rx.recv() => match job {
                    Some(job) => {
                        batch.push(job);
                        drain(rx, batch, max);
                    }
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        debug_assert!(!batch.is_empty() && batch.len() <= max);
    }

    async fn process(&self, jobs: Vec<Job>) {
        let reqs: Vec<&PostingRequest> = jobs.iter().map(|j| &j.req).collect();
        match self.apply(&reqs).await {
            Ok(results) => {
                self.audit.committed();
                for (job, r) in jobs.into_iter().zip(results) {
                    let _ = job.reply.send(r);
                }
            }
            Err(e) if jobs.len() > 1 => {
                tracing::warn!(log_class = "app", error = %e, size = jobs.len(), "ledger batch failed; applying one by one");
                for job in jobs {
                    let r = self.apply_alone(&job.req).await;
                    let _ = job.reply.send(r);
                }
            }
            Err(e) => {
                let job = jobs.into_iter().next();
                if let Some(job) = job {
                    let r = if is_retryable(&e) { self.apply_alone(&job.req).await } else { Err(Error::from(e)) };
                    let _ = job.reply.send(r);
                }
            }
        }
    }

    async fn apply_alone(&self, req: &PostingRequest) -> Result<Outcome, Error> {
        let mut last = None;
        for attempt in 0..RETRIES_MAX {
            match self.apply(&[req]).await {
                Ok(mut r) => {
                    self.audit.committed();
                    return r.pop().unwrap_or_else(|| Err(Error::Internal("empty batch result".into())));
                }
                Err(e) if is_retryable(&e) => {
                    tokio::time::sleep(Duration::from_millis(5 << attempt)).await;
                    last = Some(e);
                }
                Err(e) => return Err(Error::from(e)),
            }
        }
        Err(last.map(Error::from).unwrap_or_else(|| Error::refused("retry", "concurrent update; retry")))
    }

    /// Applies `reqs` in one transaction; per-request results (business refusals are `Err`
    /// results, not an error of the batch).
    ///
    /// First the pipelined path: `BEGIN` travels with the first round trip and `COMMIT` with the
    /// second (two round trips per batch instead of four). Its key insert has no `ON CONFLICT`:
    /// a key written meanwhile by a concurrent transaction aborts it, and the batch is redone on
    /// the careful path, which leaves such keys out (they are then replayed).
    async fn apply(&self, reqs: &[&PostingRequest]) -> Result<Vec<Result<Outcome, Error>>, BatchError> {
        let client = self.pool.get().await.map_err(BatchError::Pool)?;
        let mut conn = OpenConn(Some(client));
        let client = conn.client();
        let st = Stmts::prepare(client).await?;
        let empty = HashSet::new();
        match decide_and_write(&***client, &st, reqs, &empty, &self.audit, Pipeline::BeginAndCommit).await {
            Ok((results, conflicts)) => {
                debug_assert!(conflicts.is_empty(), "the pipelined path reports conflicts as errors");
                conn.release();
                return Ok(results);
            }
            Err(e) => {
                // The transaction may still be open (an error in the first round trip): end it
                // before the connection goes back to the pool, or drop the connection.
                if client.batch_execute("ROLLBACK").await.is_err() {
                    return Err(e.into());
                }
                if !is_key_conflict(&e) {
                    conn.release();
                    return Err(e.into());
                }
                tracing::debug!(
                    log_class = "app",
                    size = reqs.len(),
                    "idempotency key written concurrently; redoing the batch"
                );
            }
        }
        let mut taken: HashSet<(String, String)> = HashSet::new();
        // A key taken by a concurrent transaction makes us redo the batch without it; bounded
        // by the batch size.
        for _ in 0..=reqs.len() {
            let tx = client.transaction().await?;
            let (results, conflicts) = decide_and_write(&*tx, &st, reqs, &taken, &self.audit, Pipeline::None).await?;
            if conflicts.is_empty() {
                tx.commit().await?;
                conn.release();
                return Ok(results);
            }
            tx.rollback().await?;
            taken.extend(conflicts);
        }
        conn.release();
        Err(BatchError::Other("idempotency conflicts did not settle".into()))
    }
}

/// A pooled connection that goes back to the pool only when released: dropped otherwise (an
/// error or a cancelled batch may have left a transaction open on it), so that no other
/// request ever runs inside a batch's transaction.
struct OpenConn(Option<deadpool_postgres::Object>);

impl OpenConn {
    fn client(&mut self) -> &mut deadpool_postgres::Object {
        self.0.as_mut().expect("OpenConn used after release")
    }

    /// Back to the pool (no transaction is open).
    fn release(&mut self) {
        drop(self.0.take());
    }
}

impl Drop for OpenConn {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            // Detached from the pool: the connection closes with the client.
            drop(deadpool_postgres::Object::take(c));
        }
    }
}

/// A unique violation on the idempotency keys: another transaction wrote one of the keys.
fn is_key_conflict(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|d| {
        *d.code() == tokio_postgres::error::SqlState::UNIQUE_VIOLATION && d.table() == Some("idempotency_keys")
    })
}

/// Which transaction control travels in the batch's round trips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pipeline {
    /// The caller holds an open transaction and commits it.
    None,
    /// `BEGIN` is sent with the first round trip and `COMMIT` with the second.
    BeginAndCommit,
}

/// Why a batch failed as a whole.
#[derive(Debug)]
pub enum BatchError {
    /// No connection.
    Pool(deadpool_postgres::PoolError),
    /// The database refused.
    Db(tokio_postgres::Error),
    /// Anything else.
    Other(String),
}

impl std::fmt::Display for BatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BatchError::Pool(e) => write!(f, "pool: {e}"),
            BatchError::Db(e) => write!(f, "database: {e}"),
            BatchError::Other(e) => f.write_str(e),
        }
    }
}

impl From<tokio_postgres::Error> for BatchError {
    fn from(e: tokio_postgres::Error) -> Self {
        BatchError::Db(e)
    }
}

impl From<BatchError> for Error {
    fn from(e: BatchError) -> Self {
        match e {
            BatchError::Pool(p) => Error::Pool(p),
            BatchError::Db(d) => Error::Db(d),
            BatchError::Other(o) => Error::Internal(o),
        }
    }
}

fn is_retryable(e: &BatchError) -> bool {
    matches!(e, BatchError::Db(d) if d.code().is_some_and(|c| matches!(c.code(), "40001" | "40P01" | "55P03")))
}

/// A locked wallet row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LockedWallet {
    pub state: WalletState,
    pub customer_id: Option<i64>,
}

const LOCK_WALLETS_SQL: &str =
    "SELECT id, currency, balance_minor, held_minor, floor_minor, customer_id FROM fintrail.lock_wallets($1)";

/// Locks `ids` (sorted, deduplicated here) `FOR UPDATE` in id order.
pub(crate) async fn lock_wallets<C: GenericClient + Sync>(
    tx: &C,
    ids: &[i64],
) -> Result<BTreeMap<WalletId, LockedWallet>, tokio_postgres::Error> {
    let ids = sorted_distinct(ids.to_vec());
    let rows = tx.query(LOCK_WALLETS_SQL, &[&ids]).await?;
    Ok(locked_of(&rows))
}

fn locked_of(rows: &[tokio_postgres::Row]) -> BTreeMap<WalletId, LockedWallet> {
    let mut out = BTreeMap::new();
    for r in rows {
        let currency: &str = r.get(1);
        // Only a wallet kept from before migration 0043 (its key NOT VALID) can carry a code
        // that is not assigned: it is left out, so it answers as unknown and no money moves.
        let Ok(currency) = Currency::parse(currency) else { continue };
        out.insert(
            WalletId(r.get(0)),
            LockedWallet {
                state: WalletState { currency, balance_minor: r.get(2), held_minor: r.get(3), floor_minor: r.get(4) },
                customer_id: r.get(5),
            },
        );
    }
    out
}

/// One transfer row to insert.
#[derive(Debug, Clone)]
pub(crate) struct TransferRow {
    pub view: TransferView,
    pub actor: String,
    pub idempotency_key: Option<String>,
    pub request_id: String,
}

/// Inserts `rows` with one statement (the trigger writes entries and balances).
pub(crate) async fn insert_transfers<C: GenericClient + Sync>(
    tx: &C,
    rows: &[TransferRow],
) -> Result<(), tokio_postgres::Error> {
    insert_transfers_with(tx, INSERT_TRANSFERS_SQL, rows).await
}

async fn insert_transfers_with<C: GenericClient + Sync, S: ?Sized + ToStatement + Sync + Send>(
    tx: &C,
    stmt: &S,
    rows: &[TransferRow],
) -> Result<(), tokio_postgres::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(rows.len());
    let mut kinds = Vec::with_capacity(rows.len());
    let mut debits = Vec::with_capacity(rows.len());
    let mut credits = Vec::with_capacity(rows.len());
    let mut amounts = Vec::with_capacity(rows.len());
    let mut currencies = Vec::with_capacity(rows.len());
    let mut reverses = Vec::with_capacity(rows.len());
    let mut holds = Vec::with_capacity(rows.len());
    let mut actors = Vec::with_capacity(rows.len());
    let mut keys = Vec::with_capacity(rows.len());
    let mut request_ids = Vec::with_capacity(rows.len());
    for r in rows {
        ids.push(r.view.id);
        kinds.push(r.view.kind.clone());
        debits.push(r.view.debit_wallet_id);
        credits.push(r.view.credit_wallet_id);
        amounts.push(r.view.amount_minor);
        currencies.push(r.view.currency.clone());
        reverses.push(r.view.reverses_transfer_id);
        holds.push(r.view.hold_id);
        actors.push(r.actor.clone());
        keys.push(r.idempotency_key.clone());
        request_ids.push(r.request_id.clone());
    }
    tx.execute(
        stmt,
        &[&ids, &kinds, &debits, &credits, &amounts, &currencies, &reverses, &holds, &actors, &keys, &request_ids],
    )
    .await?;
    Ok(())
}

const INSERT_TRANSFERS_SQL: &str =
    "INSERT INTO fintrail.transfers (id, kind, debit_wallet_id, credit_wallet_id, amount_minor, currency, \
     reverses_transfer_id, hold_id, actor, idempotency_key, request_id) \
     SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[], \
     $7::bigint[], $8::bigint[], $9::text[], $10::text[], $11::text[]) ORDER BY 1";

/// A ledger audit event: an allowed action by `actor` under `permission`, with its `after`.
/// Appended through the audit writer (`append_many`), the trail's one append path.
pub(crate) fn ledger_event(who: &Who, action: AuditAction, subject: String, after: serde_json::Value) -> NewEvent {
    NewEvent::allowed(who.actor.as_str(), action, subject, Some(who.permission))
        .credential(who.credential.clone())
        .on_behalf_of(who.on_behalf_of.clone())
        .request(who.request_id.as_deref().filter(|r| !r.is_empty()))
        .change(None, Some(after))
}

/// Who acted, under which permission: the audit event's actor fields and the transfer row's
/// `actor` and `request_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    /// The principal (`Principal::actor()`, or `system:job:<name>` for a periodic job).
    pub actor: String,
    /// The customer acted for, if any (`customer:<id>`).
    pub on_behalf_of: Option<String>,
    /// The permission that allowed it.
    pub permission: Permission,
    /// The request id (none for a periodic job).
    pub request_id: Option<String>,
    /// The request's bearer token, presented with the events so that the database can check
    /// the actor (none for a periodic job, whose actor names no person).
    pub credential: Option<fintrail_audit::Credential>,
}

/// The audit action of a posted transfer.
pub(crate) fn action_of(kind: TransferKind) -> AuditAction {
    match kind {
        TransferKind::Transfer => AuditAction::LedgerTransferPosted,
        TransferKind::Deposit => AuditAction::LedgerDepositPosted,
        TransferKind::Withdrawal => AuditAction::LedgerWithdrawalPosted,
        TransferKind::Reversal => AuditAction::LedgerReversalPosted,
        TransferKind::HoldPost => AuditAction::LedgerHoldPosted,
    }
}

/// The audit `after` of a transfer.
pub(crate) fn transfer_after(v: &TransferView) -> serde_json::Value {
    json!({
        "transfer_id": v.id, "kind": v.kind, "debit_wallet_id": v.debit_wallet_id, "credit_wallet_id": v.credit_wallet_id,
        "amount_minor": v.amount_minor, "currency": v.currency, "reverses_transfer_id": v.reverses_transfer_id, "hold_id": v.hold_id,
    })
}

/// Inserts idempotency rows; returns the (principal, key) pairs that already existed.
pub(crate) async fn insert_keys<C: GenericClient + Sync>(
    tx: &C,
    rows: &[(&IdemKey, i32, serde_json::Value, Option<i64>)],
) -> Result<Vec<(String, String)>, tokio_postgres::Error> {
    insert_keys_with(tx, INSERT_KEYS_SQL, rows, false).await
}

const INSERT_KEYS_SQL: &str =
    "INSERT INTO fintrail.idempotency_keys (principal, key, request_hash, status_code, response, transfer_id, expires_at) \
     SELECT p, k, h, s, r, t, now() + make_interval(secs => $7) \
     FROM unnest($1::text[], $2::text[], $3::bytea[], $4::int[], $5::jsonb[], $6::bigint[]) AS u(p, k, h, s, r, t) \
     ON CONFLICT (principal, key) DO NOTHING RETURNING principal, key";

/// The same insert without `ON CONFLICT`: a key taken meanwhile fails the statement (and with
/// it the transaction), for the pipelined path that commits without looking at the result.
const INSERT_KEYS_STRICT_SQL: &str =
    "INSERT INTO fintrail.idempotency_keys (principal, key, request_hash, status_code, response, transfer_id, expires_at) \
     SELECT p, k, h, s, r, t, now() + make_interval(secs => $7) \
     FROM unnest($1::text[], $2::text[], $3::bytea[], $4::int[], $5::jsonb[], $6::bigint[]) AS u(p, k, h, s, r, t)";

async fn insert_keys_with<C: GenericClient + Sync, S: ?Sized + ToStatement + Sync + Send>(
    tx: &C,
    stmt: &S,
    rows: &[(&IdemKey, i32, serde_json::Value, Option<i64>)],
    strict: bool,
) -> Result<Vec<(String, String)>, tokio_postgres::Error> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let principals: Vec<&str> = rows.iter().map(|r| r.0.principal.as_str()).collect();
    let keys: Vec<&str> = rows.iter().map(|r| r.0.key.as_str()).collect();
    let hashes: Vec<&[u8]> = rows.iter().map(|r| r.0.hash.as_slice()).collect();
    let statuses: Vec<i32> = rows.iter().map(|r| r.1).collect();
    let responses: Vec<&serde_json::Value> = rows.iter().map(|r| &r.2).collect();
    let transfers: Vec<Option<i64>> = rows.iter().map(|r| r.3).collect();
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] =
        [&principals, &keys, &hashes, &statuses, &responses, &transfers, &(IDEMPOTENCY_KEEP_SECS as f64)];
    if strict {
        let n = tx.execute(stmt, &params).await?;
        debug_assert_eq!(n as usize, rows.len());
        return Ok(Vec::new());
    }
    let inserted = tx.query(stmt, &params).await?;
    let got: HashSet<(String, String)> = inserted.iter().map(|r| (r.get(0), r.get(1))).collect();
    Ok(rows.iter().map(|r| (r.0.principal.clone(), r.0.key.clone())).filter(|pk| !got.contains(pk)).collect())
}

/// Per-request results, and the keys another transaction took meanwhile (careful path only).
type Decided = (Vec<Result<Outcome, Error>>, Vec<(String, String)>);

const REVERSED_SQL: &str = "SELECT reverses_transfer_id FROM fintrail.transfers WHERE reverses_transfer_id = ANY($1)";
const IDS_SQL: &str = "SELECT nextval('fintrail.transfers_id_seq'), now() FROM generate_series(1, $1::bigint)";
/// One primary-key probe per requested key. Written as a LATERAL subquery with `LIMIT 1` (the
/// key is unique) so that it cannot be flattened into a join: as a plain join with `unnest`
/// the planner may pick a hash join over a sequential scan of the whole (growing) key table,
/// and did under load, once per batch.
const USED_KEYS_SQL: &str = "SELECT x.principal, x.key FROM unnest($1::text[], $2::text[]) AS u(p, k) \
     CROSS JOIN LATERAL (SELECT i.principal, i.key FROM fintrail.idempotency_keys i \
     WHERE i.principal = u.p AND i.key = u.k LIMIT 1) x";

/// The batch's statements, prepared once per connection (`prepare_cached`): after the first
/// batch on a connection, a batch sends no Parse and PostgreSQL plans nothing again.
struct Stmts {
    lock: Statement,
    reversed: Statement,
    ids: Statement,
    used: Statement,
    transfers: Statement,
    keys: Statement,
    keys_strict: Statement,
    events: Statement,
}

impl Stmts {
    async fn prepare(c: &deadpool_postgres::ClientWrapper) -> Result<Self, tokio_postgres::Error> {
        let (lock, reversed, ids, used, transfers, keys, keys_strict, events) = tokio::try_join!(
            c.prepare_cached(LOCK_WALLETS_SQL),
            c.prepare_cached(REVERSED_SQL),
            c.prepare_cached(IDS_SQL),
            c.prepare_cached(USED_KEYS_SQL),
            c.prepare_cached(INSERT_TRANSFERS_SQL),
            c.prepare_cached(INSERT_KEYS_SQL),
            c.prepare_cached(INSERT_KEYS_STRICT_SQL),
            c.prepare_cached(fintrail_audit::writer::APPEND_MANY_SQL),
        )?;
        Ok(Self { lock, reversed, ids, used, transfers, keys, keys_strict, events })
    }
}

/// One batch in two round trips: (1) lock + reversals + ids + used keys; decide in Rust;
/// (2) transfers + keys + events — with `BEGIN` first in (1) and `COMMIT` last in (2) when
/// `pipeline` says so (otherwise the caller holds the transaction). Pipelined statements are
/// sent in order on one connection (`join!` polls its branches in order the first time, and
/// each sends its request on that first poll), so PostgreSQL runs them in that order: the keys'
/// foreign key sees the transfers.
async fn decide_and_write<C: GenericClient + Sync>(
    tx: &C,
    st: &Stmts,
    reqs: &[&PostingRequest],
    taken: &HashSet<(String, String)>,
    audit: &AuditWriter,
    pipeline: Pipeline,
) -> Result<Decided, tokio_postgres::Error> {
    debug_assert!(!reqs.is_empty() && reqs.len() <= BATCH_MAX_LIMIT, "batch of {} postings", reqs.len());
    let io = BatchIo { tx, st, audit, in_pipeline: pipeline == Pipeline::BeginAndCommit };
    let read = io.read(reqs).await?;
    let decided = decide_batch(reqs, taken, read);
    let key_rows = key_rows_of(reqs, &decided.results);
    let conflicts = io.write(&decided, &key_rows).await?;
    Ok((decided.results, conflicts))
}

/// What a batch's two round trips share: the connection (or its transaction), the prepared
/// statements, the audit writer, and whether `BEGIN` and `COMMIT` travel with them.
struct BatchIo<'a, C> {
    tx: &'a C,
    st: &'a Stmts,
    audit: &'a AuditWriter,
    in_pipeline: bool,
}

/// What the first round trip read: the locked wallets, the transfers among the requested
/// reversals already reversed, one (id, time) row per request, and the keys already used.
struct BatchRead {
    locked: BTreeMap<WalletId, LockedWallet>,
    reversed: HashSet<i64>,
    ids: Vec<tokio_postgres::Row>,
    used: HashSet<(String, String)>,
}

impl<C: GenericClient + Sync> BatchIo<'_, C> {
    /// Round trip 1 (with `BEGIN` first in the pipeline, then [`BATCH_SETTINGS_SQL`]).
    async fn read(&self, reqs: &[&PostingRequest]) -> Result<BatchRead, tokio_postgres::Error> {
        let (tx, st) = (self.tx, self.st);
        let wallet_ids = wallets_of(reqs.iter().copied());
        let reversal_ids: Vec<i64> = reqs.iter().filter_map(|r| r.reverses).collect();
        let n = reqs.len() as i64;
        let principals: Vec<&str> = reqs.iter().map(|r| r.idem.principal.as_str()).collect();
        let keys: Vec<&str> = reqs.iter().map(|r| r.idem.key.as_str()).collect();
        let ids_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&n];
        let key_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&principals, &keys];
        // Pipelined: the lock, the already-reversed set, the ids and the keys already used travel
        // together (one round trip). Keys committed earlier are replayed by the handler; keys being
        // written concurrently are caught by the INSERT ... ON CONFLICT below.
        // The first error in statement order is the cause (a lock timeout or deadlock must stay
        // recognizable as retryable), hence `join!` and `?` in order.
        let (begun, set, locked, reversed, ids, used) = tokio::join!(
            pipelined(tx, self.in_pipeline, "BEGIN"),
            tx.batch_execute(BATCH_SETTINGS_SQL),
            async { tx.query(&st.lock, &[&wallet_ids]).await.map(|rows| locked_of(&rows)) },
            async {
                if reversal_ids.is_empty() {
                    return Ok(Vec::new());
                }
                tx.query(&st.reversed, &[&reversal_ids]).await
            },
            tx.query(&st.ids, &ids_params),
            tx.query(&st.used, &key_params),
        );
        begun?;
        set?;
        let (locked, reversed, ids, used) = (locked?, reversed?, ids?, used?);
        debug_assert_eq!(ids.len(), reqs.len(), "one id per posting");
        let used: HashSet<(String, String)> = used.iter().map(|r| (r.get(0), r.get(1))).collect();
        let reversed: HashSet<i64> = reversed.iter().map(|r| r.get(0)).collect();
        Ok(BatchRead { locked, reversed, ids, used })
    }

    /// Round trip 2 (with `COMMIT` last in the pipeline); the keys another transaction took
    /// meanwhile (careful path only).
    async fn write(
        &self,
        decided: &Decisions,
        key_rows: &[(&IdemKey, i32, serde_json::Value, Option<i64>)],
    ) -> Result<Vec<(String, String)>, tokio_postgres::Error> {
        let (tx, st) = (self.tx, self.st);
        // One round trip, in statement order: the audit events first (the transfers' statement
        // trigger refuses transfers whose events the transaction has not written yet: migration
        // 0036), then the transfers, then the keys that reference them.
        // `join!`, not `try_join!`: when the database refuses one statement (a trigger's FT0xx), the
        // statements after it fail with "transaction aborted" in the same read, and `try_join!`
        // may report either; the error that matters is the first in statement order.
        // In the pipeline, COMMIT follows them: if one of them failed, PostgreSQL answers the COMMIT
        // of the aborted transaction with a rollback, so nothing of the batch is kept.
        let keys_stmt = if self.in_pipeline { &st.keys_strict } else { &st.keys };
        let (e, t, k, c) = tokio::join!(
            self.audit.append_many_prepared(tx, &st.events, &decided.events),
            insert_transfers_with(tx, &st.transfers, &decided.rows),
            insert_keys_with(tx, keys_stmt, key_rows, self.in_pipeline),
            pipelined(tx, self.in_pipeline, "COMMIT"),
        );
        e?;
        t?;
        let conflicts = k?;
        c?;
        Ok(conflicts)
    }
}

/// The first statement of every batch's transaction: its statements run with generic plans,
/// made once per connection and statement. With the default (`auto`), PostgreSQL planned the
/// statements whose parameters are arrays (the used-keys probe, the audit events' INSERT, the
/// query inside `lock_wallets`) again on every batch, as a plan for the actual arrays looked
/// cheaper than the generic one: measured (`pg_stat_statements`, `fintrail bench transfers`)
/// 583 plans for 580 batches, about 0.45 ms of planning per batch. The generic plans are the
/// same index lookups. `LOCAL`: it ends with the transaction, so nothing else on the pooled
/// connection plans differently.
const BATCH_SETTINGS_SQL: &str = "SET LOCAL plan_cache_mode = force_generic_plan";

/// Sends the transaction control `sql` when the batch pipelines it; nothing otherwise.
async fn pipelined<C: GenericClient + Sync>(tx: &C, in_pipeline: bool, sql: &str) -> Result<(), tokio_postgres::Error> {
    if in_pipeline {
        tx.batch_execute(sql).await?;
    }
    Ok(())
}

/// The decide step's output: a result per request (in request order), and the transfer rows
/// and audit events of the accepted ones.
struct Decisions {
    results: Vec<Result<Outcome, Error>>,
    rows: Vec<TransferRow>,
    events: Vec<NewEvent>,
}

/// Decides every posting of the batch in queue order against the locked balances (no I/O):
/// a key taken, used or repeated in the batch answers `KeyTaken`; otherwise [`decide`].
fn decide_batch(reqs: &[&PostingRequest], taken: &HashSet<(String, String)>, read: BatchRead) -> Decisions {
    let BatchRead { locked, mut reversed, ids, used } = read;
    let mut balances: BTreeMap<WalletId, WalletState> = locked.iter().map(|(k, v)| (*k, v.state)).collect();
    let mut seen_keys: HashSet<(String, String)> = HashSet::new();
    let mut out = Decisions { results: Vec::with_capacity(reqs.len()), rows: Vec::new(), events: Vec::new() };
    for (i, req) in reqs.iter().enumerate() {
        let pk = (req.idem.principal.clone(), req.idem.key.clone());
        if taken.contains(&pk) || used.contains(&pk) || !seen_keys.insert(pk) {
            out.results.push(Ok(Outcome::KeyTaken));
            continue;
        }
        match decide(req, &locked, &mut balances, &mut reversed) {
            Ok(()) => out.push_posted(req, ids[i].get(0), ids[i].get(1)),
            Err(e) => out.results.push(Err(e)),
        }
    }
    debug_assert_eq!(out.results.len(), reqs.len());
    debug_assert_eq!(out.rows.len(), out.events.len());
    out
}

impl Decisions {
    /// Records `req`, accepted as transfer `id` at `at`: its result, row and audit event.
    fn push_posted(&mut self, req: &PostingRequest, id: i64, at: DateTime<Utc>) {
        let view = TransferView {
            id,
            kind: req.kind.as_str().to_owned(),
            debit_wallet_id: req.debit.0,
            credit_wallet_id: req.credit.0,
            amount_minor: req.amount.minor(),
            currency: req.currency.as_str().to_owned(),
            reverses_transfer_id: req.reverses,
            hold_id: None,
            created_at: at,
        };
        self.events.push(ledger_event(&req.who, action_of(req.kind), format!("transfer:{id}"), transfer_after(&view)));
        self.rows.push(TransferRow {
            view: view.clone(),
            actor: req.who.actor.clone(),
            idempotency_key: Some(req.idem.key.clone()),
            request_id: req.who.request_id.clone().unwrap_or_default(),
        });
        self.results.push(Ok(Outcome::Posted(view)));
    }
}

/// The idempotency rows of the posted requests: 201 with the transfer as the response.
fn key_rows_of<'r>(
    reqs: &[&'r PostingRequest],
    results: &[Result<Outcome, Error>],
) -> Vec<(&'r IdemKey, i32, serde_json::Value, Option<i64>)> {
    reqs.iter()
        .zip(results)
        .filter_map(|(req, r)| match r {
            Ok(Outcome::Posted(v)) => {
                Some((&req.idem, STATUS_CREATED, serde_json::to_value(v).unwrap_or_default(), Some(v.id)))
            }
            _ => None,
        })
        .collect()
}

fn decide(
    req: &PostingRequest,
    locked: &BTreeMap<WalletId, LockedWallet>,
    balances: &mut BTreeMap<WalletId, WalletState>,
    reversed: &mut HashSet<i64>,
) -> Result<(), Error> {
    let debit = locked.get(&req.debit).ok_or_else(|| Error::NotFound("wallet"))?;
    let credit = locked.get(&req.credit).ok_or_else(|| Error::NotFound("wallet"))?;
    // The client-chosen side(s) must be customer or organization wallets (system accounts have no
    // floor); the trigger refuses it too (FT013), this answers it clearly first.
    let is_system = |w: &LockedWallet| w.state.floor_minor.is_none();
    let client_sides_system = match req.kind {
        TransferKind::Transfer | TransferKind::HoldPost => is_system(debit) || is_system(credit),
        TransferKind::Deposit => is_system(credit),
        TransferKind::Withdrawal => is_system(debit),
        TransferKind::Reversal => false,
    };
    if client_sides_system {
        return Err(Error::refused(
            "system_wallet",
            "system accounts move money only through deposits and withdrawals",
        ));
    }
    if let Some(owner) = req.debit_owner {
        // Another customer's wallet is "not found" (existence is not disclosed).
        if debit.customer_id != Some(owner) {
            return Err(Error::NotFound("wallet"));
        }
    }
    if let Some(orig) = req.reverses {
        if !reversed.insert(orig) {
            return Err(Error::refused("already_reversed", format!("transfer {orig} was already reversed")));
        }
    }
    let p = Posting { debit: req.debit, credit: req.credit, amount: req.amount, currency: req.currency };
    let r = apply_posting(balances, &p, 0);
    if r.is_err() {
        if let Some(orig) = req.reverses {
            reversed.remove(&orig);
        }
    }
    r.map_err(Error::from)
}

/// Most keys deleted per purge run (bounds the transaction).
pub const PURGE_MAX: i64 = 10_000;

/// Deletes up to `max` (at most [`PURGE_MAX`]) expired idempotency keys in one statement;
/// returns how many. Run by the `idempotency-purge` job (`fintrail-jobs`).
pub async fn purge_idempotency_keys<C: GenericClient + Sync>(c: &C, max: i64) -> Result<u64, tokio_postgres::Error> {
    c.execute(
        "DELETE FROM fintrail.idempotency_keys WHERE (principal, key) IN \
         (SELECT principal, key FROM fintrail.idempotency_keys WHERE expires_at < now() ORDER BY expires_at LIMIT $1)",
        &[&max.clamp(0, PURGE_MAX)],
    )
    .await
}

/// How many idempotency keys are past their retention, counting at most `max` (a dry run of
/// [`purge_idempotency_keys`]).
pub async fn count_expired_idempotency_keys<C: GenericClient + Sync>(
    c: &C,
    max: i64,
) -> Result<u64, tokio_postgres::Error> {
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM (SELECT 1 FROM fintrail.idempotency_keys WHERE expires_at < now() LIMIT $1) d",
            &[&max.clamp(0, PURGE_MAX)],
        )
        .await?
        .get(0);
    Ok(n as u64)
}

#[cfg(test)]
mod tests {
    use super::{Gather, InFlight, Ledger, LANES_MAX};

    #[test]
    fn lanes_outside_one_to_the_limit_are_refused() {
        // Nothing connects: a pool only opens connections when asked for one.
        let mgr = deadpool_postgres::Manager::new(tokio_postgres::Config::new(), tokio_postgres::NoTls);
        let pool = deadpool_postgres::Pool::builder(mgr).max_size(1).build().expect("a pool without connections");
        for bad in [0, LANES_MAX + 1, usize::MAX] {
            let err = Ledger::with_lanes(pool.clone(), bad).err().map(|e| e.to_string());
            let want = format!("ledger lanes must be 1..={LANES_MAX}, not {bad}");
            assert_eq!(err.as_deref(), Some(want.as_str()), "{bad} lanes");
        }
        for good in [1, 2, LANES_MAX] {
            let ledger = Ledger::with_lanes(pool.clone(), good).expect("lanes within the limit");
            assert_eq!(ledger.lanes, good);
        }
    }

    fn decide(f: &InFlight, pairs: &[(i64, i64)]) -> Gather {
        f.decide_pairs(pairs.len(), pairs.iter().copied())
    }

    #[test]
    fn a_batch_starts_at_once_when_nothing_is_in_flight() {
        let f = InFlight::new(2);
        assert_eq!(decide(&f, &[(1, 2)]), Gather::Go);
        // A lane that left leaves nothing behind.
        f.enter(0, 3, &[1, 2, 3]);
        f.leave(0, &[1, 2, 3]);
        assert_eq!(decide(&f, &[(1, 2)]), Gather::Go);
    }

    #[test]
    fn a_batch_sharing_a_wallet_in_flight_waits_whatever_its_size() {
        let f = InFlight::new(2);
        f.enter(0, 1, &[7, 9]);
        assert_eq!(decide(&f, &[(1, 7)]), Gather::Wait, "credit side shared");
        assert_eq!(decide(&f, &[(9, 1)]), Gather::Wait, "debit side shared");
        let many: Vec<(i64, i64)> = (10..50).map(|i| (i, 7)).collect();
        assert_eq!(decide(&f, &many), Gather::Wait, "a full hot-wallet batch still waits for the lock holder");
        assert_eq!(decide(&f, &[(1, 2)]), Gather::Go, "disjoint and as large as the batch in flight");
    }

    #[test]
    fn a_disjoint_batch_starts_once_as_large_as_the_smallest_in_flight() {
        let f = InFlight::new(3);
        f.enter(0, 4, &[1, 2]);
        f.enter(1, 2, &[3, 4]);
        assert_eq!(decide(&f, &[(10, 11)]), Gather::Wait);
        assert_eq!(decide(&f, &[(10, 11), (12, 13)]), Gather::Go);
        f.leave(1, &[3, 4]);
        assert_eq!(decide(&f, &[(10, 11), (12, 13)]), Gather::Wait, "now the smallest in flight has 4");
        assert_eq!(decide(&f, &[(3, 4), (5, 6), (12, 13), (14, 15)]), Gather::Go, "released wallets are free again");
    }

    #[test]
    fn wallets_shared_by_two_lanes_stay_in_flight_until_both_left() {
        let f = InFlight::new(2);
        f.enter(0, 1, &[5]);
        f.enter(1, 1, &[5]);
        f.leave(0, &[5]);
        assert_eq!(decide(&f, &[(5, 6)]), Gather::Wait);
        f.leave(1, &[5]);
        assert_eq!(decide(&f, &[(5, 6)]), Gather::Go);
    }
}
