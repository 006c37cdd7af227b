//! The PostgreSQL side: the publication (exactly the policy's eligible tables, each with a
//! column list of the let-out columns), the replicator's column-level grants, the slot,
//! catalog reads, heartbeats and slot statistics.
//! Nothing here runs an analytical query on the primary.

use std::time::Duration;

use fintrail_db::{Database, DbRole, SslMode};
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
    /// Per published table, its column list: the columns that leave the server, and the only
    /// ones the replicator may SELECT (default deny for the rest).
    #[serde(default)]
    pub published_columns: Vec<(String, Vec<String>)>,
    /// Policy tables left out, with the reason (missing, no replica identity, key withheld).
    pub skipped: Vec<(String, String)>,
    /// Per published table, the source columns that never reach the sink.
    pub withheld_columns: Vec<(String, Vec<String>)>,
    /// Per policy table that exists, the policy columns the source table does not have (a
    /// typo or a stale name: the real column is silently withheld). Empty when all is well.
    #[serde(default)]
    pub unknown_columns: Vec<(String, Vec<String>)>,
    /// Logical slots in this database that decode with another plugin than pgoutput (slot,
    /// plugin): such a slot sees every column of every table. Empty when all is well.
    #[serde(default)]
    pub foreign_slots: Vec<(String, String)>,
    /// Other publications in this database. A publication is not access-controlled: any
    /// REPLICATION role may stream any of them, column lists or not. Empty when all is well.
    #[serde(default)]
    pub other_publications: Vec<String>,
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

/// Brings the publication, the replicator's grants and nothing else to what the policy says,
/// in one transaction as the owner (the admin with `SET LOCAL ROLE fintrail_owner`):
/// - the publication holds exactly the policy tables that exist and can be replicated safely,
///   each with a **column list** of the columns the policy lets out (PostgreSQL 15+), so a
///   withheld column is never decoded for the walsender and never crosses the wire;
/// - the replicator has **column-level** SELECT on exactly those columns (plus `ctid`, which
///   the snapshot's page ranges filter on), and nothing on any other table of the schema;
/// - a column the policy does not name (one a later migration added) is in neither: default
///   deny until the policy decides it and setup runs again.
///
/// Idempotent: run again with the same policy it changes no publication and re-asserts the
/// same grants; run with a changed policy it re-syncs both. Also reports logical slots in
/// this database that decode with another plugin than pgoutput (see the crate's known limit).
pub async fn setup(db: &Database, policy: &Policy, names: &Names) -> anyhow::Result<SetupReport> {
    let admin = db.connect(DbRole::Admin).await?;
    let mut report = SetupReport::default();
    for table in policy.tables() {
        let columns = table_columns(&admin, &policy.schema, table).await?;
        classify(policy, table, columns, &mut report);
    }
    let schema = &policy.schema;
    let current = publication_state(&admin, &names.publication).await?;
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
    let sql = setup_sql(schema, &names.publication, &report.published_columns, current.as_ref(), &all_tables)?;
    admin
        .batch_execute(&sql)
        .await
        .map_err(|e| anyhow::anyhow!("setting up publication {}: {e}", names.publication))?;
    report.foreign_slots = foreign_slots(&admin).await?;
    for (slot, plugin) in &report.foreign_slots {
        tracing::warn!(
            slot,
            plugin,
            "a logical slot in this database decodes with another plugin than pgoutput: it sees every \
             column of every table, whatever the publication and the grants say"
        );
    }
    report.other_publications = admin
        .query("SELECT pubname::text FROM pg_publication WHERE pubname <> $1 ORDER BY 1", &[&names.publication])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for publication in &report.other_publications {
        tracing::warn!(
            publication,
            "another publication exists in this database: the replicator can stream it too, whatever it holds"
        );
    }
    Ok(report)
}

/// After a schema change (`fintrail db migrate`): when the publication exists, re-sync it and
/// the grants with `policy`, so a column the policy already names leaves from now on (and a
/// column it does not name stays denied). None when there is no publication to keep current.
pub async fn resync_if_published(db: &Database, policy: &Policy, names: &Names) -> anyhow::Result<Option<SetupReport>> {
    let admin = db.connect(DbRole::Admin).await?;
    if admin.query_opt("SELECT 1 FROM pg_publication WHERE pubname = $1", &[&names.publication]).await?.is_none() {
        return Ok(None);
    }
    setup(db, policy, names).await.map(Some)
}

