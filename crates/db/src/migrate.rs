//! Versioned SQL migrations, run by the owner role.
//!
//! Why our own runner (60 lines) rather than refinery/sqlx-migrate: each migration must run
//! as a chosen role (`SET LOCAL ROLE fintrail_owner`, or the admin for the bootstrap that
//! creates roles), which those runners do not model; and we want a checksum check that refuses
//! an edited, already-applied migration, plus an advisory lock so two `fintrail` processes
//! migrating at once do not race.
//!
//! # The baseline
//! `0000_baseline.sql` builds, on an empty database, what migrations 0001 to 0042 built one
//! after the other; those are retired ([`RETIRED`]: name and checksum only, the SQL is in git
//! history at [`RETIRED_AT_COMMIT`]). A database records either the baseline (built fresh) or
//! all the retired migrations (built before the baseline): both count as "through 0042", and
//! migrations 0043 and above apply on top of either. A retired row with another checksum is
//! refused like an edited migration; a database that stopped part-way through the retired
//! ones is refused with the way out (migrate it with an older binary first), since this binary
//! no longer carries their SQL. `crates/db/tests/baseline.rs` proves the two builds equal.

use anyhow::{bail, Context as _};
use fintrail_domain::db_role::DbRole;
use sha2::{Digest, Sha256};

use crate::database::{Database, Kind};

include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// Arbitrary but fixed key of the advisory lock that serializes migrators.
const MIGRATION_LOCK_KEY: i64 = 0x6669_6e74_7261_696c; // "fintrail"

/// The baseline's version: it stands for every retired migration, so it sorts before them.
pub const BASELINE_VERSION: u32 = 0;
/// The last version the baseline covers; every later migration is numbered above it.
pub const BASELINE_THROUGH: u32 = 42;
/// A commit whose tree still holds the retired migration files (the equivalence test replays
/// them from it with `git show`).
pub const RETIRED_AT_COMMIT: &str = "4ec4e236f12a9620936abff4abd963a8705e5039"; // pragma: allowlist secret

/// A migration the baseline replaced, as databases built before the baseline recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retired {
    pub version: u32,
    pub name: &'static str,
    /// SHA-256 (hex) of the file as it was applied.
    pub checksum: &'static str,
}

