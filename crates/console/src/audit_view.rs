//! The audit trail viewer: newest first, filtered by actor, subject, action and time; one
//! event with its before / after and chain link; the trail's integrity (chain head, unlinked
//! events, the `audit-verify` job's runs, signed checkpoints, retention anchors).
//!
//! Every list is a keyset page, each filter an index of migration 0042, so a page costs its
//! rows, not the trail's length: on `seq` (`seq < cursor ORDER BY seq DESC LIMIT n`), or, when
//! a time window is given, on `(at, seq)` (newest first in time, exactly the events of the
//! window, through the `(at, seq)` index: a window far in the past is not found by walking
//! back from the newest event).

use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, NaiveDateTime, Utc};
use fintrail_domain::audit::AuditAction;
use maud::{html, Markup};
use serde::Deserialize;
use tokio_postgres::types::ToSql;

use crate::host::HostError;
use crate::html::{page, respond, time};
use crate::session::{HtmlPath, HtmlQuery, Viewer};
use crate::{Console, PAGE_SIZES};

/// Default rows per audit page.
pub const AUDIT_PAGE_DEFAULT: i64 = 50;

/// The viewer's filters.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Exact actor (`staff:12:alice`, `customer:3`, `system:job:audit-verify`).
    pub actor: Option<String>,
    /// Exact subject (`kyc_case:7`).
    pub subject: Option<String>,
    /// One action name.
    pub action: Option<String>,
    /// From (inclusive), UTC: `YYYY-MM-DDTHH:MM[:SS]` or RFC 3339.
    pub from: Option<String>,
    /// To (exclusive), UTC.
    pub to: Option<String>,
    /// Rows per page, one of [`PAGE_SIZES`].
    pub size: Option<i64>,
    /// Keyset cursor: events with a smaller `seq`.
    pub before: Option<i64>,
    /// With a time window, the cursor's `at` (µs since the epoch) beside `before`.
    pub before_at: Option<i64>,
}

/// A validated filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Actor.
    pub actor: Option<String>,
    /// Subject.
    pub subject: Option<String>,
    /// Action.
    pub action: Option<&'static str>,
    /// From.
    pub from: Option<DateTime<Utc>>,
    /// To.
    pub to: Option<DateTime<Utc>>,
    /// Rows per page.
    pub size: i64,
    /// Cursor.
    pub before: Option<i64>,
    /// The cursor's time (time-ordered pages only).
    pub before_at: Option<DateTime<Utc>>,
}

impl Filter {
    /// Pages are ordered by `(at, seq)` when a time window is given, by `seq` otherwise.
    pub fn by_time(&self) -> bool {
        self.from.is_some() || self.to.is_some()
    }
}

fn when(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .map(|n| n.and_utc())
}

fn text(v: &Option<String>, what: &str) -> Result<Option<String>, HostError> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) if s.chars().count() <= 200 => Ok(Some(s.to_owned())),
        Some(_) => Err(HostError::new(400, "bad_query", format!("{what} is at most 200 characters"))),
    }
}

/// Validates the query (400 for anything out of bounds).
pub fn parse(q: &AuditQuery) -> Result<Filter, HostError> {
    let bad = |m: &str| HostError::new(400, "bad_query", m.to_owned());
    let action = match q.action.as_deref() {
        None | Some("") => None,
        Some(a) => {
            Some(AuditAction::ALL.iter().find(|x| x.as_str() == a).ok_or_else(|| bad("unknown action"))?.as_str())
        }
    };
    let time = |v: &Option<String>| -> Result<Option<DateTime<Utc>>, HostError> {
        match v.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(s) => when(s).map(Some).ok_or_else(|| bad("times are YYYY-MM-DDTHH:MM (UTC)")),
        }
    };
    let size = q.size.unwrap_or(AUDIT_PAGE_DEFAULT);
    if !PAGE_SIZES.contains(&size) && size != AUDIT_PAGE_DEFAULT {
        return Err(bad("size must be 10, 25, 50 or 100"));
    }
    if q.before.is_some_and(|b| b < 1) {
        return Err(bad("bad cursor"));
    }
    let before_at = match q.before_at {
        None => None,
        Some(us) => Some(DateTime::<Utc>::from_timestamp_micros(us).ok_or_else(|| bad("bad cursor"))?),
    };
    Ok(Filter {
        actor: text(&q.actor, "actor")?,
        subject: text(&q.subject, "subject")?,
        action,
        from: time(&q.from)?,
        to: time(&q.to)?,
        size,
        before: q.before,
        before_at,
    })
    .and_then(|f| {
        if f.by_time() && f.before.is_some() != f.before_at.is_some() {
            return Err(bad("a time-ordered page's cursor has before and before_at"));
        }
        Ok(f)
    })
}

