//! The rules: which commit carries which task, and which commit breaks a rule.
//!
//! - Every commit needs a task reference (a task trailer or a pattern match).
//! - A commit touching a sensitive path (either side of a rename counts) also needs an
//!   approver trailer naming someone other than its author.
//! - Merges: a clean merge (no changes of its own, git's dense combined diff is empty) is
//!   exempt: everything it brings in is a commit of its own, which is either in the range
//!   and checked, or behind the range's start and was checked when it landed. A merge with
//!   changes of its own (conflict resolutions) is checked like any commit, on those
//!   changes. `merges.require_reference = true` makes every merge need its own reference.
//! - Reverts: a revert without its own reference inherits the tasks of the commit it
//!   reverts (git's `This reverts commit <sha>.` line), in the range or elsewhere in the
//!   clone. The approver rule is not inherited: undoing a sensitive change is itself a
//!   sensitive change.
//! - Shallow clones: a boundary commit's diff is unknown; its reference is still checked,
//!   its paths are not, and a warning says so.

use crate::config::Config;
use crate::git::{Commit, GitError, RawPath, Repo};
use crate::message::{email_of, references};
use std::collections::HashMap;

/// Where a commit's tasks come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskSource {
    /// Its own message.
    Own,
    /// The commit it reverts (full sha).
    Reverted(String),
    /// Nowhere.
    None,
}

/// A rule a commit breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// No task reference (and, for a revert, none to inherit).
    MissingTask { reverts: Option<String> },
    /// Sensitive paths changed without an approver other than the author.
    MissingApprover { sensitive: Vec<RawPath>, self_approved: bool },
}

/// A commit with what the rules found.
#[derive(Debug, Clone)]
pub struct Traced {
    pub commit: Commit,
    pub tasks: Vec<String>,
    pub task_source: TaskSource,
    /// Approvers who are not the author.
    pub approvers: Vec<String>,
    pub sensitive_paths: Vec<RawPath>,
    /// Why the commit needs no reference (a clean merge), if it does not.
    pub exempt: Option<String>,
    pub problems: Vec<Problem>,
    pub warnings: Vec<String>,
}

impl Traced {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
    pub fn is_sensitive(&self) -> bool {
        !self.sensitive_paths.is_empty()
    }
}

/// The traced commits of one range, newest first.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub range: String,
    pub commits: Vec<Traced>,
    /// The repository has no commit yet (unborn `HEAD` with the default range).
    pub unborn: bool,
}

impl Analysis {
    pub fn problems(&self) -> impl Iterator<Item = &Traced> {
        self.commits.iter().filter(|t| !t.ok())
    }
}

/// Reads `range` from `repo` and applies the rules.
pub fn analyze(repo: &Repo, range: &str, config: &Config, default_range: bool) -> Result<Analysis, GitError> {
    if default_range && !repo.has_commit("HEAD") {
        return Ok(Analysis { range: range.to_owned(), commits: Vec::new(), unborn: true });
    }
    let commits = repo.log(range)?;
    let traced = trace_commits(commits, config, |missing| repo.commits_by_sha(missing))?;
    Ok(Analysis { range: range.to_owned(), commits: traced, unborn: false })
}

fn find_by_prefix<'a, T>(map: &'a HashMap<String, T>, sha: &str) -> Option<(&'a String, &'a T)> {
    if let Some((k, v)) = map.get_key_value(sha) {
        return Some((k, v));
    }
    // An abbreviated sha in a revert message: accept a unique prefix only.
    let mut hits = map.iter().filter(|(k, _)| k.starts_with(sha));
    let first = hits.next()?;
    hits.next().is_none().then_some(first)
}

/// Applies the rules to `commits` (newest first, as `git log` gives them). `lookup` reads
/// reverted commits that are not in `commits`.
pub fn trace_commits(
    commits: Vec<Commit>,
    config: &Config,
    lookup: impl FnOnce(&[String]) -> Result<Vec<Commit>, GitError>,
) -> Result<Vec<Traced>, GitError> {
    let refs: Vec<_> = commits.iter().map(|c| references(&c.message, config)).collect();
    // Own tasks of every commit in the range, by sha.
    let mut own: HashMap<String, Vec<String>> =
        commits.iter().zip(&refs).map(|(c, r)| (c.sha.clone(), r.tasks.clone())).collect();
    // Reverted commits outside the range: read them once, in one batch.
    let missing: Vec<String> = refs
        .iter()
        .filter(|r| r.tasks.is_empty())
        .filter_map(|r| r.reverts.clone())
        .filter(|sha| find_by_prefix(&own, sha).is_none())
        .collect();
    if !missing.is_empty() {
        for c in lookup(&missing)? {
            let tasks = references(&c.message, config).tasks;
            own.entry(c.sha).or_insert(tasks);
        }
    }
    // Resolve oldest first so a revert of a revert inherits through the chain.
    let mut resolved: HashMap<String, Vec<String>> = HashMap::new();
    let mut out: Vec<Traced> = Vec::with_capacity(commits.len());
    for (commit, r) in commits.into_iter().zip(refs).rev() {
        let traced = evaluate(commit, r, config, |sha| {
            find_by_prefix(&resolved, sha).or_else(|| find_by_prefix(&own, sha)).map(|(k, v)| (k.clone(), v.clone()))
        });
        resolved.insert(traced.commit.sha.clone(), traced.tasks.clone());
        out.push(traced);
    }
    out.reverse();
    Ok(out)
}

