//! KYB: organizations and their screening state machine (staff only).

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::routing::{get, post};
use axum::Json;
use chrono::{DateTime, Utc};
use fintrail_domain::audit::AuditAction;
use fintrail_domain::{KybState, Permission as P, State as _};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath};
use crate::routes::Registry;
use crate::state::AppState;
use crate::transition::transition;

pub(crate) fn routes(reg: &mut Registry) {
    reg.add(Method::POST, "/v1/kyb/organizations", P::KybOrgCreate, post(create_organization));
    reg.add(Method::GET, "/v1/kyb/organizations/{org_id}", P::KybOrgRead, get(get_organization));
    reg.add(Method::POST, "/v1/kyb/organizations/{org_id}/screening", P::KybOrgScreen, post(screening));
    reg.add(Method::POST, "/v1/kyb/organizations/{org_id}/decision", P::KybOrgDecide, post(decision));
}

/// A KYB screening state (wire form of `fintrail_domain::KybState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KybStateName {
    /// registered
    Registered,
    /// screening
    Screening,
    /// clear
    Clear,
    /// potential_match
    PotentialMatch,
    /// manual_review
    ManualReview,
    /// cleared
    Cleared,
    /// blocked
    Blocked,
}

impl From<KybStateName> for KybState {
    fn from(s: KybStateName) -> Self {
        match s {
            KybStateName::Registered => KybState::Registered,
            KybStateName::Screening => KybState::Screening,
            KybStateName::Clear => KybState::Clear,
            KybStateName::PotentialMatch => KybState::PotentialMatch,
            KybStateName::ManualReview => KybState::ManualReview,
            KybStateName::Cleared => KybState::Cleared,
            KybStateName::Blocked => KybState::Blocked,
        }
    }
}

impl From<KybState> for KybStateName {
    fn from(s: KybState) -> Self {
        match s {
            KybState::Registered => KybStateName::Registered,
            KybState::Screening => KybStateName::Screening,
            KybState::Clear => KybStateName::Clear,
            KybState::PotentialMatch => KybStateName::PotentialMatch,
            KybState::ManualReview => KybStateName::ManualReview,
            KybState::Cleared => KybStateName::Cleared,
            KybState::Blocked => KybStateName::Blocked,
        }
    }
}

/// One recorded screening transition.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KybTransitionView {
    /// History row id.
    pub id: i64,
    /// From.
    pub from: KybStateName,
    /// To.
    pub to: KybStateName,
    /// Who.
    pub actor: String,
    /// Why.
    pub reason: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// An organization with its screening history.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Organization {
    /// Id.
    pub id: i64,
    /// Legal name.
    pub legal_name: String,
    /// Registration number.
    pub registration_number: String,
    /// ISO 3166-1 alpha-2 country.
    pub country: String,
    /// Screening state.
    pub state: KybStateName,
    /// Number of transitions applied.
    pub version: i32,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// The transitions, oldest first: every one, or the newest
    /// [`HISTORY_LISTED_MAX`](crate::transition::HISTORY_LISTED_MAX) (1 000) when there are more
    /// (`version` counts them all; the audit trail keeps each one).
    pub history: Vec<KybTransitionView>,
}

/// `POST /v1/kyb/organizations`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrganization {
    /// 1–300 characters.
    #[schema(
        min_length = 1,
        max_length = 300,
        pattern = "^[^\\u0000]*[^\\u0000\\t\\n\\u000b\\f\\r \\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff][^\\u0000]*$"
    )]
    pub legal_name: String,
    /// 1–64 characters.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[^\\u0000]*[^\\u0000\\t\\n\\u000b\\f\\r \\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff][^\\u0000]*$"
    )]
    pub registration_number: String,
    /// Two upper-case letters.
    #[schema(min_length = 2, max_length = 2, pattern = "^[A-Z]{2}$")]
    pub country: String,
}

/// `POST .../screening` and `POST .../decision`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KybTransitionRequest {
    /// Target state.
    pub to: KybStateName,
    /// Why (1–1000 characters).
    #[schema(
        min_length = 1,
        max_length = 1000,
        pattern = "^[^\\u0000]*[^\\u0000\\t\\n\\u000b\\f\\r \\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff][^\\u0000]*$"
    )]
    pub reason: String,
}

fn parse_state(s: &str) -> ApiResult<KybStateName> {
    KybState::parse(s).map(Into::into).map_err(ApiError::internal)
}

