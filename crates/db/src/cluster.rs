//! The private PostgreSQL cluster: `initdb` / `pg_ctl` from the machine's PostgreSQL 15+
//! binaries, under `FINTRAIL_HOME/pg`, listening on 127.0.0.1 only, `wal_level=logical`.
//!
//! TLS is on (issue #14), and `pg_hba` accepts nothing else (`hba`). Every `start` re-asserts it,
//! so a cluster initialized before TLS is upgraded at its next start, running or not, its data
//! untouched:
//! - certificates (`certs`): the CA certificate at `FINTRAIL_HOME/tls/ca.crt` (what fintrail's
//!   clients trust), the server's `server.crt` and `server.key` in the data folder (PostgreSQL
//!   requires the key to be 0600 and owned by the server's OS user). All owner-only, written
//!   through `home::owner_only`; generated when one is missing or the server certificate has
//!   fewer than `certs::RENEW_BEFORE_DAYS` left.
//! - `postgresql.conf`: a block of its own (`ssl = on`, the two files, TLS 1.3 at least).
//! - A running cluster is reloaded (`ssl` is a reloadable setting) and `start` returns only once
//!   it answers TLS, so the caller's first connection finds it.
//!
//! Why we shell out to `initdb`/`pg_ctl` instead of embedding a server crate: the machine's
//! own, distribution-patched binaries are the ones operators know, and no download is needed.
//! PostgreSQL refuses to run as root, so when we are root its binaries run as an unprivileged
//! OS user (`postgres` by default, `FINTRAIL_PG_USER` to override) that owns the data folder.

use std::{
    fs,
    os::unix::{fs::MetadataExt, fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Command, Output},
};

use anyhow::{bail, Context as _};
use fintrail_domain::db_role::DbRole;

use crate::{home::Home, secrets};

/// The oldest PostgreSQL major version we support (logical replication features, `MERGE`...).
pub const PG_MAJOR_MIN: u32 = 15;
/// How long `pg_ctl` may wait for a start or stop before we call it failed.
const PG_CTL_TIMEOUT_S: u32 = 60;
/// The server's certificate and key, in the data folder (relative paths in `postgresql.conf`
/// are relative to it).
pub const SERVER_CERT: &str = "server.crt";
pub const SERVER_KEY: &str = "server.key";
const TLS_CONF_BEGIN: &str = "# --- fintrail TLS (issue #14; re-asserted by `fintrail db start`) ---";
const TLS_CONF_END: &str = "# --- end of fintrail TLS ---";

/// Where the PostgreSQL server binaries are.
#[derive(Debug, Clone)]
pub struct PgBinaries {
    bindir: PathBuf,
}

