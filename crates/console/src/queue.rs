//! Review queues: KYC cases awaiting review, organizations awaiting a compliance decision.
//! Filter by state, sort by how long they have waited, bounded pages, keyset pagination on
//! `(updated_at, id)` over the partial indexes of migration 0042 (a page costs its rows).

use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use serde::Deserialize;

use crate::host::HostError;
use crate::html::{ago, page, respond, state_badge, time};
use crate::session::{HtmlQuery, Viewer};
use crate::{Console, PAGE_SIZES, PAGE_SIZE_DEFAULT};

/// The query of a queue page.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueQuery {
    /// One of the queue's states, or absent / `all`.
    pub state: Option<String>,
    /// `oldest` (default: longest waiting first) or `newest`.
    pub sort: Option<String>,
    /// Page size, one of [`PAGE_SIZES`].
    pub size: Option<i64>,
    /// Keyset cursor: `<updated_at µs>.<id>` of the last row of the previous page.
    pub after: Option<String>,
}

/// A validated queue query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The states shown.
    pub states: Vec<&'static str>,
    /// The chosen state filter (`all` for every state of the queue).
    pub state: &'static str,
    /// Oldest first?
    pub oldest_first: bool,
    /// Rows per page.
    pub size: i64,
    /// After this `(updated_at µs, id)`.
    pub after: Option<(i64, i64)>,
}

/// Validates `q` for a queue over `states`: 400 for anything outside the offered choices.
pub fn parse(q: &QueueQuery, states: &[&'static str]) -> Result<Parsed, HostError> {
    let bad = |m: String| HostError::new(400, "bad_query", m);
    let (state, chosen) = match q.state.as_deref() {
        None | Some("") | Some("all") => ("all", states.to_vec()),
        Some(s) => {
            let s = states.iter().find(|x| **x == s).ok_or_else(|| bad(format!("state must be one of {states:?}")))?;
            (*s, vec![*s])
        }
    };
    let oldest_first = match q.sort.as_deref() {
        None | Some("") | Some("oldest") => true,
        Some("newest") => false,
        Some(_) => return Err(bad("sort must be oldest or newest".into())),
    };
    let size = q.size.unwrap_or(PAGE_SIZE_DEFAULT);
    if !PAGE_SIZES.contains(&size) {
        return Err(bad(format!("size must be one of {PAGE_SIZES:?}")));
    }
    let after = match q.after.as_deref() {
        None | Some("") => None,
        Some(c) => {
            let (t, id) = c.split_once('.').ok_or_else(|| bad("bad cursor".into()))?;
            Some((t.parse().map_err(|_| bad("bad cursor".into()))?, id.parse().map_err(|_| bad("bad cursor".into()))?))
        }
    };
    Ok(Parsed { states: chosen, state, oldest_first, size, after })
}

/// The SQL of one page: `base` selects from `alias` (with `updated_at`, `id`) and already
/// restricts to the queue's states (the partial index's predicate); `$1` = states, `$2` =
/// limit, `$3`/`$4` = cursor.
fn page_sql(base: &str, alias: &str, p: &Parsed) -> String {
    let (cmp, dir) = if p.oldest_first { (">", "") } else { ("<", " DESC") };
    let cursor =
        if p.after.is_some() { format!(" AND ({alias}.updated_at, {alias}.id) {cmp} ($3, $4)") } else { String::new() };
    format!("{base} AND {alias}.state = ANY($1){cursor} ORDER BY {alias}.updated_at{dir}, {alias}.id{dir} LIMIT $2")
}

/// Runs a page query: rows (at most `size`) and whether another page follows.
async fn fetch(console: &Console, sql: &str, p: &Parsed) -> Result<(Vec<tokio_postgres::Row>, bool), HostError> {
    let client = console.pool().get().await?;
    let states: Vec<&str> = p.states.clone();
    let limit = p.size + 1;
    let mut rows = match p.after {
        Some((t, id)) => {
            let at = DateTime::<Utc>::from_timestamp_micros(t)
                .ok_or_else(|| HostError::new(400, "bad_query", "bad cursor"))?;
            client.query(sql, &[&states, &limit, &at, &id]).await?
        }
        None => client.query(sql, &[&states, &limit]).await?,
    };
    let more = rows.len() as i64 > p.size;
    rows.truncate(p.size as usize);
    Ok((rows, more))
}

/// Counts per state of a queue (shown above the table).
async fn counts(console: &Console, table: &str, states: &[&str]) -> Result<Vec<(String, i64)>, HostError> {
    let client = console.pool().get().await?;
    let list = states.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ");
    let rows = client
        .query(&format!("SELECT state, count(*) FROM fintrail.{table} WHERE state IN ({list}) GROUP BY state"), &[])
        .await?;
    Ok(states
        .iter()
        .map(|s| {
            let n = rows.iter().find(|r| r.get::<_, &str>(0) == *s).map(|r| r.get(1)).unwrap_or(0);
            ((*s).to_owned(), n)
        })
        .collect())
}

/// The states of the KYC queue.
pub const KYC_QUEUE: [&str; 2] = ["documents_submitted", "in_review"];
/// The states of the KYB queue.
pub const KYB_QUEUE: [&str; 2] = ["potential_match", "manual_review"];

fn link(base: &str, p: &Parsed, after: Option<String>) -> String {
    let sort = if p.oldest_first { "oldest" } else { "newest" };
    let mut s = format!("{base}?state={}&sort={sort}&size={}", p.state, p.size);
    if let Some(a) = after {
        s.push_str("&after=");
        s.push_str(&a);
    }
    s
}

fn cursor(updated_at: &DateTime<Utc>, id: i64) -> String {
    format!("{}.{id}", updated_at.timestamp_micros())
}

fn filters(base: &str, all_states: &[&str], p: &Parsed) -> Markup {
    html! {
        form.filters method="get" action=(base) {
            label for="state" { "State" }
            select #state name="state" {
                option value="all" selected[p.state == "all"] { "all open" }
                @for s in all_states { option value=(s) selected[p.state == *s] { (s.replace('_', " ")) } }
            }
            label for="sort" { "Order" }
            select #sort name="sort" {
                option value="oldest" selected[p.oldest_first] { "waiting longest first" }
                option value="newest" selected[!p.oldest_first] { "most recent first" }
            }
            label for="size" { "Per page" }
            select #size name="size" {
                @for n in PAGE_SIZES { option value=(n) selected[p.size == n] { (n) } }
            }
            button type="submit" { "Apply" }
        }
    }
}

