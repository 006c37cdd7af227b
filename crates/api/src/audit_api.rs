//! Reading the audit trail over HTTP (`audit.read`).

use axum::extract::State;
use axum::http::Method;
use axum::routing::get;
use axum::Json;
use chrono::{DateTime, Utc};
use fintrail_domain::Permission as P;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiQuery;
use crate::routes::Registry;
use crate::state::AppState;

/// Most events per page.
pub const PAGE_MAX: i64 = 1000;

pub(crate) fn routes(reg: &mut Registry) {
    reg.add(Method::GET, "/v1/audit/events", P::AuditRead, get(list_events));
}

/// Page query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Return events with a greater sequence number (default 0).
    #[param(minimum = 0)]
    pub after_seq: Option<i64>,
    /// Page size (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// One audit event.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditEventView {
    /// Sequence number.
    pub seq: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub actor: String,
    /// Data subject.
    pub on_behalf_of: Option<String>,
    /// What.
    pub action: String,
    /// On what.
    pub subject: String,
    /// The permission that allowed it (or was missing).
    pub permission: Option<String>,
    /// Allowed or denied.
    pub allowed: bool,
    /// Request id.
    pub request_id: Option<String>,
    /// Before.
    pub before: Option<serde_json::Value>,
    /// After.
    pub after: Option<serde_json::Value>,
    /// Hex chain link, once linked.
    pub link: Option<String>,
}

/// A page of events.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditEventPage {
    /// Events, ascending.
    pub events: Vec<AuditEventView>,
    /// Pass as `after_seq` for the next page (absent at the end).
    pub next_after_seq: Option<i64>,
}

/// List audit events.
#[utoipa::path(get, path = "/v1/audit/events", tag = "audit", security(("bearer" = [])),
    description = "Requires `audit.read`.",
    params(EventsQuery),
    responses((status = 200, body = AuditEventPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_events(
    State(state): State<AppState>,
    _caller: Caller,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> ApiResult<Json<AuditEventPage>> {
    let after = q.after_seq.unwrap_or(0);
    let limit = q.limit.unwrap_or(100);
    if after < 0 {
        return Err(ApiError::unprocessable("after_seq must be >= 0"));
    }
    if !(1..=PAGE_MAX).contains(&limit) {
        return Err(ApiError::unprocessable(format!("limit must be 1-{PAGE_MAX}")));
    }
    let client = state.pool.get().await?;
    let rows = client
        .query(
            "SELECT e.seq, e.at, e.actor, e.on_behalf_of, e.action, e.subject, e.permission, e.allowed, e.request_id, e.before, e.after, c.link \
             FROM fintrail.audit_events e LEFT JOIN fintrail.audit_chain c ON c.seq = e.seq \
             WHERE e.seq > $1 ORDER BY e.seq LIMIT $2",
            &[&after, &limit],
        )
        .await?;
    let events: Vec<AuditEventView> = rows
        .iter()
        .map(|r| AuditEventView {
            seq: r.get(0),
            at: r.get(1),
            actor: r.get(2),
            on_behalf_of: r.get(3),
            action: r.get(4),
            subject: r.get(5),
            permission: r.get(6),
            allowed: r.get(7),
            request_id: r.get(8),
            before: r
                .get::<_, Option<String>>(9)
                .map(|t| serde_json::from_str(&t).unwrap_or(serde_json::Value::String(t))),
            after: r
                .get::<_, Option<String>>(10)
                .map(|t| serde_json::from_str(&t).unwrap_or(serde_json::Value::String(t))),
            link: r.get::<_, Option<Vec<u8>>>(11).map(hex::encode),
        })
        .collect();
    let next_after_seq = (events.len() as i64 == limit).then(|| events.last().map(|e| e.seq)).flatten();
    Ok(Json(AuditEventPage { events, next_after_seq }))
}
