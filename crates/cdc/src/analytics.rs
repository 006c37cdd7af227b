//! Read-only analytics queries while the pipeline writes: one writer, many readers
//! ([ADR 0007](../../../docs/adr/0007-analytics-one-writer-serves-reads.md)).
//!
//! DuckDB lets one process open a file for writing and then no other process may open it at
//! all. So the process that holds the file (the pipeline of `cdc run` / `fintrail up`) also
//! answers read-only queries on a Unix socket beside it (`<file>.sock`, in the owner-only
//! `FINTRAIL_HOME`, itself made 0600), on connections cloned from its own database instance:
//! a reader sees every committed sink transaction at once (the pipeline commits at most
//! `commit_interval` after the source commit: 200 ms). [`query`] asks that socket, and opens
//! the file read-only itself when no pipeline answers.
//!
//! Every query, by either path, goes through [`run_guarded`]:
//! - **one SELECT only**: DuckDB's own parser (`json_serialize_sql`) must see exactly one
//!   statement, and a SELECT (INSERT, UPDATE, CREATE, ATTACH, COPY, PRAGMA, SET, CALL are
//!   refused before anything runs; duckdb-rs would otherwise run every statement but the last);
//! - **in a READ ONLY transaction**, rolled back: a write that slips past the parser (a
//!   sequence's `nextval`) is refused by DuckDB itself;
//! - **no file or network access**: the serving instance runs with `enable_external_access =
//!   false` and its configuration locked (`read_csv('/etc/passwd')`, `COPY ... TO` refused),
//!   the read-only fallback likewise;
//! - **bounded**: at most [`ROWS_MAX`] rows (the answer says when the limit cut it), at most
//!   [`TIMEOUT_MS_MAX`] (DuckDB is interrupted), requests ≤ [`REQUEST_BYTES_MAX`], at most
//!   [`QUERIES_CONCURRENT_MAX`] at once (the writer keeps its share of the CPU).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use duckdb::Connection;
use serde::{Deserialize, Serialize};

/// Most rows a query answers.
pub const ROWS_MAX: usize = 10_000;
/// Longest a query runs before DuckDB is interrupted.
pub const TIMEOUT_MS_MAX: u64 = 30_000;
/// The timeout when the caller names none.
pub const TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// Largest request line (the SQL and its bounds, as JSON).
pub const REQUEST_BYTES_MAX: usize = 64 * 1024;
/// Queries answered at once by the pipeline's process; more wait for a permit.
pub const QUERIES_CONCURRENT_MAX: usize = 4;
/// How long the server waits for a client's request line.
const REQUEST_READ_TIMEOUT_MS: u64 = 5_000;
/// Largest answer a client reads (ROWS_MAX rows of wide text fit).
const RESPONSE_BYTES_MAX: u64 = 256 * 1024 * 1024;
/// Longest Unix socket path (sun_path is 108 bytes with its NUL on Linux).
const SOCKET_PATH_BYTES_MAX: usize = 107;

/// A query and its bounds (one JSON line on the socket).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    pub sql: String,
    pub rows_max: usize,
    pub timeout_ms: u64,
}

impl Request {
    /// A request with the default timeout; `rows_max` is clamped to [1, ROWS_MAX].
    pub fn new(sql: impl Into<String>, rows_max: usize) -> Self {
        Request { sql: sql.into(), rows_max, timeout_ms: TIMEOUT_MS_DEFAULT }.clamped()
    }

    fn clamped(mut self) -> Self {
        self.rows_max = self.rows_max.clamp(1, ROWS_MAX);
        self.timeout_ms = self.timeout_ms.clamp(1, TIMEOUT_MS_MAX);
        self
    }
}

/// A query result, every value as DuckDB renders it as text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
    /// The query had more rows than `rows_max`: only the first `rows_max` are here.
    pub truncated: bool,
}

impl QueryResult {
    pub fn to_json(&self) -> serde_json::Value {
        let row = |r: &Vec<Option<String>>| {
            serde_json::Value::Object(
                self.columns
                    .iter()
                    .zip(r)
                    .map(|(c, v)| (c.clone(), v.clone().map_or(serde_json::Value::Null, serde_json::Value::String)))
                    .collect(),
            )
        };
        serde_json::Value::Array(self.rows.iter().map(row).collect())
    }

