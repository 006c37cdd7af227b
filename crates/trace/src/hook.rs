//! The `commit-msg` hook: refuses a message without a task reference, with the very rules
//! `check` applies ([`crate::trace::evaluate`] on the message as one commit).
//!
//! A merge or revert being concluded (`MERGE_HEAD` / `REVERT_HEAD`) is judged as such:
//! a merge as a clean merge (its own changes, if any, are checked in CI), a revert inherits
//! the tasks of the commit it reverts. Sensitive staged paths without an approver trailer
//! only produce a warning here: approval usually comes at review, after the commit is
//! written; `fintrail trace check` in CI enforces it.

use crate::config::Config;
use crate::git::{display_path, Commit, Repo};
use crate::message::{references, strip_hook_comments};
use crate::trace::{evaluate, Traced};
use std::path::{Path, PathBuf};

/// The line that marks a hook as ours (an identical file is "already installed").
pub const HOOK_MARKER: &str = "# fintrail-trace commit-msg hook v1";
/// Upper bound on a commit message read by the hook.
pub const MAX_MESSAGE_BYTES: u64 = 1024 * 1024;

/// Single-quotes `s` for POSIX sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The hook script: runs `<binary> [trace] check-message "$1"`.
pub fn script(binary: &Path, subcommand_prefix: &[&str]) -> Result<String, String> {
    let bin =
        binary.to_str().ok_or_else(|| format!("the binary path {} is not UTF-8; pass --binary", binary.display()))?;
    let mut cmd = sh_quote(bin);
    for part in subcommand_prefix {
        cmd.push(' ');
        cmd.push_str(part);
    }
    Ok(format!(
        "#!/bin/sh\n{HOOK_MARKER}\n# Installed by `fintrail trace install-hook`; refuses a commit message without a task\n# reference. Bypass once with `git commit --no-verify` (CI's `fintrail trace check` still applies).\nexec {cmd} check-message \"$1\"\n"
    ))
}

/// What `install` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Installed {
    New(PathBuf),
    AlreadyPresent(PathBuf),
    /// An existing different hook was replaced (`--force`); it was kept at `backup`.
    Replaced {
        path: PathBuf,
        backup: PathBuf,
    },
}

/// Why `install` did nothing.
#[derive(Debug)]
pub enum InstallError {
    /// A different hook is there and `force` was not given.
    Exists(PathBuf),
    Io(String),
}

impl std::fmt::Display for InstallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InstallError::Exists(p) => write!(
                f,
                "{} exists and is not this hook; not overwriting it (use --force to replace it, keeping a .bak copy)",
                p.display()
            ),
            InstallError::Io(e) => f.write_str(e),
        }
    }
}

/// Writes `script` to the repository's `commit-msg` hook (honouring `core.hooksPath`).
pub fn install(repo: &Repo, script: &str, force: bool) -> Result<Installed, InstallError> {
    let path = repo.git_path("hooks/commit-msg").map_err(|e| InstallError::Io(e.to_string()))?;
    let io = |what: &str, p: &Path, e: std::io::Error| InstallError::Io(format!("{what} {}: {e}", p.display()));
    let existing = match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io("cannot read", &path, e)),
    };
    let mut backup = None;
    if let Some(old) = existing {
        if old == script.as_bytes() {
            set_executable(&path).map_err(|e| io("cannot chmod", &path, e))?;
            return Ok(Installed::AlreadyPresent(path));
        }
        if !force {
            return Err(InstallError::Exists(path));
        }
        let bak = path.with_extension("bak");
        std::fs::write(&bak, &old).map_err(|e| io("cannot write", &bak, e))?;
        backup = Some(bak);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io("cannot create", dir, e))?;
    }
    // Write beside and rename, so a concurrent `git commit` never runs half a script.
    let tmp = path.with_extension("fintrail-tmp");
    std::fs::write(&tmp, script).map_err(|e| io("cannot write", &tmp, e))?;
    set_executable(&tmp).map_err(|e| io("cannot chmod", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io("cannot install", &path, e))?;
    Ok(match backup {
        Some(backup) => Installed::Replaced { path, backup },
        None => Installed::New(path),
    })
}

#[cfg(unix)]
fn set_executable(p: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))
}

#[cfg(not(unix))]
fn set_executable(_p: &Path) -> std::io::Result<()> {
    Ok(())
}

/// The verdict on a proposed message, plus warnings that do not refuse it.
pub struct MessageVerdict {
    pub traced: Traced,
    pub warnings: Vec<String>,
}

/// Judges the message in `file` as the commit about to be made in `repo`.
pub fn check_message(repo: Option<&Repo>, file: &Path, config: &Config) -> Result<MessageVerdict, String> {
    let meta = std::fs::metadata(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    if meta.len() > MAX_MESSAGE_BYTES {
        return Err(format!("{}: message larger than {MAX_MESSAGE_BYTES} bytes", file.display()));
    }
    let raw = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let message = strip_hook_comments(&String::from_utf8_lossy(&raw));
    let merging = repo.and_then(|r| r.in_progress("MERGE_HEAD"));
    let mut parents = vec!["HEAD".to_owned()];
    parents.extend(merging);
    let commit = Commit {
        sha: "0".repeat(40),
        parents,
        author_name: String::new(),
        author_email: String::new(),
        authored_at: String::new(),
        committed_at: String::new(),
        message: message.clone(),
        changes: Vec::new(),
        shallow_boundary: false,
    };
    let refs = references(&message, config);
    let traced = evaluate(commit, refs.clone(), config, |sha| {
        let repo = repo?;
        let found = repo.commits_by_sha(&[sha.to_owned()]).ok()?;
        let c = found.into_iter().next()?;
        let tasks = references(&c.message, config).tasks;
        Some((c.sha, tasks))
    });
    let mut warnings = Vec::new();
    if let Some(repo) = repo {
        if traced.commit.parents.len() < 2 && refs.approvers.is_empty() {
            let staged = repo.staged_paths().unwrap_or_default();
            let sensitive: Vec<String> =
                staged.iter().filter(|p| config.sensitive.matches(p)).take(5).map(|p| display_path(p)).collect();
            if !sensitive.is_empty() {
                let keys = config.approver_trailers.join(":` or `");
                warnings.push(format!(
                    "this commit changes sensitive paths ({}); `fintrail trace check` will require a `{keys}:` trailer naming the approver before it can land",
                    sensitive.join(", ")
                ));
            }
        }
    }
    Ok(MessageVerdict { traced, warnings })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_quotes_the_binary() {
        let s = script(Path::new("/opt/it's here/fintrail"), &["trace"]).unwrap();
        assert!(s.starts_with("#!/bin/sh\n"));
        assert!(s.contains(HOOK_MARKER));
        assert!(s.contains(r"exec '/opt/it'\''s here/fintrail' trace check-message "));
    }
}