/// Migrations 0001 to 0042, retired into `0000_baseline.sql`, in version order.
pub const RETIRED: &[Retired] = &[
    Retired { version: 1, name: "roles", checksum: "c5f05a1fe745f3fc6d1b6c4f05d682cb40915cb0be00377fce15bb8766ad8d35" }, // pragma: allowlist secret
    Retired {
        version: 10,
        name: "identity",
        checksum: "76168dff77293a93ab21a94b80345ace50961696e5d832eb1eb9571cdea48474", // pragma: allowlist secret
    },
    Retired { version: 11, name: "kyc", checksum: "f5c656c75fa9e4eabe68cff5b1b1430ea16672052352fe75516473bd6ea81215" }, // pragma: allowlist secret
    Retired { version: 12, name: "kyb", checksum: "aa7586b41475fc87b118012552f1cfe482af40a74cd0d5c6c1e290d79382a042" }, // pragma: allowlist secret
    Retired {
        version: 13,
        name: "media",
        checksum: "cd1979a2f7fd9d5db52b8d07676a8f512937817624b95bc184d27034a6caab44", // pragma: allowlist secret
    },
    Retired {
        version: 14,
        name: "audit",
        checksum: "ae2e770ed423a895ee07776128ff297f047adbd3fed165f6e73a07ab53d5626b", // pragma: allowlist secret
    },
    Retired {
        version: 30,
        name: "ledger",
        checksum: "51c2b72ff89fd50407e89d60c9c7964698440e3f6c296ee71e3455eeebe70c29", // pragma: allowlist secret
    },
    Retired {
        version: 31,
        name: "ledger_lock_plpgsql",
        checksum: "21db170f09e5273267a5b09e6b4bf99d6958ed6ea286d6a8ebd12dac11cadbc2", // pragma: allowlist secret
    },
    Retired {
        version: 32,
        name: "ledger_entries_by_construction",
        checksum: "01f9f66460942b10a9d11cf54d9562d103f70e0ce13485079d185d85b198582b", // pragma: allowlist secret
    },
    Retired {
        version: 33,
        name: "state_machine_triggers",
        checksum: "d9d5b811fbe50cee2404b5010ad5b7d997d36413caf2f72407c792e7e8a7bee5", // pragma: allowlist secret
    },
    Retired {
        version: 34,
        name: "audit_trust_boundary",
        checksum: "039d0ce2456eebf91bdbd47ea54be38cfe78a558283f94016465450a5d326d44", // pragma: allowlist secret
    },
    Retired {
        version: 35,
        name: "no_client_chosen_fields",
        checksum: "3ae358f07c9e13ca68bde6e8493d4fccb399ad868528dba28a0b19b6790c3231", // pragma: allowlist secret
    },
    Retired {
        version: 36,
        name: "audit_coupling",
        checksum: "01c50639aefca7259d3abe89d156fe333100be1618f5ee8c22581ce560e30f7e", // pragma: allowlist secret
    },
    Retired {
        version: 37,
        name: "audit_actor_check",
        checksum: "38e472b504c1efe6245ddfef305c95297911ed5c338f863c97727bc2ced3e6db", // pragma: allowlist secret
    },
    Retired {
        version: 38,
        name: "running_balance_under_lock",
        checksum: "0e6815fd203582fd1fa98829369ffdc02d9b4cdcdd920c5c370bd04af4215951", // pragma: allowlist secret
    },
    Retired {
        version: 40,
        name: "job_runs",
        checksum: "0f26a998b742adb7eef99b166ae383fb22a917dbf09b7a8bf91f8dbf78554762", // pragma: allowlist secret
    },
    Retired {
        version: 42,
        name: "console",
        checksum: "7062bd0f685573fe9db571f20d7e0280d4da7904285f8de0857b317be792fe41", // pragma: allowlist secret
    },
];

/// Who runs a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunAs {
    /// Bootstrap (roles, database grants): first line `-- run_as: admin`.
    Admin,
    /// Everything else: objects end up owned by `fintrail_owner`.
    Owner,
}

/// One embedded migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

impl Migration {
    pub fn run_as(&self) -> RunAs {
        match self.sql.lines().next() {
            Some(first) if first.trim() == "-- run_as: admin" => RunAs::Admin,
            _ => RunAs::Owner,
        }
    }
    pub fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.sql.as_bytes()))
    }
}

/// Every migration this binary carries, in version order: the baseline, then 0043 and above.
pub fn all() -> Vec<Migration> {
    let list: Vec<Migration> =
        MIGRATIONS.iter().map(|&(version, name, sql)| Migration { version, name, sql }).collect();
    assert!(list.windows(2).all(|w| w[0].version < w[1].version), "migrations are strictly ordered");
    assert_eq!(list.first().map(|m| m.version), Some(BASELINE_VERSION), "the baseline comes first");
    assert!(
        list.iter().skip(1).all(|m| m.version > BASELINE_THROUGH),
        "a migration after the baseline is numbered {:04} or above",
        BASELINE_THROUGH + 1
    );
    list
}

/// One row of `fintrail_meta.schema_migrations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub version: u32,
    pub name: String,
    pub checksum: String,
}

