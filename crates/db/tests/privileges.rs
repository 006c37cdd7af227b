//! Least privilege inside PostgreSQL, proven against a real cluster: the app role cannot
//! ALTER, TRUNCATE, DROP, disable triggers, or touch what it was not granted; the replicator
//! cannot write; no role bypasses row security or owns the tables it writes.

use fintrail_db::{testing::fresh_db, DbRole};

/// Runs `sql` as `role` and returns the SQLSTATE of the failure (None when it succeeded).
async fn try_as(db: &fintrail_db::Database, role: DbRole, sql: &str) -> Option<String> {
    let client = db.connect(role).await.expect("login");
    match client.batch_execute(sql).await {
        Ok(()) => None,
        Err(e) => Some(e.code().map(|c| c.code().to_string()).unwrap_or_else(|| e.to_string())),
    }
}

/// 42501 insufficient_privilege; 42P01 undefined table is NOT accepted as a refusal, so a
/// typo cannot make a test pass.
fn refused(code: &Option<String>) -> bool {
    code.as_deref() == Some("42501")
}

/// A table the app role may read and write, created by the owner like a real migration would.
async fn owner_table_with_app_dml(db: &fintrail_db::Database) {
    let admin = db.connect(DbRole::Admin).await.expect("admin");
    admin
        .batch_execute(
            "SET ROLE fintrail_owner;
             CREATE TABLE fintrail.probe (id bigint PRIMARY KEY, note text);
             CREATE FUNCTION fintrail.probe_guard() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN IF NEW.note = 'forbidden' THEN RAISE EXCEPTION 'guarded'; END IF; RETURN NEW; END $$;
             CREATE TRIGGER probe_guard BEFORE INSERT OR UPDATE ON fintrail.probe
               FOR EACH ROW EXECUTE FUNCTION fintrail.probe_guard();
             GRANT SELECT, INSERT, UPDATE ON fintrail.probe TO fintrail_app;
             CREATE TABLE fintrail.not_granted (id bigint PRIMARY KEY);
             RESET ROLE;",
        )
        .await
        .expect("owner creates tables");
}

#[tokio::test]
async fn app_can_use_its_grants_and_nothing_more() {
    let db = fresh_db().await;
    owner_table_with_app_dml(&db).await;
    // Positive space: what was granted works.
    assert_eq!(
        try_as(
            &db,
            DbRole::App,
            "INSERT INTO probe VALUES (1, 'ok'); UPDATE probe SET note = 'x' WHERE id = 1; SELECT * FROM probe"
        )
        .await,
        None
    );
    // Negative space: everything else is refused with insufficient_privilege.
    for sql in [
        "DELETE FROM probe",
        "TRUNCATE probe",
        "ALTER TABLE probe ADD COLUMN evil text",
        "DROP TABLE probe",
        "ALTER TABLE probe DISABLE TRIGGER probe_guard",
        "ALTER TABLE probe DISABLE TRIGGER ALL",
        "SELECT * FROM not_granted",
        "INSERT INTO not_granted VALUES (1)",
        "CREATE TABLE fintrail.mine (id int)",
        "CREATE TABLE public.mine (id int)",
        "SELECT * FROM fintrail_meta.schema_migrations",
        "SET ROLE fintrail_owner",
        "CREATE ROLE intruder",
        "GRANT SELECT ON not_granted TO fintrail_app",
        "ALTER ROLE fintrail_app BYPASSRLS",
        "SET session_replication_role = replica",
    ] {
        let code = try_as(&db, DbRole::App, sql).await;
        assert!(refused(&code), "app role was not refused: {sql} -> {code:?}");
    }
    // The trigger still fires for the app role (it cannot get around it).
    let code = try_as(&db, DbRole::App, "INSERT INTO probe VALUES (2, 'forbidden')").await;
    assert_eq!(code.as_deref(), Some("P0001"), "the owner's trigger fires for the app");
}

