//! Tracker adapters: link commits to tasks in ClickUp and to commits in GitHub.
//!
//! Each adapter builds its requests as a pure step ([`Tracker::plan`], printed by
//! `--dry-run` and asserted by tests) and sends them through [`http::Client`], which
//! holds the token as a [`http::Secret`] and retries within bounds.

pub mod http;

use crate::git::display_path;
use crate::report::Links;
use crate::trace::Traced;
use http::{ApiError, ApiRequest, AuthScheme, Client, Method, RetryPolicy, Secret};
use serde_json::{json, Value};
use std::fmt::Write as _;

/// Paths listed in one comment at most (a comment is for people, the report has the rest).
pub const MAX_PATHS_PER_COMMENT: usize = 50;

pub const DEFAULT_CLICKUP_API_URL: &str = "https://api.clickup.com/api/v2";
pub const DEFAULT_GITHUB_API_URL: &str = "https://api.github.com";
pub const DEFAULT_GITHUB_WEB_URL: &str = "https://github.com";

/// A tracker that commits can be published to.
pub trait Tracker {
    fn name(&self) -> &'static str;
    /// The requests that publish one traced commit (no I/O).
    fn plan(&self, commit: &Traced) -> Vec<ApiRequest>;
    /// Sends one planned request.
    fn send(&self, request: &ApiRequest) -> Result<Value, ApiError>;
    /// A task's status, when the tracker has tasks (`None` otherwise).
    fn task_status(&self, task: &str) -> Result<Option<String>, ApiError>;
}

/// Reads configuration from the environment (a function, so tests need not touch the
/// process environment).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

fn env_or(env: Env<'_>, key: &str, default: &str) -> String {
    env(key).filter(|v| !v.trim().is_empty()).unwrap_or_else(|| default.to_owned())
}

fn trim_url(url: &str) -> Result<String, String> {
    let url = url.trim().trim_end_matches('/');
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!("API URL `{url}` must start with http:// or https://"));
    }
    Ok(url.to_owned())
}

/// Task ids and repository names go into URL paths: accept only characters that need
/// no escaping, so a message cannot steer a request elsewhere.
fn is_url_safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 100
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && id != "."
        && id != ".."
}

fn comment_text(t: &Traced, links: &Links, heading: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{heading}: commit {} \"{}\" by {} at {}",
        t.commit.short_sha(),
        t.commit.subject(),
        t.commit.author_email,
        t.commit.committed_at
    );
    if let Some(url) = links.commit(&t.commit.sha) {
        let _ = writeln!(s, "{url}");
    }
    let paths: Vec<String> = t.commit.touched_paths().map(display_path).collect();
    if !paths.is_empty() {
        let _ = writeln!(s, "Changed paths:");
        for p in paths.iter().take(MAX_PATHS_PER_COMMENT) {
            let _ = writeln!(s, "- {p}");
        }
        if paths.len() > MAX_PATHS_PER_COMMENT {
            let _ = writeln!(s, "- … and {} more", paths.len() - MAX_PATHS_PER_COMMENT);
        }
    }
    s
}

/// ClickUp: a comment on each referenced task (`POST /task/{task_id}/comment`), and task
/// status (`GET /task/{task_id}` → `status.status`).
///
/// `Task: CU-86b1x2` names ClickUp task `86b1x2` (the `CU-` prefix is ClickUp's own
/// convention for commit messages). Other ids are custom task ids, which ClickUp resolves
/// only with `custom_task_ids=true&team_id=…` (`FINTRAIL_CLICKUP_TEAM_ID`); without a team
/// id they are used as is. `#123` references are GitHub issues and are skipped here.
#[derive(Debug)]
pub struct ClickUp {
    api_url: String,
    team_id: Option<String>,
    links: Links,
    client: Option<Client>,
}

