//! `fintrail trace …`: the subcommands and their exit codes.

use crate::config::{self, Config, Overrides};
use crate::git::Repo;
use crate::report::{self, Format};
use crate::trace::{analyze, Analysis};
use crate::tracker::{self, http::RetryPolicy, ClickUp, GitHub, Tracker};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Exit code: everything traced / done.
pub const EXIT_OK: u8 = 0;
/// Exit code: a commit (or message) breaks a rule, or some publishing failed.
pub const EXIT_FINDINGS: u8 = 1;
/// Exit code: usage error, or the check could not be made (not a repository, bad range).
pub const EXIT_USAGE: u8 = 2;

const RANGE_HELP: &str =
    "Revision range, as `git log` takes it: `main..HEAD`, `A...B`, or one revision for all its history [default: HEAD]";

/// Arguments of `fintrail trace`.
#[derive(Debug, clap::Args)]
#[command(
    about = "Trace every change from task to commit to infrastructure",
    long_about = "Trace every change from task to commit to infrastructure.\n\n\
A commit references a task by a trailer in its last paragraph (default `Task: CU-86b1x2`) or by a \
pattern anywhere in its message (default: `#123` issue references). Commits touching sensitive \
paths (default: infra/**, **/migrations/**, **/*permission*, **/*role*) must also name an approver \
other than the author in a `Reviewed-by:` or `Approved-by:` trailer.\n\n\
Configuration: `trace.toml` at the repository root (optional; sections [references] trailers/patterns, \
[sensitive] paths/approver_trailers, [merges] require_reference), then the flags below, which replace \
the file's values."
)]
pub struct TraceArgs {
    /// Run as if started in DIR (any directory inside the repository).
    #[arg(short = 'C', long = "repo", value_name = "DIR", global = true, default_value = ".")]
    pub repo: PathBuf,
    #[command(subcommand)]
    pub command: TraceCommand,
}

/// Options that change what counts as a reference and what is sensitive.
#[derive(Debug, Clone, clap::Args)]
pub struct RuleArgs {
    /// Configuration file [default: trace.toml at the repository root, if present].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Trailer key whose value is a task id; repeatable; replaces the configured list [default: Task].
    #[arg(long = "task-trailer", value_name = "KEY")]
    pub task_trailers: Vec<String>,
    /// Regular expression for a task reference anywhere in the message (group 1, else the whole
    /// match, is the id); repeatable; replaces the configured list [default: `#123` issue references].
    #[arg(long = "task-pattern", value_name = "REGEX")]
    pub task_patterns: Vec<String>,
    /// Glob of sensitive paths (`*` within a segment, `**` any depth, anchored at the repository
    /// root); repeatable; replaces the configured list [default: infra/**, **/migrations/**,
    /// **/*permission*, **/*role*].
    #[arg(long = "sensitive", value_name = "GLOB")]
    pub sensitive: Vec<String>,
    /// Trailer key that names an approver; repeatable; replaces the configured list
    /// [default: Reviewed-by, Approved-by].
    #[arg(long = "approver-trailer", value_name = "KEY")]
    pub approver_trailers: Vec<String>,
    /// Require a task reference on every merge too. By default a clean merge (no changes of its
    /// own) is exempt, because every commit it brings in is checked on its own.
    #[arg(long)]
    pub strict_merges: bool,
}

impl RuleArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            task_trailers: self.task_trailers.clone(),
            task_patterns: self.task_patterns.clone(),
            sensitive_paths: self.sensitive.clone(),
            approver_trailers: self.approver_trailers.clone(),
            merges_require_reference: self.strict_merges,
        }
    }
}

/// The `fintrail trace` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TraceCommand {
    /// Report task → commits → changed paths, and path → tasks, for a range.
    #[command(long_about = "Report task → commits → changed paths, and the reverse (path → the tasks that \
