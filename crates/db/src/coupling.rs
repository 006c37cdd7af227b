//! The audit coupling (migration 0036): the triggers that refuse a change without its audit
//! event in the same transaction, by name. Only a benchmark's baseline ("the platform without
//! its trail") and tests whose subject is not the trail turn them off, in a database of their
//! own, with the owner's DDL: exactly the power the trail documents it cannot stop (the
//! checkpoint files outside the database detect what is done with it).

use tokio_postgres::GenericClient;

/// Every coupling trigger's name ends so (one per coupled table and change).
pub const TRIGGER_SUFFIX: &str = "_audit_coupled";

/// How many coupling triggers migration 0036 creates.
pub const TRIGGERS: u64 = 12;

/// Enables or disables every coupling trigger of the connected database. `admin` must be able
/// to `ALTER TABLE` the coupled tables (the owner or a superuser). Returns how many triggers
/// it switched; asserts that they are all there.
pub async fn set_enabled<C: GenericClient + Sync>(admin: &C, enabled: bool) -> Result<u64, tokio_postgres::Error> {
    let rows = admin
        .query(
            "SELECT format('ALTER TABLE %s %s TRIGGER %I', t.tgrelid::regclass, \
                           CASE WHEN $1 THEN 'ENABLE' ELSE 'DISABLE' END, t.tgname) \
             FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
             WHERE c.relnamespace = 'fintrail'::regnamespace AND right(t.tgname, length($2)) = $2",
            &[&enabled, &TRIGGER_SUFFIX],
        )
        .await?;
    for r in &rows {
        admin.batch_execute(r.get::<_, &str>(0)).await?;
    }
    let n = rows.len() as u64;
    assert_eq!(n, TRIGGERS, "every coupling trigger of migration 0036 is found by its suffix");
    Ok(n)
}
