//! `POST /internal/jobs/{name}`: Cloud Scheduler's entry to the periodic jobs. Not a bearer
//! route of the [`crate::routes::Registry`]: the caller is not a staff token but Google's
//! OIDC ID token of the scheduler's service account, checked by `fintrail_jobs::oidc`
//! (signature against Google's JWKS, issuer, audience = this service's URL, email = the
//! configured scheduler identity, unexpired). Every refusal (401, 403) is an `access.denied`
//! audit event; a verified call runs the job (`fintrail_jobs::run`) and answers its report:
//! 200 for ok / partial / busy, 500 for failed (so Cloud Scheduler records the failure).
//!
//! The logic is in `fintrail-jobs`; this module only maps HTTP onto it.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use fintrail_audit::NewEvent;
use fintrail_domain::audit::AuditAction;
use fintrail_jobs::oidc::{OidcConfig, Refusal, Verifier};
use fintrail_jobs::{JobName, Outcome, RunOptions, Trigger};

use crate::auth::RequestId;
use crate::error::ApiError;
use crate::state::AppState;

/// The route, checking tokens against `config` (`None`: every call is refused, and audited).
pub fn router(config: Option<OidcConfig>) -> Router<AppState> {
    let verifier = config.map(|c| Arc::new(Verifier::new(c)));
    Router::new().route(
        "/internal/jobs/{name}",
        post(
            move |state: State<AppState>, name: Path<String>, rid: Option<Extension<RequestId>>, headers: HeaderMap| {
                let verifier = verifier.clone();
                async move {
                    let rid = rid.map(|Extension(r)| r.0).unwrap_or_default();
                    run_job(state.0, verifier, name.0, rid, headers).await
                }
            },
        ),
    )
}

/// The job name as it may appear in an audit subject: bounded, and only the characters of a
/// job name, so a hostile path can never make the denial record itself fail.
fn subject(name: &str) -> String {
    let clean: String =
        name.chars().filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-').take(64).collect();
    format!("job:{clean}")
}

async fn run_job(
    state: AppState,
    verifier: Option<Arc<Verifier>>,
    name: String,
    request_id: String,
    headers: HeaderMap,
) -> Response {
    let job = JobName::parse(&name);
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    let verdict = match (&verifier, token) {
        (None, _) => Err(Refusal::Unauthenticated("scheduler OIDC is not configured on this service".into())),
        (_, None) => Err(Refusal::Unauthenticated("missing bearer token".into())),
        (Some(v), Some(t)) => v.verify(t).await,
    };
    if let Err(refusal) = verdict {
        return refuse(&state, job, &name, &request_id, refusal).await;
    }
    let Some(job) = job else {
        return ApiError::not_found("job").into_response();
    };
    match fintrail_jobs::run(&state.ctx, &state.audit, job, &RunOptions::new(Trigger::Http)).await {
        Ok(report) => {
            let status =
                if report.outcome == Outcome::Failed { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK };
            (status, Json(report)).into_response()
        }
        Err(e) => ApiError::internal(format!("job {}: {e:#}", job.as_str())).into_response(),
    }
}

async fn refuse(state: &AppState, job: Option<JobName>, name: &str, request_id: &str, refusal: Refusal) -> Response {
    let (status, actor, reason) = match &refusal {
        Refusal::Unauthenticated(why) => (StatusCode::UNAUTHORIZED, "oidc:unauthenticated".to_owned(), why.clone()),
        Refusal::Forbidden { email, reason } => (StatusCode::FORBIDDEN, format!("oidc:{email}"), reason.clone()),
    };
    let reason: String = reason.chars().take(500).collect();
    let ev = NewEvent::allowed(actor, AuditAction::AccessDenied, subject(name), job.map(|j| j.job().permission))
        .denied()
        .request(Some(request_id))
        .change(None, Some(serde_json::json!({ "status": status.as_u16(), "reason": reason })));
    let recorded = async {
        let mut client = state.pool.get().await?;
        let client: &mut tokio_postgres::Client = &mut client;
        state.audit.append_alone(client, &ev).await?;
        Ok::<_, anyhow::Error>(())
    };
    if let Err(e) = recorded.await {
        // The refusal stands; without its record it is an internal error, never a silent one.
        return ApiError::internal(format!("recording the refusal: {e:#}")).into_response();
    }
    tracing::warn!(log_class = "app", status = status.as_u16(), job = name, reason = %reason, "scheduler call refused");
    let code = if status == StatusCode::UNAUTHORIZED { "unauthenticated" } else { "forbidden" };
    ApiError::new(status, code, reason).into_response()
}
