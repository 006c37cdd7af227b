//! Issue #16, item 10: the attacks a holder of the replicator credential (`fintrail_replicator`)
//! would try, performed on a real cluster with that credential.
//!
//! - SELECT a withheld column: refused (column-level grants from the policy).
//! - Consume the publication over a real replication stream (`pg_recvlogical`, pgoutput, the
//!   publication): the raw bytes never hold a withheld column's value (column lists).
//! - A policy change is reflected in grants and publication by setup; a new column is denied.
//! - Physical replication (a copy of every file) is refused by pg_hba; the app role cannot
//!   open a replication stream at all.
//! - The known limit, pinned: the REPLICATION attribute still lets the replicator decode every
//!   column of every table with another output plugin (`test_decoding`). Setup reports such a
//!   slot. If this test starts failing because PostgreSQL refuses it, update the docs.

mod common;
use common::*;

use std::process::{Command, Output, Stdio};

use fintrail_cdc::policy::Policy;
use fintrail_cdc::source::{self, Names};
use fintrail_db::testing::fresh_db;
use fintrail_db::{Database, DbRole};

/// A value nothing else in the cluster holds, to look for in raw bytes.
fn unique_marker(what: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("MARKER-{what}-{}-{nanos}", std::process::id())
}

/// The SQLSTATE of a failed statement (`42501` is insufficient_privilege).
fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_owned()).unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