pub(crate) async fn load_organization(state: &AppState, id: i64) -> ApiResult<Option<Organization>> {
    let client = state.pool.get().await?;
    let Some(r) = client
        .query_opt(
            "SELECT id, legal_name, registration_number, country, state, version, created_at, updated_at FROM fintrail.organizations WHERE id = $1",
            &[&id],
        )
        .await?
    else {
        return Ok(None);
    };
    let mut history = Vec::new();
    for h in client.query(&crate::transition::newest_history_sql::<KybState>(), &[&id]).await? {
        history.push(KybTransitionView {
            id: h.get(0),
            from: parse_state(h.get(1))?,
            to: parse_state(h.get(2))?,
            actor: h.get(3),
            reason: h.get(4),
            at: h.get(5),
        });
    }
    Ok(Some(Organization {
        id: r.get(0),
        legal_name: r.get(1),
        registration_number: r.get(2),
        country: r.get(3),
        state: parse_state(r.get(4))?,
        version: r.get(5),
        created_at: r.get(6),
        updated_at: r.get(7),
        history,
    }))
}

/// Register an organization.
#[utoipa::path(post, path = "/v1/kyb/organizations", tag = "kyb", security(("bearer" = [])),
    description = "Requires `kyb.org.create`.",
    request_body = CreateOrganization,
    responses((status = 201, body = Organization), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_organization(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateOrganization>,
) -> ApiResult<(StatusCode, Json<Organization>)> {
    let name = body.legal_name.as_str();
    let reg_no = body.registration_number.as_str();
    crate::validate::text("legal_name", name, 300)?;
    crate::validate::text("registration_number", reg_no, 64)?;
    if body.country.len() != 2 || !body.country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ApiError::unprocessable("country must be two upper-case letters (ISO 3166-1 alpha-2)"));
    }
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let id: i64 = tx
        .query_one(
            "INSERT INTO fintrail.organizations (legal_name, registration_number, country, state) VALUES ($1, $2, $3, $4) RETURNING id",
            &[&name, &reg_no, &body.country, &KybState::INITIAL.as_str()],
        )
        .await?
        .get(0);
    let ev = caller
        .principal
        .event(AuditAction::OrganizationCreated, format!("organization:{id}"), Some(caller.permission))
        .request(Some(&caller.request_id))
        .change(None, Some(json!({ "state": KybState::INITIAL.as_str() })));
    state.audit.append_cached(&tx, &ev).await?;
    tx.commit().await?;
    state.audit.committed();
    drop(client);
    let org =
        load_organization(&state, id).await?.ok_or_else(|| ApiError::internal("created organization vanished"))?;
    Ok((StatusCode::CREATED, Json(org)))
}

/// Read an organization.
#[utoipa::path(get, path = "/v1/kyb/organizations/{org_id}", tag = "kyb", security(("bearer" = [])),
    description = "Requires `kyb.org.read`.",
    params(("org_id" = i64, Path, description = "Organization id")),
    responses((status = 200, body = Organization), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_organization(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath(org_id): ApiPath<i64>,
) -> ApiResult<Json<Organization>> {
    load_organization(&state, org_id).await?.map(Json).ok_or_else(|| ApiError::not_found("organization"))
}

async fn do_transition(
    state: &AppState,
    caller: &Caller,
    org_id: i64,
    body: KybTransitionRequest,
) -> ApiResult<Json<Organization>> {
    transition::<KybState>(state, caller, org_id, None, body.to.into(), &body.reason).await?;
    load_organization(state, org_id).await?.map(Json).ok_or_else(|| ApiError::not_found("organization"))
}

/// Screening transitions, including re-screening.
#[utoipa::path(post, path = "/v1/kyb/organizations/{org_id}/screening", tag = "kyb", security(("bearer" = [])),
    description = "Requires `kyb.org.screen`. Only transitions the table assigns to `kyb.org.screen`.",
    params(("org_id" = i64, Path, description = "Organization id")),
    request_body = KybTransitionRequest,
    responses((status = 200, body = Organization), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn screening(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(org_id): ApiPath<i64>,
    ApiJson(body): ApiJson<KybTransitionRequest>,
) -> ApiResult<Json<Organization>> {
    do_transition(&state, &caller, org_id, body).await
}

/// Manual review decisions.
#[utoipa::path(post, path = "/v1/kyb/organizations/{org_id}/decision", tag = "kyb", security(("bearer" = [])),
    description = "Requires `kyb.org.decide`. Only transitions the table assigns to `kyb.org.decide`.",
    params(("org_id" = i64, Path, description = "Organization id")),
    request_body = KybTransitionRequest,
    responses((status = 200, body = Organization), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn decision(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(org_id): ApiPath<i64>,
    ApiJson(body): ApiJson<KybTransitionRequest>,
) -> ApiResult<Json<Organization>> {
    do_transition(&state, &caller, org_id, body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_equal_domain_names() {
        for s in KybState::ALL {
            let wire = serde_json::to_value(KybStateName::from(*s)).unwrap_or_default();
            assert_eq!(wire, serde_json::Value::String(s.as_str().into()));
            assert_eq!(KybState::from(KybStateName::from(*s)), *s);
        }
    }
}
