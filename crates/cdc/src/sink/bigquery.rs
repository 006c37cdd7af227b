//! The BigQuery sink (production, `fintrail cdc run --sink bigquery`): BigQuery's REST API over
//! the binary's one HTTP client (ureq, rustls), with the DuckDB sink's exactly-once effect.
//!
//! # How a sink transaction lands
//! - `apply` / `load_rows`: the net rows of the batch (one per key, [`NetBatch`]) are staged
//!   with `tabledata.insertAll` in the table's stage table (`_fintrail_stage_<t>`), tagged with
//!   the transaction's random batch id, a part number (one per `apply`) and an ordinal. Nothing
//!   in the replicated tables changes yet.
//! - `commit(state)`: one `jobs.query` runs one multi-statement transaction: a guard that the
//!   state row still has the generation this writer loaded, then per part (in order) a check
//!   that every staged row is visible, and a `MERGE` of the part into the table by key (insert,
//!   replace, delete; unchanged TOAST values kept from the current row), `DELETE ... WHERE
//!   TRUE` for a truncate, and last the state row (`_fintrail_cdc_state`: the LSN and the
//!   generation + 1). All of it commits, or none of it.
//!
//! # Why a kill -9 anywhere re-applies without duplicates
//! - Killed before the commit job reached BigQuery: nothing changed but staged rows under a
//!   batch id no commit will ever name; the next run replays from the stored LSN.
//! - Killed while or after the job runs: the job commits whole or not at all. If it commits,
//!   the stored LSN moved with the rows; if not, as above.
//! - A replay meets rows that may already be there: the MERGE is keyed, so re-applying a
//!   change sets the same row again (no duplicate key, no second row).
//! - Two writers (a restarted one while the killed one's job still runs): each commit names
//!   the generation it started from, so the later one fails (`stale`) instead of applying
//!   changes out of order; the process stops and its restart resumes from the stored state.
//!   A commit whose answer was lost is recognised by reading the state back.
//!
//! Stage rows of committed or abandoned batches are deleted once they are hours old (BigQuery
//! does not let DML touch rows still in the streaming buffer).
//!
//! # Configuration (environment)
//! `FINTRAIL_BIGQUERY_PROJECT`, `FINTRAIL_BIGQUERY_DATASET` (required), `FINTRAIL_BIGQUERY_ENDPOINT`
//! (an emulator: no credentials are sent), `GCE_METADATA_HOST` (the metadata server that hands out
//! the service account's access token on Cloud Run; default `metadata.google.internal`).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use serde_json::{json, Map, Value};

use super::{ColumnAllowed, NetBatch, Sink, SinkState};
use crate::model::{Cell, SinkType, TableShape};

/// The state table (one row, `id = 1`).
pub const STATE_TABLE: &str = "_fintrail_cdc_state";
/// Stage tables are named this plus the table's name.
pub const STAGE_PREFIX: &str = "_fintrail_stage_";
/// Rows per `insertAll` request (BigQuery takes up to 50 000) and a bound on its size (10 MB max).
pub const INSERT_ROWS_MAX: usize = 5_000;
const INSERT_BYTES_MAX: usize = 8 << 20;
/// Stage rows older than this are deleted (never part of a commit still to come), at start and
/// then every `STAGE_CLEANUP_EVERY` per table.
const STAGE_RETENTION_HOURS: u32 = 6;
const STAGE_CLEANUP_EVERY: Duration = Duration::from_secs(3600);
const PUBLIC_ENDPOINT: &str = "https://bigquery.googleapis.com";
const DEFAULT_METADATA_HOST: &str = "metadata.google.internal";

/// Stage columns besides the table's own.
const BATCH: &str = "_fintrail_batch";
const PART: &str = "_fintrail_part";
const ORD: &str = "_fintrail_ord";
const DEL: &str = "_fintrail_del";
const UNCHANGED: &str = "_fintrail_unchanged";
const STAGED_AT: &str = "_fintrail_staged_at";

/// Error texts the commit script raises (matched in the answers).
const STALE: &str = "fintrail-cdc: stale generation";
const INCOMPLETE: &str = "fintrail-cdc: staged rows not all visible";
const NO_ROW_FOR_TOAST: &str = "fintrail-cdc: unchanged TOAST value without a current row";

/// BigQuery column type for a sink type.
pub fn bq_type(t: SinkType) -> String {
    match t {
        SinkType::Boolean => "BOOL".into(),
        SinkType::SmallInt | SinkType::Integer | SinkType::BigInt => "INT64".into(),
        SinkType::Real | SinkType::Double => "FLOAT64".into(),
        // NUMERIC holds 29 integer and 9 fractional digits; BIGNUMERIC 38 and 38.
        SinkType::Decimal(p, s) if s <= 9 && p - s <= 29 => format!("NUMERIC({p}, {s})"),
        SinkType::Decimal(p, s) => format!("BIGNUMERIC({p}, {s})"),
        SinkType::Date => "DATE".into(),
        SinkType::Timestamp => "DATETIME".into(),
        SinkType::TimestampTz => "TIMESTAMP".into(),
        SinkType::Varchar | SinkType::Uuid => "STRING".into(),
    }
}