fn pager(base: &str, p: &Parsed, next: Option<String>) -> Markup {
    html! {
        nav.pager aria-label="Pages" {
            @if p.after.is_some() { a href=(link(base, p, None)) { "First page" } }
            @if let Some(n) = next { a href=(link(base, p, Some(n))) rel="next" { "Next page" } }
        }
    }
}

fn summary(counts: &[(String, i64)]) -> Markup {
    html! {
        p.counts {
            @for (i, (s, n)) in counts.iter().enumerate() {
                @if i > 0 { " · " }
                (state_badge(s)) " " strong { (n) }
            }
        }
    }
}

/// `GET /console/kyc` (`kyc.case.read`).
pub async fn kyc_queue(
    State(console): State<Console>,
    viewer: Viewer,
    HtmlQuery(q): HtmlQuery<QueueQuery>,
) -> Response {
    respond(&viewer, kyc_page(&console, &viewer, &q).await)
}

async fn kyc_page(console: &Console, viewer: &Viewer, q: &QueueQuery) -> Result<Markup, HostError> {
    let p = parse(q, &KYC_QUEUE)?;
    let base = "SELECT c.id, c.customer_id, c.state, c.updated_at, c.created_at, \
                (SELECT count(*) FROM fintrail.media_objects m WHERE m.kyc_case_id = c.id) \
                FROM fintrail.kyc_cases c WHERE c.state IN ('documents_submitted', 'in_review')";
    let (rows, more) = fetch(console, &page_sql(base, "c", &p), &p).await?;
    let counts = counts(console, "kyc_cases", &KYC_QUEUE).await?;
    let now = Utc::now();
    let next = more.then(|| rows.last().map(|r| cursor(&r.get(3), r.get(0)))).flatten();
    Ok(page(
        "KYC review queue",
        Some(viewer),
        html! {
            (summary(&counts))
            (filters("/console/kyc", &KYC_QUEUE, &p))
            @if rows.is_empty() { p.empty { "No case is waiting in this view." } }
            @else {
                table {
                    caption { "KYC cases awaiting review" }
                    thead { tr { th scope="col" { "Case" } th scope="col" { "Customer" } th scope="col" { "State" } th scope="col" { "Documents" } th scope="col" { "Waiting since" } th scope="col" { "Waiting" } } }
                    tbody {
                        @for r in &rows {
                            @let id: i64 = r.get(0);
                            @let updated: DateTime<Utc> = r.get(3);
                            tr {
                                td { a href={ "/console/kyc/" (id) } { "Case " (id) } }
                                td { "customer:" (r.get::<_, i64>(1)) }
                                td { (state_badge(r.get(2))) }
                                td.num { (r.get::<_, i64>(5)) }
                                td { (time(&updated)) }
                                td { (ago(&updated, &now)) }
                            }
                        }
                    }
                }
            }
            (pager("/console/kyc", &p, next))
        },
    ))
}

