//! `GET /console/analytics` (`analytics.read`): the views the CDC pipeline maintains
//! (`analytics/views`) as charts, each with its figures in a table. Read through the same
//! read-only path as `fintrail analytics query` ([`fintrail_cdc::analytics::query`]): the
//! running pipeline's socket, else the DuckDB file opened read-only; one SELECT each, bounded
//! in rows and time. Fresh within the pipeline's commit interval (200 ms) of a commit.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use fintrail_cdc::analytics::{self, QueryResult, Request};
use fintrail_domain::{KycState, State as _};
use maud::{html, Markup};

use crate::chart::{self, Bar};
use crate::host::HostError;
use crate::html::{error_page, page};
use crate::session::Viewer;
use crate::Console;

/// Rows a chart's query may answer (the views are small aggregates).
const ROWS_MAX: usize = 200;
/// A chart's query is interrupted after this long: the page must answer.
const TIMEOUT_MS: u64 = 3_000;
/// Days of transfer volume shown.
const VOLUME_DAYS: usize = 30;

/// One chart: its section, query, and how a row becomes a bar.
struct View {
    id: &'static str,
    heading: &'static str,
    explain: &'static str,
    sql: String,
    unit: &'static str,
    /// (label column, value column) of the bars.
    bar: (usize, usize),
}

fn views() -> [View; 4] {
    [
        View {
            id: "kyc-funnel",
            heading: "KYC funnel",
            explain: "How many cases ever reached each state (bars), and how many are in it now (table).",
            // In the state machine's order (the view orders by size), so it reads as a funnel.
            sql: format!(
                "SELECT state, cases_reached, cases_now FROM kyc_funnel ORDER BY coalesce(list_position([{}], state), 99), state",
                KycState::ALL.iter().map(|s| format!("'{}'", s.as_str())).collect::<Vec<_>>().join(", ")
            ),
            unit: "cases",
            bar: (0, 1),
        },
        View {
            id: "kyc-time-in-state",
            heading: "Time in state",
            explain: "Median seconds a KYC case spent in each state before it left it.",
            sql: "SELECT state, exits, round(median_secs, 1) AS median_secs FROM kyc_time_in_state ORDER BY state"
                .into(),
            unit: "s",
            bar: (0, 2),
        },
        View {
            id: "daily-transfer-volume",
            heading: "Daily transfer volume",
            explain: "Transfers per day and currency (bars: count; table: volume in minor units), latest days first.",
            sql: format!(
                "SELECT day || ' ' || currency AS day_currency, transfers, volume_minor FROM daily_transfer_volume \
                 ORDER BY day DESC, currency LIMIT {VOLUME_DAYS}"
            ),
            unit: "transfers",
            bar: (0, 1),
        },
        View {
            id: "screening-outcomes",
            heading: "Screening outcomes",
            explain: "Organizations by the outcome of their screening (KYB).",
            sql: "SELECT outcome, organizations FROM screening_outcomes".into(),
            unit: "organizations",
            bar: (0, 1),
        },
    ]
}

/// `GET /console/analytics`.
pub async fn show(State(console): State<Console>, viewer: Viewer) -> Response {
    let file = console.analytics_file();
    let views = views();
    let sqls: Vec<String> = views.iter().map(|v| v.sql.clone()).collect();
    let answers = tokio::task::spawn_blocking(move || {
        sqls.iter()
            .map(|sql| {
                analytics::query(&file, &Request { timeout_ms: TIMEOUT_MS, ..Request::new(sql.clone(), ROWS_MAX) })
            })
            .collect::<Vec<_>>()
    })
    .await;
    let Ok(answers) = answers else {
        return error_page(Some(&viewer), &HostError::internal("analytics query task failed")).into_response();
    };
    let body = html! {
        p.muted { "From the analytics store the CDC pipeline keeps (DuckDB; BigQuery in production): committed changes only, a fraction of a second behind the database." }
        @for (v, a) in views.iter().zip(answers) { (section(v, a)) }
    };
    page("Analytics", Some(&viewer), body).into_response()
}

fn section(v: &View, answer: anyhow::Result<QueryResult>) -> Markup {
    let body = match answer {
        Ok(r) => figure(v, &r),
        Err(e) => {
            // The details (paths, DuckDB's words) go to the log, not the page.
            tracing::warn!(log_class = "app", view = v.id, error = %e, "console: analytics unavailable");
            html! { p.notice role="status" { "Not available yet: the CDC pipeline has not written this view (run fintrail up, or fintrail cdc run)." } }
        }
    };
    html! {
        section aria-labelledby={ (v.id) "-h" } {
            h2 id={ (v.id) "-h" } { (v.heading) }
            p.muted { (v.explain) }
            (body)
        }
    }
}

fn figure(v: &View, r: &QueryResult) -> Markup {
    let cell = |row: &[Option<String>], i: usize| row.get(i).cloned().flatten().unwrap_or_default();
    let data: Vec<Bar> = r
        .rows
        .iter()
        .map(|row| Bar { label: cell(row, v.bar.0), value: cell(row, v.bar.1).parse().unwrap_or(0.0) })
        .collect();
    html! {
        figure.chart-figure {
            (chart::bars(v.id, v.heading, v.unit, &data))
            figcaption.muted { (v.heading) ", " (r.rows.len()) " row(s)" @if r.truncated { " (cut at " (ROWS_MAX) ")" } }
        }
        table id={ (v.id) "-table" } {
            caption { (v.heading) ": the figures" }
            thead { tr { @for c in &r.columns { th scope="col" { (c.replace('_', " ")) } } } }
            tbody { @for row in &r.rows { tr { @for (i, c) in row.iter().enumerate() {
                @if i == 0 { th scope="row" { (c.as_deref().unwrap_or("")) } } @else { td.num { (c.as_deref().unwrap_or("")) } }
            } } } }
        }
    }
}
