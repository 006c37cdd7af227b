//! `GET /console/iam` (`iam.read`): least privilege in the infrastructure code. The findings of
//! `fintrail iam check` for `infra/envs` (one section per environment, excepted ones with their
//! ticket and expiry) and the escalation paths between identities, computed with the
//! `fintrail-iam` library (no process started, no cloud called).
//!
//! Where: `FINTRAIL_IAM_ENVS`, else `infra/envs` in the working directory or up to 7 above it (a
//! checkout: `fintrail up`). A deployed server has no infrastructure code: the page says so.
//! The analysis takes a moment: one at a time, and the report is kept [`CACHE_SECS`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::response::{IntoResponse, Response};
use fintrail_iam::analyze::{self, Finding, Options, Report};
use fintrail_iam::graph::EscalationPath;
use maud::{html, Markup};

use crate::host::HostError;
use crate::html::{error_page, page};
use crate::session::Viewer;

/// How long one analysis is served before the next request analyzes again.
pub const CACHE_SECS: u64 = 60;
/// Folders walked up from the working directory to find `infra/envs`.
const WALK_UP_MAX: usize = 8;
/// Most findings and paths listed per environment (the rest is counted).
const LIST_MAX: usize = 200;

static CACHE: Mutex<Option<(Instant, PathBuf, Arc<Report>)>> = Mutex::new(None);
static ONE_AT_A_TIME: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// The environments' folder, if this server can see one.
pub fn envs_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FINTRAIL_IAM_ENVS") {
        return Some(PathBuf::from(p));
    }
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors().take(WALK_UP_MAX).map(|d| d.join("infra/envs")).find(|c| c.is_dir())
}

fn cached(dir: &Path) -> Option<Arc<Report>> {
    let guard = CACHE.lock().ok()?;
    let (at, d, r) = guard.as_ref()?;
    (d == dir && at.elapsed() < Duration::from_secs(CACHE_SECS)).then(|| r.clone())
}

async fn report(dir: PathBuf) -> Result<Arc<Report>, HostError> {
    if let Some(r) = cached(&dir) {
        return Ok(r);
    }
    let _permit = ONE_AT_A_TIME.acquire().await.map_err(HostError::internal)?;
    if let Some(r) = cached(&dir) {
        return Ok(r);
    }
    let d = dir.clone();
    let r = tokio::task::spawn_blocking(move || {
        let opts = Options::default();
        let roles = analyze::load_roles(&opts, &d)?;
        analyze::analyze(&d, &opts, &roles)
    })
    .await
    .map_err(HostError::internal)?
    .map_err(|e| HostError::new(422, "iam_input", format!("the infrastructure code could not be analyzed: {e}")))?;
    let r = Arc::new(r);
    if let Ok(mut guard) = CACHE.lock() {
        *guard = Some((Instant::now(), dir, r.clone()));
    }
    Ok(r)
}

/// `GET /console/iam`.
pub async fn show(viewer: Viewer) -> Response {
    let Some(dir) = envs_dir() else {
        let body = html! {
            p.notice role="status" { "No infrastructure code here: this server was not started from a checkout. Set FINTRAIL_IAM_ENVS to an environments folder (infra/envs), or run fintrail iam check in CI." }
        };
        return page("Least privilege", Some(&viewer), body).into_response();
    };
    // Paths are shown relative to the checkout (`infra/envs/dev`), not the server's folders.
    let base = dir.parent().and_then(Path::parent).map(|p| format!("{}/", p.display())).unwrap_or_default();
    match report(dir).await {
        Ok(r) => page("Least privilege", Some(&viewer), body(&r, &Rel(base))).into_response(),
        Err(e) => error_page(Some(&viewer), &e).into_response(),
    }
}

/// Strips the checkout's folder from the paths the analyzer reports.
struct Rel(String);

impl Rel {
    fn of(&self, s: &str) -> String {
        if self.0.is_empty() {
            s.to_owned()
        } else {
            s.replace(&self.0, "")
        }
    }
}

