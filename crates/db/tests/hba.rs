//! pg_hba (issue #16): the private cluster refuses physical replication, and a cluster whose
//! `pg_hba.conf` predates that (or was edited by hand) gets it back at the next start, running
//! or not.

use std::process::{Command, Stdio};

use fintrail_db::{
    cluster::{Cluster, InitOptions, Started},
    Home,
};

fn temp_home(tag: &str) -> Home {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").subsec_nanos();
    Home::new(std::env::temp_dir().join(format!("fintrail-hba-test-{tag}-{}-{nanos}", std::process::id())))
        .expect("home")
}

/// Stops the cluster and removes its folder, also when an assertion failed.
struct Cleanup(Cluster);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = self.0.stop();
        let _ = std::fs::remove_dir_all(self.0.home().root());
    }
}

/// What the server answers a physical replication connection (pg_receivewal) as `user`.
/// The hba check comes before authentication, so no password is needed to be refused.
fn physical_replication_answer(cluster: &Cluster, user: &str) -> String {
    let dir = cluster.home().root().join("wal");
    std::fs::create_dir_all(&dir).expect("a folder for pg_receivewal");
    let o = Command::new(cluster.binaries().tool("pg_receivewal"))
        .args(["-h", "127.0.0.1", "-p", &cluster.port().expect("port").to_string(), "-U", user])
        .args(["--no-loop", "--no-password", "--endpos=0/1", "-D", dir.to_str().expect("utf-8 path")])
        .env("PGCONNECT_TIMEOUT", "10")
        // TLS as fintrail connects (pg_hba refuses plain connections before anything else).
        .env("PGSSLMODE", "verify-full")
        .env("PGSSLROOTCERT", cluster.home().tls_ca_cert())
        .stdin(Stdio::null())
        .output()
        .expect("pg_receivewal runs");
    assert!(!o.status.success(), "physical replication as {user} must not succeed");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Polls `done` for up to 30 s (a reload is a signal: the postmaster applies it shortly).
fn wait_for(mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}

const REJECTED: &str = "pg_hba.conf rejects replication connection";

/// The permissive lines initdb writes by default.
const INITDB_DEFAULT: &str =
    "host all all 127.0.0.1/32 scram-sha-256\nhost replication all 127.0.0.1/32 scram-sha-256\n";

#[test]
fn physical_replication_is_refused_and_a_loosened_pg_hba_is_restored_at_start() {
    let cluster = Cluster::new(temp_home("hba")).expect("binaries");
    let opts = InitOptions { durable: false };
    assert_eq!(cluster.start(opts).expect("start"), Started::Started);
    let guard = Cleanup(cluster.clone());
    let hba = cluster.home().pg_data().join("pg_hba.conf");
    assert_eq!(std::fs::read_to_string(&hba).expect("pg_hba.conf"), fintrail_db::hba::conf());
    for user in ["fintrail_replicator", "fintrail_admin", "fintrail_app"] {
        let answer = physical_replication_answer(&cluster, user);
        assert!(answer.contains(REJECTED), "{user}: {answer}");
    }

    // Loosened while running (a cluster from before this change, or a hand edit) and loaded:
    // the replicator is no longer refused by pg_hba (only by its missing password). The next
    // `start` (already running) rewrites the file and reloads the server.
    std::fs::write(&hba, INITDB_DEFAULT).expect("loosen pg_hba.conf");
    let admin_db = cluster.database("postgres").expect("database");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let admin = admin_db.connect(fintrail_db::DbRole::Admin).await.expect("admin connects");
        admin.execute("SELECT pg_reload_conf()", &[]).await.expect("reload");
    });
    let loosened = wait_for(|| !physical_replication_answer(&cluster, "fintrail_replicator").contains(REJECTED));
    assert!(loosened, "the loosened pg_hba.conf was loaded");
    assert_eq!(cluster.start(opts).expect("start again"), Started::AlreadyRunning);
    assert_eq!(std::fs::read_to_string(&hba).expect("pg_hba.conf"), fintrail_db::hba::conf());
    let restored = wait_for(|| physical_replication_answer(&cluster, "fintrail_replicator").contains(REJECTED));
    assert!(restored, "start reloaded the restored pg_hba.conf");

    // Loosened while stopped: restored before the server starts.
    assert!(cluster.stop().expect("stop"));
    std::fs::write(&hba, INITDB_DEFAULT).expect("loosen pg_hba.conf");
    assert_eq!(cluster.start(opts).expect("start"), Started::Started);
    assert_eq!(std::fs::read_to_string(&hba).expect("pg_hba.conf"), fintrail_db::hba::conf());
    let answer = physical_replication_answer(&cluster, "fintrail_replicator");
    assert!(answer.contains(REJECTED), "{answer}");
    drop(guard);
}
