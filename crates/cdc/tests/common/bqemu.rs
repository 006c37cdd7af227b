//! bqemulator (a BigQuery emulator backed by DuckDB) for the BigQuery sink's tests: each test
//! starts its own on a random port and it is killed when the handle drops. `./dev setup`
//! installs it (pinned by version and sha256) under `.deps/bqemulator`; `FINTRAIL_BQEMULATOR`
//! names another install.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use fintrail_cdc::sink::bigquery::{Auth, Client, Config, Rows};

pub const PROJECT: &str = "fintrail-test";

pub struct Emulator {
    child: Child,
    pub endpoint: String,
}

fn install_dir() -> PathBuf {
    match std::env::var_os("FINTRAIL_BQEMULATOR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../.deps/bqemulator")),
    }
}

impl Emulator {
    /// Starts bqemulator and waits until its REST API listens.
    pub fn start() -> Emulator {
        Self::start_from(&install_dir())
    }

    /// `start`, with bqemulator installed in `dir` (`venv/` inside).
    pub fn start_from(dir: &std::path::Path) -> Emulator {
        let python = dir.join("venv/bin/python");
        assert!(python.exists(), "bqemulator is not installed ({} is missing): run ./dev setup", python.display());
        let launcher = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bqemulator/launch.py");
        let mut child = Command::new(&python)
            .args([launcher, "start", "--rest-port", "0", "--grpc-port", "0", "--project", PROJECT])
            .args(["--log-format", "json", "--log-level", "info", "--ephemeral"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start bqemulator ({}): {e}; run ./dev setup", python.display()));
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = mpsc::channel::<Result<u16, String>>();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut sent = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if !sent {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                        if v["event"] == "rest.listen" {
                            if let Some(p) = v["port"].as_u64() {
                                let _ = tx.send(Ok(p as u16));
                                sent = true;
                                continue;
                            }
                        }
                    }
                    if !line.contains("rule_names") {
                        seen.push(line);
                    }
                }
                // Keep draining (a full pipe would stall the emulator).
            }
            if !sent {
                let _ = tx.send(Err(seen.join("\n")));
            }
        });
        let port = match rx.recv_timeout(Duration::from_secs(180)) {
            Ok(Ok(p)) => p,
            Ok(Err(log)) => {
                let _ = child.kill();
                panic!("bqemulator exited before listening (run ./dev setup?):\n{log}")
            }
            Err(_) => {
                let _ = child.kill();
                panic!("bqemulator did not listen within 180 s")
            }
        };
        Emulator { child, endpoint: format!("http://127.0.0.1:{port}") }
    }

    /// The sink's configuration for `dataset` on this emulator (the dataset is created).
    pub fn dataset(&self, dataset: &str) -> Config {
        let body = serde_json::json!({"datasetReference": {"projectId": PROJECT, "datasetId": dataset}});
        let url = format!("{}/bigquery/v2/projects/{PROJECT}/datasets", self.endpoint);
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let resp = agent.post(&url).content_type("application/json").send(body.to_string()).expect("datasets.insert");
        assert!(resp.status().as_u16() < 300 || resp.status().as_u16() == 409, "datasets.insert: {}", resp.status());
        Config { project: PROJECT.into(), dataset: dataset.into(), endpoint: self.endpoint.clone(), auth: Auth::None }
    }

    /// The environment `fintrail cdc run --sink bigquery` reads for `dataset`.
    pub fn env(&self, dataset: &str) -> Vec<(String, String)> {
        vec![
            ("FINTRAIL_CDC_SINK".into(), "bigquery".into()),
            ("FINTRAIL_BIGQUERY_ENDPOINT".into(), self.endpoint.clone()),
            ("FINTRAIL_BIGQUERY_PROJECT".into(), PROJECT.into()),
            ("FINTRAIL_BIGQUERY_DATASET".into(), dataset.into()),
        ]
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A query's rows (every value as text), read with a client of its own.
pub fn bq_rows(cfg: &Config, sql: &str) -> Rows {
    Client::new(cfg.clone()).query(sql).unwrap_or_else(|e| panic!("{sql}: {e:#}"))
}

pub fn bq_i64(cfg: &Config, sql: &str) -> i64 {
    bq_rows(cfg, sql)[0][0].as_deref().expect("a value").parse().expect("an integer")
}

/// Column names of a table (empty when it does not exist).
pub fn bq_columns(cfg: &Config, table: &str) -> Vec<String> {
    Client::new(cfg.clone())
        .table_columns(table)
        .expect("tables.get")
        .unwrap_or_default()
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}