impl ClickUp {
    /// From `FINTRAIL_CLICKUP_TOKEN`, `FINTRAIL_CLICKUP_API_URL`, `FINTRAIL_CLICKUP_TEAM_ID`.
    /// Without a token only planning works (`--dry-run`).
    pub fn from_env(env: Env<'_>, links: Links, policy: RetryPolicy) -> Result<Self, String> {
        let api_url = trim_url(&env_or(env, "FINTRAIL_CLICKUP_API_URL", DEFAULT_CLICKUP_API_URL))?;
        let team_id = env("FINTRAIL_CLICKUP_TEAM_ID").filter(|t| !t.trim().is_empty());
        if let Some(t) = &team_id {
            if !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("FINTRAIL_CLICKUP_TEAM_ID `{t}` must be digits"));
            }
        }
        let client = env("FINTRAIL_CLICKUP_TOKEN")
            .filter(|t| !t.trim().is_empty())
            .map(|t| Client::new(Secret::new(t.trim()), AuthScheme::Raw, policy));
        Ok(Self { api_url, team_id, links, client })
    }

    /// The ClickUp task id for a reference, and the query string it needs.
    pub fn task_path(&self, reference: &str) -> Option<String> {
        if reference.starts_with('#') {
            return None;
        }
        let (id, custom) = match reference.get(..3) {
            Some(p) if p.eq_ignore_ascii_case("CU-") => (&reference[3..], false),
            _ => (reference, self.team_id.is_some()),
        };
        if !is_url_safe_id(id) {
            return None;
        }
        let query = match (&self.team_id, custom) {
            (Some(team), true) => format!("?custom_task_ids=true&team_id={team}"),
            _ => String::new(),
        };
        Some(format!("{}/task/{id}{{}}{query}", self.api_url))
    }

    fn url(&self, reference: &str, suffix: &str) -> Option<String> {
        self.task_path(reference).map(|t| t.replace("{}", suffix))
    }
}

fn json_headers() -> Vec<(&'static str, String)> {
    vec![("Content-Type", "application/json".into()), ("Accept", "application/json".into())]
}

impl Tracker for ClickUp {
    fn name(&self) -> &'static str {
        "clickup"
    }

    fn plan(&self, t: &Traced) -> Vec<ApiRequest> {
        let text = comment_text(t, &self.links, "fintrail trace");
        t.tasks
            .iter()
            .filter_map(|task| self.url(task, "/comment"))
            .map(|url| ApiRequest {
                method: Method::Post,
                url,
                headers: json_headers(),
                body: Some(json!({"comment_text": text, "notify_all": false})),
            })
            .collect()
    }

    fn send(&self, request: &ApiRequest) -> Result<Value, ApiError> {
        match &self.client {
            Some(c) => c.send(request),
            None => Err(ApiError::Unauthorized { status: 401 }),
        }
    }

    fn task_status(&self, task: &str) -> Result<Option<String>, ApiError> {
        let Some(url) = self.url(task, "") else { return Ok(None) };
        let req =
            ApiRequest { method: Method::Get, url, headers: vec![("Accept", "application/json".into())], body: None };
        let v = self.send(&req)?;
        match v.pointer("/status/status").and_then(Value::as_str) {
            Some(s) => Ok(Some(s.to_owned())),
            None => Err(ApiError::MalformedResponse("task has no status.status".into())),
        }
    }
}

/// GitHub: a commit comment naming the tasks (`POST /repos/{owner}/{repo}/commits/{sha}/comments`).
#[derive(Debug)]
pub struct GitHub {
    api_url: String,
    repo: String,
    links: Links,
    client: Option<Client>,
}

/// The web link base of a repository (`https://github.com/owner/repo`), from
/// `FINTRAIL_GITHUB_REPO` and `FINTRAIL_GITHUB_WEB_URL`, if the repository is set.
pub fn links_from_env(env: Env<'_>) -> Links {
    let web = env_or(env, "FINTRAIL_GITHUB_WEB_URL", DEFAULT_GITHUB_WEB_URL);
    Links {
        commit_base: env("FINTRAIL_GITHUB_REPO")
            .filter(|r| valid_repo(r))
            .map(|r| format!("{}/{}", web.trim_end_matches('/'), r.trim())),
    }
}

