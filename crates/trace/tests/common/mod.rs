//! Real temporary git repositories for the tests (no global git configuration used).

#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Isolates git from the machine's configuration and fixes identities and dates.
pub fn isolate(cmd: &mut Command) -> &mut Command {
    cmd.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Ann Author")
        .env("GIT_AUTHOR_EMAIL", "ann@example.com")
        .env("GIT_COMMITTER_NAME", "Ann Author")
        .env("GIT_COMMITTER_EMAIL", "ann@example.com")
        .env("GIT_AUTHOR_DATE", "2024-05-01T10:00:00Z")
        .env("GIT_COMMITTER_DATE", "2024-05-01T10:00:00Z")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .stdin(Stdio::null())
}

/// A temporary repository, removed on drop.
pub struct TempRepo {
    pub dir: PathBuf,
}

impl Drop for TempRepo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn temp_dir(name: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("fintrail-trace-test-{}-{name}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl TempRepo {
    pub fn new(name: &str) -> Self {
        let repo = Self { dir: temp_dir(name) };
        repo.git(["init", "-q", "-b", "main"]);
        repo
    }

    /// Runs git with the test identity; panics on failure.
    pub fn git<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = self.git_output(args);
        assert!(out.status.success(), "git failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    pub fn git_output<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new("git");
        isolate(&mut cmd)
            .current_dir(&self.dir)
            .args(["-c", "user.name=Ann Author", "-c", "user.email=ann@example.com", "-c", "commit.gpgsign=false"])
            .args(args);
        cmd.output().unwrap()
    }

    pub fn write(&self, path: impl AsRef<Path>, content: &str) {
        let p = self.dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    /// Writes `path`, stages everything, commits with `message`; returns the full sha.
    pub fn commit(&self, path: &str, message: &str) -> String {
        self.write(path, &format!("{message}\n{}\n", COUNTER.fetch_add(1, Ordering::SeqCst)));
        self.commit_all(message)
    }

    pub fn commit_all(&self, message: &str) -> String {
        self.git(["add", "-A"]);
        self.git(["commit", "-q", "--no-verify", "-m", message]);
        self.head()
    }

    pub fn head(&self) -> String {
        self.git(["rev-parse", "HEAD"])
    }

    pub fn short(&self, sha: &str) -> String {
        sha[..10].to_owned()
    }
}

/// Runs the real `fintrail-trace` program in `dir`.
pub fn trace(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fintrail-trace"));
    isolate(&mut cmd).current_dir(dir).args(args);
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