/// What to apply, in order, to a database that recorded `recorded` (pure: no I/O). Refuses an
/// edited migration (a carried or a retired one), one newer than this binary, and a database
/// that holds only part of the retired migrations or later ones without the baseline.
pub fn plan<'a>(known: &'a [Migration], recorded: &[Recorded]) -> anyhow::Result<Vec<&'a Migration>> {
    let mut retired_recorded = 0usize;
    for r in recorded {
        if let Some(m) = known.iter().find(|m| m.version == r.version) {
            if m.checksum() != r.checksum {
                bail!(
                    "migration {:04}_{} was edited after it was applied (checksum differs): add a new migration instead",
                    m.version,
                    m.name
                );
            }
        } else if let Some(x) = RETIRED.iter().find(|x| x.version == r.version) {
            if x.checksum != r.checksum || x.name != r.name {
                bail!(
                    "migration {:04}_{} was edited after it was applied (checksum differs from the retired \
                     {:04}_{}'s): this database was not built by fintrail's migrations",
                    r.version,
                    r.name,
                    x.version,
                    x.name
                );
            }
            retired_recorded += 1;
        } else {
            bail!(
                "the database has migration {:04}_{}, which this fintrail binary does not know: it is newer than this binary",
                r.version,
                r.name
            );
        }
    }
    let has_baseline = recorded.iter().any(|r| r.version == BASELINE_VERSION);
    let through_retired = retired_recorded == RETIRED.len();
    if retired_recorded > 0 && !through_retired {
        let last = recorded.iter().filter(|r| r.version <= BASELINE_THROUGH).map(|r| r.version).max();
        bail!(
            "the database stopped at migration {:04}; migrations 0001 to {BASELINE_THROUGH:04} were retired into \
             the baseline and this binary no longer carries them: migrate it first with a fintrail binary built \
             from commit {RETIRED_AT_COMMIT} (or earlier), then with this one",
            last.unwrap_or(0)
        );
    }
    if through_retired && has_baseline {
        bail!("the database records both the baseline and the migrations it retired: its bookkeeping was edited");
    }
    if !recorded.is_empty() && !through_retired && !has_baseline {
        bail!("the database records migrations but neither the baseline nor the migrations it retired");
    }
    let done = |m: &Migration| {
        recorded.iter().any(|r| r.version == m.version) || (m.version == BASELINE_VERSION && through_retired)
    };
    Ok(known.iter().filter(|m| !done(m)).collect())
}

/// Applies the pending migrations; returns the versions applied now (empty when up to date).
pub async fn migrate(db: &Database) -> anyhow::Result<Vec<u32>> {
    let mut client = db.connect(DbRole::Admin).await?;
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY]).await?;
    let result = migrate_locked(&mut client).await;
    // Unlock even on failure; the session ends right after anyway.
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY]).await;
    let applied = result?;
    if db.kind() == Kind::Private {
        set_private_passwords(db, &client).await?;
    }
    Ok(applied)
}

async fn migrate_locked(client: &mut tokio_postgres::Client) -> anyhow::Result<Vec<u32>> {
    ensure_bookkeeping(client).await?;
    let rows = client
        .query("SELECT version, name, checksum FROM fintrail_meta.schema_migrations ORDER BY version", &[])
        .await?;
    let mut recorded = Vec::with_capacity(rows.len());
    for row in &rows {
        let version: i32 = row.get(0);
        let version = u32::try_from(version).with_context(|| format!("schema_migrations has version {version}"))?;
        recorded.push(Recorded { version, name: row.get(1), checksum: row.get(2) });
    }
    let known = all();
    let mut applied = Vec::new();
    for m in plan(&known, &recorded)? {
        apply(client, m).await?;
        applied.push(m.version);
    }
    sync_role_permissions(client).await?;
    Ok(applied)
}

/// Writes `fintrail.role_permissions` (migration 0046) from the roles declared in Rust, which
/// stay the source of truth: the database's copy is what the audit trail's insert trigger
/// checks an event's permission against (the actor's role must grant it). Every run, so a
/// release that changes a role changes the copy with it. As the owner, in one transaction.
pub async fn sync_role_permissions(client: &mut tokio_postgres::Client) -> anyhow::Result<()> {
    let (roles, permissions): (Vec<&str>, Vec<&str>) = fintrail_domain::Role::ALL
        .iter()
        .flat_map(|r| r.permissions().iter().map(move |p| (r.as_str(), p.as_str())))
        .unzip();
    assert!(!roles.is_empty(), "every role grants something");
    let tx = client.transaction().await?;
    tx.batch_execute("SET LOCAL ROLE fintrail_owner").await?;
    tx.execute(
        "DELETE FROM fintrail.role_permissions \
         WHERE (role, permission) NOT IN (SELECT * FROM unnest($1::text[], $2::text[]))",
        &[&roles, &permissions],
    )
    .await?;
    tx.execute(
        "INSERT INTO fintrail.role_permissions (role, permission) \
         SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING",
        &[&roles, &permissions],
    )
    .await?;
    tx.commit().await.context("writing fintrail.role_permissions")?;
    Ok(())
}

