//! An organization (KYB): its screening history and the transitions the viewer's role may
//! perform. Screening transitions (`kyb.org.screen`) and decisions (`kyb.org.decide`) are two
//! actions with one permission each, as in the API.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use fintrail_domain::{KybState, Permission as P, State as _};
use maud::{html, Markup};

use crate::case::{history, history_table, record, transition_form, ShowQuery, TransitionForm};
use crate::host::HostError;
use crate::html::{error_page, page, redirect_to, respond, state_badge, time};
use crate::session::{HtmlForm, HtmlPath, HtmlQuery, Viewer};
use crate::Console;

/// The words on a KYB transition's button.
pub fn kyb_verb(to: KybState) -> &'static str {
    match to {
        KybState::Screening => "Screen",
        KybState::Clear => "Mark clear",
        KybState::PotentialMatch => "Flag potential match",
        KybState::ManualReview => "Start manual review",
        KybState::Cleared => "Clear (false positive)",
        KybState::Blocked => "Block",
        KybState::Registered => "Register",
    }
}

/// The action path of a transition needing `p`.
fn action_of(id: i64, p: P) -> Option<String> {
    match p {
        P::KybOrgScreen => Some(format!("/console/kyb/{id}/screening")),
        P::KybOrgDecide => Some(format!("/console/kyb/{id}/decision")),
        _ => None,
    }
}

/// `GET /console/kyb/{id}` (`kyb.org.read`).
pub async fn show(
    State(console): State<Console>,
    viewer: Viewer,
    HtmlPath(id): HtmlPath<i64>,
    HtmlQuery(q): HtmlQuery<ShowQuery>,
) -> Response {
    respond(&viewer, org_page(&console, &viewer, id, q.done.as_deref()).await)
}

async fn org_page(console: &Console, viewer: &Viewer, id: i64, done: Option<&str>) -> Result<Markup, HostError> {
    let client = console.pool().get().await?;
    let columns = "legal_name, registration_number, country, state, version, created_at, updated_at";
    let o = record(&client, columns, "organizations", &id).await?;
    let state = KybState::parse(o.get::<_, &str>(3)).map_err(HostError::internal)?;
    let history = history(&client, "organization_transitions", "organization_id", &id).await?;
    drop(client);
    let offered: Vec<(KybState, String)> = KybState::TRANSITIONS
        .iter()
        .filter(|t| t.from == state && viewer.may(t.permission))
        .filter_map(|t| action_of(id, t.permission).map(|a| (t.to, a)))
        .collect();
    let done = done.and_then(|d| KybState::parse(d).ok());
    Ok(page(
        &format!("Organization {id}"),
        Some(viewer),
        html! {
            @if let Some(d) = done { p.notice.ok role="status" { "Recorded: the organization is now " (d.as_str().replace('_', " ")) "." } }
            dl.facts {
                dt { "Legal name" } dd { (o.get::<_, &str>(0)) }
                dt { "Registration number" } dd { (o.get::<_, &str>(1)) }
                dt { "Country" } dd { (o.get::<_, &str>(2)) }
                dt { "State" } dd { (state_badge(state.as_str())) }
                dt { "Version" } dd { (o.get::<_, i32>(4)) }
                dt { "Registered" } dd { (time(&o.get::<_, DateTime<Utc>>(5))) }
                dt { "Last change" } dd { (time(&o.get::<_, DateTime<Utc>>(6))) }
            }
            section aria-labelledby="actions" {
                h2 #actions { "Decision" }
                @if offered.is_empty() {
                    p.muted { "No transition from " (state.as_str().replace('_', " ")) " is yours to make." }
                } @else {
                    div.actions { @for (to, action) in &offered { (transition_form(action, &viewer.csrf, to.as_str(), kyb_verb(*to))) } }
                }
            }
            section aria-labelledby="history" {
                h2 #history { "History" }
                (history_table(&history))
            }
            @if viewer.may(P::WalletRead) { p { a href={ "/console/kyb/" (id) "/wallets" } { "Wallets, balances and holds" } } }
            @if viewer.may(P::AuditRead) { p { a href={ "/console/audit?subject=organization:" (id) } { "This organization in the audit trail" } } }
        },
    ))
}

async fn apply(console: Console, viewer: Viewer, id: i64, form: TransitionForm) -> Response {
    let Ok(to) = KybState::parse(&form.to) else {
        return error_page(Some(&viewer), &HostError::new(422, "unprocessable", "unknown target state"))
            .into_response();
    };
    match console.transition_kyb(&viewer.acting(), id, to, &form.reason).await {
        Ok(()) => redirect_to(format!("/console/kyb/{id}?done={}", to.as_str())),
        Err(e) => error_page(Some(&viewer), &e).into_response(),
    }
}

/// `POST /console/kyb/{id}/screening` (`kyb.org.screen`) and `POST /console/kyb/{id}/decision`
/// (`kyb.org.decide`): one handler, two routes, each behind its own permission (the registry's
/// guard); the API's transition procedure checks the target's permission again.
pub async fn transition(
    State(console): State<Console>,
    viewer: Viewer,
    HtmlPath(id): HtmlPath<i64>,
    HtmlForm(form): HtmlForm<TransitionForm>,
) -> Response {
    apply(console, viewer, id, form).await
}