/// What a publication holds now: its tables (schema, table, column list; None = every
/// column) and the schemas it publishes whole (`FOR TABLES IN SCHEMA`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublicationState {
    pub tables: Vec<(String, String, Option<Vec<String>>)>,
    pub schemas: Vec<String>,
}

/// The publication's current contents, None when it does not exist. A `FOR ALL TABLES`
/// publication cannot carry column lists: it is refused (drop it; setup recreates it).
async fn publication_state(c: &tokio_postgres::Client, publication: &str) -> anyhow::Result<Option<PublicationState>> {
    let Some(row) = c.query_opt("SELECT puballtables FROM pg_publication WHERE pubname = $1", &[&publication]).await?
    else {
        return Ok(None);
    };
    if row.get::<_, bool>(0) {
        anyhow::bail!(
            "publication {publication} is FOR ALL TABLES: it would publish every column of every table; \
             drop it (DROP PUBLICATION) and run `fintrail cdc setup` again"
        );
    }
    let tables = c
        .query(
            "SELECT n.nspname::text, c.relname::text,
                    CASE WHEN pr.prattrs IS NULL THEN NULL ELSE ARRAY(
                      SELECT a.attname::text FROM pg_attribute a
                      WHERE a.attrelid = pr.prrelid AND a.attnum = ANY (pr.prattrs::int2[]) ORDER BY a.attnum)
                    END
             FROM pg_publication_rel pr
             JOIN pg_publication p ON p.oid = pr.prpubid
             JOIN pg_class c ON c.oid = pr.prrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE p.pubname = $1 ORDER BY 1, 2",
            &[&publication],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let schemas = c
        .query(
            "SELECT n.nspname::text FROM pg_publication_namespace pn
             JOIN pg_publication p ON p.oid = pn.pnpubid JOIN pg_namespace n ON n.oid = pn.pnnspid
             WHERE p.pubname = $1 ORDER BY 1",
            &[&publication],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(Some(PublicationState { tables, schemas }))
}

/// Logical slots of this database whose plugin is not pgoutput: (slot, plugin).
async fn foreign_slots(c: &tokio_postgres::Client) -> anyhow::Result<Vec<(String, String)>> {
    Ok(c.query(
        "SELECT slot_name::text, plugin::text FROM pg_replication_slots
         WHERE slot_type = 'logical' AND database = current_database() AND plugin <> 'pgoutput' ORDER BY 1",
        &[],
    )
    .await?
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect())
}

/// The publication's column lists and the replicator's grants for `table`, as they stand:
/// what an auditor (or a test) compares with the policy.
pub async fn exposure(
    c: &tokio_postgres::Client,
    schema: &str,
    table: &str,
    names: &Names,
) -> anyhow::Result<(Option<Vec<String>>, Vec<String>)> {
    let state = publication_state(c, &names.publication).await?.unwrap_or_default();
    let published = state
        .tables
        .into_iter()
        .find(|(s, t, _)| s == schema && t == table)
        .map(|(_, _, cols)| cols.unwrap_or_else(|| vec!["*".to_owned()]));
    let granted: Vec<String> = c
        .query(
            "SELECT a.attname::text FROM pg_attribute a
             WHERE a.attrelid = format('%I.%I', $1::text, $2::text)::regclass AND a.attnum > 0 AND NOT a.attisdropped
               AND has_column_privilege('fintrail_replicator', a.attrelid, a.attnum, 'SELECT')
             ORDER BY a.attnum",
            &[&schema, &table],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok((published, granted))
}

/// Decides whether one policy table (with its source `columns`, None when it does not
/// exist) is published, and notes it in `report`: published with its column list and its
/// withheld columns, or skipped with the reason; policy columns the source lacks are noted
/// either way.
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
    // A column list must cover the replica identity, or UPDATE/DELETE fail on the primary;
    // REPLICA IDENTITY FULL makes every column part of it.
    if ident == 'f' && !withheld.is_empty() {
        tracing::warn!(table, "REPLICA IDENTITY FULL with withheld columns: skipped");
        report.skipped.push((
            table.to_owned(),
            "replica identity FULL, but the policy withholds columns (a column list must cover it)".into(),
        ));
        return;
    }
    if !withheld.is_empty() {
        tracing::info!(table, columns = ?withheld, "columns withheld by the replication policy");
    }
    report.published.push(table.to_owned());
    report.published_columns.push((table.to_owned(), shape.columns.iter().map(|c| c.name.clone()).collect()));
    report.withheld_columns.push((table.to_owned(), withheld));
}

/// The statements that make the publication hold exactly `published` (table, column list),
/// given what it holds now (`current`, None when it does not exist), and let the replicator
/// SELECT exactly those columns (and `ctid`) of the schema's `all_tables`: one transaction,
/// as the owner. The publication is left alone when it already matches.
fn setup_sql(
    schema: &str,
    publication: &str,
    published: &[(String, Vec<String>)],
    current: Option<&PublicationState>,
    all_tables: &[String],
) -> anyhow::Result<String> {
    anyhow::ensure!(
        published.iter().all(|(_, cols)| !cols.is_empty()),
        "a published table needs at least one column in its column list"
    );
    let mut sql = String::from("BEGIN; SET LOCAL ROLE fintrail_owner;\n");
    let cols = |cs: &[String]| cs.iter().map(|c| qi(c)).collect::<Vec<_>>().join(", ");
    let list = published
        .iter()
        .map(|(t, cs)| format!("{}.{} ({})", qi(schema), qi(t), cols(cs)))
        .collect::<Vec<_>>()
        .join(", ");
    let p = qi(publication);
    match current {
        None if published.is_empty() => sql.push_str(&format!("CREATE PUBLICATION {p};\n")),
        None => sql.push_str(&format!("CREATE PUBLICATION {p} FOR TABLE {list};\n")),
        Some(current) => {
            for s in &current.schemas {
                sql.push_str(&format!("ALTER PUBLICATION {p} DROP TABLES IN SCHEMA {};\n", qi(s)));
            }
            let mut want: Vec<(String, String, Option<Vec<String>>)> =
                published.iter().map(|(t, cs)| (schema.to_owned(), t.clone(), Some(cs.clone()))).collect();
            want.sort();
            let mut have = current.tables.clone();
            have.sort();
            if want != have {
                if published.is_empty() {
                    let all = have.iter().map(|(s, t, _)| format!("{}.{}", qi(s), qi(t))).collect::<Vec<_>>();
                    sql.push_str(&format!("ALTER PUBLICATION {p} DROP TABLE {};\n", all.join(", ")));
                } else {
                    sql.push_str(&format!("ALTER PUBLICATION {p} SET TABLE {list};\n"));
                }
            }
        }
    }
    // Least privilege: REVOKE ALL on a table also revokes every column grant, so each table
    // starts from nothing; then SELECT on exactly the published columns (default deny).
    for t in all_tables {
        sql.push_str(&format!("REVOKE ALL ON {}.{} FROM fintrail_replicator;\n", qi(schema), qi(t)));
        if let Some((_, cs)) = published.iter().find(|(name, _)| name == t) {
            sql.push_str(&format!(
                "GRANT SELECT (ctid, {}) ON {}.{} TO fintrail_replicator;\n",
                cols(cs),
                qi(schema),
                qi(t)
            ));
        }
    }
    sql.push_str("COMMIT;");
    Ok(sql)
}

/// The replication transport's TLS: the database's mode and CA file (issue #14).
/// `verify-full` names the host to verify explicitly: pgwire-replication otherwise refuses an
/// IP address under verify-full, and the private cluster is reached at 127.0.0.1, which its
/// certificate names (rustls checks an IP against the certificate's IP addresses).
pub fn replication_tls(db: &Database) -> TlsConfig {
    let tls = db.tls();
    let ca = tls.root_cert().map(|p| p.to_path_buf());
    match tls.mode() {
        SslMode::VerifyFull => TlsConfig::verify_full(ca).with_sni_hostname(db.host()),
        SslMode::VerifyCa => TlsConfig::verify_ca(ca),
        SslMode::Disable => TlsConfig::disabled(),
    }
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
    .with_tls(replication_tls(db))
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

/// Opens a read-only REPEATABLE READ transaction on `pg` for a resumed snapshot (the slot's
/// exported snapshot died with the earlier session) and returns a WAL position at or after
/// the end of every transaction its snapshot sees: the stream replays changes up to there as
/// upserts, so that rows both copied under this snapshot and streamed are not applied twice.
///
/// Why the *insert* position (`pg_current_wal_insert_lsn`), not `pg_current_wal_lsn`: the
/// latter is only what has been written out. A transaction committed with
/// `synchronous_commit = off` (any writer of the source may choose it) is visible as soon as
/// its commit record is inserted, possibly before it is written; behind the write position,
/// its rows would be copied *and* streamed as plain inserts. The snapshot is taken when the
/// SELECT starts and the position read while it runs, so every commit the snapshot sees was
/// inserted before the position read.
pub async fn begin_resumed_snapshot(pg: &tokio_postgres::Client) -> anyhow::Result<u64> {
    pg.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?;
    let row = pg.query_one("SELECT pg_current_wal_insert_lsn()::text", &[]).await?;
    crate::pgoutput::parse_lsn(&row.get::<_, String>(0))
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
                    pg_wal_lsn_diff(pg_current_wal_insert_lsn(), confirmed_flush_lsn)::int8,
                    pg_wal_lsn_diff(pg_current_wal_insert_lsn(), restart_lsn)::int8
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
    use super::{setup_sql, PublicationState};

    fn names(ts: &[&str]) -> Vec<String> {
        ts.iter().map(|t| (*t).to_owned()).collect()
    }

    fn published(ts: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        ts.iter().map(|(t, cs)| ((*t).to_owned(), names(cs))).collect()
    }

    #[test]
    fn the_publication_and_grants_are_exactly_the_published_columns() {
        let all = names(&["a", "b", "secret"]);
        let want = published(&[("a", &["id", "v"]), ("b", &["id"])]);
        let sql = setup_sql("s", "pub", &want, None, &all).unwrap();
        assert!(sql.starts_with("BEGIN; SET LOCAL ROLE fintrail_owner;\n") && sql.ends_with("COMMIT;"), "{sql}");
        assert!(
            sql.contains("CREATE PUBLICATION \"pub\" FOR TABLE \"s\".\"a\" (\"id\", \"v\"), \"s\".\"b\" (\"id\");"),
            "{sql}"
        );
        // Every table starts from nothing; then column grants only.
        for t in ["a", "b", "secret"] {
            assert!(sql.contains(&format!("REVOKE ALL ON \"s\".\"{t}\" FROM fintrail_replicator;")), "{sql}");
        }
        assert!(sql.contains("GRANT SELECT (ctid, \"id\", \"v\") ON \"s\".\"a\" TO fintrail_replicator;"), "{sql}");
        assert!(!sql.contains("GRANT SELECT ON"), "no table-level grant: {sql}");
        assert!(!sql.contains("\"secret\" TO"), "{sql}");
        assert!(setup_sql("s", "pub", &[], None, &all).unwrap().contains("CREATE PUBLICATION \"pub\";"));
        assert!(setup_sql("s", "pub", &published(&[("a", &[])]), None, &all).is_err());
    }

    #[test]
    fn an_existing_publication_is_brought_to_the_policy_and_left_alone_when_it_matches() {
        let all = names(&["a", "b"]);
        let want = published(&[("a", &["id", "v"])]);
        let same =
            PublicationState { tables: vec![("s".into(), "a".into(), Some(names(&["id", "v"])))], schemas: vec![] };
        let sql = setup_sql("s", "pub", &want, Some(&same), &all).unwrap();
        assert!(!sql.contains("PUBLICATION"), "nothing to change: {sql}");
        // No column list (every column), a column too many, another table, a schema: re-set.
        for tables in [
            vec![("s".to_owned(), "a".to_owned(), None)],
            vec![("s".into(), "a".into(), Some(names(&["id", "secret", "v"])))],
            vec![("s".into(), "a".into(), Some(names(&["id", "v"]))), ("other".into(), "x".into(), None)],
        ] {
            let cur = PublicationState { tables, schemas: vec![] };
            let sql = setup_sql("s", "pub", &want, Some(&cur), &all).unwrap();
            assert!(sql.contains("ALTER PUBLICATION \"pub\" SET TABLE \"s\".\"a\" (\"id\", \"v\");"), "{sql}");
            assert!(!sql.contains("CREATE PUBLICATION"), "{sql}");
        }
        let cur = PublicationState { tables: same.tables.clone(), schemas: names(&["s"]) };
        let sql = setup_sql("s", "pub", &want, Some(&cur), &all).unwrap();
        assert!(sql.contains("ALTER PUBLICATION \"pub\" DROP TABLES IN SCHEMA \"s\";"), "{sql}");
        // Nothing left to publish: every table leaves.
        let sql = setup_sql("s", "pub", &[], Some(&same), &all).unwrap();
        assert!(sql.contains("ALTER PUBLICATION \"pub\" DROP TABLE \"s\".\"a\";"), "{sql}");
    }
}
