//! A KYC case: its history, its documents (previews through short-lived signed URLs), and the
//! transitions the viewer's role may perform from its current state.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use fintrail_domain::{KycState, Permission as P, State as _};
use maud::{html, Markup};
use serde::Deserialize;

use crate::host::HostError;
use crate::html::{error_page, page, redirect_to, respond, state_badge, time};
use crate::session::{HtmlForm, HtmlPath, HtmlQuery, Viewer, CSRF_FIELD};
use crate::Console;

/// `?done=<state>` after a transition (the confirmation shown once).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShowQuery {
    /// The state just reached.
    pub done: Option<String>,
}

/// The words on a transition's button.
pub fn kyc_verb(to: KycState) -> &'static str {
    match to {
        KycState::InReview => "Start review",
        KycState::Approved => "Approve",
        KycState::Rejected => "Reject",
        KycState::NeedsResubmission => "Ask for new documents",
        KycState::Expired => "Expire",
        KycState::DocumentsSubmitted => "Submit documents",
        KycState::Started => "Restart",
    }
}

/// One transition form: the target, a reason (the history keeps it; the state machine wants
/// one for every transition), the CSRF token.
pub fn transition_form(action: &str, csrf: &str, to: &str, verb: &str) -> Markup {
    let field = format!("reason-{to}");
    html! {
        form.transition method="post" action=(action) {
            input type="hidden" name=(CSRF_FIELD) value=(csrf);
            input type="hidden" name="to" value=(to);
            label for=(field) { "Reason to " (verb.to_lowercase()) }
            textarea id=(field) name="reason" required minlength="1" maxlength="1000" rows="2" {}
            button type="submit" name="verb" value=(to) { (verb) }
        }
    }
}

/// A history table (KYC and KYB share it).
pub fn history_table(rows: &[tokio_postgres::Row]) -> Markup {
    html! {
        @if rows.is_empty() { p.empty { "No transition yet." } }
        @else {
            table {
                caption { "History, oldest first" }
                thead { tr { th scope="col" { "When" } th scope="col" { "From" } th scope="col" { "To" } th scope="col" { "Actor" } th scope="col" { "Reason" } th scope="col" { "Request id" } } }
                tbody {
                    @for h in rows {
                        tr {
                            td { (time(&h.get::<_, DateTime<Utc>>(6))) }
                            td { (state_badge(h.get(1))) }
                            td { (state_badge(h.get(2))) }
                            td { code { (h.get::<_, &str>(3)) } }
                            td { (h.get::<_, &str>(4)) }
                            td { @if let Some(r) = h.get::<_, Option<&str>>(5) { code { (r) } } }
                        }
                    }
                }
            }
        }
    }
}

/// Most history rows a case or organization page lists.
pub const HISTORY_ROWS_MAX: i64 = 1000;

/// The row `id` of `table` (our constant names, never input), or a 404 naming the table.
pub(crate) async fn record(
    client: &deadpool_postgres::Object,
    columns: &str,
    table: &str,
    id: &i64,
) -> Result<tokio_postgres::Row, HostError> {
    client
        .query_opt(&format!("SELECT {columns} FROM fintrail.{table} WHERE id = $1"), &[id])
        .await?
        .ok_or_else(|| HostError::new(404, "not_found", format!("{} not found", table.trim_end_matches('s'))))
}

/// A record's transitions, oldest first, in the shape [`history_table`] shows.
pub(crate) async fn history(
    client: &deadpool_postgres::Object,
    table: &str,
    key: &str,
    id: &i64,
) -> Result<Vec<tokio_postgres::Row>, HostError> {
    let sql = format!(
        "SELECT id, from_state, to_state, actor, reason, request_id, at FROM fintrail.{table} \
         WHERE {key} = $1 ORDER BY id LIMIT {HISTORY_ROWS_MAX}"
    );
    Ok(client.query(&sql, &[id]).await?)
}

/// `GET /console/kyc/{id}` (`kyc.case.read`).
pub async fn show(
    State(console): State<Console>,
    viewer: Viewer,
    HtmlPath(id): HtmlPath<i64>,
    HtmlQuery(q): HtmlQuery<ShowQuery>,
) -> Response {
    respond(&viewer, case_page(&console, &viewer, id, q.done.as_deref()).await)
}