impl PgBinaries {
    /// Finds the binaries: `FINTRAIL_PG_BIN`, then `pg_config --bindir`, then `initdb` on PATH,
    /// then the newest `/usr/lib/postgresql/*/bin`. Each candidate must hold `initdb`, `pg_ctl`
    /// and `postgres` of version >= 15.
    pub fn locate() -> anyhow::Result<Self> {
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(dir) = std::env::var_os("FINTRAIL_PG_BIN") {
            let dir = PathBuf::from(dir);
            // An explicit choice is not second-guessed: it works or it is the error.
            return Self::check(&dir).with_context(|| format!("FINTRAIL_PG_BIN={} is not usable", dir.display()));
        }
        if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
            if out.status.success() {
                candidates.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
            }
        }
        if let Some(path) = std::env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&path));
        }
        let mut versioned: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path().join("bin"))))
            .collect();
        versioned.sort_by_key(|v| std::cmp::Reverse(v.0));
        candidates.extend(versioned.into_iter().map(|(_, p)| p));
        for dir in candidates {
            if let Ok(found) = Self::check(&dir) {
                return Ok(found);
            }
        }
        bail!(
            "PostgreSQL {PG_MAJOR_MIN}+ server binaries (initdb, pg_ctl, postgres) were not found \
             (looked at FINTRAIL_PG_BIN, pg_config --bindir, PATH, /usr/lib/postgresql/*/bin).\n\
             Install them with:  sudo apt-get install -y postgresql   (or run ./dev setup)\n\
             or point FINTRAIL_PG_BIN at their folder, or use --database-url for an external server."
        )
    }

    fn check(dir: &Path) -> anyhow::Result<Self> {
        for tool in ["initdb", "pg_ctl", "postgres"] {
            anyhow::ensure!(dir.join(tool).is_file(), "{} has no {tool}", dir.display());
        }
        let out = Command::new(dir.join("postgres")).arg("--version").output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        // "postgres (PostgreSQL) 15.18 (Debian ...)"
        let major: u32 = text
            .split_whitespace()
            .find_map(|w| w.split('.').next()?.parse().ok())
            .with_context(|| format!("cannot read the version of {}: {text}", dir.display()))?;
        anyhow::ensure!(major >= PG_MAJOR_MIN, "{} is PostgreSQL {major}; {PG_MAJOR_MIN}+ is needed", dir.display());
        Ok(Self { bindir: dir.to_path_buf() })
    }

    /// The path of one tool (`pgbench`, `pg_recvlogical`, ...).
    pub fn tool(&self, name: &str) -> PathBuf {
        self.bindir.join(name)
    }
}

/// The unprivileged OS account PostgreSQL runs as when we are root.
#[derive(Debug, Clone, Copy)]
struct OsUser {
    uid: u32,
    gid: u32,
}

fn effective_uid() -> u32 {
    // /proc/self belongs to the process's effective user; avoids unsafe libc calls.
    fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(u32::MAX)
}

fn lookup_os_user(name: &str) -> anyhow::Result<OsUser> {
    let passwd = fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() >= 4 && fields[0] == name {
            return Ok(OsUser { uid: fields[2].parse()?, gid: fields[3].parse()? });
        }
    }
    bail!(
        "PostgreSQL refuses to run as root and there is no OS user '{name}' to run it as.\n\
         Create one (sudo useradd --system --home /var/lib/postgresql {name}; installing the \
         postgresql package does it) or set FINTRAIL_PG_USER to an existing unprivileged user."
    )
}

/// Whether the cluster is running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    NotInitialized,
    Stopped,
    Running { pid: u32, port: u16 },
}

/// What `start` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    AlreadyRunning,
    Started,
}

/// Options fixed at `initdb` time.
#[derive(Debug, Clone, Copy)]
pub struct InitOptions {
    /// `false` turns off fsync and friends: for throw-away test clusters only.
    pub durable: bool,
}

/// The private cluster under one `FINTRAIL_HOME`.
#[derive(Debug, Clone)]
pub struct Cluster {
    home: Home,
    bin: PgBinaries,
    run_as: Option<OsUser>,
}

impl Cluster {
    /// A handle; nothing is started. Fails when the binaries cannot be found.
    pub fn new(home: Home) -> anyhow::Result<Self> {
        let bin = PgBinaries::locate()?;
        let run_as = if effective_uid() == 0 {
            let name = std::env::var("FINTRAIL_PG_USER").unwrap_or_else(|_| "postgres".to_string());
            Some(lookup_os_user(&name)?)
        } else {
            None
        };
        Ok(Self { home, bin, run_as })
    }

    pub fn home(&self) -> &Home {
        &self.home
    }
    pub fn binaries(&self) -> &PgBinaries {
        &self.bin
    }

    fn pg_command(&self, tool: &str) -> Command {
        let mut cmd = Command::new(self.bin.tool(tool));
        // postgres must be able to stat its working directory.
        cmd.current_dir(self.home.pg_dir());
        cmd.env("LC_ALL", "C.UTF-8");
        if let Some(user) = self.run_as {
            cmd.uid(user.uid).gid(user.gid);
        }
        cmd
    }