    /// An aligned text table, its row count, and the limit when it cut the result.
    pub fn to_table(&self) -> String {
        let cells: Vec<Vec<String>> =
            self.rows.iter().map(|r| r.iter().map(|v| v.clone().unwrap_or_else(|| "NULL".into())).collect()).collect();
        let mut w: Vec<usize> = self.columns.iter().map(|c| c.chars().count()).collect();
        for r in &cells {
            for (i, v) in r.iter().enumerate() {
                w[i] = w[i].max(v.chars().count());
            }
        }
        let line = |vals: &[String]| {
            vals.iter().enumerate().map(|(i, v)| format!("{v:<width$}", width = w[i])).collect::<Vec<_>>().join(" | ")
        };
        let mut out = String::new();
        out.push_str(line(&self.columns).trim_end());
        out.push('\n');
        out.push_str(&w.iter().map(|n| "-".repeat(*n)).collect::<Vec<_>>().join("-+-"));
        out.push('\n');
        for r in &cells {
            out.push_str(line(r).trim_end());
            out.push('\n');
        }
        let n = cells.len();
        out.push_str(&format!("({n} row{})\n", if n == 1 { "" } else { "s" }));
        if self.truncated {
            out.push_str(&format!(
                "(row limit {n} reached: the query has more rows; raise --limit, at most {ROWS_MAX})\n"
            ));
        }
        out
    }
}

/// The answer line on the socket.
#[derive(Debug, Serialize, Deserialize)]
enum Answer {
    Ok(QueryResult),
    Error(String),
}

/// The socket beside a DuckDB file: `analytics.duckdb` → `analytics.duckdb.sock`.
pub fn socket_path(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(".sock");
    PathBuf::from(s)
}

/// Refuses anything but exactly one SELECT, by DuckDB's own parser.
pub fn check_read_only(conn: &Connection, sql: &str) -> anyhow::Result<()> {
    if sql.trim().is_empty() {
        anyhow::bail!("refused: the query is empty");
    }
    let json: String = conn.query_row("SELECT json_serialize_sql(?::VARCHAR)", [sql], |r| r.get(0))?;
    let v: serde_json::Value = serde_json::from_str(&json)?;
    if v["error"].as_bool() != Some(false) {
        let msg = v["error_message"].as_str().unwrap_or("unknown error");
        if v["error_type"].as_str() == Some("not implemented") {
            anyhow::bail!("refused: analytics queries are read-only, one SELECT only ({msg})");
        }
        anyhow::bail!("query failed: {msg}");
    }
    let statements = v["statements"].as_array().map_or(0, Vec::len);
    if statements != 1 {
        anyhow::bail!("refused: one statement at a time ({statements} given)");
    }
    Ok(())
}

/// Turns off file and network access for every connection of `conn`'s instance and locks the
/// configuration, so no query can turn it back on.
pub fn lock_down(conn: &Connection) -> anyhow::Result<()> {
    conn.execute_batch("SET enable_external_access = false; SET lock_configuration = true;")?;
    Ok(())
}

/// Runs one read-only query on `conn` (see the module's rules).
pub fn run_guarded(conn: &Connection, req: &Request) -> anyhow::Result<QueryResult> {
    let req = req.clone().clamped();
    check_read_only(conn, &req.sql)?;
    conn.execute_batch("BEGIN TRANSACTION READ ONLY")?;
    let out = with_timeout(conn, req.timeout_ms, || select(conn, &req.sql, req.rows_max));
    // Nothing was written (READ ONLY); the rollback only ends the transaction.
    let _ = conn.execute_batch("ROLLBACK");
    out
}

/// Runs `f`, interrupting `conn` when it takes longer than `timeout_ms`.
fn with_timeout<T>(conn: &Connection, timeout_ms: u64, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let handle = conn.interrupt_handle();
    let (done, done_rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        let timed_out = matches!(
            done_rx.recv_timeout(Duration::from_millis(timeout_ms)),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout)
        );
        if timed_out {
            handle.interrupt();
        }
        timed_out
    });
    let out = f();
    drop(done);
    let timed_out = watchdog.join().unwrap_or(false);
    match out {
        Err(e) if timed_out => {
            Err(anyhow::anyhow!("refused: the query ran longer than {timeout_ms} ms and was interrupted ({e})"))
        }
        other => other,
    }
}

