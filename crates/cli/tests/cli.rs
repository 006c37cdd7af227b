//! The command-line contract (shared/design/CLI.md), exercised on the real binary.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fintrail"));
    cmd.env_remove("DATABASE_URL").env("FINTRAIL_LOG_FORMAT", "json");
    cmd
}

/// A fresh `FINTRAIL_HOME` for one test, removed when the test ends, whether it passed or
/// failed: a failed assertion must not leave a running PostgreSQL server, its data and its
/// keys behind on a shared CI machine.
fn temp_home(tag: &str) -> TempHome {
    TempHome(tempfile::Builder::new().prefix(&format!("fintrail-cli-{tag}-")).tempdir().expect("temp home"))
}

struct TempHome(tempfile::TempDir);

impl std::ops::Deref for TempHome {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.0.path()
    }
}

impl AsRef<Path> for TempHome {
    fn as_ref(&self) -> &Path {
        self.0.path()
    }
}

impl AsRef<std::ffi::OsStr> for TempHome {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.path().as_os_str()
    }
}

impl Drop for TempHome {
    fn drop(&mut self) {
        // A server still running from this home (the test failed before stopping it): an
        // immediate shutdown (SIGQUIT), then wait for it to exit, bounded, before the folder goes.
        // The folder itself goes with the `TempDir` field, after this.
        for pid in postmasters_under(self) {
            let _ = Command::new("kill").args(["-QUIT", &pid.to_string()]).status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !postmasters_under(self).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn help_lists_the_contract_subcommands_one_line_each() {
    let out = bin().arg("--help").output().expect("run");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf8");
    for name in ["up", "serve", "db", "cdc", "audit", "iam", "trace", "bench"] {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("`{name}` missing from --help:\n{text}"));
        assert!(line.split_whitespace().count() > 2, "`{name}` has a one-line description: {line}");
    }
}

#[test]
fn bench_lists_every_benchmark_name() {
    let out = bin().args(["bench", "--help"]).output().expect("run");
    let text = String::from_utf8(out.stdout).expect("utf8");
    for name in ["transfers", "audit", "console", "cdc", "cdc-impact", "iam"] {
        assert!(text.lines().any(|l| l.trim_start().starts_with(name)), "bench {name} missing:\n{text}");
    }
}

#[test]
fn missing_postgres_binaries_give_one_clear_message() {
    let home = temp_home("nobin");
    let out = bin()
        .args(["db", "start"])
        .env("FINTRAIL_HOME", &home)
        .env("FINTRAIL_PG_BIN", "/nonexistent")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("FINTRAIL_PG_BIN=/nonexistent is not usable"), "{err}");
}

#[test]
fn external_database_url_is_not_started_or_stopped() {
    let out = bin().args(["db", "start", "--database-url", "postgres://a:b@127.0.0.1:1/x"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("external server"));
    let out = bin().args(["db", "status", "--database-url", "postgres://a:b@127.0.0.1:1/x"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1), "an unreachable external server is 'not running'");
}

/// A minimal HTTP/1.1 GET over a real socket; returns the raw response.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the API");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").expect("send");
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out);
    out
}

/// Starts `fintrail up` and waits until it says it is running (the caller reaps the child).
#[allow(clippy::zombie_processes)]
fn spawn_up(home: &Path) -> (Child, Vec<String>) {
    let mut child = bin()
        .args(["up", "--listen", "127.0.0.1:0"])
        .env("FINTRAIL_HOME", home)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn up");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Keep draining after the test stops listening, so `up` never writes to a closed pipe.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut lines = Vec::new();
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            let done = line.contains("running; press Ctrl-C");
            lines.push(line);
            if done {
                return (child, lines);
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("up exited early ({status}): {lines:?}");
        }
    }
    panic!("up did not come up: {lines:?}");
}

