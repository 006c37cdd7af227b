//! KYC cases: customers open and submit their own; staff read and review any.

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::routing::{get, post};
use axum::Json;
use chrono::{DateTime, Utc};
use fintrail_domain::audit::AuditAction;
use fintrail_domain::{KycState, Permission as P, State as _};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::auth::{record_denial, Caller};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath};
use crate::routes::Registry;
use crate::state::AppState;
use crate::transition::transition;

pub(crate) fn routes(reg: &mut Registry) {
    reg.add(Method::POST, "/v1/me/kyc/cases", P::KycCaseCreate, post(create_own_case));
    reg.add(Method::GET, "/v1/me/kyc/cases/{case_id}", P::KycCaseReadOwn, get(get_own_case));
    reg.add(Method::POST, "/v1/me/kyc/cases/{case_id}/transitions", P::KycCaseSubmit, post(submit_own_case));
    reg.add(Method::GET, "/v1/kyc/cases/{case_id}", P::KycCaseRead, get(get_case));
    reg.add(Method::POST, "/v1/kyc/cases/{case_id}/transitions", P::KycCaseReview, post(review_case));
}

/// A KYC state (wire form of `fintrail_domain::KycState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KycStateName {
    /// started
    Started,
    /// documents_submitted
    DocumentsSubmitted,
    /// in_review
    InReview,
    /// approved
    Approved,
    /// rejected
    Rejected,
    /// needs_resubmission
    NeedsResubmission,
    /// expired
    Expired,
}

impl From<KycStateName> for KycState {
    fn from(s: KycStateName) -> Self {
        match s {
            KycStateName::Started => KycState::Started,
            KycStateName::DocumentsSubmitted => KycState::DocumentsSubmitted,
            KycStateName::InReview => KycState::InReview,
            KycStateName::Approved => KycState::Approved,
            KycStateName::Rejected => KycState::Rejected,
            KycStateName::NeedsResubmission => KycState::NeedsResubmission,
            KycStateName::Expired => KycState::Expired,
        }
    }
}

impl From<KycState> for KycStateName {
    fn from(s: KycState) -> Self {
        match s {
            KycState::Started => KycStateName::Started,
            KycState::DocumentsSubmitted => KycStateName::DocumentsSubmitted,
            KycState::InReview => KycStateName::InReview,
            KycState::Approved => KycStateName::Approved,
            KycState::Rejected => KycStateName::Rejected,
            KycState::NeedsResubmission => KycStateName::NeedsResubmission,
            KycState::Expired => KycStateName::Expired,
        }
    }
}

/// One recorded transition.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KycTransitionView {
    /// History row id.
    pub id: i64,
    /// From.
    pub from: KycStateName,
    /// To.
    pub to: KycStateName,
    /// Who (staff only; hidden from customers).
    pub actor: Option<String>,
    /// Why.
    pub reason: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// A KYC case with its history.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KycCase {
    /// Id.
    pub id: i64,
    /// Owner.
    pub customer_id: i64,
    /// Current state.
    pub state: KycStateName,
    /// Number of transitions applied.
    pub version: i32,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// The transitions, oldest first: every one, or the newest
    /// [`HISTORY_LISTED_MAX`](crate::transition::HISTORY_LISTED_MAX) (1 000) when there are more
    /// (`version` counts them all; the audit trail keeps each one).
    pub history: Vec<KycTransitionView>,
}

/// `POST .../transitions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KycTransitionRequest {
    /// Target state.
    pub to: KycStateName,
    /// Why (1–1000 characters; kept in the history, not copied into the audit trail).
    #[schema(
        min_length = 1,
        max_length = 1000,
        pattern = "^[^\\u0000]*[^\\u0000\\t\\n\\u000b\\f\\r \\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff][^\\u0000]*$"
    )]
    pub reason: String,
}

fn parse_state(s: &str) -> ApiResult<KycStateName> {
    KycState::parse(s).map(Into::into).map_err(ApiError::internal)
}

/// Loads a case (scoped to `scope` if given: other customers' cases are not found).
pub(crate) async fn load_case(
    state: &AppState,
    id: i64,
    scope: Option<i64>,
    staff_view: bool,
) -> ApiResult<Option<KycCase>> {
    let client = state.pool.get().await?;
    let Some(r) = client
        .query_opt(
            "SELECT id, customer_id, state, version, created_at, updated_at FROM fintrail.kyc_cases WHERE id = $1",
            &[&id],
        )
        .await?
    else {
        return Ok(None);
    };
    let customer_id: i64 = r.get(1);
    if scope.is_some_and(|c| c != customer_id) {
        return Ok(None);
    }
    let mut history = Vec::new();
    for h in client.query(&crate::transition::newest_history_sql::<KycState>(), &[&id]).await? {
        history.push(KycTransitionView {
            id: h.get(0),
            from: parse_state(h.get(1))?,
            to: parse_state(h.get(2))?,
            actor: staff_view.then(|| h.get(3)),
            reason: h.get(4),
            at: h.get(5),
        });
    }
    Ok(Some(KycCase {
        id: r.get(0),
        customer_id,
        state: parse_state(r.get(2))?,
        version: r.get(3),
        created_at: r.get(4),
        updated_at: r.get(5),
        history,
    }))
}