    fn run(&self, mut cmd: Command, what: &str) -> anyhow::Result<Output> {
        let out = cmd.output().with_context(|| format!("running {what}"))?;
        if !out.status.success() {
            bail!(
                "{what} failed ({}):\n{}{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log_tail()
            );
        }
        Ok(out)
    }

    /// The last lines of the server log, to explain a failure.
    pub fn log_tail(&self) -> String {
        let Ok(log) = fs::read_to_string(self.home.pg_log()) else { return String::new() };
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        format!("--- last lines of {} ---\n{tail}", self.home.pg_log().display())
    }

    pub fn is_initialized(&self) -> bool {
        self.home.pg_data().join("PG_VERSION").is_file()
    }

    /// The port chosen at `initdb` time.
    pub fn port(&self) -> anyhow::Result<u16> {
        let path = self.home.pg_dir().join("port");
        let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        text.trim().parse().with_context(|| format!("{} does not hold a port", path.display()))
    }

    /// `initdb` with a generated admin password, then our settings. Fails if already initialized.
    pub fn init(&self, opts: InitOptions) -> anyhow::Result<()> {
        anyhow::ensure!(!self.is_initialized(), "{} is already initialized", self.home.pg_data().display());
        let root = self.home.root();
        self.home.create()?;
        let pg_dir = self.home.pg_dir();
        // A half-done earlier initdb (killed) leaves a data folder without PG_VERSION: start over.
        if pg_dir.exists() {
            fs::remove_dir_all(&pg_dir).with_context(|| format!("removing incomplete {}", pg_dir.display()))?;
        }
        fs::create_dir_all(&pg_dir)?;
        fs::set_permissions(&pg_dir, fs::Permissions::from_mode(0o700))?;
        if let Some(user) = self.run_as {
            std::os::unix::fs::chown(&pg_dir, Some(user.uid), Some(user.gid))?;
            // The postgres user must traverse the home to reach pg/ (it cannot read anything else).
            let mode = fs::metadata(root)?.permissions().mode();
            if mode & 0o001 == 0 {
                fs::set_permissions(root, fs::Permissions::from_mode(mode | 0o001))?;
            }
        }
        let admin_password = secrets::get_or_create(&self.home.secrets_dir(), DbRole::Admin.sql_name())?;
        let pwfile = pg_dir.join(".initdb-pwfile");
        fs::write(&pwfile, &admin_password)?;
        fs::set_permissions(&pwfile, fs::Permissions::from_mode(0o600))?;
        if let Some(user) = self.run_as {
            std::os::unix::fs::chown(&pwfile, Some(user.uid), Some(user.gid))?;
        }
        let mut cmd = self.pg_command("initdb");
        cmd.arg("-D").arg(self.home.pg_data());
        cmd.args(["-U", DbRole::Admin.sql_name(), "--auth=scram-sha-256", "-E", "UTF8", "--no-locale"]);
        cmd.arg(format!("--pwfile={}", pwfile.display()));
        if !opts.durable {
            cmd.arg("--no-sync");
        }
        let result = self.run(cmd, "initdb");
        let _ = fs::remove_file(&pwfile);
        result?;

        let port = free_port()?;
        let mut conf = format!(
            "\n# --- fintrail private cluster (written by `fintrail db start`) ---\n\
             listen_addresses = '127.0.0.1'\n\
             port = {port}\n\
             unix_socket_directories = ''\n\
             wal_level = logical\n\
             max_wal_senders = 16\n\
             max_replication_slots = 16\n\
             log_replication_commands = on\n\
             max_connections = 300\n\
             shared_buffers = 256MB\n\
             log_min_messages = warning\n\
             log_line_prefix = '%m [%p] %u@%d '\n"
        );
        if !opts.durable {
            conf.push_str("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n");
        }
        let conf_path = self.home.pg_data().join("postgresql.conf");
        let mut existing = fs::read_to_string(&conf_path)?;
        existing.push_str(&conf);
        fs::write(&conf_path, existing)?;
        self.ensure_hba()?;
        fs::write(pg_dir.join("port"), port.to_string())?;
        tracing::info!(log_class = "app", data = %self.home.pg_data().display(), port, "initialized private PostgreSQL cluster");
        Ok(())
    }