/// The page's SQL and its parameters (`$n` in order).
pub fn page_sql(f: &Filter) -> (String, Vec<Box<dyn ToSql + Sync + Send>>) {
    let mut clauses: Vec<String> = Vec::new();
    let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    let mut add = |clause: &str, v: Box<dyn ToSql + Sync + Send>| {
        params.push(v);
        clauses.push(clause.replace('?', &format!("${}", params.len())));
    };
    if let Some(a) = &f.actor {
        add("actor = ?", Box::new(a.clone()));
    }
    if let Some(s) = &f.subject {
        add("subject = ?", Box::new(s.clone()));
    }
    if let Some(a) = f.action {
        add("action = ?", Box::new(a.to_owned()));
    }
    if let Some(t) = f.from {
        add("at >= ?", Box::new(t));
    }
    if let Some(t) = f.to {
        add("at < ?", Box::new(t));
    }
    if f.by_time() {
        if let (Some(b), Some(t)) = (f.before, f.before_at) {
            params.push(Box::new(t));
            params.push(Box::new(b));
            clauses.push(format!("(at, seq) < (${}, ${})", params.len() - 1, params.len()));
        }
    } else if let Some(b) = f.before {
        add("seq < ?", Box::new(b));
    }
    params.push(Box::new(f.size + 1));
    let limit = params.len();
    let order = if f.by_time() { "at DESC, seq DESC" } else { "seq DESC" };
    let filter = if clauses.is_empty() { String::new() } else { format!(" WHERE {}", clauses.join(" AND ")) };
    (
        format!(
            "SELECT seq, at, actor, action, subject, permission, allowed, request_id, on_behalf_of \
             FROM fintrail.audit_events{filter} ORDER BY {order} LIMIT ${limit}"
        ),
        params,
    )
}

fn next_link(f: &Filter, before: i64, before_at: &DateTime<Utc>) -> String {
    let mut q: Vec<(&str, String)> = Vec::new();
    if let Some(a) = &f.actor {
        q.push(("actor", a.clone()));
    }
    if let Some(s) = &f.subject {
        q.push(("subject", s.clone()));
    }
    if let Some(a) = f.action {
        q.push(("action", a.to_owned()));
    }
    if let Some(t) = f.from {
        q.push(("from", t.format("%Y-%m-%dT%H:%M:%S").to_string()));
    }
    if let Some(t) = f.to {
        q.push(("to", t.format("%Y-%m-%dT%H:%M:%S").to_string()));
    }
    q.push(("size", f.size.to_string()));
    q.push(("before", before.to_string()));
    if f.by_time() {
        q.push(("before_at", before_at.timestamp_micros().to_string()));
    }
    format!("/console/audit?{}", serde_urlencoded::to_string(&q).unwrap_or_default())
}

/// `GET /console/audit` (`audit.read`).
pub async fn list(State(console): State<Console>, viewer: Viewer, HtmlQuery(q): HtmlQuery<AuditQuery>) -> Response {
    respond(&viewer, list_page(&console, &viewer, &q).await)
}

fn filter_form(f: &Filter) -> Markup {
    let t = |v: Option<DateTime<Utc>>| v.map(|t| t.format("%Y-%m-%dT%H:%M").to_string()).unwrap_or_default();
    html! {
        form.filters method="get" action="/console/audit" {
            label for="actor" { "Actor" }
            input #actor type="text" name="actor" value=(f.actor.clone().unwrap_or_default()) placeholder="staff:12:alice";
            label for="subject" { "Subject" }
            input #subject type="text" name="subject" value=(f.subject.clone().unwrap_or_default()) placeholder="kyc_case:7";
            label for="action" { "Action" }
            select #action name="action" {
                option value="" selected[f.action.is_none()] { "any" }
                @for a in AuditAction::ALL { option value=(a.as_str()) selected[f.action == Some(a.as_str())] { (a.as_str()) } }
            }
            label for="from" { "From (UTC)" }
            input #from type="datetime-local" name="from" value=(t(f.from));
            label for="to" { "To (UTC)" }
            input #to type="datetime-local" name="to" value=(t(f.to));
            label for="size" { "Per page" }
            select #size name="size" {
                @for n in [10, 25, 50, 100] { option value=(n) selected[f.size == n] { (n) } }
            }
            button type="submit" { "Filter" }
        }
    }
}