/// Open a KYC case for oneself.
#[utoipa::path(post, path = "/v1/me/kyc/cases", tag = "kyc", security(("bearer" = [])),
    description = "Requires `kyc.case.create` (customers).",
    responses((status = 201, body = KycCase), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_own_case(State(state): State<AppState>, caller: Caller) -> ApiResult<(StatusCode, Json<KycCase>)> {
    let customer = caller.own_customer()?;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let id: i64 = tx
        .query_one(
            "INSERT INTO fintrail.kyc_cases (customer_id, state) VALUES ($1, $2) RETURNING id",
            &[&customer, &KycState::INITIAL.as_str()],
        )
        .await?
        .get(0);
    let ev = caller
        .principal
        .event(AuditAction::KycCaseCreated, format!("kyc_case:{id}"), Some(caller.permission))
        .on_behalf_of(Some(format!("customer:{customer}")))
        .request(Some(&caller.request_id))
        .change(None, Some(json!({ "state": KycState::INITIAL.as_str() })));
    state.audit.append_cached(&tx, &ev).await?;
    tx.commit().await?;
    state.audit.committed();
    drop(client);
    let case = load_case(&state, id, Some(customer), false)
        .await?
        .ok_or_else(|| ApiError::internal("created case vanished"))?;
    Ok((StatusCode::CREATED, Json(case)))
}

/// Read one's own case.
#[utoipa::path(get, path = "/v1/me/kyc/cases/{case_id}", tag = "kyc", security(("bearer" = [])),
    description = "Requires `kyc.case.read_own` (customers; other customers' cases are not found).",
    params(("case_id" = i64, Path, description = "Case id")),
    responses((status = 200, body = KycCase), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_own_case(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(case_id): ApiPath<i64>,
) -> ApiResult<Json<KycCase>> {
    let customer = caller.own_customer()?;
    match load_case(&state, case_id, Some(customer), false).await? {
        Some(c) => Ok(Json(c)),
        None => {
            // Not found or someone else's: the same answer; an attempt on another's is recorded.
            if load_case(&state, case_id, None, false).await?.is_some() {
                record_denial(
                    &state,
                    &caller.principal,
                    caller.permission,
                    format!("kyc_case:{case_id}"),
                    &caller.request_id,
                )
                .await?;
            }
            Err(ApiError::not_found("kyc_case"))
        }
    }
}

/// Submit (or resubmit) one's own case.
#[utoipa::path(post, path = "/v1/me/kyc/cases/{case_id}/transitions", tag = "kyc", security(("bearer" = [])),
    description = "Requires `kyc.case.submit` (customers). Only transitions the table assigns to `kyc.case.submit`.",
    params(("case_id" = i64, Path, description = "Case id")),
    request_body = KycTransitionRequest,
    responses((status = 200, body = KycCase), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn submit_own_case(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(case_id): ApiPath<i64>,
    ApiJson(body): ApiJson<KycTransitionRequest>,
) -> ApiResult<Json<KycCase>> {
    let customer = caller.own_customer()?;
    transition::<KycState>(&state, &caller, case_id, Some(customer), body.to.into(), &body.reason).await?;
    let case =
        load_case(&state, case_id, Some(customer), false).await?.ok_or_else(|| ApiError::not_found("kyc_case"))?;
    Ok(Json(case))
}

/// Read any case (staff).
#[utoipa::path(get, path = "/v1/kyc/cases/{case_id}", tag = "kyc", security(("bearer" = [])),
    description = "Requires `kyc.case.read`.",
    params(("case_id" = i64, Path, description = "Case id")),
    responses((status = 200, body = KycCase), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_case(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath(case_id): ApiPath<i64>,
) -> ApiResult<Json<KycCase>> {
    load_case(&state, case_id, None, true).await?.map(Json).ok_or_else(|| ApiError::not_found("kyc_case"))
}

/// Review transitions (staff).
#[utoipa::path(post, path = "/v1/kyc/cases/{case_id}/transitions", tag = "kyc", security(("bearer" = [])),
    description = "Requires `kyc.case.review`. Only transitions the table assigns to `kyc.case.review`.",
    params(("case_id" = i64, Path, description = "Case id")),
    request_body = KycTransitionRequest,
    responses((status = 200, body = KycCase), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn review_case(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(case_id): ApiPath<i64>,
    ApiJson(body): ApiJson<KycTransitionRequest>,
) -> ApiResult<Json<KycCase>> {
    transition::<KycState>(&state, &caller, case_id, None, body.to.into(), &body.reason).await?;
    let case = load_case(&state, case_id, None, true).await?.ok_or_else(|| ApiError::not_found("kyc_case"))?;
    Ok(Json(case))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_equal_domain_names() {
        for s in KycState::ALL {
            let wire = serde_json::to_value(KycStateName::from(*s)).unwrap_or_default();
            assert_eq!(wire, serde_json::Value::String(s.as_str().into()));
            assert_eq!(KycState::from(KycStateName::from(*s)), *s);
        }
    }
}
