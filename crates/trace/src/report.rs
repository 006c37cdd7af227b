//! Rendering: task → commits → paths, path → tasks, check results, audit records.

use crate::config::Config;
use crate::git::display_path;
use crate::trace::{explain, Analysis, TaskSource, Traced};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Plain text for a terminal.
    Text,
    /// One JSON document (full detail, every path).
    Json,
    /// Markdown for a pull-request comment.
    Markdown,
}

/// The label under which commits without a task are grouped.
pub const UNTRACED: &str = "(no task)";

/// Where commit links point (a GitHub web URL and `owner/repo`), if known.
#[derive(Debug, Clone, Default)]
pub struct Links {
    pub commit_base: Option<String>,
}

impl Links {
    /// `https://github.com/{owner}/{repo}/commit/{sha}` when configured.
    pub fn commit(&self, sha: &str) -> Option<String> {
        self.commit_base.as_ref().map(|b| format!("{b}/commit/{sha}"))
    }
}

struct Index<'a> {
    /// Task id → commits (newest first), in order of the tasks' first appearance
    /// (sorted for a stable output).
    tasks: BTreeMap<&'a str, Vec<&'a Traced>>,
    untraced: Vec<&'a Traced>,
    /// Path (raw bytes) → tasks that changed it.
    paths: BTreeMap<&'a [u8], BTreeSet<&'a str>>,
}

fn index(a: &Analysis) -> Index<'_> {
    let mut tasks: BTreeMap<&str, Vec<&Traced>> = BTreeMap::new();
    let mut untraced = Vec::new();
    let mut paths: BTreeMap<&[u8], BTreeSet<&str>> = BTreeMap::new();
    for t in &a.commits {
        if t.tasks.is_empty() {
            if t.exempt.is_none() {
                untraced.push(t);
            }
        } else {
            for task in &t.tasks {
                tasks.entry(task.as_str()).or_default().push(t);
            }
        }
        for p in t.commit.touched_paths() {
            let entry = paths.entry(p).or_default();
            if t.tasks.is_empty() {
                entry.insert(UNTRACED);
            } else {
                entry.extend(t.tasks.iter().map(String::as_str));
            }
        }
    }
    Index { tasks, untraced, paths }
}

fn task_paths<'a>(commits: &[&'a Traced]) -> BTreeSet<&'a [u8]> {
    commits.iter().flat_map(|t| t.commit.touched_paths()).collect()
}

fn source_note(t: &Traced) -> String {
    match &t.task_source {
        TaskSource::Reverted(sha) => format!(" (inherited: reverts {})", &sha[..sha.len().min(10)]),
        _ => String::new(),
    }
}

fn change_line(c: &crate::git::Change) -> String {
    match &c.from {
        Some(from) => format!("{} {} -> {}", c.status, display_path(from), display_path(&c.path)),
        None => format!("{} {}", c.status, display_path(&c.path)),
    }
}

/// Renders the report. `max_paths` bounds the paths listed per commit and the path
/// index in text and Markdown (a pull-request comment has a size limit); JSON is complete.
pub fn render_report(a: &Analysis, config: &Config, format: Format, max_paths: usize, links: &Links) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(&report_json(a, config, links)).unwrap_or_default() + "\n",
        Format::Text => report_text(a, max_paths),
        Format::Markdown => report_markdown(a, max_paths, links),
    }
}

fn summary(a: &Analysis, ix: &Index<'_>) -> String {
    let sensitive = a.commits.iter().filter(|t| t.is_sensitive()).count();
    format!(
        "{} commit(s), {} task(s), {} commit(s) without a task, {} touching sensitive paths, {} problem(s)",
        a.commits.len(),
        ix.tasks.len(),
        ix.untraced.len(),
        sensitive,
        a.problems().count()
    )
}

fn report_text(a: &Analysis, max_paths: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "fintrail trace report: {}", a.range);
    if a.unborn {
        let _ = writeln!(s, "no commits yet (HEAD is unborn): nothing to trace");
        return s;
    }
    let ix = index(a);
    let _ = writeln!(s, "{}", summary(a, &ix));
    if a.commits.is_empty() {
        let _ = writeln!(s, "the range holds no commits");
        return s;
    }
    let _ = writeln!(s, "\nTasks → commits → paths");
    for (task, commits) in &ix.tasks {
        let _ = writeln!(s, "  {task}  ({} commit(s), {} path(s))", commits.len(), task_paths(commits).len());
        for t in commits {
            commit_text(&mut s, t, max_paths);
        }
    }
    if !ix.untraced.is_empty() {
        let _ = writeln!(s, "  {UNTRACED}  ({} commit(s))", ix.untraced.len());
        for t in &ix.untraced {
            commit_text(&mut s, t, max_paths);
        }
    }
    let _ = writeln!(s, "\nPaths → tasks");
    for (path, tasks) in ix.paths.iter().take(max_paths.saturating_mul(10)) {
        let tasks: Vec<&str> = tasks.iter().copied().collect();
        let _ = writeln!(s, "  {}  {}", display_path(path), tasks.join(", "));
    }
    if ix.paths.len() > max_paths.saturating_mul(10) {
        let _ = writeln!(s, "  … and {} more path(s) (use --format json for all)", ix.paths.len() - max_paths * 10);
    }
    s
}

