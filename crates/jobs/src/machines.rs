//! Where each state machine of fintrail-domain lives in the database, and the one SQL protocol
//! that performs a transition (history row first, then the state change that consumes it).

use fintrail_domain::audit::AuditAction;
use fintrail_domain::{KybState, KycState, Permission, State};
use tokio_postgres::{GenericClient, ToStatement};

/// A state machine stored in a table with a history table beside it.
pub trait Machine: State + Send + Sync {
    /// The table holding the records (`kyc_cases`).
    const TABLE: &'static str;
    /// The history table (`kyc_case_transitions`).
    const HISTORY: &'static str;
    /// The history table's column referencing the record.
    const FK: &'static str;
    /// Prefix of audit subjects (`kyc_case:<id>`).
    const SUBJECT: &'static str;
    /// The audit action of a transition.
    const ACTION: AuditAction;
}

impl Machine for KycState {
    const TABLE: &'static str = "kyc_cases";
    const HISTORY: &'static str = "kyc_case_transitions";
    const FK: &'static str = "case_id";
    const SUBJECT: &'static str = "kyc_case";
    const ACTION: AuditAction = AuditAction::KycCaseTransitioned;
}

impl Machine for KybState {
    const TABLE: &'static str = "organizations";
    const HISTORY: &'static str = "organization_transitions";
    const FK: &'static str = "organization_id";
    const SUBJECT: &'static str = "organization";
    const ACTION: AuditAction = AuditAction::OrganizationTransitioned;
}

/// Performs `from → to` on record `id` inside the caller's transaction: inserts the history
/// row, then updates the state (the database triggers check both). Returns the history id.
pub async fn apply_transition<M: Machine, C: GenericClient + Sync>(
    tx: &C,
    id: i64,
    from: M,
    to: M,
    actor: &str,
    reason: &str,
    request_id: Option<&str>,
) -> Result<i64, tokio_postgres::Error> {
    let history_id = insert_history(tx, &HistoryRow { id, from, to, actor, reason, request_id }).await?;
    update_state::<M, C>(tx, id, to, history_id).await?;
    Ok(history_id)
}

/// One history row of record `id`: `from → to`, by `actor`, for `reason`.
#[derive(Debug, Clone, Copy)]
pub struct HistoryRow<'a, M> {
    /// The record.
    pub id: i64,
    /// Its state before.
    pub from: M,
    /// Its state after.
    pub to: M,
    /// Who.
    pub actor: &'a str,
    /// Why.
    pub reason: &'a str,
    /// The request, if any.
    pub request_id: Option<&'a str>,
}

/// [`apply_transition`]'s first step: the history row; returns its id. The state must then
/// be updated in the same transaction ([`update_state`]), or the commit is refused (FT003).
pub async fn insert_history<M: Machine, C: GenericClient + Sync>(
    tx: &C,
    row: &HistoryRow<'_, M>,
) -> Result<i64, tokio_postgres::Error> {
    let HistoryRow { id, from, to, actor, reason, request_id } = *row;
    let insert = format!(
        "INSERT INTO fintrail.{h} ({fk}, from_state, to_state, actor, reason, request_id) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        h = M::HISTORY,
        fk = M::FK
    );
    let row = tx.query_one(&insert, &[&id, &from.as_str(), &to.as_str(), &actor, &reason, &request_id]).await?;
    Ok(row.get(0))
}

/// [`apply_transition`]'s second step: the state, pointing at history row `history_id`.
pub async fn update_state<M: Machine, C: GenericClient + Sync>(
    tx: &C,
    id: i64,
    to: M,
    history_id: i64,
) -> Result<(), tokio_postgres::Error> {
    update_state_with(tx, update_state_sql::<M>().as_str(), id, to, history_id).await
}

/// The statement of [`update_state`], for a caller that prepares it ahead (to pipeline it).
pub fn update_state_sql<M: Machine>() -> String {
    format!("UPDATE fintrail.{t} SET state = $2, last_transition_id = $3 WHERE id = $1", t = M::TABLE)
}

/// [`update_state`] with `stmt`, [`update_state_sql`] or its prepared statement.
pub async fn update_state_with<M: Machine, C: GenericClient + Sync, S: ?Sized + ToStatement + Sync + Send>(
    tx: &C,
    stmt: &S,
    id: i64,
    to: M,
    history_id: i64,
) -> Result<(), tokio_postgres::Error> {
    let n = tx.execute(stmt, &[&id, &to.as_str(), &history_id]).await?;
    debug_assert_eq!(n, 1, "the history trigger locked and found the row");
    Ok(())
}

/// The permission a transition needs, if the transition exists (the Rust table).
pub fn required_permission<M: Machine>(from: M, to: M) -> Option<Permission> {
    M::transition(from, to)
}
