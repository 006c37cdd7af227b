//! Ledger fixtures for the benchmark and the integration tests: customers driven to an
//! approved KYC case through the real state machine (history rows, triggers), cleared
//! organizations, bearer tokens, wallets and opening deposits — all written through the same
//! SQL and triggers as the API, as the application role. Every change is recorded by an audit
//! event in its transaction, as the database requires (migration 0036), with the fixtures'
//! own actor.

use fintrail_audit::{AuditWriter, NewEvent};
use fintrail_db::{Database, DbRole};
use fintrail_domain::audit::AuditAction;
use fintrail_domain::{KybState, KycState, Role, State as _};

use fintrail_api::machines::{apply_transition, Machine};

const ACTOR: &str = "system:ledger-fixtures";

async fn drive<M: Machine>(tx: &tokio_postgres::Transaction<'_>, id: i64, target: M) -> anyhow::Result<()> {
    let mut at = M::INITIAL;
    for next in M::path_from_initial(target).unwrap_or_default() {
        apply_transition::<M, _>(tx, id, at, next, ACTOR, "fixture", None).await?;
        record(tx, M::ACTION, [format!("{}:{id}", M::SUBJECT)]).await?;
        at = next;
    }
    Ok(())
}

/// Appends one `action` event per subject, in the caller's transaction.
async fn record(
    tx: &tokio_postgres::Transaction<'_>,
    action: AuditAction,
    subjects: impl IntoIterator<Item = String>,
) -> anyhow::Result<()> {
    let events: Vec<NewEvent> = subjects.into_iter().map(|s| NewEvent::allowed(ACTOR, action, s, None)).collect();
    for chunk in events.chunks(fintrail_audit::writer::APPEND_MANY_MAX) {
        AuditWriter::new(true).append_many(tx, chunk).await?;
    }
    Ok(())
}

/// Creates `n` customers, each with an approved KYC case; returns their ids.
pub async fn approved_customers(db: &Database, n: usize) -> anyhow::Result<Vec<i64>> {
    let mut client = db.connect(DbRole::App).await?;
    let tx = client.transaction().await?;
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let r = tx
            .query_one(
                "INSERT INTO fintrail.customers (display_name, email) VALUES ($1, $2) RETURNING id",
                &[&format!("Ledger customer {i}"), &format!("ledger{i}@fixtures.fintrail.invalid")],
            )
            .await?;
        let id: i64 = r.get(0);
        let case: i64 = tx
            .query_one(
                "INSERT INTO fintrail.kyc_cases (customer_id, state) VALUES ($1, 'started') RETURNING id",
                &[&id],
            )
            .await?
            .get(0);
        record(&tx, AuditAction::CustomerCreated, [format!("customer:{id}")]).await?;
        record(&tx, AuditAction::KycCaseCreated, [format!("kyc_case:{case}")]).await?;
        drive(&tx, case, KycState::Approved).await?;
        ids.push(id);
    }
    tx.commit().await?;
    Ok(ids)
}

/// A customer whose KYC case is in `state` (for eligibility tests).
pub async fn customer_in_kyc_state(db: &Database, state: KycState) -> anyhow::Result<i64> {
    let mut client = db.connect(DbRole::App).await?;
    let tx = client.transaction().await?;
    let id: i64 = tx
        .query_one(
            "INSERT INTO fintrail.customers (display_name, email) VALUES ('Pending', 'pending@fixtures.fintrail.invalid') RETURNING id",
            &[],
        )
        .await?
        .get(0);
    let case: i64 = tx
        .query_one("INSERT INTO fintrail.kyc_cases (customer_id, state) VALUES ($1, 'started') RETURNING id", &[&id])
        .await?
        .get(0);
    record(&tx, AuditAction::CustomerCreated, [format!("customer:{id}")]).await?;
    record(&tx, AuditAction::KycCaseCreated, [format!("kyc_case:{case}")]).await?;
    drive(&tx, case, state).await?;
    tx.commit().await?;
    Ok(id)
}

/// An organization in screening state `state`.
pub async fn organization(db: &Database, state: KybState) -> anyhow::Result<i64> {
    let mut client = db.connect(DbRole::App).await?;
    let tx = client.transaction().await?;
    let id: i64 = tx
        .query_one(
            "INSERT INTO fintrail.organizations (legal_name, registration_number, country, state) \
             VALUES ('Merchant Ltd', 'R-1', 'DE', 'registered') RETURNING id",
            &[],
        )
        .await?
        .get(0);
    record(&tx, AuditAction::OrganizationCreated, [format!("organization:{id}")]).await?;
    drive(&tx, id, state).await?;
    tx.commit().await?;
    Ok(id)
}