/// The bookkeeping lives in its own schema that only the admin can see.
async fn ensure_bookkeeping(client: &tokio_postgres::Client) -> anyhow::Result<()> {
    client
        .batch_execute(
            "CREATE SCHEMA IF NOT EXISTS fintrail_meta;
             REVOKE ALL ON SCHEMA fintrail_meta FROM PUBLIC;
             CREATE TABLE IF NOT EXISTS fintrail_meta.schema_migrations (
                 version    integer PRIMARY KEY,
                 name       text NOT NULL,
                 checksum   text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now(),
                 applied_by text NOT NULL DEFAULT current_user
             );",
        )
        .await
        .context("creating fintrail_meta.schema_migrations")?;
    Ok(())
}

/// Runs one migration as its role and records it, in one transaction.
async fn apply(client: &mut tokio_postgres::Client, m: &Migration) -> anyhow::Result<()> {
    let tx = client.transaction().await?;
    if m.run_as() == RunAs::Owner {
        tx.batch_execute("SET LOCAL ROLE fintrail_owner").await?;
    }
    if let Err(e) = tx.batch_execute(m.sql).await {
        let at = error_line(m.sql, &e).map(|line| format!(" at line {line}")).unwrap_or_default();
        return Err(anyhow::Error::new(e).context(format!("migration {:04}_{} failed{at}", m.version, m.name)));
    }
    tx.batch_execute("RESET ROLE").await?;
    let version = i32::try_from(m.version).context("migration version fits in integer")?;
    tx.execute(
        "INSERT INTO fintrail_meta.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
        &[&version, &m.name, &m.checksum()],
    )
    .await?;
    tx.commit().await?;
    tracing::info!(log_class = "app", version = m.version, name = m.name, "migration applied");
    Ok(())
}

/// The line of `sql` a server error points at (its position counts characters from 1).
fn error_line(sql: &str, e: &tokio_postgres::Error) -> Option<usize> {
    match e.as_db_error()?.position()? {
        tokio_postgres::error::ErrorPosition::Original(position) => {
            let before = usize::try_from(*position).ok()?.saturating_sub(1);
            Some(sql.chars().take(before).filter(|c| *c == '\n').count() + 1)
        }
        tokio_postgres::error::ErrorPosition::Internal { .. } => None,
    }
}

/// Applies `list` in order, each once, as the runner did before the baseline (no baseline or
/// retired-migration rules): the equivalence test replays the retired migrations with it.
#[cfg(feature = "testing")]
pub async fn apply_in_order(db: &Database, list: &[Migration]) -> anyhow::Result<()> {
    let mut client = db.connect(DbRole::Admin).await?;
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY]).await?;
    let mut result = ensure_bookkeeping(&client).await;
    for m in list {
        if result.is_err() {
            break;
        }
        result = apply(&mut client, m).await;
    }
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY]).await;
    result
}

