//! Versioned SQL migrations, run by the owner role.
//!
//! Why our own runner (60 lines) rather than refinery/sqlx-migrate: each migration must run
//! as a chosen role (`SET LOCAL ROLE fintrail_owner`, or the admin for the bootstrap that
//! creates roles), which those runners do not model; and we want a checksum check that refuses
//! an edited, already-applied migration, plus an advisory lock so two `fintrail` processes
//! migrating at once do not race.

use anyhow::{bail, Context as _};
use fintrail_domain::db_role::DbRole;
use sha2::{Digest, Sha256};

use crate::database::{Database, Kind};

include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// Arbitrary but fixed key of the advisory lock that serializes migrators.
const MIGRATION_LOCK_KEY: i64 = 0x6669_6e74_7261_696c; // "fintrail"

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

/// Every migration this binary carries, in version order.
pub fn all() -> Vec<Migration> {
    let list: Vec<Migration> =
        MIGRATIONS.iter().map(|&(version, name, sql)| Migration { version, name, sql }).collect();
    assert!(list.windows(2).all(|w| w[0].version < w[1].version), "migrations are strictly ordered");
    list
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
    // The bookkeeping lives in its own schema that only the admin can see.
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
    let rows = client
        .query("SELECT version, name, checksum FROM fintrail_meta.schema_migrations ORDER BY version", &[])
        .await?;
    let known = all();
    for row in &rows {
        let version: i32 = row.get(0);
        let name: String = row.get(1);
        let checksum: String = row.get(2);
        let Some(m) = known.iter().find(|m| i64::from(m.version) == i64::from(version)) else {
            bail!("the database has migration {version:04}_{name}, which this fintrail binary does not know: it is newer than this binary");
        };
        if m.checksum() != checksum {
            bail!(
                "migration {:04}_{} was edited after it was applied (checksum differs): add a new migration instead",
                m.version,
                m.name
            );
        }
    }
    let done: Vec<i64> = rows.iter().map(|r| i64::from(r.get::<_, i32>(0))).collect();
    let mut applied = Vec::new();
    for m in known.iter().filter(|m| !done.contains(&i64::from(m.version))) {
        let tx = client.transaction().await?;
        if m.run_as() == RunAs::Owner {
            tx.batch_execute("SET LOCAL ROLE fintrail_owner").await?;
        }
        tx.batch_execute(m.sql).await.with_context(|| format!("migration {:04}_{} failed", m.version, m.name))?;
        tx.batch_execute("RESET ROLE").await?;
        let version = i32::try_from(m.version).context("migration version fits in integer")?;
        tx.execute(
            "INSERT INTO fintrail_meta.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[&version, &m.name, &m.checksum()],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(log_class = "app", version = m.version, name = m.name, "migration applied");
        applied.push(m.version);
    }
    Ok(applied)
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
    fn bootstrap_runs_as_admin_and_the_rest_as_owner() {
        let list = all();
        assert!(!list.is_empty());
        assert_eq!(list[0].version, 1);
        assert_eq!(list[0].run_as(), RunAs::Admin);
        assert!(list.iter().skip(1).all(|m| m.run_as() == RunAs::Owner || m.sql.contains("run_as: admin")));
        assert_ne!(list[0].checksum(), Migration { sql: "x", ..list[0] }.checksum());
    }
}