changed it), for a revision range. Renames count both paths; a merge lists only its own changes; \
a revert without its own reference shows the tasks of the commit it reverts.\n\n\
--audit prints instead one JSON Lines audit event per commit touching a sensitive path \
(action `infra.change`, actor = author email, reason = task ids, request_id = commit sha), oldest first.")]
    Report {
        #[arg(value_name = "RANGE", help = RANGE_HELP)]
        range: Option<String>,
        /// Output format: text, json (complete), or markdown (for a pull-request comment).
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Emit the sensitive commits as JSON Lines audit events instead of a report.
        #[arg(long)]
        audit: bool,
        /// Paths listed per commit (and per task in markdown) in text and markdown output.
        #[arg(long, value_name = "N", default_value_t = 20)]
        max_paths: usize,
        #[command(flatten)]
        rules: RuleArgs,
    },
    /// Fail (exit 1) when a commit in the range lacks a task reference or a required approver.
    #[command(long_about = "Check every commit of a revision range. Exit 0: every commit carries a task \
reference (and every commit touching a sensitive path names an approver other than its author); \
exit 1: some commit does not (each is named by short sha and subject); exit 2: usage error, or the \
range cannot be read (not a repository, unknown revision, history cut by a shallow clone).\n\n\
Merges: a clean merge is exempt (its changes are its parents' commits, each checked); a merge with \
changes of its own (conflict resolutions) is checked on those changes; --strict-merges requires a \
reference on every merge. Reverts: a revert without its own reference inherits the tasks of the \
commit named in its `This reverts commit <sha>.` line; the approver rule is not inherited. \
Shallow clones: a boundary commit's paths are unknown; its reference is checked and a warning printed.")]
    Check {
        #[arg(value_name = "RANGE", help = RANGE_HELP)]
        range: Option<String>,
        /// Output format: text (offending commits, one per line), json, or markdown.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        #[command(flatten)]
        rules: RuleArgs,
    },
    /// Install a git commit-msg hook that refuses a message without a task reference.
    #[command(long_about = "Install a commit-msg hook (in the hooks directory git uses, honouring \
core.hooksPath) that runs `check-message` on every commit message: a message without a task \
reference is refused, with the same rules as `check`. An existing, different hook is never \
overwritten without --force (which keeps it as commit-msg.bak). Exit 0 installed or already \
installed, 1 a different hook is in the way, 2 error.")]
    InstallHook {
        /// Replace an existing different commit-msg hook (it is kept as commit-msg.bak).
        #[arg(long)]
        force: bool,
        /// The fintrail binary the hook runs [default: this program].
        #[arg(long, value_name = "PATH")]
        binary: Option<PathBuf>,
    },
    /// Post each traced commit to a tracker: a comment on the ClickUp task, or a GitHub commit comment.
    #[command(long_about = "Publish each commit of the range that references a task. \
clickup: comment on each referenced task (commit, link, changed paths); `CU-<id>` names ClickUp \
task <id>. github: a commit comment naming the tasks. Environment: FINTRAIL_CLICKUP_TOKEN, \
FINTRAIL_CLICKUP_API_URL [default: https://api.clickup.com/api/v2], FINTRAIL_CLICKUP_TEAM_ID \
(for custom task ids), FINTRAIL_GITHUB_TOKEN, FINTRAIL_GITHUB_API_URL [default: https://api.github.com], \
FINTRAIL_GITHUB_REPO (owner/repo; also used for commit links). Requests time out and are retried \
at most 3 times (429 after Retry-After, 5xx, connection failures). Exit 0 all sent, 1 some failed, \
2 usage or configuration error.")]
    Publish {
        #[arg(value_name = "RANGE", help = RANGE_HELP)]
        range: Option<String>,
        /// Which tracker to publish to.
        #[arg(long, value_enum)]
        tracker: TrackerKind,
        /// Print the requests instead of sending them (no token needed).
        #[arg(long)]
        dry_run: bool,
        /// Also print each referenced ClickUp task's status.
        #[arg(long)]
        show_status: bool,
        /// Timeout of one HTTP attempt, in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 10_000)]
        timeout_ms: u64,
        #[command(flatten)]
        rules: RuleArgs,
    },
    /// Check one commit message file (used by the commit-msg hook).
    #[command(hide = true)]
    CheckMessage {
        /// The message file git passes to the hook.
        file: PathBuf,
        #[command(flatten)]
        rules: RuleArgs,
    },
}

/// Trackers `publish` can post to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TrackerKind {
    Clickup,
    Github,
}