/// The type family `tables.get` reports for a column (legacy and standard names agree here).
fn family(api_type: &str) -> &'static str {
    match api_type.to_ascii_uppercase().as_str() {
        "INTEGER" | "INT64" => "INT64",
        "FLOAT" | "FLOAT64" => "FLOAT64",
        "BOOLEAN" | "BOOL" => "BOOL",
        "NUMERIC" | "BIGNUMERIC" => "NUMERIC",
        "STRING" => "STRING",
        "DATE" => "DATE",
        "DATETIME" => "DATETIME",
        "TIMESTAMP" => "TIMESTAMP",
        _ => "OTHER",
    }
}

fn family_of(t: SinkType) -> &'static str {
    let ty = bq_type(t);
    family(ty.split('(').next().unwrap_or_default())
}

/// A BigQuery name fintrail writes into SQL: letters, digits and underscores only (PostgreSQL
/// identifiers of the schema are; anything else is refused rather than quoted creatively).
fn check_name(what: &str, name: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !name.is_empty()
            && name.len() <= 300
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !name.as_bytes()[0].is_ascii_digit(),
        "BigQuery sink: {what} {name:?} is not a plain identifier (letters, digits, underscores)"
    );
    Ok(())
}

/// Where the sink writes and how it authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub project: String,
    pub dataset: String,
    /// `https://bigquery.googleapis.com`, or an emulator's base URL.
    pub endpoint: String,
    pub auth: Auth,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// No credentials (an emulator).
    None,
    /// The service account's access token from the metadata server (Cloud Run, GCE).
    Metadata { host: String },
}

impl Config {
    /// From the environment; a missing or malformed variable is an error that names it.
    pub fn from_env() -> anyhow::Result<Config> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Config> {
        let need = |k: &str| {
            get(k)
                .filter(|v| !v.trim().is_empty())
                .with_context(|| format!("{k} is required for the BigQuery sink (--sink bigquery)"))
        };
        let project = need("FINTRAIL_BIGQUERY_PROJECT")?;
        anyhow::ensure!(
            !project.is_empty()
                && project.len() <= 100
                && project.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:_".contains(&b)),
            "FINTRAIL_BIGQUERY_PROJECT={project:?} is not a project id"
        );
        let dataset = need("FINTRAIL_BIGQUERY_DATASET")?;
        check_name("FINTRAIL_BIGQUERY_DATASET", &dataset)?;
        let (endpoint, auth) = match get("FINTRAIL_BIGQUERY_ENDPOINT").filter(|v| !v.trim().is_empty()) {
            Some(e) => {
                let e = e.trim().trim_end_matches('/').to_owned();
                anyhow::ensure!(
                    e.starts_with("http://") || e.starts_with("https://"),
                    "FINTRAIL_BIGQUERY_ENDPOINT={e:?} is not an http(s) URL"
                );
                (e, Auth::None)
            }
            None => {
                let host = get("GCE_METADATA_HOST")
                    .filter(|v| !v.trim().is_empty())
                    .unwrap_or_else(|| DEFAULT_METADATA_HOST.to_owned());
                (PUBLIC_ENDPOINT.to_owned(), Auth::Metadata { host })
            }
        };
        Ok(Config { project, dataset, endpoint, auth })
    }

    /// `` `project.dataset.table` ``
    pub fn table_ref(&self, table: &str) -> String {
        format!("`{}.{}.{}`", self.project, self.dataset, table)
    }
}

/// An answer of the API that is an error (HTTP status and BigQuery's message).
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BigQuery answered {}: {}", self.status, self.message)
    }
}

impl std::error::Error for ApiError {}

/// The BigQuery REST calls the sink makes: `jobs.query` (with `getQueryResults` while a job
/// runs), `tabledata.insertAll` and `tables.get`.
pub struct Client {
    cfg: Config,
    agent: ureq::Agent,
    token: Option<(String, Instant)>,
}

/// Rows of a query result, every value as BigQuery's text.
pub type Rows = Vec<Vec<Option<String>>>;

