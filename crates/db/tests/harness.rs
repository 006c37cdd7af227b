//! The test harness isolates tests: each gets its own database on the shared cluster.

use fintrail_db::{testing::fresh_db, DbRole};

#[tokio::test]
async fn each_test_database_is_its_own() {
    let a = fresh_db().await;
    let b = fresh_db().await;
    assert_ne!(a.name(), b.name());
    let admin_a = a.connect(DbRole::Admin).await.expect("a");
    admin_a
        .batch_execute("SET ROLE fintrail_owner; CREATE TABLE fintrail.only_in_a (v int); INSERT INTO fintrail.only_in_a VALUES (42);")
        .await
        .expect("write a");
    let admin_b = b.connect(DbRole::Admin).await.expect("b");
    let err = admin_b.query("SELECT v FROM fintrail.only_in_a", &[]).await.expect_err("b cannot see a's table");
    assert_eq!(err.code().map(|c| c.code()), Some("42P01"));
    let v: i32 = admin_a.query_one("SELECT v FROM fintrail.only_in_a", &[]).await.expect("a sees it").get(0);
    assert_eq!(v, 42);
}

#[tokio::test]
async fn parallel_tests_do_not_see_each_other() {
    let mut tasks = Vec::new();
    for i in 0..8i32 {
        tasks.push(tokio::spawn(async move {
            let db = fresh_db().await;
            let c = db.connect(DbRole::Admin).await.expect("connect");
            c.batch_execute("SET ROLE fintrail_owner; CREATE TABLE fintrail.mark (v int)").await.expect("create");
            c.execute("INSERT INTO fintrail.mark VALUES ($1)", &[&i]).await.expect("insert");
            let rows = c.query("SELECT v FROM fintrail.mark", &[]).await.expect("select");
            rows.iter().map(|r| r.get::<_, i32>(0)).collect::<Vec<_>>()
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.expect("task"), vec![i32::try_from(i).expect("small")]);
    }
}

#[tokio::test]
async fn fresh_databases_are_migrated_and_record_it() {
    let db = fresh_db().await;
    let admin = db.connect(DbRole::Admin).await.expect("admin");
    let n: i64 =
        admin.query_one("SELECT count(*) FROM fintrail_meta.schema_migrations", &[]).await.expect("count").get(0);
    assert_eq!(usize::try_from(n).expect("non-negative"), fintrail_db::migrate::all().len());
    // Migrating again is a no-op.
    assert!(fintrail_db::migrate::migrate(&db).await.expect("re-migrate").is_empty());
    let level: String = admin.query_one("SHOW wal_level", &[]).await.expect("wal_level").get(0);
    assert_eq!(level, "logical", "CDC needs logical decoding");
    let listen: String = admin.query_one("SHOW listen_addresses", &[]).await.expect("listen").get(0);
    assert_eq!(listen, "127.0.0.1", "the private cluster listens on loopback only");
}

#[tokio::test]
async fn an_edited_applied_migration_is_refused() {
    let db = fresh_db().await;
    let admin = db.connect(DbRole::Admin).await.expect("admin");
    admin
        .batch_execute("UPDATE fintrail_meta.schema_migrations SET checksum = 'edited' WHERE version = 0")
        .await
        .expect("tamper");
    let err = fintrail_db::migrate::migrate(&db).await.expect_err("checksum mismatch");
    // Version 0 is the baseline: edited, it is refused like any applied migration.
    assert!(format!("{err:#}").contains("0000_baseline was edited after it was applied"), "{err:#}");
    admin.batch_execute("INSERT INTO fintrail_meta.schema_migrations (version, name, checksum) VALUES (9999, 'future', 'x'); UPDATE fintrail_meta.schema_migrations SET checksum = '' WHERE false").await.expect("future");
}