/// A PostgreSQL client tool as `role` against the test database.
fn pg_tool(db: &Database, role: DbRole, tool: &str, args: &[&str]) -> Output {
    let bins = fintrail_db::cluster::PgBinaries::locate().unwrap();
    let p = db.params(role);
    Command::new(bins.tool(tool))
        .args(["-h", &p.host, "-p", &p.port.to_string(), "-U", &p.user])
        .args(args)
        .env("PGPASSWORD", p.password.clone().unwrap_or_default())
        .env("PGCONNECT_TIMEOUT", "10")
        .envs(p.libpq_tls_env())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `pg_recvlogical` with the replicator credential on the test database; it must succeed.
fn recvlogical(db: &Database, args: &[&str]) {
    let dbname = db.params(DbRole::Replicator).dbname;
    let mut all = vec!["-d", dbname.as_str()];
    all.extend_from_slice(args);
    let o = pg_tool(db, DbRole::Replicator, "pg_recvlogical", &all);
    assert!(o.status.success(), "pg_recvlogical {args:?}: {}", text(&o));
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[tokio::test]
async fn the_replicator_cannot_select_a_withheld_column_nor_receive_one_over_the_wire() {
    init_tracing();
    let db = fresh_db().await;
    without_audit_coupling(&db).await;
    let policy = Policy::load(None).unwrap();
    let names = names("attack");
    let report = source::setup(&db, &policy, &names).await.unwrap();
    assert!(report.published.contains(&"customers".to_string()), "{report:?}");

    // 1. SQL with the replicator credential: each withheld column is refused, whole-row
    //    reads too; the columns the policy lets out are readable (the snapshot's path).
    let repl = db.connect(DbRole::Replicator).await.unwrap();
    for (table, column) in [
        ("customers", "display_name"),
        ("api_tokens", "token_hash"),
        ("api_tokens", "label"),
        ("audit_events", "before"),
        ("audit_events", "after"),
        ("kyc_case_transitions", "reason"),
        ("organization_transitions", "reason"),
        ("media_objects", "storage_key"),
    ] {
        let e = repl.query(&format!("SELECT {column} FROM fintrail.{table}"), &[]).await.unwrap_err();
        assert_eq!(sqlstate(&e), "42501", "SELECT {table}.{column} as the replicator: {e:?}");
        let e = repl.query(&format!("SELECT * FROM fintrail.{table}"), &[]).await.unwrap_err();
        assert_eq!(sqlstate(&e), "42501", "SELECT * FROM {table} as the replicator");
        let e = repl.query(&format!("COPY (SELECT {column} FROM fintrail.{table}) TO STDOUT"), &[]).await.unwrap_err();
        assert_eq!(sqlstate(&e), "42501", "COPY {table}.{column} as the replicator");
        // Nor as an oracle: filtering or sorting on it needs the same privilege.
        let e = repl
            .query(&format!("SELECT count(*) FROM fintrail.{table} WHERE {column}::text LIKE 'a%'"), &[])
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&e), "42501", "WHERE on {table}.{column} as the replicator");
    }
    // Tables outside the policy: nothing at all.
    for table in ["audit_chain", "audit_checkpoints", "idempotency_keys"] {
        let e = repl.query(&format!("SELECT 1 FROM fintrail.{table} LIMIT 1"), &[]).await.unwrap_err();
        assert_eq!(sqlstate(&e), "42501", "{table} as the replicator");
    }
    repl.query("SELECT id, email, created_at FROM fintrail.customers WHERE ctid >= '(0,0)'::tid", &[])
        .await
        .expect("the let-out columns stay readable for the snapshot");
    // It cannot publish more for itself: no publication of its own, none altered.
    let e = repl
        .batch_execute("CREATE PUBLICATION evil FOR TABLE fintrail.customers (id, display_name)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501", "CREATE PUBLICATION as the replicator: {e:?}");
    let e = repl
        .batch_execute(&format!("ALTER PUBLICATION {} SET TABLE fintrail.customers", names.publication))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501", "ALTER PUBLICATION as the replicator: {e:?}");

    // 2. A real replication stream with the replicator credential: pg_recvlogical, pgoutput,
    //    from slots the replicator creates before the markers are written. The control is a
    //    publication without column lists (what setup made before): the same attack through it
    //    does see the withheld value, so the check below can fail.
    owner_sql(&db, "CREATE PUBLICATION attack_control FOR TABLE customers;").await;
    for slot in ["attack_recv", "attack_control"] {
        recvlogical(&db, &["--slot", slot, "--create-slot", "--plugin", "pgoutput"]);
    }
    let name = unique_marker("NAME");
    let renamed = unique_marker("RENAMED");
    let email = unique_marker("EMAIL");
    owner_sql(
        &db,
        &format!(
            "INSERT INTO customers (display_name, email) VALUES ('{name}', '{email}@x.test');
             UPDATE customers SET display_name = '{renamed}' WHERE email = '{email}@x.test';
             DELETE FROM customers WHERE email = '{email}@x.test';"
        ),
    )
    .await;
    let end = fintrail_cdc::pgoutput::lsn_to_string(marker(&db).await);
    let dir = temp_dir("attack");
    let stream = |slot: &str, publication: &str| -> Vec<u8> {
        let out = dir.join(format!("{slot}.bin"));
        recvlogical(
            &db,
            &[
                "--slot",
                slot,
                "--start",
                "--no-loop",
                &format!("--endpos={end}"),
                "-o",
                "proto_version=1",
                "-o",
                &format!("publication_names={publication}"),
                "-f",
                out.to_str().unwrap(),
            ],
        );
        recvlogical(&db, &["--slot", slot, "--drop-slot"]);
        std::fs::read(&out).unwrap()
    };
    let holds = |bytes: &[u8], needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    let control = stream("attack_control", "attack_control");
    assert!(holds(&control, &name) && holds(&control, &renamed), "the control stream carries the withheld value");
    let bytes = stream("attack_recv", &names.publication);
    // The stream is real: the row crossed, with the columns the policy lets out (e-mail is
    // pseudonymized by the pipeline, so it travels in clear to it).
    assert!(holds(&bytes, &email), "the let-out column reached the stream ({} bytes)", bytes.len());
    assert!(!holds(&bytes, &name), "a withheld column's value crossed the wire");
    assert!(!holds(&bytes, &renamed), "a withheld column's updated value crossed the wire");
    assert!(!holds(&bytes, "display_name"), "the withheld column is not even named in the Relation message");
    // Any publication in the database is open to the replicator: setup names the stray one.
    let report = source::setup(&db, &policy, &names).await.unwrap();
    assert_eq!(report.other_publications, ["attack_control"]);
    owner_sql(&db, "DROP PUBLICATION attack_control;").await;

    // 3. Our own pipeline on the same publication still replicates the allowed columns.
    let path = dir.join("a.duckdb");
    owner_sql(&db, &format!("INSERT INTO customers (display_name, email) VALUES ('{name}', '{email}@y.test');")).await;
    catch_up(&db, &policy, &names, &path).await.unwrap();
    assert_eq!(duck_i64(&path, "SELECT count(*) FROM customers"), 1);
    assert_eq!(duck_columns(&path, "main", "customers"), ["id", "email", "created_at"]);
    let _ = std::fs::remove_dir_all(&dir);
}