fn commit_text(s: &mut String, t: &Traced, max_paths: usize) {
    let flags = [
        t.commit.is_merge().then_some("merge"),
        t.is_sensitive().then_some("sensitive"),
        (!t.ok()).then_some("PROBLEM"),
    ];
    let flags: Vec<&str> = flags.into_iter().flatten().collect();
    let flags = if flags.is_empty() { String::new() } else { format!(" [{}]", flags.join(", ")) };
    let _ = writeln!(
        s,
        "    {} {} {} <{}>{}{}",
        t.commit.short_sha(),
        t.commit.committed_at,
        t.commit.subject(),
        t.commit.author_email,
        source_note(t),
        flags
    );
    for c in t.commit.changes.iter().take(max_paths) {
        let _ = writeln!(s, "        {}", change_line(c));
    }
    if t.commit.changes.len() > max_paths {
        let _ = writeln!(s, "        … and {} more", t.commit.changes.len() - max_paths);
    }
}

fn md_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        if matches!(ch, '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' | '@') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

fn md_commit(t: &Traced, links: &Links) -> String {
    match links.commit(&t.commit.sha) {
        Some(url) => format!("[`{}`]({url})", t.commit.short_sha()),
        None => format!("`{}`", t.commit.short_sha()),
    }
}

fn report_markdown(a: &Analysis, max_paths: usize, links: &Links) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "### fintrail trace: `{}`\n", a.range.replace('`', "'"));
    if a.unborn {
        let _ = writeln!(s, "No commits yet.");
        return s;
    }
    let ix = index(a);
    let _ = writeln!(s, "{}\n", summary(a, &ix));
    if a.problems().count() > 0 {
        let _ = writeln!(s, "#### Problems\n");
        for t in a.problems() {
            for p in &t.problems {
                let _ = writeln!(
                    s,
                    "- {} {}: {}",
                    md_commit(t, links),
                    md_escape(t.commit.subject()),
                    md_escape(&explain_plain(p))
                );
            }
        }
        s.push('\n');
    }
    let _ = writeln!(s, "#### Tasks\n\n| task | commits | paths |\n|---|---|---|");
    for (task, commits) in &ix.tasks {
        let shas: Vec<String> = commits.iter().map(|t| md_commit(t, links)).collect();
        let paths = task_paths(commits);
        let mut shown: Vec<String> =
            paths.iter().take(max_paths).map(|p| format!("`{}`", display_path(p).replace('`', "'"))).collect();
        if paths.len() > max_paths {
            shown.push(format!("… {} more", paths.len() - max_paths));
        }
        let _ = writeln!(s, "| {} | {} | {} |", md_escape(task), shas.join(" "), shown.join("<br>"));
    }
    if !ix.untraced.is_empty() {
        let shas: Vec<String> = ix.untraced.iter().map(|t| md_commit(t, links)).collect();
        let _ = writeln!(s, "| **{}** | {} | |", md_escape(UNTRACED), shas.join(" "));
    }
    let sensitive: Vec<&Traced> = a.commits.iter().filter(|t| t.is_sensitive()).collect();
    if !sensitive.is_empty() {
        let _ = writeln!(s, "\n#### Sensitive changes\n\n| commit | tasks | approvers | paths |\n|---|---|---|---|");
        for t in sensitive {
            let paths: Vec<String> = t
                .sensitive_paths
                .iter()
                .take(max_paths)
                .map(|p| format!("`{}`", display_path(p).replace('`', "'")))
                .collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                md_commit(t, links),
                md_escape(&t.tasks.join(", ")),
                md_escape(&t.approvers.join(", ")),
                paths.join("<br>")
            );
        }
    }
    s
}

/// A problem's explanation without a configuration (Markdown has no room for patterns).
fn explain_plain(p: &crate::trace::Problem) -> String {
    match p {
        crate::trace::Problem::MissingTask { .. } => "no task reference".into(),
        crate::trace::Problem::MissingApprover { .. } => "sensitive paths changed without an approver".into(),
    }
}