#[test]
fn up_runs_once_per_home_survives_kill_9_and_stops_cleanly() {
    let home = temp_home("up");
    let (mut first, lines) = spawn_up(&home);
    assert!(lines.iter().any(|l| l.contains("database ready: postgres://fintrail_app@127.0.0.1:")), "{lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("staff token")), "{lines:?}");
    let api = lines.iter().find_map(|l| l.strip_prefix("api:       http://")).expect("api address printed");
    let addr = api.split_whitespace().next().expect("address");
    assert!(http_get(addr, "/openapi.json").starts_with("HTTP/1.1 200"), "the API answers");
    let console = lines.iter().find_map(|l| l.strip_prefix("console:   http://")).expect("console address printed");
    assert!(console.starts_with(&format!("{addr}/console ")), "{console}");
    assert!(http_get(addr, "/console/login").starts_with("HTTP/1.1 200"), "the console's login form answers");

    // A second `up` on the same home fails clearly.
    let second = bin().arg("up").env("FINTRAIL_HOME", &home).output().expect("second up");
    assert_eq!(second.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&second.stderr).contains("already running"), "{second:?}");

    // `db status` sees the running cluster.
    let status = bin().args(["db", "status"]).env("FINTRAIL_HOME", &home).output().expect("status");
    assert_eq!(status.status.code(), Some(0));

    // kill -9 and start again: it recovers (the lock dies with the process; the cluster is reused).
    first.kill().expect("SIGKILL");
    first.wait().expect("reap");
    let (third, _) = spawn_up(&home);

    // SIGTERM stops everything cleanly, the cluster included.
    let term = Command::new("kill").args(["-TERM", &third.id().to_string()]).status().expect("kill -TERM");
    assert!(term.success());
    let out = third.wait_with_output().expect("wait");
    assert!(out.status.success(), "{out:?}");
    let status = bin().args(["db", "status"]).env("FINTRAIL_HOME", &home).output().expect("status");
    assert_eq!(status.status.code(), Some(1), "the cluster stopped with up");

    // db start / migrate / stop round trip on the same home.
    assert!(bin().args(["db", "start"]).env("FINTRAIL_HOME", &home).status().expect("start").success());
    let migrate = bin().args(["db", "migrate"]).env("FINTRAIL_HOME", &home).output().expect("migrate");
    assert!(migrate.status.success(), "{migrate:?}");
    assert!(String::from_utf8_lossy(&migrate.stdout).contains("0000_baseline"));
    assert!(bin().args(["db", "stop"]).env("FINTRAIL_HOME", &home).status().expect("stop").success());
}

#[test]
fn json_logs_carry_a_log_class() {
    let home = temp_home("logs");
    let out = bin().args(["db", "start"]).env("FINTRAIL_HOME", &home).output().expect("start");
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let events: Vec<serde_json::Value> = stderr.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(!events.is_empty(), "db start logs something: {stderr}");
    for e in &events {
        let class = e["log_class"].as_str().expect("every event has a log_class");
        assert!(["audit", "app", "access"].contains(&class), "{e}");
    }
    assert!(bin().args(["db", "stop"]).env("FINTRAIL_HOME", &home).status().expect("stop").success());
}

/// Postmasters whose data directory is under `home` (cmdline `postgres -D <home>/pg`).
fn postmasters_under(home: &Path) -> Vec<u32> {
    let home = home.canonicalize().unwrap_or_else(|_| home.to_path_buf());
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc") {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let args: Vec<String> = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        let is_postgres = args.first().is_some_and(|a| a.ends_with("/postgres") || a == "postgres");
        let data = args.iter().position(|a| a == "-D").and_then(|i| args.get(i + 1));
        if is_postgres && data.is_some_and(|d| Path::new(d).starts_with(&home)) {
            pids.push(pid);
        }
    }
    pids
}