impl Client {
    pub fn new(cfg: Config) -> Client {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(300)))
            .http_status_as_error(false)
            .user_agent("fintrail-cdc")
            .build()
            .into();
        Client { cfg, agent, token: None }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    fn bearer(&mut self) -> anyhow::Result<Option<String>> {
        let Auth::Metadata { host } = &self.cfg.auth else { return Ok(None) };
        if let Some((t, until)) = &self.token {
            if Instant::now() < *until {
                return Ok(Some(t.clone()));
            }
        }
        let url = format!("http://{host}/computeMetadata/v1/instance/service-accounts/default/token");
        let mut resp = self
            .agent
            .get(&url)
            .header("Metadata-Flavor", "Google")
            .call()
            .with_context(|| format!("cannot reach the metadata server at {host} for a BigQuery access token"))?;
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string()?;
        anyhow::ensure!(status == 200, "the metadata server at {host} answered {status} for a token: {body}");
        let v: Value = serde_json::from_str(&body).context("the metadata server's token is not JSON")?;
        let token = v["access_token"].as_str().context("the metadata server's answer has no access_token")?.to_owned();
        let ttl = v["expires_in"].as_u64().unwrap_or(300);
        // Renewed a minute before it expires.
        let until = Instant::now() + Duration::from_secs(ttl.saturating_sub(60).max(1));
        self.token = Some((token.clone(), until));
        Ok(Some(token))
    }

    /// One request; transport errors and 429/5xx answers are retried (3 tries).
    fn call(&mut self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<(u16, Value)> {
        let url = format!("{}/bigquery/v2/projects/{}{path}", self.cfg.endpoint, self.cfg.project);
        let body = body.map(serde_json::to_string).transpose()?;
        let mut last: Option<anyhow::Error> = None;
        for attempt in 0..3u32 {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(500 << attempt));
            }
            let bearer = self.bearer()?;
            let result = match (method, &body) {
                ("GET", _) => {
                    let mut r = self.agent.get(&url);
                    if let Some(t) = &bearer {
                        r = r.header("Authorization", &format!("Bearer {t}"));
                    }
                    r.call()
                }
                (_, b) => {
                    let mut r = self.agent.post(&url).content_type("application/json");
                    if let Some(t) = &bearer {
                        r = r.header("Authorization", &format!("Bearer {t}"));
                    }
                    r.send(b.as_deref().unwrap_or("{}"))
                }
            };
            let mut resp = match result {
                Ok(r) => r,
                Err(e) => {
                    last = Some(anyhow::Error::new(e).context(format!("BigQuery request {method} {path} failed")));
                    continue;
                }
            };
            let status = resp.status().as_u16();
            let text = resp.body_mut().with_config().limit(256 << 20).read_to_string().unwrap_or_default();
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if status == 429 || status >= 500 {
                last = Some(ApiError { status, message: error_message(&v).unwrap_or(text) }.into());
                continue;
            }
            if status == 401 {
                self.token = None;
            }
            return Ok((status, v));
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("BigQuery request {method} {path} failed")))
    }

    /// Runs `sql` (a statement or a script) as one `jobs.query` and waits for it to finish.
    pub fn query(&mut self, sql: &str) -> anyhow::Result<Rows> {
        Ok(self.query_with_schema(sql)?.1)
    }

    /// `query`, with the result's columns (name, type).
    pub fn query_with_schema(&mut self, sql: &str) -> anyhow::Result<(Vec<(String, String)>, Rows)> {
        let body = json!({
            "query": sql,
            "useLegacySql": false,
            "useQueryCache": false,
            "timeoutMs": 60_000,
            "maxResults": 10_000,
        });
        let (status, mut v) = self.call("POST", "/queries", Some(&body))?;
        check(status, &v)?;
        let deadline = Instant::now() + Duration::from_secs(3600);
        while v["jobComplete"] == json!(false) {
            anyhow::ensure!(Instant::now() < deadline, "BigQuery job did not finish within an hour");
            let job = v["jobReference"]["jobId"].as_str().context("BigQuery answered without a job id")?.to_owned();
            let mut path = format!("/queries/{job}?timeoutMs=60000&maxResults=10000");
            if let Some(loc) = v["jobReference"]["location"].as_str() {
                path.push_str(&format!("&location={loc}"));
            }
            let (status, next) = self.call("GET", &path, None)?;
            check(status, &next)?;
            v = next;
        }
        let schema = fields_of(&v["schema"]);
        let mut rows = rows_of(&v);
        // Further pages of a large result (the sink reads one row; tests read tables).
        while let Some(token) = v["pageToken"].as_str().filter(|t| !t.is_empty()).map(str::to_owned) {
            let job = v["jobReference"]["jobId"].as_str().context("BigQuery answered without a job id")?.to_owned();
            let mut path = format!("/queries/{job}?maxResults=10000&pageToken={token}");
            if let Some(loc) = v["jobReference"]["location"].as_str() {
                path.push_str(&format!("&location={loc}"));
            }
            let (status, next) = self.call("GET", &path, None)?;
            check(status, &next)?;
            let more = rows_of(&next);
            anyhow::ensure!(
                !more.is_empty() || next["pageToken"] != v["pageToken"],
                "BigQuery paging makes no progress"
            );
            rows.extend(more);
            v = next;
        }
        Ok((schema, rows))
    }

    /// `tabledata.insertAll`: all rows or an error.
    pub fn insert_all(&mut self, table: &str, rows: Vec<(String, Value)>) -> anyhow::Result<()> {
        let body = json!({
            "skipInvalidRows": false,
            "ignoreUnknownValues": false,
            "rows": rows.into_iter().map(|(id, row)| json!({"insertId": id, "json": row})).collect::<Vec<_>>(),
        });
        let (status, v) =
            self.call("POST", &format!("/datasets/{}/tables/{table}/insertAll", self.cfg.dataset), Some(&body))?;
        check(status, &v)?;
        if let Some(errs) = v["insertErrors"].as_array().filter(|e| !e.is_empty()) {
            anyhow::bail!(
                "BigQuery refused rows for {table}: {}",
                Value::Array(errs.iter().take(3).cloned().collect())
            );
        }
        Ok(())
    }

    /// The table's columns (name, type), or None if it does not exist. The columns come from
    /// a query (`SELECT * ... LIMIT 0`, no bytes read), which sees every `ALTER TABLE` at once
    /// (the emulator's `tables.get` does not).
    pub fn table_columns(&mut self, table: &str) -> anyhow::Result<Option<Vec<(String, String)>>> {
        let (status, v) = self.call("GET", &format!("/datasets/{}/tables/{table}", self.cfg.dataset), None)?;
        if status == 404 {
            return Ok(None);
        }
        check(status, &v)?;
        let t = self.cfg.table_ref(table);
        Ok(Some(self.query_with_schema(&format!("SELECT * FROM {t} LIMIT 0"))?.0))
    }
}

