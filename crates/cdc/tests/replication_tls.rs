//! Issue #14: the replication connection (pgwire-replication) runs over verified TLS like every
//! other, and refuses what `fintrail_db::Tls` refuses: a wrong CA, a wrong host name. A plain
//! replication connection is refused by the private cluster's pg_hba.

mod common;
use common::*;

use fintrail_cdc::policy::Policy;
use fintrail_cdc::source;
use fintrail_db::{testing::fresh_db, DbRole, SslMode, Tls};
use pgwire_replication::{ReplicationClient, TlsConfig};

#[tokio::test]
async fn the_replication_stream_runs_over_verified_tls() {
    init_tracing();
    let db = fresh_db().await;
    assert_eq!(db.tls().mode(), SslMode::VerifyFull);
    let policy = Policy::load(None).unwrap();
    let names = names("tls");
    source::setup(&db, &policy, &names).await.unwrap();
    let slot = source::create_slot(&db, &names).await.unwrap();
    // Seen from the server: the walsender's session is encrypted, TLS 1.3.
    let admin = db.connect(DbRole::Admin).await.unwrap();
    let rows = admin
        .query(
            "SELECT s.ssl, s.version FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
             WHERE a.backend_type = 'walsender' AND a.datname = current_database()",
            &[],
        )
        .await
        .unwrap();
    let seen: Vec<(bool, Option<String>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(seen, [(true, Some("TLSv1.3".to_string()))]);
    drop(slot);
    source::drop_slot(&db, &names).await.unwrap();
}

#[tokio::test]
async fn the_replication_transport_refuses_a_wrong_ca_a_wrong_host_name_and_plain() {
    init_tracing();
    let db = fresh_db().await;
    let policy = Policy::load(None).unwrap();
    let names = names("tls_refused");
    source::setup(&db, &policy, &names).await.unwrap();
    let dir = temp_dir("tls-refused");

    // A CA fintrail did not make for this cluster.
    let wrong_ca = dir.join("other-ca.crt");
    std::fs::write(&wrong_ca, fintrail_db::certs::generate(&["localhost"]).unwrap().ca_cert_pem).unwrap();
    let wrong = db.with_tls(Tls::new(SslMode::VerifyFull, Some(&wrong_ca)).unwrap());
    let err = format!("{:#}", source::create_slot(&wrong, &names).await.err().expect("wrong CA refused"));
    assert!(err.contains("UnknownIssuer"), "{err}");

    // The right CA, verified as another host name.
    let ca = db.tls().root_cert().unwrap().to_path_buf();
    let cfg = source::replication_config(&db, &names, 0)
        .with_tls(TlsConfig::verify_full(Some(ca)).with_sni_hostname("db.not-this-cluster.invalid"));
    let mut client = ReplicationClient::connect_gated(cfg).await.unwrap();
    let err = client.simple_query("IDENTIFY_SYSTEM").await.map(|_| ()).expect_err("wrong name refused").to_string();
    assert!(err.contains("not valid for name"), "{err}");

    // Plain: pg_hba refuses it before any password.
    let plain = db.with_tls(Tls::new(SslMode::Disable, None).unwrap());
    let err = format!("{:#}", source::create_slot(&plain, &names).await.err().expect("plain refused"));
    assert!(err.contains("no encryption"), "{err}");

    // No slot was created by any of them.
    let admin = db.connect(DbRole::Admin).await.unwrap();
    let n: i64 = admin
        .query_one("SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", &[&names.slot])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    let _ = std::fs::remove_dir_all(&dir);
}