#[tokio::test]
async fn app_cannot_alter_truncate_drop_or_disable_triggers_on_any_real_table() {
    // Generic over the real schema: every table the migrations create (it grows with them).
    let db = fresh_db().await;
    let admin = db.connect(DbRole::Admin).await.expect("admin");
    let tables: Vec<String> = admin
        .query("SELECT tablename FROM pg_tables WHERE schemaname = 'fintrail' ORDER BY 1", &[])
        .await
        .expect("list tables")
        .iter()
        .map(|r| r.get(0))
        .collect();
    for t in &tables {
        for sql in [
            format!("TRUNCATE fintrail.{t}"),
            format!("ALTER TABLE fintrail.{t} ADD COLUMN evil text"),
            format!("DROP TABLE fintrail.{t}"),
            format!("ALTER TABLE fintrail.{t} DISABLE TRIGGER ALL"),
        ] {
            let code = try_as(&db, DbRole::App, &sql).await;
            assert!(refused(&code), "app role was not refused: {sql} -> {code:?}");
        }
    }
}

#[tokio::test]
async fn no_login_role_owns_tables_bypasses_rls_or_is_privileged() {
    let db = fresh_db().await;
    owner_table_with_app_dml(&db).await;
    let admin = db.connect(DbRole::Admin).await.expect("admin");
    let rows = admin
        .query(
            "SELECT rolname, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication
             FROM pg_roles WHERE rolname IN ('fintrail_owner', 'fintrail_app', 'fintrail_replicator') ORDER BY 1",
            &[],
        )
        .await
        .expect("roles");
    assert_eq!(rows.len(), 3, "the three roles exist");
    for r in &rows {
        let name: String = r.get(0);
        assert!(
            !r.get::<_, bool>(1) && !r.get::<_, bool>(2) && !r.get::<_, bool>(3) && !r.get::<_, bool>(4),
            "{name} is privileged"
        );
        let login: bool = r.get(5);
        let replication: bool = r.get(6);
        assert_eq!(login, name != "fintrail_owner", "{name} login");
        assert_eq!(replication, name == "fintrail_replicator", "{name} replication");
    }
    let owned_by_writers: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner
             WHERE r.rolname IN ('fintrail_app', 'fintrail_replicator')",
            &[],
        )
        .await
        .expect("ownership")
        .get(0);
    assert_eq!(owned_by_writers, 0);
    let not_owner: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'fintrail' AND tableowner <> 'fintrail_owner'",
            &[],
        )
        .await
        .expect("ownership")
        .get(0);
    assert_eq!(not_owner, 0, "every table in schema fintrail is owned by fintrail_owner");
}

#[tokio::test]
async fn replicator_reads_only_what_it_was_granted_and_writes_nothing() {
    let db = fresh_db().await;
    owner_table_with_app_dml(&db).await;
    for sql in [
        "SELECT * FROM probe",
        "INSERT INTO probe VALUES (9, 'x')",
        "SELECT * FROM not_granted",
        "CREATE TABLE fintrail.mine (id int)",
        "SELECT * FROM fintrail_meta.schema_migrations",
    ] {
        let code = try_as(&db, DbRole::Replicator, sql).await;
        assert!(refused(&code), "replicator was not refused: {sql} -> {code:?}");
    }
    let admin = db.connect(DbRole::Admin).await.expect("admin");
    admin.batch_execute("GRANT SELECT ON fintrail.probe TO fintrail_replicator").await.expect("grant");
    assert_eq!(try_as(&db, DbRole::Replicator, "SELECT * FROM probe").await, None);
    assert!(refused(&try_as(&db, DbRole::Replicator, "UPDATE probe SET note = 'x'").await));
}

#[tokio::test]
async fn unknown_passwords_are_refused() {
    let db = fresh_db().await;
    let mut config = db.config(DbRole::App).expect("config");
    config.password("wrong");
    let err = db.connect_config(&config).await.map(|_| ()).expect_err("wrong password refused");
    let code = err.downcast_ref::<tokio_postgres::Error>().and_then(|e| e.code()).map(|c| c.code().to_owned());
    assert_eq!(code.as_deref(), Some("28P01"), "{err:#}");
}