fn fields_of(schema: &Value) -> Vec<(String, String)> {
    schema["fields"]
        .as_array()
        .map(|fs| {
            fs.iter()
                .map(|f| {
                    (
                        f["name"].as_str().unwrap_or_default().to_owned(),
                        f["type"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn error_message(v: &Value) -> Option<String> {
    if let Some(m) = v["error"]["message"].as_str() {
        return Some(m.to_owned());
    }
    if let Some(m) = v["status"]["errorResult"]["message"].as_str() {
        return Some(m.to_owned());
    }
    v["errors"]
        .as_array()
        .filter(|e| !e.is_empty())
        .map(|e| e.iter().map(|x| x["message"].as_str().unwrap_or("error").to_owned()).collect::<Vec<_>>().join("; "))
}

/// An answer is an error when its HTTP status says so or when it carries a job error (the
/// emulator reports a failed job with 200 and `errors`).
fn check(status: u16, v: &Value) -> anyhow::Result<()> {
    if !(200..300).contains(&status) {
        return Err(ApiError { status, message: error_message(v).unwrap_or_else(|| v.to_string()) }.into());
    }
    if v.get("insertErrors").is_none() {
        if let Some(m) = error_message(v) {
            return Err(ApiError { status, message: m }.into());
        }
    }
    Ok(())
}

fn rows_of(v: &Value) -> Rows {
    v["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    r["f"]
                        .as_array()
                        .map(|cells| {
                            cells
                                .iter()
                                .map(|c| match &c["v"] {
                                    Value::Null => None,
                                    Value::String(s) => Some(s.clone()),
                                    other => Some(other.to_string()),
                                })
                                .collect()
                        })
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A JSON value for `insertAll` from PostgreSQL's text (BigQuery parses strings per column
/// type: integers, floats incl. `NaN`/`Infinity`, numerics, dates, times).
fn cell_json(ty: SinkType, c: &Cell) -> Value {
    match c {
        Cell::Null | Cell::Unchanged => Value::Null,
        Cell::Text(b) => {
            let s = String::from_utf8_lossy(b);
            match ty {
                SinkType::Boolean => Value::Bool(s == "t" || s == "true"),
                _ => Value::String(s.into_owned()),
            }
        }
    }
}

/// A string literal that needs no escaping: hex, decoded in SQL.
fn text_literal(s: &str) -> String {
    format!("SAFE_CONVERT_BYTES_TO_STRING(FROM_HEX('{}'))", hex::encode(s.as_bytes()))
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// One step of the open transaction, applied by the commit in this order.
#[derive(Debug, Clone)]
enum Step {
    Merge { shape: TableShape, part: u32, rows: usize, unchanged_cols: BTreeSet<usize> },
    Truncate { table: String },
}

#[derive(Debug)]
struct Txn {
    batch: String,
    steps: Vec<Step>,
    parts: u32,
}

pub struct BigQuerySink {
    client: Client,
    /// The state row's generation as loaded (and advanced by each commit of this writer).
    generation: Option<i64>,
    /// No state: a new snapshot starts, so what the tables hold is from an earlier life.
    fresh: bool,
    txn: Option<Txn>,
    /// When each table's stage was last cleaned by this process.
    cleaned: HashMap<String, Instant>,
    /// Table shapes as last ensured (the commit's MERGE lists their columns).
    shapes: HashMap<String, TableShape>,
}

impl BigQuerySink {
    pub fn new(client: Client) -> BigQuerySink {
        BigQuerySink {
            client,
            generation: None,
            fresh: false,
            txn: None,
            cleaned: HashMap::new(),
            shapes: HashMap::new(),
        }
    }

    /// From `FINTRAIL_BIGQUERY_*` (see the module documentation).
    pub fn from_env() -> anyhow::Result<BigQuerySink> {
        Ok(Self::new(Client::new(Config::from_env()?)))
    }

    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    fn cfg(&self) -> &Config {
        self.client.config()
    }

    fn ensure_state_table(&mut self) -> anyhow::Result<()> {
        let t = self.cfg().table_ref(STATE_TABLE);
        self.client.query(&format!("CREATE TABLE IF NOT EXISTS {t} (id INT64, generation INT64, state STRING)"))?;
        Ok(())
    }

    /// (generation, state JSON) of the state row.
    fn read_state(&mut self) -> anyhow::Result<Option<(i64, String)>> {
        let t = self.cfg().table_ref(STATE_TABLE);
        let rows = self.client.query(&format!("SELECT generation, state FROM {t} WHERE id = 1"))?;
        match rows.into_iter().next() {
            None => Ok(None),
            Some(r) => {
                let g = r.first().cloned().flatten().context("the BigQuery state row has no generation")?;
                let s = r.get(1).cloned().flatten().context("the BigQuery state row has no state")?;
                Ok(Some((g.parse().context("the BigQuery state row's generation is not a number")?, s)))
            }
        }
    }

    /// Create the table (or add columns, or drop withheld ones) in `table`, with `extra`
    /// columns that are the sink's own.
    fn reconcile(
        &mut self,
        table: &str,
        shape: &TableShape,
        extra: &[(&str, &str)],
        allowed: ColumnAllowed<'_>,
    ) -> anyhow::Result<()> {
        let t = self.cfg().table_ref(table);
        let Some(existing) = self.client.table_columns(table)? else {
            let mut defs: Vec<String> =
                shape.columns.iter().map(|c| format!("`{}` {}", c.name, bq_type(c.ty))).collect();
            defs.extend(extra.iter().map(|(n, ty)| format!("`{n}` {ty}")));
            self.client.query(&format!("CREATE TABLE IF NOT EXISTS {t} ({})", defs.join(", ")))?;
            return Ok(());
        };
        for c in &shape.columns {
            match existing.iter().find(|(n, _)| *n == c.name) {
                None => {
                    tracing::info!(table, column = %c.name, "adding column to the BigQuery sink");
                    self.client.query(&format!(
                        "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS `{}` {}",
                        c.name,
                        bq_type(c.ty)
                    ))?;
                }
                Some((_, ty)) if family(ty) != family_of(c.ty) => anyhow::bail!(
                    "cannot apply a schema change: column {}.{} is {ty} in BigQuery but {} in the source; \
                     stopping instead of dropping data (run `fintrail cdc reset` to re-snapshot)",
                    shape.name,
                    c.name,
                    bq_type(c.ty)
                ),
                Some(_) => {}
            }
        }
        for (name, _) in &existing {
            let ours = extra.iter().any(|(n, _)| n == name);
            if !ours && !shape.columns.iter().any(|c| c.name == *name) && !allowed(name) {
                tracing::warn!(table, column = %name, "removing a column the policy withholds from the BigQuery sink");
                self.client.query(&format!("ALTER TABLE {t} DROP COLUMN IF EXISTS `{name}`"))?;
            }
        }
        Ok(())
    }

    /// Deletes stage rows too old to belong to a commit still to come (best effort: BigQuery
    /// refuses DML on rows still in the streaming buffer; they go next time).
    fn clean_stage(&mut self, table: &str) {
        if self.cleaned.get(table).is_some_and(|t| t.elapsed() < STAGE_CLEANUP_EVERY) {
            return;
        }
        self.cleaned.insert(table.to_owned(), Instant::now());
        let s = self.cfg().table_ref(&format!("{STAGE_PREFIX}{table}"));
        let sql = format!(
            "DELETE FROM {s} WHERE {STAGED_AT} < TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL {STAGE_RETENTION_HOURS} HOUR)"
        );
        if let Err(e) = self.client.query(&sql) {
            tracing::warn!(table, error = %e, "old stage rows not deleted (retried later)");
        }
    }

    /// Stage the net rows of one part; returns its step.
    fn stage(&mut self, shape: &TableShape, net: &NetBatch) -> anyhow::Result<Option<Step>> {
        if net.order.is_empty() {
            return Ok(None);
        }
        let txn = self.txn.as_mut().context("staging outside a sink transaction")?;
        let (batch, part) = (txn.batch.clone(), txn.parts);
        txn.parts += 1;
        let staged_at = super::duck::format_ts(now_us());
        let mut unchanged_cols = BTreeSet::new();
        let mut rows = Vec::with_capacity(net.order.len());
        for (ord, k) in net.order.iter().enumerate() {
            let nr = &net.rows[k];
            let (cells, del) = match &nr.row {
                Some(r) => (r, false),
                None => (&nr.key_row, true),
            };
            let mut m = Map::new();
            let mut unchanged = Vec::new();
            for (i, (col, c)) in shape.columns.iter().zip(cells).enumerate() {
                if del && !col.key {
                    continue;
                }
                if !del && *c == Cell::Unchanged {
                    unchanged.push(col.name.as_str());
                    unchanged_cols.insert(i);
                }
                m.insert(col.name.clone(), cell_json(col.ty, c));
            }
            m.insert(BATCH.into(), json!(batch));
            m.insert(PART.into(), json!(part));
            m.insert(ORD.into(), json!(ord));
            m.insert(DEL.into(), json!(del));
            m.insert(
                UNCHANGED.into(),
                if unchanged.is_empty() { Value::Null } else { json!(format!(",{},", unchanged.join(","))) },
            );
            m.insert(STAGED_AT.into(), json!(staged_at));
            rows.push((format!("{batch}-{part}-{ord}"), Value::Object(m)));
        }
        let n = rows.len();
        let stage = format!("{STAGE_PREFIX}{}", shape.name);
        let mut chunk = Vec::new();
        let mut bytes = 0;
        for r in rows {
            bytes += r.1.to_string().len() + r.0.len() + 32;
            chunk.push(r);
            if chunk.len() >= INSERT_ROWS_MAX || bytes >= INSERT_BYTES_MAX {
                self.client.insert_all(&stage, std::mem::take(&mut chunk))?;
                bytes = 0;
            }
        }
        if !chunk.is_empty() {
            self.client.insert_all(&stage, chunk)?;
        }
        Ok(Some(Step::Merge { shape: shape.clone(), part, rows: n, unchanged_cols }))
    }

    /// The commit: one script, one transaction (see the module documentation).
    fn commit_script(&self, txn: &Txn, generation: i64, state_json: &str) -> String {
        let cfg = self.cfg();
        let state_t = cfg.table_ref(STATE_TABLE);
        let b = &txn.batch;
        let mut sql = String::from("BEGIN TRANSACTION;\n");
        sql.push_str(&format!(
            "SELECT ERROR('{STALE}: the state row moved since this writer loaded generation {generation} \
             (another writer, or a job that finished after a crash); restart to resume from it') \
             FROM (SELECT COALESCE((SELECT MAX(generation) FROM {state_t}), 0) AS g) WHERE g <> {generation};\n"
        ));
        for step in &txn.steps {
            match step {
                Step::Truncate { table } => {
                    sql.push_str(&format!("DELETE FROM {} WHERE TRUE;\n", cfg.table_ref(table)));
                }
                Step::Merge { shape, part, rows, unchanged_cols } => {
                    let t = cfg.table_ref(&shape.name);
                    let s = cfg.table_ref(&format!("{STAGE_PREFIX}{}", shape.name));
                    let filter = format!("{BATCH} = '{b}' AND {PART} = {part}");
                    let join = shape
                        .columns
                        .iter()
                        .filter(|c| c.key)
                        .map(|c| format!("T.`{n}` = S.`{n}`", n = c.name))
                        .collect::<Vec<_>>()
                        .join(" AND ");
                    sql.push_str(&format!(
                        "SELECT ERROR('{INCOMPLETE}: {table} part {part}') FROM (SELECT COUNT(DISTINCT {ORD}) AS n \
                         FROM {s} WHERE {filter}) WHERE n <> {rows};\n",
                        table = shape.name
                    ));
                    if !unchanged_cols.is_empty() {
                        sql.push_str(&format!(
                            "SELECT ERROR('{NO_ROW_FOR_TOAST} in {table}') FROM {s} AS S WHERE S.{BATCH} = '{b}' \
                             AND S.{PART} = {part} AND S.{UNCHANGED} IS NOT NULL AND NOT S.{DEL} \
                             AND NOT EXISTS (SELECT 1 FROM {t} AS T WHERE {join});\n",
                            table = shape.name
                        ));
                    }
                    let set = shape
                        .columns
                        .iter()
                        .enumerate()
                        .map(|(i, c)| {
                            if unchanged_cols.contains(&i) {
                                format!(
                                    "`{n}` = IF(STRPOS(IFNULL(S.{UNCHANGED}, ''), ',{n},') > 0, T.`{n}`, S.`{n}`)",
                                    n = c.name
                                )
                            } else {
                                format!("`{n}` = S.`{n}`", n = c.name)
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(", ");
                    let cols = shape.columns.iter().map(|c| format!("`{}`", c.name)).collect::<Vec<_>>().join(", ");
                    let vals = shape.columns.iter().map(|c| format!("S.`{}`", c.name)).collect::<Vec<_>>().join(", ");
                    sql.push_str(&format!(
                        "MERGE {t} AS T USING (SELECT * FROM {s} WHERE {filter} \
                         QUALIFY ROW_NUMBER() OVER (PARTITION BY {ORD}) = 1) AS S ON {join}\n\
                         WHEN MATCHED AND S.{DEL} THEN DELETE\n\
                         WHEN MATCHED THEN UPDATE SET {set}\n\
                         WHEN NOT MATCHED AND NOT S.{DEL} THEN INSERT ({cols}) VALUES ({vals});\n"
                    ));
                }
            }
        }
        sql.push_str(&format!(
            "MERGE {state_t} AS T USING (SELECT 1 AS id, {next} AS generation, {state} AS state) AS S ON T.id = S.id\n\
             WHEN MATCHED THEN UPDATE SET generation = S.generation, state = S.state\n\
             WHEN NOT MATCHED THEN INSERT (id, generation, state) VALUES (S.id, S.generation, S.state);\n\
             COMMIT TRANSACTION;",
            next = generation + 1,
            state = text_literal(state_json),
        ));
        sql
    }

    fn run_commit(&mut self, txn: &Txn, generation: i64, state_json: &str) -> anyhow::Result<()> {
        let sql = self.commit_script(txn, generation, state_json);
        // Staged rows become visible to queries within seconds of insertAll: wait for them.
        let mut waits = 0u32;
        loop {
            match self.client.query(&sql) {
                Ok(_) => return Ok(()),
                Err(e) if e.to_string().contains(INCOMPLETE) && waits < 6 => {
                    waits += 1;
                    tracing::info!(waits, "staged rows not visible yet; retrying the commit");
                    std::thread::sleep(Duration::from_millis(250 << waits));
                }
                Err(e) => {
                    // Did it commit after all (an answer lost on the way)? The state says.
                    if let Ok(Some((g, s))) = self.read_state() {
                        if g == generation + 1 && s == state_json {
                            tracing::warn!(error = %e, "the BigQuery commit's answer was lost, but it committed");
                            return Ok(());
                        }
                    }
                    let msg = e.to_string();
                    if msg.contains(NO_ROW_FOR_TOAST) {
                        anyhow::bail!(
                            "cannot apply an update in BigQuery: a row carries an unchanged TOAST value but the sink has \
                             no current row to take it from; stopping instead of dropping data ({msg})"
                        );
                    }
                    return Err(e.context("the BigQuery commit failed (nothing of it applied)"));
                }
            }
        }
    }
}

impl Sink for BigQuerySink {
    fn load_state(&mut self) -> anyhow::Result<Option<SinkState>> {
        self.ensure_state_table()?;
        match self.read_state()? {
            None => {
                self.generation = Some(0);
                self.fresh = true;
                Ok(None)
            }
            Some((g, s)) => {
                self.generation = Some(g);
                self.fresh = false;
                Ok(Some(
                    serde_json::from_str(&s)
                        .map_err(|e| anyhow::anyhow!("the BigQuery sink's stored CDC state is unreadable: {e}"))?,
                ))
            }
        }
    }

    fn ensure_table(&mut self, shape: &TableShape, allowed: ColumnAllowed<'_>) -> anyhow::Result<()> {
        check_name("table", &shape.name)?;
        for c in &shape.columns {
            check_name("column", &c.name)?;
            anyhow::ensure!(
                !c.name.starts_with("_fintrail_"),
                "column {}.{} uses the sink's prefix",
                shape.name,
                c.name
            );
        }
        anyhow::ensure!(
            shape.columns.iter().any(|c| c.key),
            "the BigQuery sink merges by key: {} has no primary key (or replica identity)",
            shape.name
        );
        let stage_extra = [
            (BATCH, "STRING"),
            (PART, "INT64"),
            (ORD, "INT64"),
            (DEL, "BOOL"),
            (UNCHANGED, "STRING"),
            (STAGED_AT, "TIMESTAMP"),
        ];
        self.reconcile(&shape.name, shape, &[], allowed)?;
        self.reconcile(&format!("{STAGE_PREFIX}{}", shape.name), shape, &stage_extra, allowed)?;
        if self.fresh {
            // A new snapshot: rows from before a reset must not survive it.
            self.client.query(&format!("DELETE FROM {} WHERE TRUE", self.cfg().table_ref(&shape.name)))?;
        }
        self.clean_stage(&shape.name);
        self.shapes.insert(shape.name.clone(), shape.clone());
        Ok(())
    }

    fn begin(&mut self) -> anyhow::Result<()> {
        assert!(self.txn.is_none(), "sink transaction already open");
        let batch = hex::encode(rand::random::<[u8; 12]>());
        self.txn = Some(Txn { batch, steps: Vec::new(), parts: 0 });
        Ok(())
    }

    fn apply(&mut self, shape: &TableShape, changes: &[crate::model::Change], upsert_all: bool) -> anyhow::Result<()> {
        assert!(self.txn.is_some(), "apply outside a sink transaction");
        let net = NetBatch::build(shape, changes, upsert_all);
        if let Some(step) = self.stage(shape, &net)? {
            self.txn.as_mut().expect("open").steps.push(step);
        }
        Ok(())
    }

    fn truncate(&mut self, shape: &TableShape, _commit_lsn: u64, _seq: u32, _commit_ts_us: i64) -> anyhow::Result<()> {
        let txn = self.txn.as_mut().expect("truncate outside a sink transaction");
        txn.steps.push(Step::Truncate { table: shape.name.clone() });
        Ok(())
    }

    fn load_rows(&mut self, shape: &TableShape, rows: &[Vec<Cell>]) -> anyhow::Result<()> {
        assert!(self.txn.is_some(), "load outside a sink transaction");
        let key_idx = shape.key_indexes();
        let mut net = NetBatch::default();
        for r in rows {
            let k = crate::model::key_of(r, &key_idx);
            if net
                .rows
                .insert(k.clone(), super::NetRow { row: Some(r.clone()), key_row: Vec::new(), replaces: true })
                .is_none()
            {
                net.order.push(k);
            }
        }
        if let Some(step) = self.stage(shape, &net)? {
            self.txn.as_mut().expect("open").steps.push(step);
        }
        Ok(())
    }

    fn commit(&mut self, state: &SinkState) -> anyhow::Result<()> {
        let txn = self.txn.take().expect("commit without a sink transaction");
        let generation = match self.generation {
            Some(g) => g,
            None => {
                self.ensure_state_table()?;
                self.read_state()?.map_or(0, |(g, _)| g)
            }
        };
        let state_json = serde_json::to_string(state)?;
        self.run_commit(&txn, generation, &state_json)?;
        self.generation = Some(generation + 1);
        self.fresh = false;
        let tables: BTreeSet<String> = txn
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Merge { shape, .. } => Some(shape.name.clone()),
                Step::Truncate { .. } => None,
            })
            .collect();
        for t in tables {
            self.clean_stage(&t);
        }
        Ok(())
    }

    fn rollback(&mut self) -> anyhow::Result<()> {
        // Staged rows stay under a batch id no commit names; they are deleted when old.
        self.txn = None;
        Ok(())
    }
}

/// `fintrail cdc reset` for BigQuery: the state row goes, so the next run starts a new
/// snapshot (and empties the replicated tables first).
pub fn reset(client: &mut Client) -> anyhow::Result<()> {
    let t = client.config().table_ref(STATE_TABLE);
    client.query(&format!("CREATE TABLE IF NOT EXISTS {t} (id INT64, generation INT64, state STRING)"))?;
    client.query(&format!("DELETE FROM {t} WHERE TRUE"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn configuration_comes_from_the_environment_and_fails_fast() {
        let c = Config::from_lookup(env(&[
            ("FINTRAIL_BIGQUERY_PROJECT", "acme-dev"),
            ("FINTRAIL_BIGQUERY_DATASET", "fintrail_replica"),
        ]))
        .unwrap();
        assert_eq!(c.endpoint, "https://bigquery.googleapis.com");
        assert_eq!(c.auth, Auth::Metadata { host: "metadata.google.internal".into() });
        assert_eq!(c.table_ref("t"), "`acme-dev.fintrail_replica.t`");
        let c = Config::from_lookup(env(&[
            ("FINTRAIL_BIGQUERY_PROJECT", "p"),
            ("FINTRAIL_BIGQUERY_DATASET", "d"),
            ("FINTRAIL_BIGQUERY_ENDPOINT", "http://127.0.0.1:9050/"),
        ]))
        .unwrap();
        assert_eq!((c.endpoint.as_str(), c.auth), ("http://127.0.0.1:9050", Auth::None));
        let e = Config::from_lookup(env(&[("FINTRAIL_BIGQUERY_DATASET", "d")])).unwrap_err().to_string();
        assert!(e.contains("FINTRAIL_BIGQUERY_PROJECT is required"), "{e}");
        let e = Config::from_lookup(env(&[("FINTRAIL_BIGQUERY_PROJECT", "p")])).unwrap_err().to_string();
        assert!(e.contains("FINTRAIL_BIGQUERY_DATASET is required"), "{e}");
        let e = Config::from_lookup(env(&[("FINTRAIL_BIGQUERY_PROJECT", "p"), ("FINTRAIL_BIGQUERY_DATASET", "a-b")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("FINTRAIL_BIGQUERY_DATASET"), "{e}");
        let e = Config::from_lookup(env(&[
            ("FINTRAIL_BIGQUERY_PROJECT", "p"),
            ("FINTRAIL_BIGQUERY_DATASET", "d"),
            ("FINTRAIL_BIGQUERY_ENDPOINT", "localhost:9050"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("not an http(s) URL"), "{e}");
    }

    #[test]
    fn types_map_to_bigquery_and_numerics_keep_their_digits() {
        assert_eq!(bq_type(SinkType::BigInt), "INT64");
        assert_eq!(bq_type(SinkType::TimestampTz), "TIMESTAMP");
        assert_eq!(bq_type(SinkType::Timestamp), "DATETIME");
        assert_eq!(bq_type(SinkType::Decimal(18, 2)), "NUMERIC(18, 2)");
        assert_eq!(bq_type(SinkType::Decimal(38, 9)), "NUMERIC(38, 9)");
        assert_eq!(bq_type(SinkType::Decimal(38, 10)), "BIGNUMERIC(38, 10)");
        assert_eq!(family("INTEGER"), family_of(SinkType::SmallInt));
        assert_eq!(family("NUMERIC"), family_of(SinkType::Decimal(38, 20)));
        assert_ne!(family("STRING"), family_of(SinkType::BigInt));
    }

    #[test]
    fn names_that_are_not_plain_identifiers_are_refused() {
        assert!(check_name("table", "crash_a").is_ok());
        for bad in ["", "a-b", "a`b", "a b", "1a", "a\\b"] {
            assert!(check_name("table", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn api_errors_are_errors_whatever_the_status() {
        assert!(check(200, &json!({"rows": []})).is_ok());
        let e = check(200, &json!({"errors": [{"message": "boom"}]})).unwrap_err().to_string();
        assert!(e.contains("boom"), "{e}");
        let e = check(400, &json!({"error": {"message": "bad"}})).unwrap_err().to_string();
        assert!(e.contains("400") && e.contains("bad"), "{e}");
        assert!(check(200, &json!({"insertErrors": []})).is_ok());
        assert_eq!(
            rows_of(&json!({"rows": [{"f": [{"v": "1"}, {"v": null}]}]})),
            vec![vec![Some("1".to_owned()), None]]
        );
    }

    /// On Cloud Run the token comes from the metadata server (a stand-in on a local port here:
    /// the real one exists only inside Google Cloud), asked with `Metadata-Flavor: Google`,
    /// then kept until a minute before it expires.
    #[test]
    fn the_access_token_comes_from_the_metadata_server_and_is_kept() {
        use std::io::{BufRead as _, BufReader, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                head.push(line.trim().to_owned());
            }
            let body = r#"{"access_token":"ya29.token","expires_in":3599,"token_type":"Bearer"}"#;
            write!(&stream, "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
                .unwrap();
            head
        });
        let cfg = Config {
            project: "p".into(),
            dataset: "d".into(),
            endpoint: PUBLIC_ENDPOINT.into(),
            auth: Auth::Metadata { host },
        };
        let mut client = Client::new(cfg);
        assert_eq!(client.bearer().unwrap().as_deref(), Some("ya29.token"));
        let head = server.join().unwrap();
        assert!(head[0].starts_with("GET /computeMetadata/v1/instance/service-accounts/default/token "), "{head:?}");
        assert!(head.iter().any(|h| h.eq_ignore_ascii_case("metadata-flavor: Google")), "{head:?}");
        // Kept: the server is gone, the token is still there.
        assert_eq!(client.bearer().unwrap().as_deref(), Some("ya29.token"));
        // No metadata server at all (not on Cloud Run): a clear error.
        let cfg = Config {
            project: "p".into(),
            dataset: "d".into(),
            endpoint: PUBLIC_ENDPOINT.into(),
            auth: Auth::Metadata { host: "127.0.0.1:1".into() },
        };
        let e = format!("{:#}", Client::new(cfg).bearer().unwrap_err());
        assert!(e.contains("metadata server"), "{e}");
    }

    #[test]
    fn text_literals_survive_any_character() {
        assert_eq!(text_literal("a'\\"), "SAFE_CONVERT_BYTES_TO_STRING(FROM_HEX('61275c'))");
    }
}
