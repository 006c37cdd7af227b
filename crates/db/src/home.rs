//! The layout of `FINTRAIL_HOME` (default `./.fintrail`): where the private cluster,
//! media, keys and the DuckDB file live. One place names every path so no crate guesses.

use std::path::{Path, PathBuf};

/// `FINTRAIL_HOME`: the root of everything fintrail keeps on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// The environment variable that names the home.
    pub const ENV: &'static str = "FINTRAIL_HOME";
    /// The default when the variable is unset: relative to the working directory.
    pub const DEFAULT: &'static str = ".fintrail";

    /// A home at `root`, made absolute against the current directory (postgres runs
    /// from another working directory, so every path handed to it must be absolute).
    pub fn new(root: impl AsRef<Path>) -> std::io::Result<Self> {
        let root = root.as_ref();
        let root = if root.is_absolute() { root.to_path_buf() } else { std::env::current_dir()?.join(root) };
        Ok(Self { root })
    }

    /// `FINTRAIL_HOME` or `./.fintrail`.
    pub fn from_env() -> std::io::Result<Self> {
        match std::env::var_os(Self::ENV) {
            Some(v) if !v.is_empty() => Self::new(PathBuf::from(v)),
            _ => Self::new(Self::DEFAULT),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The private PostgreSQL cluster's folder (owned by the postgres OS user when we run as root).
    pub fn pg_dir(&self) -> PathBuf {
        self.root.join("pg")
    }
    pub fn pg_data(&self) -> PathBuf {
        self.pg_dir().join("data")
    }
    pub fn pg_log(&self) -> PathBuf {
        self.pg_dir().join("postgres.log")
    }
    /// Generated passwords of the database roles (mode 0600).
    pub fn secrets_dir(&self) -> PathBuf {
        self.root.join("secrets")
    }
    /// Signing keys (media URLs, audit checkpoints, pseudonymization).
    pub fn keys_dir(&self) -> PathBuf {
        self.root.join("keys")
    }
    /// User media (ID documents, selfies) on the local object store.
    pub fn media_dir(&self) -> PathBuf {
        self.root.join("media")
    }
    /// The analytics store written by `fintrail cdc`.
    pub fn analytics_db(&self) -> PathBuf {
        self.root.join("analytics.duckdb")
    }
    /// Held (flock) by a running `fintrail up`, so a second one fails clearly.
    pub fn up_lock(&self) -> PathBuf {
        self.root.join("up.lock")
    }
}