fn select(conn: &Connection, sql: &str, rows_max: usize) -> anyhow::Result<QueryResult> {
    let sql = sql.trim().trim_end_matches(';');
    // The newline ends a trailing `--` comment inside the parentheses.
    let wrapped = format!("SELECT COLUMNS(*)::VARCHAR FROM (\n{sql}\n) AS q LIMIT {}", rows_max + 1);
    let mut st = conn.prepare(&wrapped).map_err(|e| anyhow::anyhow!("query failed: {e}"))?;
    let mut rows = st.query([]).map_err(|e| anyhow::anyhow!("query failed: {e}"))?;
    let mut out = Vec::new();
    let mut columns = Vec::new();
    while let Some(r) = rows.next().map_err(|e| anyhow::anyhow!("query failed: {e}"))? {
        let stmt = r.as_ref();
        if columns.is_empty() {
            columns = stmt.column_names();
        }
        let n = stmt.column_count();
        out.push((0..n).map(|i| r.get::<_, Option<String>>(i)).collect::<Result<Vec<_>, _>>()?);
    }
    drop(rows);
    if columns.is_empty() {
        columns = st.column_names();
    }
    let truncated = out.len() > rows_max;
    out.truncate(rows_max);
    Ok(QueryResult { columns, rows: out, truncated })
}

/// Opens `file` read-only (no pipeline holds it), locked down.
fn open_read_only(file: &Path) -> anyhow::Result<Connection> {
    if !file.exists() {
        anyhow::bail!("{} does not exist: run `fintrail cdc run` (or `fintrail up`) first", file.display());
    }
    let cfg = duckdb::Config::default().access_mode(duckdb::AccessMode::ReadOnly)?;
    let conn = Connection::open_with_flags(file, cfg).map_err(|e| {
        anyhow::anyhow!(
            "cannot open {} read-only, and no pipeline answers on {}: {e}",
            file.display(),
            socket_path(file).display()
        )
    })?;
    lock_down(&conn)?;
    Ok(conn)
}

/// Runs `req` on the analytics in `file`: through the pipeline holding it (its socket), else
/// on the file opened read-only. Blocking.
pub fn query(file: &Path, req: &Request) -> anyhow::Result<QueryResult> {
    let req = req.clone().clamped();
    let socket = socket_path(file);
    match std::os::unix::net::UnixStream::connect(&socket) {
        Ok(stream) => ask(stream, &req),
        // No socket, or a stale one (a killed pipeline): nobody holds the file.
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => {
            run_guarded(&open_read_only(file)?, &req)
        }
        Err(e) => anyhow::bail!("cannot reach the pipeline's query socket {}: {e}", socket.display()),
    }
}

fn ask(mut stream: std::os::unix::net::UnixStream, req: &Request) -> anyhow::Result<QueryResult> {
    // The server interrupts the query at `timeout_ms`; the margin covers a wait for a permit.
    stream.set_read_timeout(Some(Duration::from_millis(req.timeout_ms + TIMEOUT_MS_MAX)))?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    anyhow::ensure!(line.len() <= REQUEST_BYTES_MAX, "refused: the query is longer than {REQUEST_BYTES_MAX} bytes");
    stream.write_all(&line)?;
    read_answer(stream)
}