fn valid_repo(repo: &str) -> bool {
    matches!(repo.trim().split_once('/'), Some((o, n)) if is_url_safe_id(o) && is_url_safe_id(n))
}

impl GitHub {
    /// From `FINTRAIL_GITHUB_TOKEN`, `FINTRAIL_GITHUB_API_URL`, `FINTRAIL_GITHUB_REPO` (required).
    pub fn from_env(env: Env<'_>, links: Links, policy: RetryPolicy) -> Result<Self, String> {
        let api_url = trim_url(&env_or(env, "FINTRAIL_GITHUB_API_URL", DEFAULT_GITHUB_API_URL))?;
        let repo = env("FINTRAIL_GITHUB_REPO").unwrap_or_default().trim().to_owned();
        if !valid_repo(&repo) {
            return Err("FINTRAIL_GITHUB_REPO must be set to `owner/repo`".into());
        }
        let client = env("FINTRAIL_GITHUB_TOKEN")
            .filter(|t| !t.trim().is_empty())
            .map(|t| Client::new(Secret::new(t.trim()), AuthScheme::Bearer, policy));
        Ok(Self { api_url, repo, links, client })
    }
}

impl Tracker for GitHub {
    fn name(&self) -> &'static str {
        "github"
    }

    fn plan(&self, t: &Traced) -> Vec<ApiRequest> {
        if t.tasks.is_empty() {
            return Vec::new();
        }
        let tasks: Vec<String> = t
            .tasks
            .iter()
            .map(|task| match task.get(..3) {
                Some(p) if p.eq_ignore_ascii_case("CU-") && is_url_safe_id(&task[3..]) => {
                    format!("{task} (https://app.clickup.com/t/{})", &task[3..])
                }
                _ => task.clone(),
            })
            .collect();
        let mut body = format!("Traced to: {}\n\n", tasks.join(", "));
        body.push_str(&comment_text(t, &self.links, "fintrail trace"));
        vec![ApiRequest {
            method: Method::Post,
            url: format!("{}/repos/{}/commits/{}/comments", self.api_url, self.repo, t.commit.sha),
            headers: vec![
                ("Accept", "application/vnd.github+json".into()),
                ("X-GitHub-Api-Version", "2022-11-28".into()),
                ("Content-Type", "application/json".into()),
            ],
            body: Some(json!({"body": body})),
        }]
    }

    fn send(&self, request: &ApiRequest) -> Result<Value, ApiError> {
        match &self.client {
            Some(c) => c.send(request),
            None => Err(ApiError::Unauthorized { status: 401 }),
        }
    }

    fn task_status(&self, _task: &str) -> Result<Option<String>, ApiError> {
        Ok(None)
    }
}

/// The outcome of publishing a range.
#[derive(Debug, Default)]
pub struct PublishOutcome {
    pub sent: usize,
    pub failed: Vec<String>,
    pub lines: Vec<String>,
}

/// Publishes every traced commit of `commits`; with `dry_run` only describes the requests.
/// A failure does not stop the others (each is reported), except a refused token, which
/// would fail every request the same way.
pub fn publish(tracker: &dyn Tracker, commits: &[Traced], dry_run: bool) -> PublishOutcome {
    let mut out = PublishOutcome::default();
    for t in commits.iter().rev() {
        for req in tracker.plan(t) {
            if dry_run {
                out.lines.push(format!("{} {}", req.method.as_str(), req.url));
                if let Some(body) = &req.body {
                    out.lines.push(format!("  {body}"));
                }
                continue;
            }
            match tracker.send(&req) {
                Ok(_) => {
                    out.sent += 1;
                    out.lines.push(format!("{} {}: ok", t.commit.short_sha(), req.url));
                }
                Err(e) => {
                    let fatal = matches!(e, ApiError::Unauthorized { .. });
                    out.failed.push(format!("{} {}: {e}", t.commit.short_sha(), req.url));
                    if fatal {
                        return out;
                    }
                }
            }
        }
    }
    out
}
