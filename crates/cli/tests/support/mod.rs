//! What the production-configuration and image tests share: the repository root, the
//! production environment of `fintrail serve` for a test database, and reading the address a
//! server prints.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use fintrail_db::{Database, DbRole};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root")
}

/// Another 32-byte key, hex (test value only): the media URL key.
pub const TEST_MEDIA_URL_KEY_HEX: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"; // pragma: allowlist secret

/// A 32-byte key, hex (test value only).
pub const TEST_KEY_HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"; // pragma: allowlist secret

/// The TLS settings a service gets in production (`infra/stack/main.tf`): `verify-ca` against
/// the server's CA given inline, here the private cluster's CA.
pub fn tls_env(db: &Database) -> Vec<(String, String)> {
    let ca = db.tls().root_cert().expect("the private cluster's CA file");
    let pem = std::fs::read_to_string(ca).expect("read the cluster's CA");
    vec![("FINTRAIL_DB_SSLMODE".to_owned(), "verify-ca".to_owned()), ("FINTRAIL_DB_SSLROOTCERT_PEM".to_owned(), pem)]
}

/// The production environment of `fintrail serve` for `db` (as `infra/stack/main.tf` passes it
/// to `module.api`, Secret Manager's values included).
pub fn serve_env(db: &Database) -> Vec<(String, String)> {
    let app = db.params(DbRole::App);
    let seq = db.params(DbRole::Sequencer);
    let tls = tls_env(db);
    [
        ("FINTRAIL_ENVIRONMENT", "dev".to_owned()),
        ("FINTRAIL_DATABASE_HOST", app.host.clone()),
        ("FINTRAIL_DATABASE_PORT", app.port.to_string()),
        ("FINTRAIL_DATABASE_NAME", app.dbname.clone()),
        ("FINTRAIL_DATABASE_USER", app.user.clone()),
        ("FINTRAIL_DATABASE_PASSWORD", app.password.clone().expect("app password")),
        ("FINTRAIL_SEQUENCER_PASSWORD", seq.password.clone().expect("sequencer password")),
        ("FINTRAIL_JOBS_OIDC_AUDIENCE", "https://fintrail-dev-api-412345678901.europe-west1.run.app".to_owned()),
        ("FINTRAIL_JOBS_INVOKER", "fintrail-dev-scheduler@fintrail-dev.iam.gserviceaccount.com".to_owned()),
        ("FINTRAIL_AUDIT_CHECKPOINT_KEY", TEST_KEY_HEX.to_owned()),
        ("FINTRAIL_MEDIA_URL_KEY", TEST_MEDIA_URL_KEY_HEX.to_owned()),
        ("FINTRAIL_LOG_FORMAT", "json".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .chain(tls)
    .collect()
}

/// Reads `child`'s stderr until it prints `fintrail API listening on http://ADDR`; returns ADDR
/// and keeps draining stderr in the background (so the server never blocks on a full pipe).
pub fn wait_listening(child: &mut Child, timeout: Duration) -> String {
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            if let Some(addr) = line.split("fintrail API listening on http://").nth(1) {
                return addr.trim().to_owned();
            }
            seen.push(line);
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the server exited ({status}) before listening:\n{}", seen.join("\n"));
        }
    }
    let _ = child.kill();
    panic!("the server did not listen within {timeout:?}:\n{}", seen.join("\n"));
}

/// One HTTP/1.1 GET; returns the raw response.
pub fn http_get(addr: &str, path: &str, bearer: Option<&str>) -> String {
    use std::io::Write as _;
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the API");
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let auth = bearer.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n").expect("send");
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out);
    out
}

/// SIGTERM, then the exit status (SIGKILL after `grace`).
pub fn stop(child: &mut Child, grace: Duration) -> std::process::ExitStatus {
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    child.wait().expect("reap")
}