fn body(r: &Report, rel: &Rel) -> Markup {
    html! {
        p.muted {
            "fintrail iam check " code { (rel.of(&r.input)) } " on " (r.today) ": " (r.findings.len()) " finding(s), "
            strong { (r.failing()) " failing" } ", " (r.findings.iter().filter(|f| f.excepted.is_some()).count()) " excepted. Roles: " (rel.of(&r.roles)) "."
        }
        @for d in &r.diagnostics { p.notice.error role="alert" { (rel.of(&d.loc.to_string())) ": " (rel.of(&d.message)) } }
        table {
            caption { "Environments" }
            thead { tr { th scope="col" { "Environment" } th scope="col" { "Files" } th scope="col" { "Resources" } th scope="col" { "Bindings" } th scope="col" { "Escalation paths" } th scope="col" { "Findings" } } }
            tbody { @for root in &r.roots { tr {
                th scope="row" { a href={ "#env-" (anchor(&root.root)) } { (env_name(&root.root)) } }
                td.num { (root.files) } td.num { (root.resources) } td.num { (root.bindings.len()) }
                td.num { (root.paths.len()) } td.num { (r.findings.iter().filter(|f| f.root == root.root).count()) }
            } } }
        }
        @for root in &r.roots {
            @let findings: Vec<&Finding> = r.findings.iter().filter(|f| f.root == root.root).collect();
            section aria-labelledby={ "env-" (anchor(&root.root)) } {
                h2 id={ "env-" (anchor(&root.root)) } { "Environment " code { (env_name(&root.root)) } }
                (findings_table(env_name(&root.root), &findings, rel))
                h3 { "Escalation paths (" (root.paths.len()) ")" }
                @if root.paths.is_empty() { p.empty { "No identity can reach privileges it does not hold." } }
                @else { ol.paths { @for p in root.paths.iter().take(LIST_MAX) { li { (path(p, rel)) } } } }
            }
        }
    }
}

/// An environment's name: its root folder's.
fn env_name(root: &str) -> &str {
    Path::new(root).file_name().and_then(|n| n.to_str()).unwrap_or(root)
}

fn anchor(root: &str) -> String {
    env_name(root).chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect()
}

fn findings_table(env: &str, findings: &[&Finding], rel: &Rel) -> Markup {
    html! {
        @if findings.is_empty() { p.empty { "No finding." } }
        @else {
            table.findings {
                caption { "Findings in " (env) }
                thead { tr { th scope="col" { "Rule" } th scope="col" { "Severity" } th scope="col" { "Finding" } th scope="col" { "Where" } th scope="col" { "Status" } } }
                tbody { @for f in findings.iter().take(LIST_MAX) { tr {
                    td { code { (f.rule) } " " (f.name) }
                    td { (f.severity.as_str()) }
                    td { (rel.of(&f.message)) }
                    td { code.wrap { (rel.of(&f.location.to_string())) } }
                    td { @match &f.excepted {
                        Some(x) => { span.badge { "excepted" } " ticket " (x.ticket) ", " (x.approver) ", until " (x.expires) }
                        None => { @if f.fails() { span.badge.denied { "failing" } } @else { span.badge { "info" } } }
                    } }
                } } }
            }
            @if findings.len() > LIST_MAX { p.muted { (findings.len() - LIST_MAX) " more: fintrail iam check lists them all." } }
        }
    }
}

fn path(p: &EscalationPath, rel: &Rel) -> Markup {
    html! {
        code.wrap { (p.from) } " can reach " code.wrap { (p.to) }
        @if p.conditional { " " span.badge { "conditional" } }
        ol { @for s in &p.steps { li {
            code.wrap { (s.from) } " → " code.wrap { (s.to) } " via " strong { (s.method) } " (" code { (s.permission) } ")"
            @if let Some(at) = s.evidence.first() { " at " code.wrap { (rel.of(&at.to_string())) } }
        } } }
    }
}
