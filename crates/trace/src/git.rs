//! Reading history by running `git` (no git library: git itself is the reference
//! implementation, every machine that has a repository has it, and the build stays lean).
//!
//! Everything is read with `-z`, so paths arrive as raw bytes, unquoted, possibly not UTF-8.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A path as git stores it: bytes, `/`-separated. Printed lossily.
pub type RawPath = Vec<u8>;

/// Lossy, printable form of a raw path.
pub fn display_path(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

/// One changed path of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// git's status letters: `A`, `M`, `D`, `T`, `R100`, `C75`, or one letter per
    /// parent for a merge's combined diff (`MM`).
    pub status: String,
    pub path: RawPath,
    /// The source path of a rename or copy.
    pub from: Option<RawPath>,
}

/// One commit as read from `git log`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub sha: String,
    pub parents: Vec<String>,
    pub author_name: String,
    pub author_email: String,
    /// Author and committer dates, strict ISO 8601 (`%aI`, `%cI`), which is RFC 3339.
    pub authored_at: String,
    pub committed_at: String,
    pub message: String,
    /// For a merge: only the paths where the merge differs from every parent (its own
    /// changes, git's dense combined diff). Empty for a clean merge.
    pub changes: Vec<Change>,
    /// The commit is a shallow-clone boundary: its parents are missing locally, so its
    /// diff is unknown (git would show the whole tree as added); `changes` is empty.
    pub shallow_boundary: bool,
}

impl Commit {
    pub fn short_sha(&self) -> &str {
        &self.sha[..self.sha.len().min(10)]
    }
    pub fn subject(&self) -> &str {
        self.message.lines().next().unwrap_or("").trim()
    }
    pub fn is_merge(&self) -> bool {
        self.parents.len() > 1
    }
    /// Every path the commit touches, both sides of renames and copies included.
    pub fn touched_paths(&self) -> impl Iterator<Item = &[u8]> {
        self.changes.iter().flat_map(|c| std::iter::once(c.path.as_slice()).chain(c.from.as_deref()))
    }
}

/// A failure to run git or a refusal by git.
#[derive(Debug)]
pub enum GitError {
    /// git could not be started at all.
    Spawn(String),
    /// Not inside a git work tree or repository.
    NotARepository(String),
    /// git rejected the revision range (unknown revision, beyond a shallow boundary...).
    BadRange { range: String, detail: String },
    /// git failed otherwise.
    Failed { what: String, detail: String },
    /// git printed something we could not parse.
    Parse(String),
}

impl std::fmt::Display for GitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GitError::Spawn(e) => write!(f, "cannot run git: {e}"),
            GitError::NotARepository(d) => write!(f, "not inside a git repository ({d})"),
            GitError::BadRange { range, detail } => {
                write!(f, "git cannot read the range `{range}`: {detail}")
            }
            GitError::Failed { what, detail } => write!(f, "git {what} failed: {detail}"),
            GitError::Parse(d) => write!(f, "unexpected output from git log: {d}"),
        }
    }
}

impl std::error::Error for GitError {}

/// A repository to read, by its working directory.
#[derive(Debug, Clone)]
pub struct Repo {
    root: PathBuf,
}

fn git_command(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        // Never prompt (credential helpers, pagers); keep the output machine-readable.
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_PAGER", "cat")
        .env_remove("GIT_DIR_OVERRIDE")
        .args(["-c", "core.quotePath=false", "-c", "log.showSignature=false", "-c", "color.ui=false"])
        .stdin(Stdio::null());
    cmd
}

fn run(dir: &Path, args: &[&OsStr], what: &str) -> Result<Vec<u8>, (GitError, String)> {
    let out = git_command(dir).args(args).output().map_err(|e| (GitError::Spawn(e.to_string()), String::new()))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        let detail = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        Err((GitError::Failed { what: what.to_owned(), detail: detail.clone() }, detail))
    }
}