/// `GET /console/kyb` (`kyb.org.read`).
pub async fn kyb_queue(
    State(console): State<Console>,
    viewer: Viewer,
    HtmlQuery(q): HtmlQuery<QueueQuery>,
) -> Response {
    respond(&viewer, kyb_page(&console, &viewer, &q).await)
}

async fn kyb_page(console: &Console, viewer: &Viewer, q: &QueueQuery) -> Result<Markup, HostError> {
    let p = parse(q, &KYB_QUEUE)?;
    let base = "SELECT o.id, o.legal_name, o.state, o.updated_at, o.country \
                FROM fintrail.organizations o WHERE o.state IN ('potential_match', 'manual_review')";
    let (rows, more) = fetch(console, &page_sql(base, "o", &p), &p).await?;
    let counts = counts(console, "organizations", &KYB_QUEUE).await?;
    let now = Utc::now();
    let next = more.then(|| rows.last().map(|r| cursor(&r.get(3), r.get(0)))).flatten();
    Ok(page(
        "KYB review queue",
        Some(viewer),
        html! {
            (summary(&counts))
            (filters("/console/kyb", &KYB_QUEUE, &p))
            @if rows.is_empty() { p.empty { "No organization is waiting in this view." } }
            @else {
                table {
                    caption { "Organizations awaiting a compliance decision" }
                    thead { tr { th scope="col" { "Organization" } th scope="col" { "Legal name" } th scope="col" { "Country" } th scope="col" { "State" } th scope="col" { "Waiting since" } th scope="col" { "Waiting" } } }
                    tbody {
                        @for r in &rows {
                            @let id: i64 = r.get(0);
                            @let updated: DateTime<Utc> = r.get(3);
                            tr {
                                td { a href={ "/console/kyb/" (id) } { "Organization " (id) } }
                                td { (r.get::<_, &str>(1)) }
                                td { (r.get::<_, &str>(4)) }
                                td { (state_badge(r.get(2))) }
                                td { (time(&updated)) }
                                td { (ago(&updated, &now)) }
                            }
                        }
                    }
                }
            }
            (pager("/console/kyb", &p, next))
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_bounded_and_validated() {
        let ok = parse(&QueueQuery::default(), &KYC_QUEUE).expect("defaults");
        assert_eq!((ok.state, ok.oldest_first, ok.size, ok.after), ("all", true, PAGE_SIZE_DEFAULT, None));
        assert_eq!(ok.states, KYC_QUEUE.to_vec());
        let q = |state: &str, sort: &str, size: i64, after: &str| QueueQuery {
            state: Some(state.into()),
            sort: Some(sort.into()),
            size: Some(size),
            after: Some(after.into()),
        };
        let p = parse(&q("in_review", "newest", 100, "1700000000000000.42"), &KYC_QUEUE).expect("valid");
        assert_eq!((p.states, p.oldest_first, p.after), (vec!["in_review"], false, Some((1_700_000_000_000_000, 42))));
        for bad in [
            q("approved", "oldest", 25, ""),
            q("all", "random", 25, ""),
            q("all", "oldest", 1000, ""),
            q("all", "oldest", 0, ""),
            q("all", "oldest", 25, "x"),
            q("all", "oldest", 25, "1.x"),
        ] {
            assert_eq!(parse(&bad, &KYC_QUEUE).map_err(|e| e.status), Err(400), "{bad:?}");
        }
    }

    #[test]
    fn page_sql_is_a_keyset_range_never_an_offset() {
        let p = parse(&QueueQuery { after: Some("5.6".into()), ..Default::default() }, &KYC_QUEUE).expect("p");
        let sql = page_sql("SELECT c.id FROM fintrail.kyc_cases c WHERE true", "c", &p);
        assert!(sql.contains("(c.updated_at, c.id) > (") && sql.ends_with("ORDER BY c.updated_at, c.id LIMIT $2"));
        assert!(!sql.to_lowercase().contains("offset"));
    }
}
