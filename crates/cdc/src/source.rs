//! The PostgreSQL side: the publication (exactly the policy's eligible tables), the grants
//! of the replicator role, the slot, catalog reads, heartbeats and slot statistics.
//! Nothing here runs an analytical query on the primary.

use std::time::Duration;

use fintrail_db::{Database, DbRole};
use pgwire_replication::{Lsn, ReplicationClient, ReplicationConfig, TlsConfig};

use crate::model::{SinkColumn, SinkType, TableShape};
use crate::policy::{Decision, Policy};

pub const PUBLICATION: &str = "fintrail_analytics";
pub const SLOT: &str = "fintrail_analytics";
pub const HEARTBEAT_PREFIX: &str = "fintrail_heartbeat";

/// Session settings for every source session (replication and snapshot): values are
/// rendered in text the same way on both paths, and time zones are always UTC offsets.
pub const SESSION_OPTIONS: &str =
    "-c TimeZone=UTC -c DateStyle=ISO,YMD -c IntervalStyle=iso_8601 -c extra_float_digits=3";

/// Names of the publication and slot (tests and benches use their own).
#[derive(Debug, Clone)]
pub struct Names {
    pub publication: String,
    pub slot: String,
}

impl Default for Names {
    fn default() -> Self {
        Names { publication: PUBLICATION.into(), slot: SLOT.into() }
    }
}

/// What `setup` decided, for logs and `cdc status`.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct SetupReport {
    pub published: Vec<String>,
    /// Policy tables left out, with the reason (missing, no replica identity, key withheld).
    pub skipped: Vec<(String, String)>,
    /// Per published table, the source columns that never reach the sink.
    pub withheld_columns: Vec<(String, Vec<String>)>,
    /// Per policy table that exists, the policy columns the source table does not have (a
    /// typo or a stale name: the real column is silently withheld). Empty when all is well.
    #[serde(default)]
    pub unknown_columns: Vec<(String, Vec<String>)>,
}

/// A quoted PostgreSQL identifier.
pub(crate) fn qi(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// A source column: (name, type oid, typmod, is key).
pub type SourceColumn = (String, u32, i32, bool);
/// A source table: its replica identity (`d`efault, `n`othing, `f`ull, `i`ndex) and its
/// columns in attribute order.
pub type SourceTable = (char, Vec<SourceColumn>);

/// One source table, None when it does not exist.
async fn table_columns(
    client: &tokio_postgres::Client,
    schema: &str,
    table: &str,
) -> anyhow::Result<Option<SourceTable>> {
    let Some(rel) = client
        .query_opt(
            "SELECT c.oid, c.relreplident::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
            &[&schema, &table],
        )
        .await?
    else {
        return Ok(None);
    };
    let oid: u32 = rel.get(0);
    let ident: String = rel.get(1);
    let ident = ident.chars().next().unwrap_or('d');
    // Key columns: the replica identity index ('i') or the primary key ('d').
    let rows = client
        .query(
            "SELECT a.attname::text, a.atttypid, a.atttypmod,
                    COALESCE(a.attnum = ANY (
                      SELECT unnest(i.indkey::int2[]) FROM pg_index i
                      WHERE i.indrelid = a.attrelid
                        AND ((c.relreplident = 'd' AND i.indisprimary) OR (c.relreplident = 'i' AND i.indisreplident))
                    ), false)
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&oid],
        )
        .await?;
    Ok(Some((ident, rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect())))
}

/// The sink shape of a source table under the policy, and the withheld source columns.
pub fn shape_for(policy: &Policy, table: &str, columns: &[SourceColumn]) -> (TableShape, Vec<String>) {
    let mut out = Vec::new();
    let mut withheld = Vec::new();
    for (name, oid, typmod, key) in columns {
        match policy.decide(table, name) {
            Decision::Keep => {
                out.push(SinkColumn { name: name.clone(), ty: SinkType::from_pg(*oid, *typmod), key: *key })
            }
            Decision::Pseudonymize => out.push(SinkColumn { name: name.clone(), ty: SinkType::Varchar, key: *key }),
            Decision::Withhold { .. } => withheld.push(name.clone()),
        }
    }
    (TableShape { name: table.to_owned(), columns: out }, withheld)
}