async fn list_page(console: &Console, viewer: &Viewer, q: &AuditQuery) -> Result<Markup, HostError> {
    let f = parse(q)?;
    let (sql, params) = page_sql(&f);
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
    let client = console.pool().get().await?;
    let mut rows = client.query(&sql, &refs).await?;
    drop(client);
    let more = rows.len() as i64 > f.size;
    rows.truncate(f.size as usize);
    let next = more.then(|| rows.last().map(|r| next_link(&f, r.get(0), &r.get(1)))).flatten();
    Ok(page(
        "Audit trail",
        Some(viewer),
        html! {
            p { a href="/console/audit/integrity" { "Integrity: chain, verification and checkpoints" } }
            (filter_form(&f))
            @if rows.is_empty() { p.empty { "No event matches." } }
            @else {
                table.audit {
                    caption { @if f.by_time() { "Events in the window, newest first" } @else { "Events, newest first" } }
                    thead { tr {
                        th scope="col" { "Seq" } th scope="col" { "When" } th scope="col" { "Actor" } th scope="col" { "Action" }
                        th scope="col" { "Subject" } th scope="col" { "Permission" } th scope="col" { "Outcome" } th scope="col" { "Request id" }
                    } }
                    tbody {
                        @for r in &rows {
                            @let seq: i64 = r.get(0);
                            @let allowed: bool = r.get(6);
                            tr {
                                td { a href={ "/console/audit/events/" (seq) } { (seq) } }
                                td { (time(&r.get::<_, DateTime<Utc>>(1))) }
                                td { code { (r.get::<_, &str>(2)) } }
                                td { code { (r.get::<_, &str>(3)) } }
                                td { code { (r.get::<_, &str>(4)) } }
                                td { @if let Some(p) = r.get::<_, Option<&str>>(5) { code { (p) } } }
                                td { @if allowed { span.badge.ok { "allowed" } } @else { span.badge.denied { "denied" } } }
                                td { @if let Some(id) = r.get::<_, Option<&str>>(7) { code { (id) } } }
                            }
                        }
                    }
                }
            }
            nav.pager aria-label="Pages" {
                @if f.before.is_some() { a href="/console/audit" { "Newest" } }
                @if let Some(n) = next { a href=(n) rel="next" { "Older events" } }
            }
        },
    ))
}

/// `GET /console/audit/events/{seq}` (`audit.read`).
pub async fn event(State(console): State<Console>, viewer: Viewer, HtmlPath(seq): HtmlPath<i64>) -> Response {
    respond(&viewer, event_page(&console, &viewer, seq).await)
}

fn pretty(v: Option<&str>) -> String {
    match v {
        None => "(none)".into(),
        Some(t) => serde_json::from_str::<serde_json::Value>(t)
            .ok()
            .and_then(|j| serde_json::to_string_pretty(&j).ok())
            .unwrap_or_else(|| t.to_owned()),
    }
}

