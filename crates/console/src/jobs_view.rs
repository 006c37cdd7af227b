//! The periodic jobs' last runs and outcomes (`job_runs`, migration 0040): the latest run of
//! each job, then the latest runs of all. Reading them is reading evidence: `audit.read` (the
//! trail holds the authoritative `job.*` events; this table is their index).

use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Utc};
use maud::{html, Markup};

use crate::host::HostError;
use crate::html::{page, respond, time};
use crate::session::Viewer;
use crate::Console;

/// Most runs listed below the per-job summary.
pub const RECENT_RUNS: i64 = 50;

/// `GET /console/jobs` (`audit.read`).
pub async fn list(State(console): State<Console>, viewer: Viewer) -> Response {
    respond(&viewer, jobs_page(&console, &viewer).await)
}

const COLUMNS: &str = "job, id, started_at, finished_at, outcome, counts::text, error, trigger, dry_run";

fn outcome(o: &str) -> Markup {
    let class = match o {
        "ok" => "badge ok",
        "failed" => "badge denied",
        _ => "badge",
    };
    html! { span class=(class) { (o) } }
}

fn runs_table(caption: &str, rows: &[tokio_postgres::Row]) -> Markup {
    html! {
        table {
            caption { (caption) }
            thead { tr {
                th scope="col" { "Job" } th scope="col" { "Run" } th scope="col" { "Started" } th scope="col" { "Finished" }
                th scope="col" { "Outcome" } th scope="col" { "Counts" } th scope="col" { "Error" } th scope="col" { "Trigger" }
            } }
            tbody { @for r in rows { tr {
                td { code { (r.get::<_, &str>(0)) } }
                td { (r.get::<_, i64>(1)) @if r.get::<_, bool>(8) { " (dry run)" } }
                td { (time(&r.get::<_, DateTime<Utc>>(2))) }
                td { @if let Some(t) = r.get::<_, Option<DateTime<Utc>>>(3) { (time(&t)) } @else { "running" } }
                td { (outcome(r.get(4))) }
                td { code.wrap { (r.get::<_, &str>(5)) } }
                td { (r.get::<_, Option<&str>>(6).unwrap_or("")) }
                td { (r.get::<_, &str>(7)) }
            } } }
        }
    }
}

async fn jobs_page(console: &Console, viewer: &Viewer) -> Result<Markup, HostError> {
    let client = console.pool().get().await?;
    // One index range per job (job_runs_by_job is (job, id DESC)).
    let latest = client
        .query(&format!("SELECT DISTINCT ON (job) {COLUMNS} FROM fintrail.job_runs ORDER BY job, id DESC"), &[])
        .await?;
    let recent = client
        .query(&format!("SELECT {COLUMNS} FROM fintrail.job_runs ORDER BY id DESC LIMIT $1"), &[&RECENT_RUNS])
        .await?;
    drop(client);
    Ok(page(
        "Jobs",
        Some(viewer),
        html! {
            p.muted { "Runs of the periodic jobs (fintrail jobs; Cloud Scheduler in production). A run left \"running\" by a killed process stays so; the next run resumes its work." }
            @if latest.is_empty() { p.empty { "No job has run yet." } }
            @else {
                (runs_table("The latest run of each job", &latest))
                (runs_table(&format!("The {RECENT_RUNS} latest runs"), &recent))
            }
        },
    ))
}