/// Creates or alters the publication to contain exactly the policy tables that exist and
/// can be replicated safely, and grants the replicator SELECT on exactly those tables.
/// Runs as the admin with `SET ROLE fintrail_owner` (the owner owns the tables).
pub async fn setup(db: &Database, policy: &Policy, names: &Names) -> anyhow::Result<SetupReport> {
    let admin = db.connect(DbRole::Admin).await?;
    let mut report = SetupReport::default();
    for table in policy.tables() {
        let columns = table_columns(&admin, &policy.schema, table).await?;
        classify(policy, table, columns, &mut report);
    }
    let schema = &policy.schema;
    let exists =
        admin.query_opt("SELECT 1 FROM pg_publication WHERE pubname = $1", &[&names.publication]).await?.is_some();
    let current: Vec<String> = admin
        .query(
            "SELECT tablename::text FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2",
            &[&names.publication, schema],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let all_tables: Vec<String> = admin
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
            &[schema],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let current = exists.then_some(current.as_slice());
    let sql = setup_sql(schema, &names.publication, &report.published, current, &all_tables);
    admin
        .batch_execute(&sql)
        .await
        .map_err(|e| anyhow::anyhow!("setting up publication {}: {e}", names.publication))?;
    Ok(report)
}

/// Decides whether one policy table (with its source `columns`, None when it does not
/// exist) is published, and notes it in `report`: published with its withheld columns, or
/// skipped with the reason; policy columns the source lacks are noted either way.
fn classify(policy: &Policy, table: &str, columns: Option<SourceTable>, report: &mut SetupReport) {
    let Some((ident, cols)) = columns else {
        tracing::warn!(table, "policy table does not exist in the source: skipped");
        report.skipped.push((table.to_owned(), "does not exist".into()));
        return;
    };
    let names: Vec<&str> = cols.iter().map(|c| c.0.as_str()).collect();
    let unknown = policy.unknown_columns(table, &names);
    if !unknown.is_empty() {
        tracing::warn!(
            table,
            columns = ?unknown,
            "the replication policy names columns the source table does not have \
             (typo or stale name? the real column is withheld)"
        );
        report.unknown_columns.push((table.to_owned(), unknown.iter().map(|c| (*c).to_owned()).collect()));
    }
    let has_key = cols.iter().any(|c| c.3);
    // A published table without a replica identity makes UPDATE/DELETE fail on the
    // primary: never publish one (zero impact on the transactional database).
    if ident == 'n' || (ident != 'f' && !has_key) {
        tracing::warn!(table, "policy table has no replica identity (primary key): skipped");
        report.skipped.push((table.to_owned(), "no replica identity (primary key)".into()));
        return;
    }
    let (shape, withheld) = shape_for(policy, table, &cols);
    let key_withheld = cols.iter().any(|c| c.3 && withheld.contains(&c.0));
    if key_withheld || shape.key_indexes().is_empty() {
        tracing::warn!(table, "policy withholds a key column: skipped");
        report.skipped.push((table.to_owned(), "a key column is withheld by the policy".into()));
        return;
    }
    if !withheld.is_empty() {
        tracing::info!(table, columns = ?withheld, "columns withheld by the replication policy");
    }
    report.published.push(table.to_owned());
    report.withheld_columns.push((table.to_owned(), withheld));
}

/// The statements that make the publication hold exactly `published` (`current`: the tables
/// it holds now, None when it does not exist) and let the replicator SELECT exactly those
/// of the schema's `all_tables`: one transaction, as the owner.
fn setup_sql(
    schema: &str,
    publication: &str,
    published: &[String],
    current: Option<&[String]>,
    all_tables: &[String],
) -> String {
    let mut sql = String::from("BEGIN; SET LOCAL ROLE fintrail_owner;\n");
    let list = |ts: &[String]| ts.iter().map(|t| format!("{}.{}", qi(schema), qi(t))).collect::<Vec<_>>().join(", ");
    match current {
        None if published.is_empty() => sql.push_str(&format!("CREATE PUBLICATION {};\n", qi(publication))),
        None => sql.push_str(&format!("CREATE PUBLICATION {} FOR TABLE {};\n", qi(publication), list(published))),
        Some(current) => {
            let add: Vec<String> = published.iter().filter(|t| !current.contains(t)).cloned().collect();
            let drop: Vec<String> = current.iter().filter(|t| !published.contains(t)).cloned().collect();
            if !add.is_empty() {
                sql.push_str(&format!("ALTER PUBLICATION {} ADD TABLE {};\n", qi(publication), list(&add)));
            }
            if !drop.is_empty() {
                sql.push_str(&format!("ALTER PUBLICATION {} DROP TABLE {};\n", qi(publication), list(&drop)));
            }
        }
    }
    // Least privilege: SELECT on exactly the published tables, nothing else in the schema.
    for t in all_tables {
        if published.contains(t) {
            sql.push_str(&format!("GRANT SELECT ON {}.{} TO fintrail_replicator;\n", qi(schema), qi(t)));
        } else {
            sql.push_str(&format!("REVOKE ALL ON {}.{} FROM fintrail_replicator;\n", qi(schema), qi(t)));
        }
    }
    sql.push_str("COMMIT;");
    sql
}

/// The replication transport configuration for the replicator role.
pub fn replication_config(db: &Database, names: &Names, start_lsn: u64) -> ReplicationConfig {
    let p = db.params(DbRole::Replicator);
    ReplicationConfig::new(
        p.host,
        p.user,
        p.password.unwrap_or_default(),
        p.dbname,
        names.slot.clone(),
        names.publication.clone(),
    )
    .with_port(p.port)
    .with_tls(TlsConfig::disabled())
    .with_start_lsn(Lsn(start_lsn))
    .with_ack_lsn(Lsn(start_lsn))
    // Feedback every second: the slot advances promptly (WAL is not retained).
    .with_status_interval(Duration::from_secs(1))
    .with_wakeup_interval(Duration::from_secs(1))
    .with_buffer_size(16_384)
    .with_options(SESSION_OPTIONS)
    .with_application_name("fintrail_cdc")
}

/// A freshly created slot and the snapshot exported with it.
pub struct NewSlot {
    pub client: ReplicationClient,
    pub consistent_point: u64,
    pub snapshot_name: String,
}

/// Creates the logical slot on a replication connection with `SNAPSHOT 'export'`: the
/// exported snapshot sees exactly the data committed before the slot's consistent point,
/// so COPY under it plus the stream from that point is complete and without overlap. The
/// snapshot lives until this session runs its next command, which is START_REPLICATION.
pub async fn create_slot(db: &Database, names: &Names) -> anyhow::Result<NewSlot> {
    let cfg = replication_config(db, names, 0);
    let mut client = ReplicationClient::connect_gated(cfg).await?;
    let rows = client
        .simple_query(&format!("CREATE_REPLICATION_SLOT {} LOGICAL pgoutput (SNAPSHOT 'export')", qi(&names.slot)))
        .await
        .map_err(|e| anyhow::anyhow!("creating replication slot {}: {e}", names.slot))?;
    let row = rows.into_iter().next().ok_or_else(|| anyhow::anyhow!("CREATE_REPLICATION_SLOT returned no row"))?;
    let text = |i: usize| -> anyhow::Result<String> {
        let b = row
            .get(i)
            .cloned()
            .flatten()
            .ok_or_else(|| anyhow::anyhow!("CREATE_REPLICATION_SLOT: column {i} is NULL"))?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    };
    let consistent_point = crate::pgoutput::parse_lsn(&text(1)?)?;
    let snapshot_name = text(2)?;
    Ok(NewSlot { client, consistent_point, snapshot_name })
}

/// Drops the slot if it exists (reset, or a slot the sink has no state for).
pub async fn drop_slot(db: &Database, names: &Names) -> anyhow::Result<()> {
    let c = db.connect(DbRole::Replicator).await?;
    // An old walsender may still hold it for a moment after a crash: wait for it.
    for _ in 0..100 {
        let r = c.query_opt("SELECT active FROM pg_replication_slots WHERE slot_name = $1", &[&names.slot]).await?;
        match r {
            None => return Ok(()),
            Some(row) if !row.get::<_, bool>(0) => {
                c.execute("SELECT pg_drop_replication_slot($1)", &[&names.slot]).await?;
                return Ok(());
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    anyhow::bail!("replication slot {} stays active; is another pipeline running?", names.slot)
}

pub async fn slot_exists(db: &Database, names: &Names) -> anyhow::Result<bool> {
    let c = db.connect(DbRole::Replicator).await?;
    Ok(c.query_opt("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", &[&names.slot]).await?.is_some())
}

/// Waits until no walsender holds the slot (after a crash the old one lingers briefly).
pub async fn wait_slot_inactive(c: &tokio_postgres::Client, names: &Names, limit: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let active = c
            .query_opt("SELECT active FROM pg_replication_slots WHERE slot_name = $1", &[&names.slot])
            .await?
            .map(|r| r.get::<_, bool>(0))
            .unwrap_or(false);
        if !active {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("replication slot {} is held by another session", names.slot);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Slot position figures, from the catalog (cheap; no table is read).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct SlotStats {
    pub exists: bool,
    pub active: bool,
    pub confirmed_flush_lsn: Option<String>,
    pub lag_bytes: Option<i64>,
    pub retained_wal_bytes: Option<i64>,
}

pub async fn slot_stats(c: &tokio_postgres::Client, names: &Names) -> anyhow::Result<SlotStats> {
    let r = c
        .query_opt(
            "SELECT active, confirmed_flush_lsn::text,
                    pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::int8,
                    pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::int8
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&names.slot],
        )
        .await?;
    Ok(match r {
        None => SlotStats::default(),
        Some(r) => SlotStats {
            exists: true,
            active: r.get(0),
            confirmed_flush_lsn: r.get(1),
            lag_bytes: r.get(2),
            retained_wal_bytes: r.get(3),
        },
    })
}

/// A non-transactional logical message: decoded at once, so an idle publication still
/// lets the slot advance. `pg_logical_emit_message` needs no privilege beyond EXECUTE,
/// which PostgreSQL grants to PUBLIC, so the replicator (least privilege) calls it itself.
pub async fn heartbeat(c: &tokio_postgres::Client) -> anyhow::Result<()> {
    c.execute("SELECT pg_logical_emit_message(false, $1, now()::text)", &[&HEARTBEAT_PREFIX]).await?;
    Ok(())
}

/// The source shape of every published table, fetched once at start (the stream's
/// Relation messages are authoritative after that).
pub async fn shapes(
    c: &tokio_postgres::Client,
    policy: &Policy,
    published: &[String],
) -> anyhow::Result<Vec<TableShape>> {
    let mut out = Vec::new();
    for t in published {
        if let Some((_, cols)) = table_columns(c, &policy.schema, t).await? {
            out.push(shape_for(policy, t, &cols).0);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::setup_sql;

    fn names(ts: &[&str]) -> Vec<String> {
        ts.iter().map(|t| (*t).to_owned()).collect()
    }

    #[test]
    fn the_publication_and_grants_are_exactly_the_published_tables() {
        let all = names(&["a", "b", "secret"]);
        let sql = setup_sql("s", "pub", &names(&["a", "b"]), None, &all);
        assert!(sql.starts_with("BEGIN; SET LOCAL ROLE fintrail_owner;\n") && sql.ends_with("COMMIT;"), "{sql}");
        assert!(sql.contains("CREATE PUBLICATION \"pub\" FOR TABLE \"s\".\"a\", \"s\".\"b\";"), "{sql}");
        assert!(sql.contains("GRANT SELECT ON \"s\".\"a\" TO fintrail_replicator;"), "{sql}");
        assert!(sql.contains("REVOKE ALL ON \"s\".\"secret\" FROM fintrail_replicator;"), "{sql}");
        assert!(!sql.contains("GRANT SELECT ON \"s\".\"secret\""), "{sql}");
        assert!(setup_sql("s", "pub", &[], None, &all).contains("CREATE PUBLICATION \"pub\";"));
        // An existing publication is brought to the published set, table by table.
        let sql = setup_sql("s", "pub", &names(&["a", "b"]), Some(&names(&["b", "secret"])), &all);
        assert!(sql.contains("ALTER PUBLICATION \"pub\" ADD TABLE \"s\".\"a\";"), "{sql}");
        assert!(sql.contains("ALTER PUBLICATION \"pub\" DROP TABLE \"s\".\"secret\";"), "{sql}");
        assert!(!sql.contains("CREATE PUBLICATION"), "{sql}");
        let same = setup_sql("s", "pub", &names(&["a"]), Some(&names(&["a"])), &names(&["a"]));
        assert!(!same.contains("PUBLICATION"), "{same}");
    }
}