fn commit_json(t: &Traced, links: &Links) -> Value {
    let changes: Vec<Value> = t
        .commit
        .changes
        .iter()
        .map(
            |c| json!({"status": c.status, "path": display_path(&c.path), "from": c.from.as_deref().map(display_path)}),
        )
        .collect();
    json!({
        "sha": t.commit.sha,
        "short": t.commit.short_sha(),
        "subject": t.commit.subject(),
        "author_name": t.commit.author_name,
        "author_email": t.commit.author_email,
        "authored_at": t.commit.authored_at,
        "committed_at": t.commit.committed_at,
        "parents": t.commit.parents,
        "merge": t.commit.is_merge(),
        "tasks": t.tasks,
        "task_source": match &t.task_source { TaskSource::Own => "own", TaskSource::Reverted(_) => "reverted", TaskSource::None => "none" },
        "reverts": match &t.task_source { TaskSource::Reverted(s) => Some(s.clone()), _ => None },
        "approvers": t.approvers,
        "changes": changes,
        "sensitive_paths": t.sensitive_paths.iter().map(|p| display_path(p)).collect::<Vec<_>>(),
        "exempt": t.exempt,
        "shallow_boundary": t.commit.shallow_boundary,
        "problems": t.problems.iter().map(explain_plain).collect::<Vec<_>>(),
        "warnings": t.warnings,
        "url": links.commit(&t.commit.sha),
    })
}

fn report_json(a: &Analysis, config: &Config, links: &Links) -> Value {
    let ix = index(a);
    json!({
        "range": a.range,
        "unborn": a.unborn,
        "config": config.source,
        "commits": a.commits.iter().map(|t| commit_json(t, links)).collect::<Vec<_>>(),
        "tasks": ix.tasks.iter().map(|(task, commits)| json!({
            "task": task,
            "commits": commits.iter().map(|t| t.commit.sha.as_str()).collect::<Vec<_>>(),
            "paths": task_paths(commits).iter().map(|p| display_path(p)).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "untraced": ix.untraced.iter().map(|t| t.commit.sha.as_str()).collect::<Vec<_>>(),
        "paths": ix.paths.iter().map(|(p, tasks)| json!({"path": display_path(p), "tasks": tasks})).collect::<Vec<_>>(),
    })
}

/// One audit event (JSON Lines) per commit in the range that touches a sensitive
/// (infrastructure, migration, permission) path, oldest first like an append-only trail,
/// in the shape of the platform's audit events.
pub fn render_audit(a: &Analysis) -> String {
    let mut s = String::new();
    for t in a.commits.iter().rev().filter(|t| t.is_sensitive()) {
        let record = json!({
            "occurred_at": t.commit.committed_at,
            "actor": t.commit.author_email,
            "on_behalf_of": null,
            "action": "infra.change",
            "subject": {"kind": "paths", "paths": t.commit.touched_paths().map(display_path).collect::<Vec<_>>()},
            "permission": null,
            "reason": if t.tasks.is_empty() { Value::Null } else { Value::String(t.tasks.join(", ")) },
            "request_id": t.commit.sha,
            "before": null,
            "after": {"commit": t.commit.sha},
        });
        s.push_str(&record.to_string());
        s.push('\n');
    }
    s
}

/// Renders a check result (text names each offending commit by short sha and subject).
pub fn render_check(a: &Analysis, config: &Config, format: Format, links: &Links) -> String {
    match format {
        Format::Json => {
            let v = json!({
                "range": a.range,
                "ok": a.problems().count() == 0,
                "checked": a.commits.len(),
                "problems": a.problems().flat_map(|t| t.problems.iter().map(move |p| json!({
                    "sha": t.commit.sha,
                    "short": t.commit.short_sha(),
                    "subject": t.commit.subject(),
                    "problem": explain(p, config),
                }))).collect::<Vec<_>>(),
                "warnings": a.commits.iter().flat_map(|t| t.warnings.iter().map(move |w| json!({"sha": t.commit.sha, "warning": w}))).collect::<Vec<_>>(),
            });
            serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
        }
        Format::Markdown => report_markdown(a, 20, links),
        Format::Text => {
            let mut s = String::new();
            let bad: Vec<&Traced> = a.problems().collect();
            if a.unborn {
                let _ = writeln!(s, "fintrail trace check: no commits yet (HEAD is unborn): nothing to check");
            } else if bad.is_empty() {
                let exempt = a.commits.iter().filter(|t| t.exempt.is_some()).count();
                let _ = writeln!(
                    s,
                    "fintrail trace check: {}: all {} commit(s) traced ({} clean merge(s) exempt)",
                    a.range,
                    a.commits.len(),
                    exempt
                );
            } else {
                let _ = writeln!(
                    s,
                    "fintrail trace check: {}: {} of {} commit(s) fail:",
                    a.range,
                    bad.len(),
                    a.commits.len()
                );
                for t in &bad {
                    for p in &t.problems {
                        let _ =
                            writeln!(s, "  {} {}: {}", t.commit.short_sha(), t.commit.subject(), explain(p, config));
                    }
                }
            }
            for t in &a.commits {
                for w in &t.warnings {
                    let _ = writeln!(s, "  warning: {} {}: {w}", t.commit.short_sha(), t.commit.subject());
                }
            }
            s
        }
    }
}