/// On the private cluster, fintrail manages the LOGIN roles' passwords (from FINTRAIL_HOME/secrets).
async fn set_private_passwords(db: &Database, admin: &tokio_postgres::Client) -> anyhow::Result<()> {
    for role in [DbRole::App, DbRole::Replicator, DbRole::Sequencer] {
        let p = db.params(role);
        let password = p.password.context("private roles have passwords")?;
        // ALTER ROLE takes no bind parameters; the password is hex, quote it anyway.
        let sql = format!("ALTER ROLE {} PASSWORD '{}'", role.sql_name(), password.replace('\'', "''"));
        admin.batch_execute(&sql).await.with_context(|| format!("setting the password of {role}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_baseline_runs_as_admin_and_later_migrations_come_after_it() {
        let list = all();
        assert_eq!(list[0].version, BASELINE_VERSION);
        assert_eq!(list[0].name, "baseline");
        assert_eq!(list[0].run_as(), RunAs::Admin);
        assert!(list.iter().skip(1).all(|m| m.version > BASELINE_THROUGH));
        assert_ne!(list[0].checksum(), Migration { sql: "x", ..list[0] }.checksum());
        assert!(RETIRED.windows(2).all(|w| w[0].version < w[1].version));
        assert!(RETIRED.iter().all(|x| x.version > BASELINE_VERSION && x.version <= BASELINE_THROUGH));
    }

    fn row(version: u32, name: &str, checksum: &str) -> Recorded {
        Recorded { version, name: name.to_string(), checksum: checksum.to_string() }
    }

    fn retired_rows() -> Vec<Recorded> {
        RETIRED.iter().map(|x| row(x.version, x.name, x.checksum)).collect()
    }

    const LATER: &str = "-- a later migration\nSELECT 1;";

    /// The baseline plus a later migration 0043, as a binary after the baseline may carry.
    fn known() -> Vec<Migration> {
        vec![all()[0], Migration { version: BASELINE_THROUGH + 1, name: "later", sql: LATER }]
    }

    fn versions(plan: &[&Migration]) -> Vec<u32> {
        plan.iter().map(|m| m.version).collect()
    }

    #[test]
    fn a_fresh_database_gets_the_baseline_then_the_later_ones() {
        let known = known();
        assert_eq!(versions(&plan(&known, &[]).expect("plan")), vec![BASELINE_VERSION, BASELINE_THROUGH + 1]);
        let baseline = row(BASELINE_VERSION, "baseline", &known[0].checksum());
        assert_eq!(versions(&plan(&known, std::slice::from_ref(&baseline)).expect("plan")), vec![BASELINE_THROUGH + 1]);
    }

    #[test]
    fn a_database_built_before_the_baseline_runs_only_the_later_ones() {
        let known = known();
        assert_eq!(versions(&plan(&known, &retired_rows()).expect("plan")), vec![BASELINE_THROUGH + 1]);
        let mut all_done = retired_rows();
        all_done.push(row(BASELINE_THROUGH + 1, "later", &known[1].checksum()));
        assert!(plan(&known, &all_done).expect("plan").is_empty());
    }

    #[test]
    fn a_retired_migration_with_another_checksum_or_name_is_refused() {
        let known = known();
        for i in 0..RETIRED.len() {
            let mut rows = retired_rows();
            rows[i].checksum = "0".repeat(64);
            let err = plan(&known, &rows).expect_err("edited retired migration");
            assert!(format!("{err:#}").contains("edited after it was applied"), "{err:#}");
            let mut rows = retired_rows();
            rows[i].name = "renamed".into();
            assert!(plan(&known, &rows).is_err());
        }
    }

    #[test]
    fn an_edited_baseline_or_an_unknown_migration_is_refused() {
        let known = known();
        let err = plan(&known, &[row(BASELINE_VERSION, "baseline", "edited")]).expect_err("edited");
        assert!(format!("{err:#}").contains("0000_baseline was edited"), "{err:#}");
        let mut rows = retired_rows();
        rows.push(row(9999, "future", "x"));
        let err = plan(&known, &rows).expect_err("newer");
        assert!(format!("{err:#}").contains("newer than this binary"), "{err:#}");
    }

    #[test]
    fn a_database_part_way_through_the_retired_migrations_is_refused_with_the_way_out() {
        let known = known();
        let mut rows = retired_rows();
        rows.truncate(RETIRED.len() - 1);
        let err = format!("{:#}", plan(&known, &rows).expect_err("partial"));
        assert!(err.contains("stopped at migration 0040") && err.contains(RETIRED_AT_COMMIT), "{err}");
        let mut both = retired_rows();
        both.push(row(BASELINE_VERSION, "baseline", &known[0].checksum()));
        assert!(format!("{:#}", plan(&known, &both).expect_err("both")).contains("both the baseline"));
        let later_only = [row(BASELINE_THROUGH + 1, "later", &known[1].checksum())];
        assert!(format!("{:#}", plan(&known, &later_only).expect_err("no baseline")).contains("neither the baseline"));
    }
}
