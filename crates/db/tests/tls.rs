//! TLS to PostgreSQL (issue #14), on real clusters with real handshakes:
//!
//! - every connection of the harness (so of every test) is TLS 1.3, verified against the
//!   private cluster's own CA; its files are owner-only;
//! - a plain client is refused by the private cluster's pg_hba, password or not;
//! - a wrong CA is refused, naming the CA; a wrong host name is refused under `verify-full`
//!   (and accepted under `verify-ca`, which checks the chain only);
//! - a server without TLS is refused unless `disable` is set explicitly;
//! - a cluster from before TLS is upgraded at its next start, stopped or running, its data kept.

use std::{os::unix::fs::PermissionsExt as _, path::Path, time::Duration};

use fintrail_db::{
    certs,
    cluster::{self, Cluster, InitOptions, Started},
    testing::fresh_db,
    Database, DbRole, Home, SslMode, Tls,
};

fn temp_home(tag: &str) -> Home {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").subsec_nanos();
    Home::new(std::env::temp_dir().join(format!("fintrail-tls-test-{tag}-{}-{nanos}", std::process::id())))
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

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

/// Whether this session is encrypted, and with which protocol.
async fn session_tls(db: &Database) -> (bool, Option<String>) {
    let c = db.connect(DbRole::Admin).await.expect("admin connects");
    let row = c.query_one("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap();
    (row.get(0), row.get(1))
}

/// Polls `done` for up to 30 s (a reload is a signal: the postmaster applies it shortly).
async fn wait_for(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..600 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A CA file fintrail did not make for this cluster.
fn foreign_ca(dir: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("other-ca.crt");
    std::fs::write(&path, certs::generate(&certs::SERVER_NAMES).unwrap().ca_cert_pem).unwrap();
    path
}

#[tokio::test]
async fn every_harness_connection_is_tls_verified_against_the_clusters_own_ca() {
    let db = fresh_db().await;
    assert_eq!(db.tls().mode(), SslMode::VerifyFull);
    let home = db.home();
    assert_eq!(db.tls().root_cert(), Some(home.tls_ca_cert().as_path()));
    assert_eq!(session_tls(&db).await, (true, Some("TLSv1.3".to_string())));
    // The pool and the other roles take the same path.
    for role in [DbRole::App, DbRole::Replicator, DbRole::Sequencer] {
        let c = db.connect(role).await.unwrap();
        let ssl: bool =
            c.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap().get(0);
        assert!(ssl, "{role}");
    }
    // Owner-only files: the CA certificate (and its folder), the server's certificate and key.
    assert_eq!(mode(&home.tls_dir()), 0o700);
    assert_eq!(mode(&home.tls_ca_cert()), 0o600);
    assert_eq!(mode(&home.pg_data().join(cluster::SERVER_KEY)), 0o600);
    assert_eq!(mode(&home.pg_data().join(cluster::SERVER_CERT)), 0o600);
    assert!(!home.tls_dir().join("ca.key").exists(), "the CA's key is never written");
}

/// The one use of `NoTls` in the tree: a plain client, to prove that it is refused.
#[tokio::test]
async fn a_plain_client_is_refused_by_the_private_clusters_pg_hba() {
    let db = fresh_db().await;
    let mut config = db.config(DbRole::App).unwrap();
    config.ssl_mode(tokio_postgres::config::SslMode::Disable);
    let err = config.connect(tokio_postgres::NoTls).await.map(|_| ()).expect_err("a plain client is refused");
    let text = err.as_db_error().map(|e| e.message().to_owned()).unwrap_or_else(|| err.to_string());
    assert!(text.contains("pg_hba.conf rejects connection") && text.contains("no encryption"), "{text}");
    assert_eq!(err.code().map(|c| c.code()), Some("28000"), "{err}");
    // fintrail's own `disable` gets the same answer from the private cluster.
    let plain = db.with_tls(Tls::new(SslMode::Disable, None).unwrap());
    let err = format!("{:#}", plain.connect(DbRole::Admin).await.map(|_| ()).expect_err("refused"));
    assert!(err.contains("no encryption"), "{err}");
}

#[tokio::test]
async fn a_wrong_ca_is_refused_with_an_error_naming_the_ca() {
    let db = fresh_db().await;
    let dir = std::env::temp_dir().join(format!("fintrail-tls-wrong-ca-{}", std::process::id()));
    let wrong = foreign_ca(&dir);
    for mode in [SslMode::VerifyFull, SslMode::VerifyCa] {
        let other = db.with_tls(Tls::new(mode, Some(&wrong)).unwrap());
        let err = format!("{:#}", other.connect(DbRole::App).await.map(|_| ()).expect_err("wrong CA refused"));
        assert!(err.contains("not issued by a trusted CA"), "{mode}: {err}");
        assert!(err.contains(&wrong.display().to_string()), "{mode}: names the CA file: {err}");
        assert!(err.contains("UnknownIssuer"), "{mode}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_wrong_host_name_is_refused_under_verify_full_and_accepted_under_verify_ca() {
    let db = fresh_db().await;
    // The same server (TCP to 127.0.0.1), verified as another name.
    let as_name = |name: &str| {
        let p = db.params(DbRole::App);
        let mut config = tokio_postgres::Config::new();
        config.host(name).hostaddr(std::net::Ipv4Addr::LOCALHOST.into()).port(p.port);
        config.user(&p.user).password(p.password.unwrap()).dbname(&p.dbname);
        db.tls().apply(&mut config);
        config
    };
    let config = as_name("db.not-this-cluster.invalid");
    let err = format!("{:#}", db.connect_config(&config).await.map(|_| ()).expect_err("wrong name refused"));
    assert!(err.contains("not valid for the host name \"db.not-this-cluster.invalid\""), "{err}");
    assert!(err.contains("certificate not valid for name"), "{err}");
    let ca = db.tls().root_cert().unwrap().to_path_buf();
    let chain_only = db.with_tls(Tls::new(SslMode::VerifyCa, Some(&ca)).unwrap());
    let c = chain_only.connect_config(&config).await.expect("verify-ca checks the chain only");
    c.query_one("SELECT 1", &[]).await.unwrap();
    // The other name the certificate holds verifies too.
    db.connect_config(&as_name("localhost")).await.expect("localhost is in the certificate");
}

#[tokio::test]
async fn a_server_without_tls_is_refused_unless_disable_is_set_explicitly() {
    let cluster = Cluster::new(temp_home("plain")).expect("binaries");
    assert_eq!(cluster.start(InitOptions { durable: false }).expect("start"), Started::Started);
    let _guard = Cleanup(cluster.clone());
    let port = cluster.port().unwrap();
    let db = cluster.database("postgres").unwrap();
    // Turn it into a server without TLS (as an external one may be), plain logins allowed.
    let admin = db.connect(DbRole::Admin).await.unwrap();
    admin.batch_execute("ALTER SYSTEM SET ssl = off").await.unwrap();
    std::fs::write(cluster.home().pg_data().join("pg_hba.conf"), "host all all 127.0.0.1/32 scram-sha-256\n").unwrap();
    admin.execute("SELECT pg_reload_conf()", &[]).await.unwrap();
    assert!(wait_for(|| !cluster::offers_tls(port).unwrap_or(true)).await, "TLS turned off");

    for tls in [db.tls().clone(), Tls::new(SslMode::VerifyCa, db.tls().root_cert()).unwrap()] {
        let m = tls.mode();
        let err = format!("{:#}", db.with_tls(tls).connect(DbRole::Admin).await.map(|_| ()).expect_err("refused"));
        assert!(err.contains("the server does not accept TLS"), "{m}: {err}");
        assert!(err.contains("FINTRAIL_DB_SSLMODE=disable"), "{m}: says how to allow it: {err}");
    }
    // Explicitly allowed: plain.
    let plain = db.with_tls(Tls::from_settings(Some("disable"), None).unwrap());
    assert_eq!(session_tls(&plain).await, (false, None));
}

#[tokio::test]
async fn a_cluster_from_before_tls_is_upgraded_at_its_next_start_stopped_or_running() {
    let cluster = Cluster::new(temp_home("upgrade")).expect("binaries");
    let opts = InitOptions { durable: false };
    assert_eq!(cluster.start(opts).expect("start"), Started::Started);
    let _guard = Cleanup(cluster.clone());
    let home = cluster.home().clone();
    let data = home.pg_data();
    let conf = data.join("postgresql.conf");
    let hba = data.join("pg_hba.conf");
    let port = cluster.port().unwrap();
    let db = cluster.database("postgres").unwrap();
    db.connect(DbRole::Admin).await.unwrap().batch_execute("CREATE TABLE kept AS SELECT 42 AS answer").await.unwrap();

    // What a cluster initialized before issue #14 looks like: no certificates, no TLS block,
    // the old pg_hba (plain `host` lines).
    let make_old = || {
        for f in [home.tls_ca_cert(), data.join(cluster::SERVER_CERT), data.join(cluster::SERVER_KEY)] {
            std::fs::remove_file(f).unwrap();
        }
        let text = std::fs::read_to_string(&conf).unwrap();
        let cut = text.find("# --- fintrail TLS").expect("the TLS block");
        std::fs::write(&conf, &text[..cut]).unwrap();
        std::fs::write(&hba, "host all all 127.0.0.1/32 scram-sha-256\nhost all all all reject\n").unwrap();
    };

    // 1. Stopped: the next start generates the certificates, writes the settings, and starts.
    assert!(cluster.stop().unwrap());
    make_old();
    assert_eq!(cluster.start(opts).unwrap(), Started::Started);
    assert_eq!(std::fs::read_to_string(&hba).unwrap(), fintrail_db::hba::conf());
    assert!(std::fs::read_to_string(&conf).unwrap().contains("ssl = on"));
    assert_eq!(mode(&data.join(cluster::SERVER_KEY)), 0o600);
    let db = cluster.database("postgres").unwrap();
    assert_eq!(session_tls(&db).await, (true, Some("TLSv1.3".to_string())));
    let kept: i32 =
        db.connect(DbRole::Admin).await.unwrap().query_one("SELECT answer FROM kept", &[]).await.unwrap().get(0);
    assert_eq!(kept, 42, "nothing lost");

    // 2. Running without TLS (a `fintrail up --keep-db` from before): start generates, reloads
    //    and returns once TLS answers, so the very next connection is verified.
    make_old();
    let admin = db.connect(DbRole::Admin).await.unwrap();
    admin.execute("SELECT pg_reload_conf()", &[]).await.unwrap();
    assert!(wait_for(|| !cluster::offers_tls(port).unwrap_or(true)).await, "running without TLS");
    assert_eq!(cluster.start(opts).unwrap(), Started::AlreadyRunning);
    let db = cluster.database("postgres").unwrap();
    assert_eq!(session_tls(&db).await, (true, Some("TLSv1.3".to_string())));
    assert_eq!(std::fs::read_to_string(&hba).unwrap(), fintrail_db::hba::conf());

    // 3. An idempotent start changes nothing: same CA, same configuration.
    let ca = std::fs::read(home.tls_ca_cert()).unwrap();
    let conf_now = std::fs::read_to_string(&conf).unwrap();
    assert_eq!(cluster.start(opts).unwrap(), Started::AlreadyRunning);
    assert_eq!(std::fs::read(home.tls_ca_cert()).unwrap(), ca);
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), conf_now);
    assert_eq!(conf_now.matches("ssl = on").count(), 1);
}