const POLICY_V1: &str = r#"
[tables.accounts.columns]
id = "keep"
a = "keep"
b = "drop"
secret = "drop"
"#;

/// `a` is withdrawn, `b` is let out (pseudonymized), `secret` stays withheld.
const POLICY_V2: &str = r#"
[tables.accounts.columns]
id = "keep"
a = "drop"
b = "pseudonymize"
secret = "drop"
"#;

async fn exposure(db: &Database, names: &Names, table: &str) -> (Option<Vec<String>>, Vec<String>) {
    let admin = db.connect(DbRole::Admin).await.unwrap();
    source::exposure(&admin, "fintrail", table, names).await.unwrap()
}

fn v(cols: &[&str]) -> Vec<String> {
    cols.iter().map(|c| (*c).to_owned()).collect()
}

async fn replicator_can_read(db: &Database, column: &str) -> bool {
    let repl = db.connect(DbRole::Replicator).await.unwrap();
    match repl.query(&format!("SELECT {column} FROM fintrail.accounts"), &[]).await {
        Ok(_) => true,
        Err(e) => {
            assert_eq!(sqlstate(&e), "42501", "{e:?}");
            false
        }
    }
}

#[tokio::test]
async fn a_policy_change_re_syncs_grants_and_publication_and_new_columns_are_denied() {
    let db = fresh_db().await;
    without_audit_coupling(&db).await;
    let names = names("policy_change");
    owner_sql(&db, "CREATE TABLE accounts (id bigint PRIMARY KEY, a text, b text, secret text);").await;
    // A table-level grant left from before this change (or by hand) does not survive setup.
    owner_sql(&db, "GRANT SELECT ON accounts TO fintrail_replicator;").await;

    let v1 = Policy::parse(POLICY_V1).unwrap();
    source::setup(&db, &v1, &names).await.unwrap();
    assert_eq!(exposure(&db, &names, "accounts").await, (Some(v(&["id", "a"])), v(&["id", "a"])));
    assert!(replicator_can_read(&db, "a").await);
    assert!(!replicator_can_read(&db, "b").await);
    assert!(!replicator_can_read(&db, "secret").await);
    // Idempotent: the same policy again changes nothing.
    source::setup(&db, &v1, &names).await.unwrap();
    assert_eq!(exposure(&db, &names, "accounts").await, (Some(v(&["id", "a"])), v(&["id", "a"])));

    // The policy withdraws `a` and lets `b` out: both the grant and the column list follow.
    let v2 = Policy::parse(POLICY_V2).unwrap();
    let report = source::setup(&db, &v2, &names).await.unwrap();
    assert_eq!(report.published_columns, vec![("accounts".to_string(), v(&["id", "b"]))]);
    assert_eq!(exposure(&db, &names, "accounts").await, (Some(v(&["id", "b"])), v(&["id", "b"])));
    assert!(!replicator_can_read(&db, "a").await);
    assert!(replicator_can_read(&db, "b").await);

    // A column a migration adds is in neither until the policy names it (default deny).
    owner_sql(&db, "ALTER TABLE accounts ADD COLUMN added text;").await;
    let report = source::setup(&db, &v2, &names).await.unwrap();
    assert_eq!(exposure(&db, &names, "accounts").await, (Some(v(&["id", "b"])), v(&["id", "b"])));
    assert!(report.withheld_columns[0].1.contains(&"added".to_string()), "{report:?}");
    assert!(!replicator_can_read(&db, "added").await);

    // A table the policy no longer lists leaves the publication and every grant.
    let other = Policy::parse("[tables.nothing_here.columns]\nid = \"keep\"\n").unwrap();
    source::setup(&db, &other, &names).await.unwrap();
    assert_eq!(exposure(&db, &names, "accounts").await, (None, v(&[])));
    assert!(!replicator_can_read(&db, "id").await);
}