/// The pipeline's query server; stops and removes its socket when dropped.
pub struct Server {
    socket: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Serves read-only queries on the database instance of `conn` (a connection of the
    /// pipeline's own sink, which must have been [`lock_down`]ed) at `socket`.
    pub fn start(conn: Connection, socket: &Path) -> anyhow::Result<Server> {
        anyhow::ensure!(
            socket.as_os_str().len() <= SOCKET_PATH_BYTES_MAX,
            "the query socket path {} is longer than {SOCKET_PATH_BYTES_MAX} bytes",
            socket.display()
        );
        // A socket left by a killed pipeline: we hold the DuckDB file's lock, so no live
        // pipeline serves this file.
        if std::fs::symlink_metadata(socket).is_ok() {
            std::fs::remove_file(socket)?;
        }
        let listener = tokio::net::UnixListener::bind(socket)?;
        // Created with the umask, but inside the owner-only home: nobody else could reach it
        // before this makes it owner-only itself.
        fintrail_db::home::owner_only::restrict(socket)?;
        let conn = Arc::new(Mutex::new(conn));
        let permits = Arc::new(tokio::sync::Semaphore::new(QUERIES_CONCURRENT_MAX));
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        tokio::spawn(answer(stream, conn.clone(), permits.clone()));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "analytics query socket: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Ok(Server { socket: socket.to_owned(), task })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

async fn answer(stream: tokio::net::UnixStream, conn: Arc<Mutex<Connection>>, permits: Arc<tokio::sync::Semaphore>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let (read, mut write) = stream.into_split();
    let mut line = Vec::new();
    let mut limited = tokio::io::BufReader::new(tokio::io::AsyncReadExt::take(read, REQUEST_BYTES_MAX as u64 + 1));
    let read =
        tokio::time::timeout(Duration::from_millis(REQUEST_READ_TIMEOUT_MS), limited.read_until(b'\n', &mut line))
            .await;
    let reply = match read {
        Err(_) => Answer::Error("refused: no request within the time limit".into()),
        Ok(Err(e)) => Answer::Error(format!("reading the request: {e}")),
        Ok(Ok(_)) if line.len() > REQUEST_BYTES_MAX => {
            Answer::Error(format!("refused: the request is longer than {REQUEST_BYTES_MAX} bytes"))
        }
        Ok(Ok(_)) => match serde_json::from_slice::<Request>(&line) {
            Err(e) => Answer::Error(format!("refused: not a query request: {e}")),
            Ok(req) => run_permitted(req, &conn, &permits).await,
        },
    };
    if let Ok(mut bytes) = serde_json::to_vec(&reply) {
        bytes.push(b'\n');
        let _ = write.write_all(&bytes).await;
    }
}

async fn run_permitted(req: Request, conn: &Mutex<Connection>, permits: &tokio::sync::Semaphore) -> Answer {
    let Ok(_permit) = permits.acquire().await else { return Answer::Error("the query server is stopping".into()) };
    // A connection of its own per query: DuckDB connections are not shared between threads.
    let cloned = match conn.lock() {
        Ok(c) => c.try_clone(),
        Err(_) => return Answer::Error("the query server failed".into()),
    };
    let cloned = match cloned {
        Ok(c) => c,
        Err(e) => return Answer::Error(format!("query failed: {e}")),
    };
    match tokio::task::spawn_blocking(move || run_guarded(&cloned, &req)).await {
        Ok(Ok(r)) => Answer::Ok(r),
        Ok(Err(e)) => Answer::Error(format!("{e:#}")),
        Err(e) => Answer::Error(format!("query failed: {e}")),
    }
}

/// Reads the server's one answer line (a result, or the error it names).
pub fn read_answer(reader: impl Read) -> anyhow::Result<QueryResult> {
    let mut answer = String::new();
    BufReader::new(reader.take(RESPONSE_BYTES_MAX)).read_line(&mut answer)?;
    match serde_json::from_str::<Answer>(&answer) {
        Ok(Answer::Ok(r)) => Ok(r),
        Ok(Answer::Error(e)) => Err(anyhow::anyhow!(e)),
        Err(e) => Err(anyhow::anyhow!("the pipeline's query socket gave no answer: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh folder (removed when the test ends, passed or failed) and the DuckDB file's
    /// path in it.
    fn temp_file(tag: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::Builder::new().prefix(&format!("fintrail-aq-{tag}-")).tempdir().unwrap();
        let path = dir.path().join("a.duckdb");
        (dir, path)
    }

    fn writer(path: &Path) -> Connection {
        let c = Connection::open(path).unwrap();
        c.execute_batch(
            "CREATE TABLE t (id INTEGER, name VARCHAR); INSERT INTO t SELECT i, 'n' || i FROM range(5) r(i);
             CREATE SEQUENCE s;",
        )
        .unwrap();
        lock_down(&c).unwrap();
        c
    }

    const WRITES: [&str; 12] = [
        "INSERT INTO t VALUES (9, 'x')",
        "UPDATE t SET name = 'y'",
        "DELETE FROM t",
        "CREATE TABLE u (a INTEGER)",
        "DROP TABLE t",
        "ATTACH '/tmp/fintrail-aq-attached.duckdb' AS other",
        "COPY t TO '/tmp/fintrail-aq-copy.csv'",
        "PRAGMA enable_profiling",
        "SET threads = 1",
        "SELECT 1; DROP TABLE t",
        "SELECT 1) q; DROP TABLE t; SELECT * FROM (SELECT 1",
        "CHECKPOINT",
    ];

    #[test]
    fn only_one_select_runs_and_every_write_is_refused() {
        let (_dir, path) = temp_file("guard");
        let c = writer(&path);
        let r = run_guarded(&c, &Request::new("SELECT id, name FROM t ORDER BY id -- trailing", 100)).unwrap();
        assert_eq!(r.columns, vec!["id", "name"]);
        assert_eq!(r.rows.len(), 5);
        assert!(!r.truncated);
        for w in WRITES {
            let e = run_guarded(&c, &Request::new(w, 10)).unwrap_err().to_string();
            assert!(e.starts_with("refused:") || e.starts_with("query failed:"), "{w}: {e}");
        }
        for w in &WRITES[..9] {
            let e = run_guarded(&c, &Request::new(*w, 10)).unwrap_err().to_string();
            assert!(e.starts_with("refused:"), "{w}: {e}");
        }
        // Past the parser, the transaction refuses it; files stay out of reach.
        let e = run_guarded(&c, &Request::new("SELECT nextval('s')", 10)).unwrap_err().to_string();
        assert!(e.contains("read-only"), "{e}");
        let e = run_guarded(&c, &Request::new("SELECT * FROM read_csv('/etc/passwd')", 10)).unwrap_err().to_string();
        assert!(e.contains("disabled by configuration"), "{e}");
        let count = run_guarded(&c, &Request::new("SELECT count(*) FROM t", 1)).unwrap();
        assert_eq!(count.rows, vec![vec![Some("5".to_owned())]], "nothing was written");
        assert!(!Path::new("/tmp/fintrail-aq-copy.csv").exists());
    }

    #[test]
    fn rows_and_time_are_bounded() {
        let (_dir, path) = temp_file("bounds");
        let c = writer(&path);
        let r = run_guarded(&c, &Request::new("SELECT * FROM t", 3)).unwrap();
        assert_eq!((r.rows.len(), r.truncated), (3, true));
        let r = run_guarded(&c, &Request::new("SELECT * FROM t", 5)).unwrap();
        assert_eq!((r.rows.len(), r.truncated), (5, false));
        assert_eq!(Request::new("x", 0).rows_max, 1);
        assert_eq!(Request::new("x", usize::MAX).rows_max, ROWS_MAX);
        let slow = Request { timeout_ms: 200, ..Request::new("SELECT count(*) FROM range(1000000000000) a", 1) };
        let e = run_guarded(&c, &slow).unwrap_err().to_string();
        assert!(e.contains("longer than 200 ms"), "{e}");
        // The connection is usable afterwards.
        assert_eq!(run_guarded(&c, &Request::new("SELECT 1", 1)).unwrap().rows.len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_writer_answers_on_its_socket_and_the_file_is_read_directly_without_it() {
        let (_dir, path) = temp_file("socket");
        let c = writer(&path);
        let socket = socket_path(&path);
        let server = Server::start(c.try_clone().unwrap(), &socket).unwrap();
        assert!(fintrail_db::home::owner_only::is_owner_only(&socket).unwrap());
        let p = path.clone();
        let r = tokio::task::spawn_blocking(move || query(&p, &Request::new("SELECT count(*) AS n FROM t", 10)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.rows, vec![vec![Some("5".to_owned())]]);
        // The writer commits; the next query sees it.
        c.execute_batch("INSERT INTO t VALUES (5, 'n5')").unwrap();
        let p = path.clone();
        let (r, e) = tokio::task::spawn_blocking(move || {
            (query(&p, &Request::new("SELECT count(*) FROM t", 10)), query(&p, &Request::new("DELETE FROM t", 10)))
        })
        .await
        .unwrap();
        assert_eq!(r.unwrap().rows, vec![vec![Some("6".to_owned())]]);
        assert!(e.unwrap_err().to_string().starts_with("refused:"));
        // Garbage and oversized requests are refused, and the server goes on.
        let s2 = socket.clone();
        let e = tokio::task::spawn_blocking(move || {
            let mut s = std::os::unix::net::UnixStream::connect(&s2).unwrap();
            s.write_all(&vec![b'x'; REQUEST_BYTES_MAX + 10]).unwrap();
            read_answer(s)
        })
        .await
        .unwrap();
        assert!(e.unwrap_err().to_string().contains("longer than"));
        drop(server);
        assert!(!socket.exists(), "the socket goes with the server");
        drop(c);
        let p = path.clone();
        let r = tokio::task::spawn_blocking(move || query(&p, &Request::new("SELECT count(*) FROM t", 10)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.rows, vec![vec![Some("6".to_owned())]], "read from the file directly");
        let e = query(&path.with_file_name("missing.duckdb"), &Request::new("SELECT 1", 1)).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
    }
}