async fn case_page(console: &Console, viewer: &Viewer, id: i64, done: Option<&str>) -> Result<Markup, HostError> {
    let client = console.pool().get().await?;
    let c = record(&client, "customer_id, state, version, created_at, updated_at", "kyc_cases", &id).await?;
    let state = KycState::parse(c.get::<_, &str>(1)).map_err(HostError::internal)?;
    let history = history(&client, "kyc_case_transitions", "case_id", &id).await?;
    let docs = client
        .query(
            "SELECT id, kind, content_type, size_bytes, created_at FROM fintrail.media_objects \
             WHERE kyc_case_id = $1 ORDER BY id LIMIT 100",
            &[&id],
        )
        .await?;
    drop(client);
    let offered: Vec<KycState> = KycState::TRANSITIONS
        .iter()
        .filter(|t| t.from == state && t.permission == P::KycCaseReview && viewer.may(P::KycCaseReview))
        .map(|t| t.to)
        .collect();
    let action = format!("/console/kyc/{id}/transitions");
    let done = done.and_then(|d| KycState::parse(d).ok());
    Ok(page(
        &format!("KYC case {id}"),
        Some(viewer),
        html! {
            @if let Some(d) = done { p.notice.ok role="status" { "Recorded: the case is now " (d.as_str().replace('_', " ")) "." } }
            dl.facts {
                dt { "State" } dd { (state_badge(state.as_str())) }
                dt { "Customer" } dd {
                    @if viewer.may(P::IdentityCustomerRead) { a href={ "/console/customers/" (c.get::<_, i64>(0)) } { "customer:" (c.get::<_, i64>(0)) } }
                    @else { "customer:" (c.get::<_, i64>(0)) }
                }
                dt { "Version" } dd { (c.get::<_, i32>(2)) }
                dt { "Opened" } dd { (time(&c.get::<_, DateTime<Utc>>(3))) }
                dt { "Last change" } dd { (time(&c.get::<_, DateTime<Utc>>(4))) }
            }
            section aria-labelledby="actions" {
                h2 #actions { "Decision" }
                @if offered.is_empty() {
                    p.muted { "No transition from " (state.as_str().replace('_', " ")) " is yours to make." }
                } @else {
                    div.actions { @for to in &offered { (transition_form(&action, &viewer.csrf, to.as_str(), kyc_verb(*to))) } }
                }
            }
            section aria-labelledby="documents" {
                h2 #documents { "Documents" }
                (documents(viewer, id, &docs))
            }
            section aria-labelledby="history" {
                h2 #history { "History" }
                (history_table(&history))
            }
            @if viewer.may(P::AuditRead) { p { a href={ "/console/audit?subject=kyc_case:" (id) } { "This case in the audit trail" } } }
        },
    ))
}

fn documents(viewer: &Viewer, case_id: i64, docs: &[tokio_postgres::Row]) -> Markup {
    let may_view = viewer.may(P::KycMediaRead);
    html! {
        @if docs.is_empty() { p.empty { "No document uploaded." } }
        @else {
            @if !may_view { p.muted { "Your role does not hold kyc.media.read: documents are listed, not shown." } }
            ul.documents {
                @for d in docs {
                    @let mid: i64 = d.get(0);
                    @let kind = d.get::<_, &str>(1).replace('_', " ");
                    @let ct: &str = d.get(2);
                    li {
                        @if may_view && ct.starts_with("image/") {
                            figure {
                                img src={ "/console/media/" (mid) } alt={ (kind) " of case " (case_id) };
                                figcaption { (kind) " · " (ct) " · " (d.get::<_, i64>(3)) " bytes · " (time(&d.get::<_, DateTime<Utc>>(4))) }
                            }
                        } @else if may_view {
                            a href={ "/console/media/" (mid) } { "Open " (kind) " (" (ct) ", " (d.get::<_, i64>(3)) " bytes)" }
                        } @else {
                            (kind) " · " (ct) " · " (d.get::<_, i64>(3)) " bytes"
                        }
                    }
                }
            }
            @if may_view { p.muted { "Each preview is a signed URL valid for 60 seconds, issued under your token and recorded in the trail." } }
        }
    }
}

/// A transition form's fields.
#[derive(Debug, Deserialize)]
pub struct TransitionForm {
    /// Target state.
    #[serde(default)]
    pub to: String,
    /// Why.
    #[serde(default)]
    pub reason: String,
    /// Checked by the guard.
    #[serde(default)]
    pub csrf: String,
    /// The pressed button (same as `to`).
    #[serde(default)]
    pub verb: Option<String>,
}

/// `POST /console/kyc/{id}/transitions` (`kyc.case.review`): the API's transition procedure.
pub async fn transition(
    State(console): State<Console>,
    viewer: Viewer,
    HtmlPath(id): HtmlPath<i64>,
    HtmlForm(form): HtmlForm<TransitionForm>,
) -> Response {
    let Ok(to) = KycState::parse(&form.to) else {
        return error_page(Some(&viewer), &HostError::new(422, "unprocessable", "unknown target state"))
            .into_response();
    };
    match console.transition_kyc(&viewer.acting(), id, to, &form.reason).await {
        Ok(()) => redirect_to(format!("/console/kyc/{id}?done={}", to.as_str())),
        Err(e) => error_page(Some(&viewer), &e).into_response(),
    }
}

/// `GET /console/media/{id}` (`kyc.media.read`): a 60-second signed URL, then there.
pub async fn media(State(console): State<Console>, viewer: Viewer, HtmlPath(id): HtmlPath<i64>) -> Response {
    match console.media_url(&viewer.acting(), id).await {
        Ok(url) if url.starts_with("/v1/media/download?") => redirect_to(url),
        Ok(_) => error_page(Some(&viewer), &HostError::internal("signed URL is not ours")).into_response(),
        Err(e) => error_page(Some(&viewer), &e).into_response(),
    }
}