#[tokio::test]
async fn physical_replication_is_refused_and_only_a_replication_role_streams() {
    let db = fresh_db().await;
    without_audit_coupling(&db).await;
    let dir = temp_dir("physical");
    // pg_basebackup / pg_receivewal would copy every file of the cluster: pg_hba rejects any
    // physical replication connection, the replicator's included.
    let o = pg_tool(
        &db,
        DbRole::Replicator,
        "pg_receivewal",
        &["--no-loop", "--no-password", "-D", dir.to_str().unwrap(), "--endpos=0/1"],
    );
    assert!(!o.status.success(), "physical replication must be refused: {}", text(&o));
    assert!(text(&o).contains("pg_hba.conf rejects replication connection"), "{}", text(&o));
    // The app role (no REPLICATION attribute) cannot open a logical replication stream.
    let o = pg_tool(
        &db,
        DbRole::App,
        "pg_recvlogical",
        &["-d", &db.params(DbRole::App).dbname, "--slot", "app_slot", "--create-slot", "--plugin", "pgoutput"],
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("replication"), "{}", text(&o));
    // pg_hba cannot tell a logical replication session from a plain one: the REPLICATION
    // attribute limits it, and among the login roles only the replicator has it (besides the
    // private cluster's superuser, the admin).
    let admin = db.connect(DbRole::Admin).await.unwrap();
    let streamers: Vec<String> = admin
        .query("SELECT rolname::text FROM pg_roles WHERE rolcanlogin AND (rolreplication OR rolsuper) ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(streamers, ["fintrail_admin", "fintrail_replicator"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The known limit, performed: REPLICATION lets the replicator create a slot with another
/// output plugin, and `test_decoding` ignores publications and column lists alike. Column
/// grants and lists stop our pipeline's path and SQL reads, not this; pg_hba, the server log
/// (`log_replication_commands`) and setup's slot report are what is left (see the crate docs).
#[tokio::test]
async fn known_limit_the_replication_attribute_still_decodes_every_column_with_test_decoding() {
    let db = fresh_db().await;
    without_audit_coupling(&db).await;
    let policy = Policy::load(None).unwrap();
    let names = names("limit");
    source::setup(&db, &policy, &names).await.unwrap();
    // Over the replication protocol, as pg_recvlogical (or any client) would.
    let dbname = db.params(DbRole::Replicator).dbname;
    let o = pg_tool(
        &db,
        DbRole::Replicator,
        "pg_recvlogical",
        &["-d", &dbname, "--slot", "rogue", "--create-slot", "--plugin", "test_decoding"],
    );
    if !o.status.success() {
        // A server without the contrib plugin closes this particular door: say so and stop.
        assert!(text(&o).contains("test_decoding"), "{}", text(&o));
        eprintln!("test_decoding is not installed on this server: {}", text(&o));
        return;
    }
    // The server log names the slot and its plugin (log_replication_commands): detection.
    let log = std::fs::read_to_string(fintrail_db::testing::cluster().home().pg_log()).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("CREATE_REPLICATION_SLOT") && l.contains("rogue") && l.contains("test_decoding")),
        "the server log records the rogue slot"
    );
    let repl = db.connect(DbRole::Replicator).await.unwrap();
    let name = unique_marker("LIMIT");
    owner_sql(
        &db,
        &format!(
            "SET synchronous_commit = on; INSERT INTO customers (display_name, email) VALUES ('{name}', 'x@x.test');"
        ),
    )
    .await;
    // The test cluster commits asynchronously: the SQL interface decodes flushed WAL only.
    let mut all: Vec<String> = Vec::new();
    for _ in 0..100 {
        let rows = repl.query("SELECT data FROM pg_logical_slot_get_changes('rogue', NULL, NULL)", &[]).await.unwrap();
        all.extend(rows.iter().map(|r| r.get::<_, String>(0)));
        if all.iter().any(|d| d.contains(&name)) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        all.iter().any(|d| d.contains(&name) && d.contains("display_name")),
        "test_decoding decoded the withheld column (the documented known limit): {all:?}"
    );
    // Setup names the rogue slot.
    let report = source::setup(&db, &policy, &names).await.unwrap();
    assert_eq!(report.foreign_slots, vec![("rogue".to_string(), "test_decoding".to_string())]);
    repl.query("SELECT pg_drop_replication_slot('rogue')", &[]).await.unwrap();
}