/// A bearer token with `role` (customer tokens name their customer), valid 8 hours, issued
/// the way operators issue one (`fintrail token create`).
pub async fn token(db: &Database, role: Role, customer_id: Option<i64>) -> anyhow::Result<String> {
    Ok(fintrail_api::identity::create_token(db, role, customer_id, "ledger-fixture", 8 * 3600, ACTOR).await?.token)
}

/// `n` customer wallets in EUR for fresh approved customers, each funded with `amount_minor`
/// by a deposit from the EUR external-funding account (through the transfers trigger), written
/// as the operator (the admin session).
pub async fn funded_wallets(db: &Database, n: usize, amount_minor: i64) -> anyhow::Result<Vec<i64>> {
    let customers = approved_customers(db, n).await?;
    // An operator session, not the app role: through the app role money moves only for a
    // person with a live token (migration 0052), and fixtures are nobody's request.
    let mut client = db.connect(DbRole::Admin).await?;
    let tx = client.transaction().await?;
    let rows = tx
        .query(
            "INSERT INTO fintrail.wallets (kind, customer_id, currency) SELECT 'customer', c, 'EUR' FROM unnest($1::bigint[]) AS c \
             RETURNING id",
            &[&customers],
        )
        .await?;
    let mut wallets: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    wallets.sort_unstable();
    record(&tx, AuditAction::LedgerWalletOpened, wallets.iter().map(|w| format!("wallet:{w}"))).await?;
    tx.execute(
        "INSERT INTO fintrail.wallets (kind, system_name, currency) VALUES ('system', 'external_funding', 'EUR') \
         ON CONFLICT (system_name, currency) WHERE kind = 'system' DO NOTHING",
        &[],
    )
    .await?;
    let funding: i64 = tx
        .query_one("SELECT id FROM fintrail.wallets WHERE kind = 'system' AND system_name = 'external_funding' AND currency = 'EUR'", &[])
        .await?
        .get(0);
    // Ids first, so that each deposit's event can precede it (the transfers' trigger checks).
    let ids: Vec<i64> = tx
        .query(
            "SELECT nextval('fintrail.transfers_id_seq') FROM generate_series(1, $1::int)",
            &[&(wallets.len() as i32)],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    record(&tx, AuditAction::LedgerDepositPosted, ids.iter().map(|t| format!("transfer:{t}"))).await?;
    tx.execute(
        "INSERT INTO fintrail.transfers (id, kind, debit_wallet_id, credit_wallet_id, amount_minor, currency, actor) \
         SELECT t, 'deposit', $1, w, $2, 'EUR', $3 FROM unnest($4::bigint[], $5::bigint[]) AS u (w, t)",
        &[&funding, &amount_minor, &ACTOR, &wallets, &ids],
    )
    .await?;
    tx.commit().await?;
    Ok(wallets)
}

/// The initial state is never a target worth driving to (kept for completeness of `drive`).
pub fn kyc_initial() -> KycState {
    KycState::INITIAL
}

/// `n` pending holds of `amount_minor` each, from `debit` to `credit`, created two hours ago
/// and expired an hour ago: rows dated in the past, so the expiry tests never wait for a clock.
/// The hold trigger stamps `created_at` with `now()`, so they are written as the superuser with
/// triggers off (`session_replication_role = replica`), reserving the amount on the debit
/// wallet by hand exactly as the `holds_reserve` trigger would. Returns the hold ids.
pub async fn overdue_holds(
    db: &Database,
    debit: i64,
    credit: i64,
    n: usize,
    amount_minor: i64,
) -> anyhow::Result<Vec<i64>> {
    let mut admin = db.connect(DbRole::Admin).await?;
    let tx = admin.transaction().await?;
    tx.batch_execute("SET LOCAL session_replication_role = replica").await?;
    let rows = tx
        .query(
            "INSERT INTO fintrail.holds (debit_wallet_id, credit_wallet_id, amount_minor, currency, actor, created_at, expires_at) \
             SELECT $1, $2, $3, 'EUR', $4, now() - interval '2 hours', now() - interval '1 hour' FROM generate_series(1, $5) \
             RETURNING id",
            &[&debit, &credit, &amount_minor, &ACTOR, &(n as i32)],
        )
        .await?;
    let reserved = amount_minor * n as i64;
    tx.execute("UPDATE fintrail.wallets SET held_minor = held_minor + $2 WHERE id = $1", &[&debit, &reserved]).await?;
    tx.commit().await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