async fn event_page(console: &Console, viewer: &Viewer, seq: i64) -> Result<Markup, HostError> {
    let client = console.pool().get().await?;
    let Some(r) = client
        .query_opt(
            "SELECT e.seq, e.at, e.actor, e.on_behalf_of, e.action, e.subject, e.permission, e.allowed, e.request_id, \
             e.before, e.after, encode(c.link, 'hex'), c.chained_at \
             FROM fintrail.audit_events e LEFT JOIN fintrail.audit_chain c ON c.seq = e.seq WHERE e.seq = $1",
            &[&seq],
        )
        .await?
    else {
        return Err(HostError::new(404, "not_found", "audit event not found"));
    };
    let allowed: bool = r.get(7);
    let subject: &str = r.get(5);
    Ok(page(
        &format!("Audit event {seq}"),
        Some(viewer),
        html! {
            dl.facts {
                dt { "When" } dd { (time(&r.get::<_, DateTime<Utc>>(1))) }
                dt { "Actor" } dd { code { (r.get::<_, &str>(2)) } }
                dt { "On behalf of" } dd { @if let Some(o) = r.get::<_, Option<&str>>(3) { code { (o) } } @else { "—" } }
                dt { "Action" } dd { code { (r.get::<_, &str>(4)) } }
                dt { "Subject" } dd { a href={ "/console/audit?subject=" (subject) } { code { (subject) } } }
                dt { "Permission" } dd { @if let Some(p) = r.get::<_, Option<&str>>(6) { code { (p) } } @else { "—" } }
                dt { "Outcome" } dd { @if allowed { span.badge.ok { "allowed" } } @else { span.badge.denied { "denied" } } }
                dt { "Request id" } dd { @if let Some(id) = r.get::<_, Option<&str>>(8) { code { (id) } } @else { "—" } }
                dt { "Chain link" } dd {
                    @if let Some(l) = r.get::<_, Option<&str>>(11) { code.wrap { (l) } " (" (time(&r.get::<_, DateTime<Utc>>(12))) ")" }
                    @else { "not linked yet (the sequencer links committed events in order)" }
                }
            }
            div.changes {
                section aria-labelledby="before" { h2 #before { "Before" } pre tabindex="0" { (pretty(r.get(9))) } }
                section aria-labelledby="after" { h2 #after { "After" } pre tabindex="0" { (pretty(r.get(10))) } }
            }
            p { a href="/console/audit" { "Back to the trail" } }
        },
    ))
}

/// `GET /console/audit/integrity` (`audit.read`).
pub async fn integrity(State(console): State<Console>, viewer: Viewer) -> Response {
    respond(&viewer, integrity_page(&console, &viewer).await)
}

async fn integrity_page(console: &Console, viewer: &Viewer) -> Result<Markup, HostError> {
    let client = console.pool().get().await?;
    let newest: Option<i64> = client.query_one("SELECT max(seq) FROM fintrail.audit_events", &[]).await?.get(0);
    let head = client
        .query_opt(
            "SELECT seq, encode(link, 'hex'), chained_at FROM fintrail.audit_chain ORDER BY seq DESC LIMIT 1",
            &[],
        )
        .await?;
    let head_seq: i64 = head.as_ref().map(|h| h.get(0)).unwrap_or(0);
    let unlinked: i64 =
        client.query_one("SELECT count(*) FROM fintrail.audit_events WHERE seq > $1", &[&head_seq]).await?.get(0);
    let runs = client
        .query(
            "SELECT id, started_at, finished_at, outcome, counts::text, error, trigger FROM fintrail.job_runs \
             WHERE job = 'audit-verify' ORDER BY id DESC LIMIT 10",
            &[],
        )
        .await?;
    let checkpoints = client
        .query(
            "SELECT id, seq, encode(link, 'hex'), key_id, created_at FROM fintrail.audit_checkpoints ORDER BY id DESC LIMIT 20",
            &[],
        )
        .await?;
    let anchors = client
        .query("SELECT purged_through_seq, at FROM fintrail.audit_retention ORDER BY id DESC LIMIT 5", &[])
        .await?;
    drop(client);
    let last_outcome: Option<&str> = runs.iter().find(|r| r.get::<_, &str>(3) != "running").map(|r| r.get(3));
    Ok(page(
        "Audit integrity",
        Some(viewer),
        html! {
            section aria-labelledby="chain" {
                h2 #chain { "Hash chain" }
                dl.facts {
                    dt { "Newest event" } dd { (newest.unwrap_or(0)) }
                    dt { "Chain head" } dd {
                        @if let Some(h) = &head { (h.get::<_, i64>(0)) " · " code.wrap { (h.get::<_, &str>(1)) } " · " (time(&h.get::<_, DateTime<Utc>>(2))) }
                        @else { "nothing linked yet" }
                    }
                    dt { "Not linked yet" } dd { (unlinked) }
                    dt { "Last verification" } dd {
                        @match last_outcome {
                            Some("ok") => span.badge.ok { "intact" },
                            Some(o) => span.badge.denied { (o) },
                            None => "never run (fintrail jobs run audit-verify, or fintrail audit verify)",
                        }
                    }
                }
            }
            section aria-labelledby="verify" {
                h2 #verify { "audit-verify runs" }
                @if runs.is_empty() { p.empty { "No run yet." } }
                @else {
                    table {
                        caption { "The ten latest runs of the audit-verify job" }
                        thead { tr { th scope="col" { "Run" } th scope="col" { "Started" } th scope="col" { "Finished" } th scope="col" { "Outcome" } th scope="col" { "Counts" } th scope="col" { "Error" } th scope="col" { "Trigger" } } }
                        tbody { @for r in &runs { tr {
                            td { (r.get::<_, i64>(0)) }
                            td { (time(&r.get::<_, DateTime<Utc>>(1))) }
                            td { @if let Some(t) = r.get::<_, Option<DateTime<Utc>>>(2) { (time(&t)) } }
                            td { (r.get::<_, &str>(3)) }
                            td { code { (r.get::<_, &str>(4)) } }
                            td { (r.get::<_, Option<&str>>(5).unwrap_or("")) }
                            td { (r.get::<_, &str>(6)) }
                        } } }
                    }
                }
            }
            section aria-labelledby="checkpoints" {
                h2 #checkpoints { "Signed checkpoints" }
                @if checkpoints.is_empty() { p.empty { "No checkpoint yet." } }
                @else {
                    table {
                        caption { "The twenty latest checkpoints" }
                        thead { tr { th scope="col" { "Id" } th scope="col" { "Through seq" } th scope="col" { "Link" } th scope="col" { "Key" } th scope="col" { "Signed" } } }
                        tbody { @for c in &checkpoints { tr {
                            td { (c.get::<_, i64>(0)) }
                            td { (c.get::<_, i64>(1)) }
                            td { code.wrap { (c.get::<_, &str>(2)) } }
                            td { code { (c.get::<_, &str>(3)) } }
                            td { (time(&c.get::<_, DateTime<Utc>>(4))) }
                        } } }
                    }
                }
            }
            @if !anchors.is_empty() {
                section aria-labelledby="retention" {
                    h2 #retention { "Retention anchors" }
                    ul { @for a in &anchors { li { "Events through " (a.get::<_, i64>(0)) " purged through a signed checkpoint on " (time(&a.get::<_, DateTime<Utc>>(1))) } } }
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_validated_and_every_page_is_bounded() {
        let f = parse(&AuditQuery::default()).expect("defaults");
        assert_eq!(f.size, AUDIT_PAGE_DEFAULT);
        let (sql, params) = page_sql(&f);
        assert_eq!(params.len(), 1);
        assert!(sql.ends_with("ORDER BY seq DESC LIMIT $1"));
        let q = AuditQuery {
            actor: Some("staff:1:a".into()),
            subject: Some("kyc_case:7".into()),
            action: Some("kyc.case.transitioned".into()),
            from: Some("2026-01-02T03:04".into()),
            to: Some("2026-01-03T00:00:00Z".into()),
            size: Some(100),
            before: Some(9),
            before_at: Some(1_767_225_600_000_000),
        };
        let f = parse(&q).expect("valid");
        let (sql, params) = page_sql(&f);
        assert_eq!(params.len(), 8);
        assert!(sql
            .contains("actor = $1 AND subject = $2 AND action = $3 AND at >= $4 AND at < $5 AND (at, seq) < ($6, $7)"));
        assert!(sql.ends_with("ORDER BY at DESC, seq DESC LIMIT $8"), "a time window pages by (at, seq): {sql}");
        let untimed = parse(&AuditQuery { before: Some(9), ..Default::default() }).expect("valid");
        assert!(page_sql(&untimed).0.contains("WHERE seq < $1 ORDER BY seq DESC LIMIT $2"));
        let half = AuditQuery { from: Some("2026-01-02T03:04".into()), before: Some(9), ..Default::default() };
        assert_eq!(parse(&half).map_err(|e| e.status), Err(400), "a time-ordered cursor needs both parts");
        for bad in [
            AuditQuery { action: Some("kyc.nuke".into()), ..Default::default() },
            AuditQuery { size: Some(10_000), ..Default::default() },
            AuditQuery { from: Some("yesterday".into()), ..Default::default() },
            AuditQuery { before: Some(0), ..Default::default() },
            AuditQuery { actor: Some("x".repeat(201)), ..Default::default() },
        ] {
            assert_eq!(parse(&bad).map_err(|e| e.status), Err(400), "{bad:?}");
        }
    }
}