fn os(args: &[&'static str]) -> Vec<&'static OsStr> {
    args.iter().map(|s| OsStr::new(*s)).collect()
}

/// The `--format` of [`Repo::log`]. Each commit starts with a 0x1e byte and its fields are
/// NUL-terminated; the message can hold anything but NUL (git refuses NUL in messages).
const LOG_FORMAT: &str = "--format=%x1e%H%x00%P%x00%an%x00%ae%x00%aI%x00%cI%x00%B";

impl Repo {
    /// The repository containing `dir` (its top-level directory, or the git dir if bare).
    pub fn discover(dir: &Path) -> Result<Self, GitError> {
        let out = run(dir, &os(&["rev-parse", "--show-toplevel"]), "rev-parse").map_err(|(err, detail)| match err {
            GitError::Failed { .. } => GitError::NotARepository(detail),
            other => other,
        })?;
        let text = String::from_utf8_lossy(&out).trim().to_owned();
        let root = if text.is_empty() { dir.to_path_buf() } else { PathBuf::from(text) };
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn run(&self, args: &[&OsStr], what: &str) -> Result<Vec<u8>, GitError> {
        run(&self.root, args, what).map_err(|(e, _)| e)
    }

    /// Whether `rev` names a commit (false for an unborn `HEAD`).
    pub fn has_commit(&self, rev: &str) -> bool {
        let spec = format!("{rev}^{{commit}}");
        let args: Vec<&OsStr> = vec![
            OsStr::new("rev-parse"),
            OsStr::new("--verify"),
            OsStr::new("--quiet"),
            OsStr::new("--end-of-options"),
            OsStr::new(&spec),
        ];
        self.run(&args, "rev-parse").is_ok()
    }

    /// Full shas of the shallow boundary (empty for a complete clone).
    pub fn shallow_boundary(&self) -> Result<Vec<String>, GitError> {
        let out = self.run(&os(&["rev-parse", "--is-shallow-repository"]), "rev-parse")?;
        if String::from_utf8_lossy(&out).trim() != "true" {
            return Ok(Vec::new());
        }
        let path = self.run(&os(&["rev-parse", "--git-path", "shallow"]), "rev-parse")?;
        let path = self.root.join(String::from_utf8_lossy(&path).trim());
        let text = std::fs::read_to_string(&path).map_err(|e| GitError::Failed {
            what: "reading the shallow file".into(),
            detail: format!("{}: {e}", path.display()),
        })?;
        Ok(text.lines().map(|l| l.trim().to_owned()).filter(|l| !l.is_empty()).collect())
    }

    /// The commits of `range` (any `git log` revision expression: `A..B`, `A...B`, `REV`),
    /// newest first, with their changed paths (renames detected).
    pub fn log(&self, range: &str) -> Result<Vec<Commit>, GitError> {
        if range.starts_with('-') {
            return Err(GitError::BadRange { range: range.to_owned(), detail: "a range cannot start with `-`".into() });
        }
        let args: Vec<&OsStr> = [
            "log",
            "-z",
            "--no-color",
            "--root",
            "-M",
            "--name-status",
            // A merge lists only what it changed itself (conflict resolutions, "evil"
            // content); what it brings in belongs to the merged commits.
            "--diff-merges=dense-combined",
            LOG_FORMAT,
            "--end-of-options",
        ]
        .iter()
        .map(OsStr::new)
        .chain([OsStr::new(range), OsStr::new("--")])
        .collect();
        let out = run(&self.root, &args, "log").map_err(|(e, detail)| match e {
            GitError::Failed { .. } => GitError::BadRange { range: range.to_owned(), detail },
            other => other,
        })?;
        let boundary = self.shallow_boundary()?;
        let mut commits = parse_log(&out)?;
        for c in &mut commits {
            if boundary.contains(&c.sha) {
                c.shallow_boundary = true;
                c.changes.clear();
            }
        }
        Ok(commits)
    }

    /// Reads single commits by sha (for reverted commits outside the range). Unknown
    /// shas are skipped, not an error: a revert may name a commit this clone lacks.
    pub fn commits_by_sha(&self, shas: &[String]) -> Result<Vec<Commit>, GitError> {
        let mut found = Vec::new();
        for sha in shas {
            if !sha.bytes().all(|b| b.is_ascii_hexdigit()) || !self.has_commit(sha) {
                continue;
            }
            let args: Vec<&OsStr> = ["log", "-z", "--no-walk", "-M", "--name-status", LOG_FORMAT, "--end-of-options"]
                .iter()
                .map(OsStr::new)
                .chain([OsStr::new(sha.as_str()), OsStr::new("--")])
                .collect();
            found.extend(parse_log(&self.run(&args, "log")?)?);
        }
        Ok(found)
    }

    /// Paths staged for the next commit (for the commit-msg hook's sensitivity warning).
    pub fn staged_paths(&self) -> Result<Vec<RawPath>, GitError> {
        let out = self.run(&os(&["diff", "--cached", "--name-only", "-z", "--no-renames"]), "diff --cached")?;
        Ok(out.split(|&b| b == 0).filter(|p| !p.is_empty()).map(<[u8]>::to_vec).collect())
    }

    /// Whether a merge, revert or cherry-pick is being concluded (`MERGE_HEAD` etc. exist).
    pub fn in_progress(&self, head: &str) -> Option<String> {
        let args: Vec<&OsStr> =
            vec![OsStr::new("rev-parse"), OsStr::new("--verify"), OsStr::new("--quiet"), OsStr::new(head)];
        self.run(&args, "rev-parse").ok().map(|o| String::from_utf8_lossy(&o).trim().to_owned())
    }

    /// The absolute path of a file under the git directory (`hooks/commit-msg`), honouring
    /// `core.hooksPath` and worktrees.
    pub fn git_path(&self, name: &str) -> Result<PathBuf, GitError> {
        let out = self.run(&[OsStr::new("rev-parse"), OsStr::new("--git-path"), OsStr::new(name)], "rev-parse")?;
        let p = PathBuf::from(String::from_utf8_lossy(&out).trim_end_matches('\n'));
        Ok(if p.is_absolute() { p } else { self.root.join(p) })
    }
}

fn field(token: &[u8]) -> String {
    String::from_utf8_lossy(token).into_owned()
}

fn is_status(token: &[u8]) -> bool {
    !token.is_empty()
        && token.len() <= 16
        && token[0].is_ascii_uppercase()
        && token.iter().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// Parses the output of `git log -z --name-status` with [`LOG_FORMAT`].
///
/// The stream is NUL-separated tokens: a commit starts with a token beginning with 0x1e
/// (then six header fields and the message), followed by status tokens, each followed by
/// one path (two for a rename/copy of a non-merge). git puts a newline before the first
/// status token and may emit empty tokens between commits; both are skipped. Paths are
/// only ever read right after a status token, so a path may contain any byte but NUL.
pub fn parse_log(out: &[u8]) -> Result<Vec<Commit>, GitError> {
    let mut commits: Vec<Commit> = Vec::new();
    let mut tokens = out.split(|&b| b == 0).peekable();
    while let Some(raw) = tokens.next() {
        let token = raw.strip_prefix(b"\n").unwrap_or(raw);
        if token.is_empty() {
            continue;
        }
        if let Some(sha) = token.strip_prefix(b"\x1e") {
            let mut next = || tokens.next().map(field).ok_or_else(|| GitError::Parse("truncated commit header".into()));
            let sha = field(sha);
            let parents = next()?;
            let commit = Commit {
                parents: parents.split_whitespace().map(str::to_owned).collect(),
                author_name: next()?,
                author_email: next()?,
                authored_at: next()?,
                committed_at: next()?,
                message: next()?,
                sha,
                changes: Vec::new(),
                shallow_boundary: false,
            };
            if !(commit.sha.len() == 40 || commit.sha.len() == 64) || !commit.sha.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Err(GitError::Parse(format!("bad commit id `{}`", commit.sha)));
            }
            commits.push(commit);
            continue;
        }
        let Some(commit) = commits.last_mut() else {
            return Err(GitError::Parse("a path before any commit".into()));
        };
        if !is_status(token) {
            return Err(GitError::Parse(format!(
                "expected a status letter after commit {}, got `{}`",
                commit.short_sha(),
                String::from_utf8_lossy(&token[..token.len().min(40)])
            )));
        }
        let status = field(token);
        let two_paths = !commit.is_merge() && (status.starts_with('R') || status.starts_with('C'));
        let mut path = || {
            tokens
                .next()
                .filter(|p| !p.is_empty())
                .map(<[u8]>::to_vec)
                .ok_or_else(|| GitError::Parse(format!("status `{status}` without a path")))
        };
        let change = if two_paths {
            let from = path()?;
            Change { path: path()?, from: Some(from), status: status.clone() }
        } else {
            Change { path: path()?, from: None, status: status.clone() }
        };
        commit.changes.push(change);
    }
    Ok(commits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_rename_merge_and_binary_paths() {
        let sha1 = "a".repeat(40);
        let sha2 = "b".repeat(40);
        let sha3 = "c".repeat(40);
        let mut out: Vec<u8> = Vec::new();
        out.extend_from_slice(format!("\x1e{sha3}\0{sha1} {sha2}\0A\0a@x\0t1\0t2\0Merge\n\0\0").as_bytes());
        out.extend_from_slice(format!("\x1e{sha2}\0{sha1}\0A\0a@x\0t1\0t2\0two\n\0\nR100\0old\0new\0A\0c").as_bytes());
        out.push(0xff);
        out.push(0);
        out.extend_from_slice(format!("\x1e{sha1}\0\0A\0a@x\0t1\0t2\0one\n\0\nMM\0x\0").as_bytes());
        let commits = parse_log(&out).unwrap();
        assert_eq!(commits.len(), 3);
        assert!(commits[0].is_merge());
        assert!(commits[0].changes.is_empty());
        assert_eq!(commits[1].changes[0].from.as_deref(), Some(&b"old"[..]));
        assert_eq!(commits[1].changes[0].path, b"new");
        assert_eq!(commits[1].changes[1].path, b"c\xff");
        assert_eq!(commits[2].parents.len(), 0);
        assert_eq!(commits[2].changes[0].status, "MM");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse_log(b"hello\0world\0").is_err());
        assert!(parse_log(b"\x1eabc\0").is_err());
        let sha = "a".repeat(40);
        assert!(parse_log(format!("\x1e{sha}\0\0A\0a@x\0t\0t\0m\0\nM\0").as_bytes()).is_err());
        assert!(parse_log(b"").unwrap().is_empty());
    }
}