/// A failure that ends the command with exit code 2.
struct Usage(String);

impl<E: std::fmt::Display> From<E> for Usage {
    fn from(e: E) -> Self {
        Usage(e.to_string())
    }
}

fn emit(text: &str) -> Result<(), Usage> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        // A closed pipe (`| head`) is the reader's choice, not our failure.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Usage(format!("cannot write output: {e}"))),
    }
}

fn open(dir: &Path, rules: &RuleArgs) -> Result<(Repo, Config), Usage> {
    let repo = Repo::discover(dir)?;
    let config = Config::load(repo.root(), rules.config.as_deref(), &rules.overrides())?;
    Ok((repo, config))
}

fn load(dir: &Path, range: Option<String>, rules: &RuleArgs) -> Result<(Analysis, Config), Usage> {
    let (repo, config) = open(dir, rules)?;
    let default = range.is_none();
    let range = range.unwrap_or_else(|| "HEAD".to_owned());
    let analysis = analyze(&repo, &range, &config, default)?;
    Ok((analysis, config))
}

fn env_var(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

/// Runs `fintrail trace`; returns the process exit code.
pub fn run(args: TraceArgs) -> u8 {
    match dispatch(args) {
        Ok(code) => code,
        Err(Usage(msg)) => {
            eprintln!("fintrail trace: {msg}");
            EXIT_USAGE
        }
    }
}

fn dispatch(args: TraceArgs) -> Result<u8, Usage> {
    let dir = args.repo;
    match args.command {
        TraceCommand::Report { range, format, audit, max_paths, rules } => {
            let (analysis, config) = load(&dir, range, &rules)?;
            let text = if audit {
                report::render_audit(&analysis)
            } else {
                let links = tracker::links_from_env(&env_var);
                report::render_report(&analysis, &config, format, max_paths.max(1), &links)
            };
            emit(&text)?;
            Ok(EXIT_OK)
        }
        TraceCommand::Check { range, format, rules } => {
            let (analysis, config) = load(&dir, range, &rules)?;
            let links = tracker::links_from_env(&env_var);
            emit(&report::render_check(&analysis, &config, format, &links))?;
            Ok(if analysis.problems().count() == 0 { EXIT_OK } else { EXIT_FINDINGS })
        }
        TraceCommand::InstallHook { force, binary } => install_hook(&dir, force, binary),
        TraceCommand::Publish { range, tracker: kind, dry_run, show_status, timeout_ms, rules } => {
            let (analysis, _config) = load(&dir, range, &rules)?;
            let policy = RetryPolicy { timeout_ms: timeout_ms.clamp(100, 120_000), ..RetryPolicy::default() };
            let links = tracker::links_from_env(&env_var);
            let tracker: Box<dyn Tracker> = match kind {
                TrackerKind::Clickup => Box::new(ClickUp::from_env(&env_var, links, policy)?),
                TrackerKind::Github => Box::new(GitHub::from_env(&env_var, links, policy)?),
            };
            let token_var = match kind {
                TrackerKind::Clickup => "FINTRAIL_CLICKUP_TOKEN",
                TrackerKind::Github => "FINTRAIL_GITHUB_TOKEN",
            };
            if !dry_run && env_var(token_var).is_none_or(|t| t.trim().is_empty()) {
                return Err(Usage(format!(
                    "{token_var} is not set (use --dry-run to see the requests without sending them)"
                )));
            }
            Ok(publish(tracker.as_ref(), &analysis, dry_run, show_status))
        }
        TraceCommand::CheckMessage { file, rules } => {
            let repo = Repo::discover(&dir).ok();
            let root = repo.as_ref().map(|r| r.root().to_path_buf()).unwrap_or_else(|| dir.clone());
            let config = Config::load(&root, rules.config.as_deref(), &rules.overrides())?;
            let verdict = crate::hook::check_message(repo.as_ref(), &file, &config)?;
            for w in &verdict.warnings {
                eprintln!("fintrail trace: warning: {w}");
            }
            let missing: Vec<_> = verdict
                .traced
                .problems
                .iter()
                .filter(|p| matches!(p, crate::trace::Problem::MissingTask { .. }))
                .collect();
            if missing.is_empty() {
                Ok(EXIT_OK)
            } else {
                for p in missing {
                    eprintln!("fintrail trace: commit refused: {}", crate::trace::explain(p, &config));
                }
                eprintln!("fintrail trace: (your message is kept in {})", file.display());
                Ok(EXIT_FINDINGS)
            }
        }
    }
}

fn publish(tracker: &dyn Tracker, analysis: &Analysis, dry_run: bool, show_status: bool) -> u8 {
    let outcome = tracker::publish(tracker, &analysis.commits, dry_run);
    for line in &outcome.lines {
        println!("{line}");
    }
    let mut failed = outcome.failed.len();
    for f in &outcome.failed {
        eprintln!("fintrail trace publish ({}): {f}", tracker.name());
    }
    if show_status && !dry_run {
        let mut seen: Vec<&str> = Vec::new();
        for task in analysis.commits.iter().flat_map(|t| &t.tasks) {
            if seen.contains(&task.as_str()) {
                continue;
            }
            seen.push(task);
            match tracker.task_status(task) {
                Ok(Some(status)) => println!("task {task}: {status}"),
                Ok(None) => {}
                Err(e) => {
                    failed += 1;
                    eprintln!("fintrail trace publish ({}): status of {task}: {e}", tracker.name());
                }
            }
        }
    }
    if !dry_run {
        println!("{}: {} request(s) sent, {} failed", tracker.name(), outcome.sent, failed);
    }
    if failed == 0 {
        EXIT_OK
    } else {
        EXIT_FINDINGS
    }
}

fn install_hook(dir: &Path, force: bool, binary: Option<PathBuf>) -> Result<u8, Usage> {
    let repo = Repo::discover(dir)?;
    let binary = match binary {
        Some(b) => std::path::absolute(&b).map_err(|e| Usage(format!("{}: {e}", b.display())))?,
        None => std::env::current_exe()
            .map_err(|e| Usage(format!("cannot find this program's path: {e}; pass --binary")))?,
    };
    // The standalone `fintrail-trace` takes the subcommand directly; `fintrail` needs `trace`.
    let standalone = binary.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("fintrail-trace"));
    let prefix: &[&str] = if standalone { &[] } else { &["trace"] };
    let script = crate::hook::script(&binary, prefix)?;
    match crate::hook::install(&repo, &script, force) {
        Ok(crate::hook::Installed::New(p)) => println!("installed {}", p.display()),
        Ok(crate::hook::Installed::AlreadyPresent(p)) => println!("already installed: {}", p.display()),
        Ok(crate::hook::Installed::Replaced { path, backup }) => {
            println!("replaced {} (previous hook kept as {})", path.display(), backup.display())
        }
        Err(e @ crate::hook::InstallError::Exists(_)) => {
            eprintln!("fintrail trace install-hook: {e}");
            return Ok(EXIT_FINDINGS);
        }
        Err(e) => return Err(Usage(e.to_string())),
    }
    Ok(EXIT_OK)
}

/// The configuration file name, re-exported for the binary's help texts.
pub const CONFIG_FILE_NAME: &str = config::CONFIG_FILE_NAME;