/// Applies the rules to one commit. `reverted` resolves a (possibly abbreviated) sha to
/// the full sha and tasks of the commit a revert names.
pub fn evaluate(
    commit: Commit,
    refs: crate::message::References,
    config: &Config,
    reverted: impl Fn(&str) -> Option<(String, Vec<String>)>,
) -> Traced {
    let mut tasks = refs.tasks;
    let mut task_source = if tasks.is_empty() { TaskSource::None } else { TaskSource::Own };
    if tasks.is_empty() {
        if let Some((sha, inherited)) = refs.reverts.as_deref().and_then(&reverted) {
            if !inherited.is_empty() {
                tasks = inherited;
                task_source = TaskSource::Reverted(sha);
            }
        }
    }
    let author = commit.author_email.to_ascii_lowercase();
    let (mut approvers, mut self_approved) = (Vec::new(), false);
    for a in refs.approvers {
        if email_of(&a).is_some_and(|e| e == author) {
            self_approved = true;
        } else {
            approvers.push(a);
        }
    }
    let mut sensitive_paths: Vec<RawPath> = Vec::new();
    for p in commit.touched_paths() {
        if config.sensitive.matches(p) && !sensitive_paths.iter().any(|s| s == p) {
            sensitive_paths.push(p.to_vec());
        }
    }
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let clean_merge = commit.is_merge() && commit.changes.is_empty();
    let exempt = (clean_merge && !config.merges_require_reference)
        .then(|| "clean merge: its changes are its parents' commits, each checked on its own".to_owned());
    if exempt.is_none() && tasks.is_empty() {
        problems.push(Problem::MissingTask { reverts: refs.reverts.clone() });
    }
    if !sensitive_paths.is_empty() && approvers.is_empty() {
        problems.push(Problem::MissingApprover { sensitive: sensitive_paths.clone(), self_approved });
    }
    if commit.shallow_boundary {
        warnings.push(
            "shallow clone boundary: its parents are not here, so its changed paths (and their sensitivity) are unknown; fetch more history (git fetch --deepen=N)"
                .to_owned(),
        );
    }
    if let (Some(sha), TaskSource::None) = (&refs.reverts, &task_source) {
        if reverted(sha).is_none() {
            warnings.push(format!("reverts {sha}, which is not in this clone: nothing to inherit"));
        }
    }
    Traced { commit, tasks, task_source, approvers, sensitive_paths, exempt, problems, warnings }
}

/// Human explanation of a problem, with what to add.
pub fn explain(problem: &Problem, config: &Config) -> String {
    match problem {
        Problem::MissingTask { reverts } => {
            let mut how: Vec<String> = config.task_trailers.iter().map(|t| format!("a `{t}: <id>` trailer")).collect();
            how.extend(config.task_patterns.iter().map(|p| {
                if crate::config::DEFAULT_TASK_PATTERNS.contains(&p.as_str()) {
                    "an issue reference such as `#123`".to_owned()
                } else {
                    format!("text matching `{}`", p.as_str())
                }
            }));
            let revert_note = reverts
                .as_ref()
                .map(|s| {
                    format!(" (it reverts {}, which has none either or is not in this clone)", &s[..s.len().min(10)])
                })
                .unwrap_or_default();
            format!("no task reference{revert_note}; add {}", how.join(" or "))
        }
        Problem::MissingApprover { sensitive, self_approved } => {
            let shown: Vec<String> = sensitive.iter().take(5).map(|p| crate::git::display_path(p)).collect();
            let more = if sensitive.len() > 5 { format!(" and {} more", sensitive.len() - 5) } else { String::new() };
            let keys: Vec<String> = config.approver_trailers.iter().map(|k| format!("`{k}:`")).collect();
            let self_note = if *self_approved { " (an approval by the author does not count)" } else { "" };
            format!(
                "changes sensitive paths ({}{more}) but names no approver{self_note}; add a {} trailer naming the reviewer",
                shown.join(", "),
                keys.join(" or ")
            )
        }
    }
}
