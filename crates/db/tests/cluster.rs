//! The private cluster's life cycle: idempotent start, status, crash recovery, stop.

use fintrail_db::{
    cluster::{Cluster, InitOptions, Started, Status},
    Home,
};

fn temp_home(tag: &str) -> Home {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").subsec_nanos();
    Home::new(std::env::temp_dir().join(format!("fintrail-cluster-test-{tag}-{}-{nanos}", std::process::id())))
        .expect("home")
}

#[test]
fn start_is_idempotent_and_recovers_from_a_killed_server() {
    let home = temp_home("life");
    let cluster = Cluster::new(home.clone()).expect("binaries");
    let opts = InitOptions { durable: false };
    assert_eq!(cluster.status().expect("status"), Status::NotInitialized);
    assert_eq!(cluster.start(opts).expect("start"), Started::Started);
    assert_eq!(cluster.start(opts).expect("start again"), Started::AlreadyRunning);
    let Status::Running { pid, port } = cluster.status().expect("status") else { panic!("not running") };
    assert!(pid > 0 && port > 0);
    let secrets = std::fs::metadata(home.secrets_dir().join("fintrail_admin.password")).expect("admin password file");
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&secrets.permissions()) & 0o077, 0, "secrets are private");

    // A crash: SIGKILL the postmaster. Its pid file stays behind.
    assert!(std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().expect("kill").success());
    // Bounded polls, not fixed sleeps: a loaded 2-core CI box may take seconds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(std::time::Instant::now() < deadline, "the killed postmaster {pid} is still there after 30 s");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(home.pg_data().join("postmaster.pid").exists(), "the crash leaves a pid file");
    assert_eq!(cluster.status().expect("status"), Status::Stopped);
    // Orphaned backends of the killed postmaster may still hold the shared memory a moment.
    let mut started = None;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while started.is_none() && std::time::Instant::now() < deadline {
        match cluster.start(opts) {
            Ok(s) => started = Some(s),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(250)),
        }
    }
    assert_eq!(started, Some(Started::Started), "restart after a crash: {}", cluster.log_tail());
    assert!(matches!(cluster.status().expect("status"), Status::Running { .. }));
    assert!(cluster.stop().expect("stop"));
    assert_eq!(cluster.status().expect("status"), Status::Stopped);
    assert!(!cluster.stop().expect("stop again"), "stopping a stopped cluster is fine");
    std::fs::remove_dir_all(home.root()).expect("cleanup");
}
