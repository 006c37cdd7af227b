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

    /// Creates the home (and missing parents) owner-only: 0700, also when it existed with a
    /// wider mode. One exception, kept when found: the "others may traverse" bit (0701) that
    /// `Cluster::init` adds when PostgreSQL runs as another OS user (fintrail run as root),
    /// which must reach `pg/` through the home. Traverse only: nobody else can list the home,
    /// and everything in it is owner-only itself.
    pub fn create(&self) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        let traversable = std::fs::metadata(&self.root).map(|m| m.permissions().mode() & 0o001 != 0).unwrap_or(false)
            && self.pg_dir().exists();
        owner_only::create_dir(&self.root)?;
        if traversable {
            std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(owner_only::DIR_MODE | 0o001))?;
        }
        Ok(())
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
    /// The private cluster's CA certificate (`tls/ca.crt`), which fintrail's clients trust
    /// (issue #14). The server's certificate and key sit in the data folder, owned by the
    /// PostgreSQL OS user (see `cluster`).
    pub fn tls_dir(&self) -> PathBuf {
        self.root.join("tls")
    }
    pub fn tls_ca_cert(&self) -> PathBuf {
        self.tls_dir().join("ca.crt")
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

/// Owner-only files and folders: the one helper every crate uses for what no other OS user
/// may read (passwords, signing keys, media, analytics, status files).
///
/// Why one helper: three copies had drifted (one still created `keys/` 0755).
pub mod owner_only {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    use std::path::Path;

    use anyhow::Context as _;

    /// Mode of owner-only folders.
    pub const DIR_MODE: u32 = 0o700;
    /// Mode of owner-only files.
    pub const FILE_MODE: u32 = 0o600;

    /// Creates `dir` (and missing parents) and makes `dir` itself 0700, also when it existed.
    pub fn create_dir(dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))
            .with_context(|| format!("making {} owner-only", dir.display()))
    }

    /// Writes a new 0600 file (its folder made owner-only first), synced to disk. Returns
    /// `false`, writing nothing, when the file already exists: a key or password, once
    /// written, is never replaced behind a reader's back.
    pub fn create_file(path: &Path, bytes: &[u8]) -> anyhow::Result<bool> {
        if let Some(dir) = path.parent() {
            create_dir(dir)?;
        }
        let mut f = match open_new(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
        };
        f.write_all(bytes).with_context(|| format!("writing {}", path.display()))?;
        f.sync_all().with_context(|| format!("syncing {}", path.display()))?;
        Ok(true)
    }

    /// Opens a new 0600 file for writing (its folder must exist; fails if `path` exists): for
    /// content streamed in, such as media uploads.
    pub fn create_new(path: &Path) -> anyhow::Result<std::fs::File> {
        open_new(path).with_context(|| format!("creating {}", path.display()))
    }

    /// The one way a new owner-only file is opened: 0600 from the first byte, never an
    /// existing file.
    fn open_new(path: &Path) -> std::io::Result<std::fs::File> {
        std::fs::OpenOptions::new().write(true).create_new(true).mode(FILE_MODE).open(path)
    }

    /// Replaces `path` atomically with `bytes` through a 0600 temporary file beside it (status
    /// files: readers never see half a file, nor a moment of a wider mode).
    pub fn replace_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp);
        let _ = std::fs::remove_file(&tmp);
        let mut f = create_new(&tmp)?;
        f.write_all(bytes).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
    }

    /// Makes an existing file 0600: for files another library creates with the process umask
    /// (DuckDB's database and WAL).
    pub fn restrict(path: &Path) -> anyhow::Result<()> {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(FILE_MODE))
            .with_context(|| format!("making {} owner-only", path.display()))
    }

    /// Whether `path` is readable by its owner only (no group or other bits).
    pub fn is_owner_only(path: &Path) -> anyhow::Result<bool> {
        let mode = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.permissions().mode();
        Ok(mode & 0o077 == 0)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn owner_only_files_and_folders() {
        use super::owner_only::*;
        use std::os::unix::fs::PermissionsExt as _;
        let root = std::env::temp_dir().join(format!("fintrail-owner-only-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let file = root.join("keys/a.key");
        assert!(create_file(&file, b"one").unwrap(), "created");
        assert!(!create_file(&file, b"two").unwrap(), "never replaced");
        assert_eq!(std::fs::read(&file).unwrap(), b"one");
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, FILE_MODE);
        assert_eq!(std::fs::metadata(root.join("keys")).unwrap().permissions().mode() & 0o777, DIR_MODE);
        // An existing, open folder is tightened.
        let open = root.join("open");
        std::fs::create_dir_all(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(!is_owner_only(&open).unwrap());
        create_dir(&open).unwrap();
        assert!(is_owner_only(&open).unwrap());
        // Streamed, replaced and foreign-made files end 0600.
        let streamed = root.join("keys/streamed");
        drop(create_new(&streamed).unwrap());
        assert!(create_new(&streamed).is_err(), "never over an existing file");
        let status = root.join("keys/status.json");
        replace_file(&status, b"1").unwrap();
        replace_file(&status, b"2").unwrap();
        assert_eq!(std::fs::read(&status).unwrap(), b"2");
        let foreign = root.join("open/foreign");
        std::fs::write(&foreign, b"x").unwrap();
        std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o644)).unwrap();
        restrict(&foreign).unwrap();
        for f in [&streamed, &status, &foreign] {
            assert_eq!(std::fs::metadata(f).unwrap().permissions().mode() & 0o777, FILE_MODE, "{}", f.display());
        }
        // The home: 0700 from any earlier mode.
        let home = super::Home::new(root.join("home")).unwrap();
        std::fs::create_dir_all(home.root()).unwrap();
        std::fs::set_permissions(home.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
        home.create().unwrap();
        assert_eq!(std::fs::metadata(home.root()).unwrap().permissions().mode() & 0o777, DIR_MODE);
        let _ = std::fs::remove_dir_all(&root);
    }
}
