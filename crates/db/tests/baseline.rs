//! The baseline (`0000_baseline.sql`) builds what the retired migrations 0001 to 0042 built, and
//! databases built before it keep working.
//!
//! The retired SQL is not kept in the tree (a copy would be the near-copies the baseline
//! retires, again): the tests read it from git history (`git show`, at
//! `migrate::RETIRED_AT_COMMIT`), check each file against its recorded checksum, and replay it
//! as the runner did before the baseline. So these tests need a clone with history (CI runs on
//! one; `git fetch --unshallow` fixes a shallow clone). An edited baseline is refused like any
//! edited migration: `harness.rs::an_edited_applied_migration_is_refused`.

use std::{
    collections::BTreeMap,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

use fintrail_db::{
    migrate::{self, Migration, RETIRED, RETIRED_AT_COMMIT},
    testing::cluster,
    Database, DbRole,
};
use sha2::{Digest, Sha256};

static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// Serializes the builds of this binary's tests. Roles are cluster-wide and the migrations
/// alter them; the runner's advisory lock is per database, so two databases of one cluster
/// migrating at once can fail with "tuple concurrently updated" (production runs one database
/// per cluster; the harness migrates one template).
static BUILDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The largest SQL file git may hand back for one retired migration.
const RETIRED_SIZE_BYTES_MAX: usize = 1 << 20;

/// An empty database of its own on the test cluster (nothing migrated).
async fn empty_db(tag: &str) -> Database {
    let n = NEXT_DB.fetch_add(1, Ordering::Relaxed);
    // The first call starts the cluster and writes its secrets: one caller at a time.
    let _building = BUILDING.lock().await;
    let db = cluster().database(&format!("baseline_{tag}_{n}")).expect("database parameters");
    fintrail_db::ensure_database(&db).await.expect("create database");
    db
}

/// The retired migrations' SQL, from git history, each checked against its recorded checksum.
fn retired_migrations() -> Vec<Migration> {
    let repo = env!("CARGO_MANIFEST_DIR");
    RETIRED
        .iter()
        .map(|x| {
            let path = format!("crates/db/migrations/{:04}_{}.sql", x.version, x.name);
            let out = Command::new("git")
                .args(["-C", repo, "show", &format!("{RETIRED_AT_COMMIT}:{path}")])
                .output()
                .expect("git runs");
            assert!(
                out.status.success(),
                "reading {path} at {RETIRED_AT_COMMIT} from git history failed (a shallow clone? \
                 `git fetch --unshallow`): {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.stdout.len() <= RETIRED_SIZE_BYTES_MAX, "{path}: {} bytes", out.stdout.len());
            let sql = String::from_utf8(out.stdout).expect("migrations are UTF-8");
            assert_eq!(
                hex::encode(Sha256::digest(sql.as_bytes())),
                x.checksum,
                "{path} is not the file that was applied"
            );
            // The runner's migrations are 'static (embedded); these live for the test process.
            Migration { version: x.version, name: x.name, sql: Box::leak(sql.into_boxed_str()) }
        })
        .collect()
}

/// A database built as before the baseline: the retired migrations, one after the other.
async fn built_before_the_baseline(tag: &str) -> Database {
    let db = empty_db(tag).await;
    let _building = BUILDING.lock().await;
    migrate::apply_in_order(&db, &retired_migrations()).await.expect("the retired migrations apply");
    db
}

/// `pg_dump` of one database (`what`: `--schema-only` or `--data-only`), without the runner's
/// bookkeeping, as entries: header (name, type, schema, owner) -> statements. The statements of
/// a privilege entry are sorted: the order of grants to different roles is not a difference.
fn dump(db: &Database, what: &str) -> BTreeMap<String, String> {
    let p = db.params(DbRole::Admin);
    let out = Command::new(cluster().binaries().tool("pg_dump"))
        .args([what, "--exclude-schema=fintrail_meta", "--no-comments"])
        .args(["-h", &p.host, "-p", &p.port.to_string(), "-U", &p.user, "-d", &p.dbname])
        .env("PGPASSWORD", p.password.as_deref().unwrap_or_default())
        .envs(p.libpq_tls_env())
        .output()
        .expect("pg_dump runs");
    assert!(out.status.success(), "pg_dump {what}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("pg_dump writes UTF-8");
    let mut entries = BTreeMap::new();
    let (mut header, mut body) = (String::from("(preamble)"), Vec::<String>::new());
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("-- Name: ").or_else(|| line.strip_prefix("-- Data for Name: ")) {
            finish(&mut entries, std::mem::replace(&mut header, h.to_string()), std::mem::take(&mut body));
        } else if !(line.is_empty()
            || line.starts_with("--")
            || line.starts_with("SET ")
            || line.starts_with("SELECT pg_catalog.set_config('search_path'")
            || line.starts_with("\\restrict")
            || line.starts_with("\\unrestrict"))
        {
            body.push(line.to_string());
        }
    }
    finish(&mut entries, header, body);
    entries
}

fn finish(entries: &mut BTreeMap<String, String>, header: String, mut body: Vec<String>) {
    if header.contains("Type: ACL") || header.contains("Type: DEFAULT ACL") {
        body.sort();
    }
    let previous = entries.insert(header.clone(), body.join("\n"));
    assert!(previous.is_none(), "pg_dump entry {header} twice");
}

/// A readable account of what differs between two dumps (empty when equal).
fn differences(incremental: &BTreeMap<String, String>, baseline: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (header, body) in incremental {
        match baseline.get(header) {
            None => out.push_str(&format!("\nonly in the incremental build: {header}\n{body}\n")),
            Some(b) if b != body => {
                out.push_str(&format!("\ndiffers: {header}\n--- incremental\n{body}\n+++ baseline\n{b}\n"))
            }
            Some(_) => {}
        }
    }
    for (header, body) in baseline {
        if !incremental.contains_key(header) {
            out.push_str(&format!("\nonly in the baseline build: {header}\n{body}\n"));
        }
    }
    out
}

/// The database's own privileges (pg_dump leaves them out without --create), one per line.
async fn database_privileges(db: &Database) -> Vec<String> {
    let admin = db.connect(DbRole::Admin).await.expect("admin");
    let rows = admin
        .query(
            "SELECT coalesce(g.rolname, 'PUBLIC') || ' ' || a.privilege_type || ' from ' || o.rolname
               FROM pg_database d, aclexplode(d.datacl) a
               LEFT JOIN pg_roles g ON g.oid = a.grantee JOIN pg_roles o ON o.oid = a.grantor
              WHERE d.datname = current_database() ORDER BY 1",
            &[],
        )
        .await
        .expect("datacl");
    rows.iter().map(|r| r.get(0)).collect()
}

/// The fintrail roles' attributes, settings and memberships, one role per line.
async fn roles(db: &Database) -> Vec<String> {
    let admin = db.connect(DbRole::Admin).await.expect("admin");
    let rows = admin
        .query(
            "SELECT format('%s super=%s inherit=%s createrole=%s createdb=%s login=%s replication=%s bypassrls=%s \
                            connlimit=%s settings=%s member_of=%s',
                   r.rolname, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, r.rolcanlogin,
                   r.rolreplication, r.rolbypassrls, r.rolconnlimit,
                   (SELECT array_agg(s ORDER BY s) FROM pg_db_role_setting d, unnest(d.setconfig) s
                     WHERE d.setrole = r.oid AND d.setdatabase = 0),
                   (SELECT array_agg(g.rolname ORDER BY g.rolname) FROM pg_auth_members m
                      JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid))
               FROM pg_roles r WHERE r.rolname LIKE 'fintrail\\_%' ORDER BY r.rolname",
            &[],
        )
        .await
        .expect("roles");
    rows.iter().map(|r| r.get(0)).collect()
}

#[tokio::test]
async fn the_baseline_builds_what_the_retired_migrations_built() {
    let incremental = built_before_the_baseline("incremental").await;
    let roles_incremental = roles(&incremental).await;
    assert!(roles_incremental.iter().any(|r| r.starts_with("fintrail_retention ")), "{roles_incremental:#?}");
    // Roles are cluster-wide, so the incremental build's roles are still there: loosen some
    // attributes first, so that the comparison proves the baseline asserts them itself.
    let admin = incremental.connect(DbRole::Admin).await.expect("admin");
    admin
        .batch_execute(
            "ALTER ROLE fintrail_owner CREATEDB; ALTER ROLE fintrail_retention CREATEROLE;
             ALTER ROLE fintrail_replicator INHERIT",
        )
        .await
        .expect("loosen roles");
    // Both builds then take the migrations after the baseline (0043 and above), as every
    // existing and every new database does: the comparison covers the whole schema of today.
    {
        let _building = BUILDING.lock().await;
        let later = migrate::migrate(&incremental).await.expect("later migrations on the incremental build");
        assert!(later.iter().all(|v| *v > migrate::BASELINE_THROUGH), "re-ran {later:?}");
    }
    let baseline = empty_db("baseline").await;
    let applied = {
        let _building = BUILDING.lock().await;
        migrate::migrate(&baseline).await.expect("the baseline applies")
    };
    assert_eq!(applied.first(), Some(&migrate::BASELINE_VERSION));

    let schema_incremental = dump(&incremental, "--schema-only");
    // Not vacuous: the dump holds the schema's objects and grants.
    assert!(schema_incremental.len() > 200, "{} pg_dump entries", schema_incremental.len());
    assert!(schema_incremental.keys().any(|h| h.starts_with("TABLE kyc_cases; Type: ACL")), "{schema_incremental:#?}");
    let schema = differences(&schema_incremental, &dump(&baseline, "--schema-only"));
    assert!(schema.is_empty(), "the baseline's schema differs from the retired migrations':\n{schema}");
    let data = differences(&dump(&incremental, "--data-only"), &dump(&baseline, "--data-only"));
    assert!(data.is_empty(), "the baseline's rows differ from the retired migrations':\n{data}");
    assert_eq!(database_privileges(&incremental).await, database_privileges(&baseline).await);
    assert_eq!(roles(&baseline).await, roles_incremental);
}

#[tokio::test]
async fn a_database_built_before_the_baseline_migrates_without_running_anything_again() {
    let db = built_before_the_baseline("upgrade").await;
    let admin = db.connect(DbRole::Admin).await.expect("admin");
    let bookkeeping = "SELECT version || ' ' || name || ' ' || checksum || ' ' || applied_at::text
                         FROM fintrail_meta.schema_migrations WHERE version <= 42 ORDER BY version";
    let before: Vec<String> = admin.query(bookkeeping, &[]).await.expect("rows").iter().map(|r| r.get(0)).collect();
    assert_eq!(before.len(), RETIRED.len());

    let applied = {
        let _building = BUILDING.lock().await;
        migrate::migrate(&db).await.expect("an existing database migrates")
    };
    assert!(applied.iter().all(|v| *v > migrate::BASELINE_THROUGH), "re-ran {applied:?}");
    let after: Vec<String> = admin.query(bookkeeping, &[]).await.expect("rows").iter().map(|r| r.get(0)).collect();
    assert_eq!(after, before, "the retired migrations' rows stay as they were");
    assert!(migrate::migrate(&db).await.expect("again").is_empty());
}

#[tokio::test]
async fn a_retired_migration_with_another_checksum_is_refused() {
    let db = built_before_the_baseline("tampered").await;
    let admin = db.connect(DbRole::Admin).await.expect("admin");
    admin
        .batch_execute("UPDATE fintrail_meta.schema_migrations SET checksum = 'edited' WHERE version = 11")
        .await
        .expect("tamper");
    let err = format!("{:#}", migrate::migrate(&db).await.expect_err("checksum mismatch"));
    assert!(err.contains("0011_kyc was edited after it was applied"), "{err}");
}

#[tokio::test]
async fn a_database_part_way_through_the_retired_migrations_is_refused() {
    let db = empty_db("partial").await;
    let mut retired = retired_migrations();
    retired.truncate(retired.len() - 2);
    let _building = BUILDING.lock().await;
    migrate::apply_in_order(&db, &retired).await.expect("the older migrations apply");
    let err = format!("{:#}", migrate::migrate(&db).await.expect_err("partial"));
    assert!(err.contains("stopped at migration 0038") && err.contains(RETIRED_AT_COMMIT), "{err}");
    let admin = db.connect(DbRole::Admin).await.expect("admin");
    let n: i64 =
        admin.query_one("SELECT count(*) FROM fintrail_meta.schema_migrations", &[]).await.expect("count").get(0);
    assert_eq!(usize::try_from(n).expect("non-negative"), retired.len(), "nothing was applied");
}