    /// The server's status, from `pg_ctl status`.
    pub fn status(&self) -> anyhow::Result<Status> {
        if !self.is_initialized() {
            return Ok(Status::NotInitialized);
        }
        let mut cmd = self.pg_command("pg_ctl");
        cmd.arg("status").arg("-D").arg(self.home.pg_data());
        let out = cmd.output().context("running pg_ctl status")?;
        if !out.status.success() {
            return Ok(Status::Stopped);
        }
        let pid = read_postmaster_pid(&self.home.pg_data()).unwrap_or(0);
        Ok(Status::Running { pid, port: self.port()? })
    }

    /// Starts the cluster (initializing it first if needed). Idempotent; recovers a stale
    /// `postmaster.pid` left by a crash.
    pub fn start(&self, opts: InitOptions) -> anyhow::Result<Started> {
        if !self.is_initialized() {
            self.init(opts)?;
        }
        let tls_changed = self.ensure_tls()?;
        let hba_changed = self.ensure_hba()?;
        if let Status::Running { port, .. } = self.status()? {
            if hba_changed || tls_changed {
                let mut cmd = self.pg_command("pg_ctl");
                cmd.arg("reload").arg("-D").arg(self.home.pg_data());
                self.run(cmd, "pg_ctl reload")?;
            }
            if tls_changed {
                // A reload is a signal: wait until the server answers TLS (the new certificate).
                self.wait_for_tls(port)?;
            }
            return Ok(Started::AlreadyRunning);
        }
        self.remove_stale_pid_file()?;
        let mut cmd = self.pg_command("pg_ctl");
        cmd.arg("start").arg("-D").arg(self.home.pg_data());
        cmd.arg("-l").arg(self.home.pg_log());
        cmd.args(["-w", "-t", &PG_CTL_TIMEOUT_S.to_string()]);
        // pg_ctl leaves the postmaster running in the background: detach its stdio so that
        // callers piping our output are not held open by the server.
        cmd.stdin(std::process::Stdio::null());
        let out = cmd.output().context("running pg_ctl start")?;
        if !out.status.success() {
            bail!(
                "the private PostgreSQL did not start ({}). Is port {} taken by another server?\n{}{}",
                out.status,
                self.port().map(|p| p.to_string()).unwrap_or_else(|_| "?".into()),
                String::from_utf8_lossy(&out.stderr),
                self.log_tail()
            );
        }
        tracing::info!(log_class = "app", port = self.port()?, "private PostgreSQL started");
        Ok(Started::Started)
    }

