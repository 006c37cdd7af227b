//! The running pipeline's status, written as JSON under FINTRAIL_HOME (atomically, at most
//! about once a second) and read by `fintrail cdc status`.

use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

pub const STATUS_FILE: &str = "cdc-status.json";
/// Bound on the withheld-table list (a misconfigured publication cannot grow it forever).
const MAX_WITHHELD_TABLES: usize = 1000;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    pub running: bool,
    pub pid: u32,
    pub phase: String,
    pub updated_at_unix_ms: u128,
    pub applied_lsn: String,
    pub lag_bytes: i64,
    pub lag_secs: f64,
    pub rows_per_sec: f64,
    pub streamed_rows: u64,
    pub snapshot_rows: u64,
    pub retained_wal_bytes: Option<i64>,
    pub last_error: Option<String>,
    /// Per table, source columns the policy withheld from the sink.
    pub withheld_columns: Vec<(String, Vec<String>)>,
    /// Tables seen in the stream that the policy does not list (withheld entirely).
    pub withheld_tables: Vec<String>,
    /// Policy tables not published, with the reason.
    pub skipped_tables: Vec<(String, String)>,
    /// Per table, policy columns the source table does not have (typos, stale names).
    #[serde(default)]
    pub unknown_policy_columns: Vec<(String, Vec<String>)>,
    /// Logical slots in the database with another plugin than pgoutput (slot, plugin), as
    /// setup saw them: each one can decode every column (the replicator's known limit).
    #[serde(default)]
    pub foreign_slots: Vec<(String, String)>,
    /// Other publications in the database, as setup saw them (any replication role may
    /// stream them).
    #[serde(default)]
    pub other_publications: Vec<String>,
    pub views_failed: Vec<String>,
    #[serde(skip)]
    path: Option<PathBuf>,
    #[serde(skip)]
    last_write: Option<Instant>,
}

impl Status {
    pub fn new(path: Option<PathBuf>) -> Status {
        Status { path, pid: std::process::id(), ..Default::default() }
    }

    pub fn read(path: &std::path::Path) -> anyhow::Result<Option<Status>> {
        match std::fs::read_to_string(path) {
            Ok(s) => Ok(Some(serde_json::from_str(&s)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub fn write(&mut self) {
        let Some(path) = &self.path else { return };
        self.updated_at_unix_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        self.last_write = Some(Instant::now());
        // Owner-only and atomic (issue 16, item 15): through the one helper.
        let r = serde_json::to_vec_pretty(self)
            .map_err(anyhow::Error::from)
            .and_then(|b| fintrail_db::home::owner_only::replace_file(path, &b));
        if let Err(e) = r {
            tracing::warn!(error = %e, path = %path.display(), "cannot write the CDC status file");
        }
    }

    pub fn write_throttled(&mut self) {
        if self.last_write.is_none_or(|t| t.elapsed().as_millis() >= 1000) {
            self.write();
        }
    }

    pub fn note_withheld_table(&mut self, table: &str) {
        if !self.withheld_tables.iter().any(|t| t == table) && self.withheld_tables.len() < MAX_WITHHELD_TABLES {
            self.withheld_tables.push(table.to_owned());
        }
    }

    pub fn note_withheld_columns(&mut self, table: &str, cols: &[String]) {
        match self.withheld_columns.iter_mut().find(|(t, _)| t == table) {
            Some((_, c)) => *c = cols.to_vec(),
            None => self.withheld_columns.push((table.to_owned(), cols.to_vec())),
        }
    }
}