/// Polls (bounded) until `cond` holds.
fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A command that starts the private cluster it did not find running stops it again: when it
/// ends, when it fails, and when it is interrupted; a cluster that was already running is
/// left running. Counted as postmaster processes under the home, before and after.
#[test]
fn commands_stop_the_cluster_they_started() {
    let home = temp_home("cleanup");
    std::fs::create_dir_all(&home).expect("home");
    assert_eq!(postmasters_under(&home), Vec::<u32>::new(), "a fresh home has no server");

    // Ends normally.
    let out = bin().args(["ledger", "check"]).env("FINTRAIL_HOME", &home).output().expect("ledger check");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(postmasters_under(&home), Vec::<u32>::new(), "ledger check stopped the cluster it started");

    // Fails after starting the cluster (no such token).
    let out = bin().args(["token", "revoke", "987654321"]).env("FINTRAIL_HOME", &home).output().expect("revoke");
    assert!(!out.status.success(), "revoking a missing token fails: {out:?}");
    assert_eq!(postmasters_under(&home), Vec::<u32>::new(), "a failed command stopped the cluster it started");

    // Interrupted: a long benchmark gets SIGINT (to it alone, as `kill -INT` would send).
    let mut bench = bin()
        .args(["bench", "transfers", "--rounds", "50", "--round-secs", "5", "--wallets", "10", "--clients", "2"])
        .env("FINTRAIL_HOME", &home)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("bench");
    wait_until("the benchmark's cluster runs", Duration::from_secs(120), || postmasters_under(&home).len() == 1);
    let pid = bench.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().expect("kill").success());
    let mut code = None;
    wait_until("the interrupted benchmark exits", Duration::from_secs(60), || {
        code = bench.try_wait().expect("wait");
        code.is_some()
    });
    assert_eq!(code.and_then(|c| c.code()), Some(130), "an interrupted command exits 130");
    assert_eq!(postmasters_under(&home), Vec::<u32>::new(), "an interrupted benchmark stopped its cluster");

    // Already running: left running.
    assert!(bin().args(["db", "start"]).env("FINTRAIL_HOME", &home).status().expect("start").success());
    let running = postmasters_under(&home);
    assert_eq!(running.len(), 1);
    let out = bin().args(["ledger", "check"]).env("FINTRAIL_HOME", &home).output().expect("ledger check");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(postmasters_under(&home), running, "a cluster found running is left running");
    assert!(bin().args(["db", "stop"]).env("FINTRAIL_HOME", &home).status().expect("stop").success());
    assert_eq!(postmasters_under(&home), Vec::<u32>::new());
}

/// `fintrail analytics query` while `fintrail up` runs: the pipeline holds the DuckDB file, so
/// the query goes through its socket; writes are refused; after `up` stops, the file is read
/// directly.
#[test]
fn analytics_query_answers_while_up_runs_and_refuses_writes() {
    let home = temp_home("analytics");
    let (up, _) = spawn_up(&home);
    let query =
        |sql: &str| bin().args(["analytics", "query", sql]).env("FINTRAIL_HOME", &home).output().expect("query");
    // The views exist once the pipeline's snapshot is in (bounded poll).
    let mut last = None;
    wait_until("the KYC funnel answers", Duration::from_secs(120), || {
        let out = query("SELECT count(*) AS states FROM kyc_funnel");
        let ok = out.status.success();
        last = Some(out);
        ok
    });
    let out = last.expect("an answer");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("states\n"), "{out:?}");
    assert!(home.join("analytics.duckdb.sock").exists(), "answered by the running pipeline");
    for write in [
        "INSERT INTO kyc_cases (id) VALUES (1)",
        "UPDATE kyc_cases SET state = 'approved'",
        "CREATE TABLE x (a INTEGER)",
        "ATTACH '/tmp/x.duckdb' AS x",
        "COPY kyc_cases TO '/tmp/fintrail-copy.csv'",
        "PRAGMA enable_profiling",
        "SELECT 1; DROP VIEW kyc_funnel",
    ] {
        let out = query(write);
        assert_eq!(out.status.code(), Some(1), "{write}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("refused"), "{write}: {out:?}");
    }
    let out = bin()
        .args(["analytics", "query", "SELECT * FROM range(5)", "--limit", "2"])
        .env("FINTRAIL_HOME", &home)
        .output()
        .expect("query");
    assert!(String::from_utf8_lossy(&out.stdout).contains("row limit 2 reached"), "{out:?}");

    let term = Command::new("kill").args(["-TERM", &up.id().to_string()]).status().expect("kill -TERM");
    assert!(term.success());
    assert!(up.wait_with_output().expect("wait").status.success());
    assert!(!home.join("analytics.duckdb.sock").exists(), "the socket goes with the pipeline");
    let out = query("SELECT count(*) FROM kyc_funnel");
    assert!(out.status.success(), "the file is read directly without a pipeline: {out:?}");
}
