//! The one transition procedure both machines use: lock, check the Rust table, check the
//! endpoint's permission is the one the table names, write history + state + audit event in
//! one transaction. The database re-checks all of it (defense in depth).

use fintrail_domain::audit::AuditAction;
use serde_json::json;

use crate::auth::{record_denial, Caller};
use crate::error::{ApiError, ApiResult};
use crate::machines::{insert_history, update_state_sql, update_state_with, HistoryRow, Machine};
use crate::state::AppState;
use fintrail_audit::NewEvent;

/// Longest transition reason (matches the database's CHECK).
pub const REASON_MAX_CHARS: usize = 1000;

/// Most history rows a KYC case or an organization lists in the API: its newest ones. Bounds
/// every response that carries a history (each transition answers with one). A record can
/// outgrow it: rescreening adds two transitions to an organization every cycle, for as long as
/// it is a client. `version` still counts every transition, and the audit trail keeps each
/// one (`GET /v1/audit/events`).
pub const HISTORY_LISTED_MAX: i64 = 1000;

/// The newest [`HISTORY_LISTED_MAX`] history rows of one record of machine `M` (`$1`), oldest
/// first: (id, from_state, to_state, actor, reason, at).
pub fn newest_history_sql<M: Machine>() -> String {
    format!(
        "SELECT id, from_state, to_state, actor, reason, at FROM (\
         SELECT id, from_state, to_state, actor, reason, at FROM fintrail.{h} \
         WHERE {fk} = $1 ORDER BY id DESC LIMIT {HISTORY_LISTED_MAX}) newest ORDER BY id",
        h = M::HISTORY,
        fk = M::FK
    )
}

/// A record's state after a transition.
pub struct Transitioned<M> {
    /// From.
    pub from: M,
    /// The history row.
    pub transition_id: i64,
}

/// Performs `to` on record `id`. `scope` limits the record to one customer (customer routes):
/// another customer's record is "not found" (and the attempt is recorded as denied).
pub async fn transition<M: Machine>(
    state: &AppState,
    caller: &Caller,
    id: i64,
    scope: Option<i64>,
    to: M,
    reason: &str,
) -> ApiResult<Transitioned<M>> {
    crate::validate::text("reason", reason, REASON_MAX_CHARS)?;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let owner_col = if M::TABLE == "kyc_cases" { "customer_id" } else { "NULL::bigint" };
    let row = tx
        .query_opt(&format!("SELECT state, {owner_col} FROM fintrail.{} WHERE id = $1 FOR UPDATE", M::TABLE), &[&id])
        .await?;
    let subject = format!("{}:{id}", M::SUBJECT);
    let Some(row) = row else { return Err(ApiError::not_found(M::SUBJECT)) };
    let owner: Option<i64> = row.get(1);
    if scope.is_some() && owner != scope {
        drop(tx);
        drop(client);
        record_denial(state, &caller.principal, caller.permission, subject, &caller.request_id).await?;
        return Err(ApiError::not_found(M::SUBJECT));
    }
    let from = M::parse(row.get::<_, &str>(0)).map_err(ApiError::internal)?;
    let Some(needed) = M::transition(from, to) else {
        return Err(ApiError::conflict(
            "invalid_transition",
            format!("{} {id}: transition {} -> {} is not allowed", M::SUBJECT, from.as_str(), to.as_str()),
        ));
    };
    if needed != caller.permission {
        drop(tx);
        drop(client);
        record_denial(state, &caller.principal, needed, subject, &caller.request_id).await?;
        return Err(ApiError::forbidden(format!(
            "transition {} -> {} requires {needed}, not this endpoint's {}",
            from.as_str(),
            to.as_str(),
            caller.permission
        )));
    }
    let actor = caller.principal.actor();
    let row = HistoryRow { id, from, to, actor: &actor, reason, request_id: Some(&caller.request_id) };
    let transition_id = insert_history(&*tx, &row).await?;
    let ev = NewEvent::allowed(actor, M::ACTION, subject, Some(needed))
        .credential(caller.principal.credential.clone())
        .on_behalf_of(owner.map(|c| format!("customer:{c}")))
        .request(Some(&caller.request_id))
        .change(
            Some(json!({ "state": from.as_str() })),
            Some(json!({ "state": to.as_str(), "transition_id": transition_id })),
        );
    // The state update and the audit event travel in one round trip: both statements are
    // prepared (cached per connection), so `join!` sends the update's request on its first
    // poll, before the event's, and PostgreSQL runs them in that order. The first error in
    // statement order is the cause: after a refused update the event fails only as "aborted".
    let update = tx.prepare_cached(&update_state_sql::<M>()).await?;
    let (updated, appended) =
        tokio::join!(update_state_with(&*tx, &update, id, to, transition_id), state.audit.append_cached(&tx, &ev));
    updated?;
    appended?;
    tx.commit().await?;
    state.audit.committed();
    debug_assert!(matches!(M::ACTION, AuditAction::KycCaseTransitioned | AuditAction::OrganizationTransitioned));
    Ok(Transitioned { from, transition_id })
}