    /// Makes TLS what the cluster runs with (see the module docs): certificates present and
    /// not due for renewal, the server's key 0600 and owned by the server's OS user, the TLS
    /// block in `postgresql.conf`. Returns whether anything changed.
    fn ensure_tls(&self) -> anyhow::Result<bool> {
        use crate::{certs, home::owner_only};
        let data = self.home.pg_data();
        let (cert, key, ca) = (data.join(SERVER_CERT), data.join(SERVER_KEY), self.home.tls_ca_cert());
        let due = if !(cert.is_file() && key.is_file() && ca.is_file()) {
            true
        } else {
            match fs::read(&cert)
                .map_err(anyhow::Error::from)
                .and_then(|pem| certs::expires_within(&pem, certs::RENEW_BEFORE_DAYS))
            {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(log_class = "app", error = %format!("{e:#}"), "unreadable server certificate: generating a new one");
                    true
                }
            }
        };
        let mut changed = false;
        if due {
            let g = certs::generate(&certs::SERVER_NAMES)?;
            owner_only::replace_file(&key, g.server_key_pem.as_bytes())?;
            owner_only::replace_file(&cert, g.server_cert_pem.as_bytes())?;
            owner_only::create_dir(&self.home.tls_dir())?;
            owner_only::replace_file(&ca, g.ca_cert_pem.as_bytes())?;
            tracing::info!(log_class = "app", ca = %ca.display(), "generated the private cluster's TLS CA and server certificate");
            changed = true;
        }
        // PostgreSQL refuses to start with a key that others may read, or that its OS user
        // cannot: asserted at every start, also for files found in place.
        owner_only::restrict(&key)?;
        if let Some(user) = self.run_as {
            for f in [&key, &cert] {
                std::os::unix::fs::chown(f, Some(user.uid), Some(user.gid))
                    .with_context(|| format!("giving {} to the PostgreSQL OS user", f.display()))?;
            }
        }
        Ok(self.ensure_tls_conf()? || changed)
    }

    /// Puts the TLS block at the end of `postgresql.conf` (the last setting wins), replacing
    /// an earlier version of it; returns whether the file changed.
    fn ensure_tls_conf(&self) -> anyhow::Result<bool> {
        let path = self.home.pg_data().join("postgresql.conf");
        let have = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let block = format!(
            "{TLS_CONF_BEGIN}\n\
             ssl = on\n\
             ssl_cert_file = '{SERVER_CERT}'\n\
             ssl_key_file = '{SERVER_KEY}'\n\
             ssl_min_protocol_version = 'TLSv1.3'\n\
             {TLS_CONF_END}\n"
        );
        if have.ends_with(&block) {
            return Ok(false);
        }
        let mut want = match (have.find(TLS_CONF_BEGIN), have.find(TLS_CONF_END)) {
            (Some(b), Some(e)) if b < e => {
                let after = (e + TLS_CONF_END.len() + 1).min(have.len());
                format!("{}{}", &have[..b], &have[after..])
            }
            _ => have,
        };
        if !want.ends_with('\n') {
            want.push('\n');
        }
        want.push_str(&block);
        // Written in place: the file keeps its owner (the PostgreSQL OS user) and mode.
        fs::write(&path, want).with_context(|| format!("writing {}", path.display()))?;
        Ok(true)
    }

    /// Polls until the server on `port` answers TLS (after a reload), for up to 30 s.
    fn wait_for_tls(&self, port: u16) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if offers_tls(port).unwrap_or(false) {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                bail!("the private PostgreSQL did not turn TLS on after a reload\n{}", self.log_tail());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Writes `pg_hba.conf` (see `hba`) when it differs; returns whether it did. Writing over
    /// the file keeps its owner (the PostgreSQL OS user) and mode.
    fn ensure_hba(&self) -> anyhow::Result<bool> {
        let path = self.home.pg_data().join("pg_hba.conf");
        let want = crate::hba::conf();
        if fs::read_to_string(&path).is_ok_and(|have| have == want) {
            return Ok(false);
        }
        fs::write(&path, want).with_context(|| format!("writing {}", path.display()))?;
        Ok(true)
    }

    /// A `postmaster.pid` whose process is gone (or is not a postgres) is stale after a crash;
    /// postgres would refuse to start if the pid were reused by an unrelated process.
    fn remove_stale_pid_file(&self) -> anyhow::Result<()> {
        let pid_file = self.home.pg_data().join("postmaster.pid");
        let Some(pid) = read_postmaster_pid(&self.home.pg_data()) else { return Ok(()) };
        if !postgres_running(pid) {
            tracing::warn!(log_class = "app", pid, "removing stale postmaster.pid left by a crash");
            fs::remove_file(&pid_file).with_context(|| format!("removing stale {}", pid_file.display()))?;
        }
        Ok(())
    }

    /// Stops the cluster (fast shutdown: running transactions are rolled back). Returns
    /// whether it was running; when it returns, the postmaster process is gone.
    pub fn stop(&self) -> anyhow::Result<bool> {
        let Status::Running { pid, .. } = self.status()? else { return Ok(false) };
        let mut cmd = self.pg_command("pg_ctl");
        cmd.arg("stop").arg("-D").arg(self.home.pg_data());
        cmd.args(["-m", "fast", "-w", "-t", &PG_CTL_TIMEOUT_S.to_string()]);
        self.run(cmd, "pg_ctl stop")?;
        // `pg_ctl -w` returns once `postmaster.pid` is removed, which the postmaster does in its
        // own exit path, just before the process ends: on a busy machine it was still there when
        // a caller looked (a CI flake of `commands_stop_the_cluster_they_started`). Callers rely
        // on "stopped" meaning no process: wait for it, bounded.
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(EXIT_WAIT_MS);
        while postgres_running(pid) {
            if std::time::Instant::now() >= deadline {
                bail!(
                    "pg_ctl stop reported the server stopped, but its process {pid} still runs after {EXIT_WAIT_MS} ms"
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Ok(true)
    }

    /// Connection parameters of the cluster's database `dbname` (127.0.0.1, our port,
    /// passwords from `FINTRAIL_HOME/secrets`, `verify-full` against the cluster's CA).
    pub fn database(&self, dbname: &str) -> anyhow::Result<crate::Database> {
        crate::Database::private(&self.home, self.port()?, dbname)
    }
}

/// Longest wait for the postmaster's process to end after `pg_ctl stop` returned.
const EXIT_WAIT_MS: u64 = 10_000;

/// Whether a PostgreSQL server process runs as `pid`: it exists, is a postgres (a pid reused by
/// another program is not ours), and is not a zombie (a zombie has no command line; one whose
/// parent does not reap it stays listed in `/proc` for good).
fn postgres_running(pid: u32) -> bool {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    pid != 0
        && matches!(comm.trim(), "postgres" | "postmaster")
        && fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
}

fn read_postmaster_pid(data: &Path) -> Option<u32> {
    fs::read_to_string(data.join("postmaster.pid")).ok()?.lines().next()?.trim().parse().ok()
}

/// Whether the server on 127.0.0.1:`port` accepts TLS: PostgreSQL's SSLRequest, answered
/// `S` (yes) or `N` (no). Closes the connection right after, nothing else sent.
pub fn offers_tls(port: u16) -> std::io::Result<bool> {
    use std::io::{Read as _, Write as _};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    // Length 8, then the SSLRequest code 80877103.
    s.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])?;
    let mut answer = [0u8; 1];
    s.read_exact(&mut answer)?;
    Ok(answer[0] == b'S')
}

/// A port that is free right now on 127.0.0.1 (the kernel picks it). A race with another
/// process is possible but then `pg_ctl start` fails with a clear message.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::postgres_running;

    /// `stop` waits on this and the stale pid file check asks it: a running postgres runs; no
    /// pid, a pid that does not exist, another program (this test) and a zombie postgres
    /// (exited, not yet reaped) do not.
    #[test]
    fn a_postgres_runs_until_it_exits_even_before_it_is_reaped() {
        assert!(!postgres_running(0));
        assert!(!postgres_running(u32::MAX), "no such pid");
        assert!(!postgres_running(std::process::id()), "a running process that is not a postgres");
        // A process named `postgres` (the name comes from the path it was started by).
        let dir = std::env::temp_dir().join(format!("fintrail-db-running-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let exe = dir.join("postgres");
        let _ = std::fs::remove_file(&exe);
        std::os::unix::fs::symlink("/bin/sleep", &exe).expect("symlink");
        let mut child = std::process::Command::new(&exe).arg("30").spawn().expect("spawn sleep as postgres");
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !postgres_running(pid) {
            // exec may not have happened yet right after spawn.
            assert!(std::time::Instant::now() < deadline, "the child never ran as postgres");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        child.kill().expect("kill");
        // Not waited for yet: once it exits it is a zombie, still listed in /proc.
        while postgres_running(pid) {
            assert!(std::time::Instant::now() < deadline, "the killed child still runs after 10 s");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists(), "a zombie until reaped");
        let _ = child.wait().expect("reap");
        assert!(!postgres_running(pid));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
