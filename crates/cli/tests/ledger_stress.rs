//! Crash stress test of the ledger: `fintrail serve` as a separate process, 32 concurrent
//! clients with a skewed wallet choice (most transfers credit one hot wallet), 10% of requests
//! retried with the same Idempotency-Key, and the server SIGKILLed at random moments and
//! restarted. Requests whose outcome was lost in a crash are retried after the restart with
//! the same key and body. Afterwards: the ledger check passes, no key was applied twice, and
//! every acknowledged transfer is in the database exactly as acknowledged.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fintrail_db::testing::fresh_db;
use fintrail_db::DbRole;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;

const CLIENTS: usize = 32;
const WALLETS: usize = 16;
const CRASHES: usize = 5;
const HTTP_TIMEOUT_MS: u64 = 5_000;
/// Opening balance of every wallet: the hot wallet is never debited, so money drains into it;
/// at 200 000 the others run dry only after ~3 000 transfers (~1 500 minor units each), so most
/// requests are posted under the crashes and the late ones meet insufficient funds (3 runs:
/// 2 909-3 266 posted, 94-1 267 refused). At 20 000 they drained early: ~12 % were posted.
const FUNDING_MINOR: i64 = 200_000;

/// xorshift64: deterministic enough, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`).
async fn http(addr: SocketAddr, path: &str, token: &str, key: &str, body: &Value) -> Result<(u16, Value), String> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let body = body.to_string();
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nIdempotency-Key: {key}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&buf);
        let status: u16 = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or("no status line")?;
        let (_, payload) = text.split_once("\r\n\r\n").ok_or("no body")?;
        // Tolerate chunked encoding: take the JSON object inside.
        let start = payload.find('{').unwrap_or(0);
        let end = payload.rfind('}').map(|e| e + 1).unwrap_or(payload.len());
        let v: Value = serde_json::from_str(&payload[start..end]).map_err(|e| format!("{e}: {payload}"))?;
        Ok((status, v))
    };
    tokio::time::timeout(Duration::from_millis(HTTP_TIMEOUT_MS), fut).await.map_err(|_| "timeout".to_string())?
}

async fn healthy(addr: SocketAddr) -> bool {
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else { return false };
    let req = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    buf.starts_with(b"HTTP/1.1 200")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Server {
    child: tokio::process::Child,
}

async fn start_server(url: &str, app_password: &str, home: &std::path::Path, addr: SocketAddr) -> Server {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_fintrail"))
        .args(["serve", "--listen", &addr.to_string(), "--checkpoint-interval-secs", "0"])
        .env("DATABASE_URL", url)
        .env("FINTRAIL_APP_PASSWORD", app_password)
        .env("FINTRAIL_HOME", home)
        .env("FINTRAIL_LOG_FORMAT", "json")
        .env("RUST_LOG", "error")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("fintrail serve starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !healthy(addr).await {
        assert!(Instant::now() < deadline, "fintrail serve did not become healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Server { child }
}

/// A request and what we know of it.
#[derive(Debug, Clone)]
struct Sent {
    body: Value,
    /// The acknowledged transfer (201), if any.
    acked: Option<Value>,
    /// Refused with this code (a definite 4xx).
    refused: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkilled_server_never_loses_or_duplicates_money() {
    let db = fresh_db().await;
    let wallets = fintrail_api::ledger::fixtures::funded_wallets(&db, WALLETS, FUNDING_MINOR).await.unwrap();
    let token = fintrail_api::ledger::fixtures::token(&db, fintrail_domain::Role::Admin, None).await.unwrap();
    let url = db.url(DbRole::Admin);
    let app_password = db.params(DbRole::App).password.unwrap_or_default();
    let home = std::env::temp_dir().join(format!("fintrail-ledger-stress-{}", std::process::id()));
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("ledger stress seed {seed}");

    let sent: Arc<Mutex<HashMap<String, Sent>>> = Arc::new(Mutex::new(HashMap::new()));
    let wallets = Arc::new(wallets);
    let token = Arc::new(token);
    let mut rng = Rng(seed);
    for crash in 0..=CRASHES {
        let mut server = start_server(&url, &app_password, &home, addr).await;
        // Clients run until the kill (the last cycle runs to completion without a kill).
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            let (sent, wallets, token, stop) = (sent.clone(), wallets.clone(), token.clone(), stop.clone());
            let mut rng = Rng(seed ^ ((crash * CLIENTS + c) as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            tasks.push(tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 40 {
                    // Skewed: 60% credit the hot wallet 0.
                    let to = if rng.below(10) < 6 { 0 } else { rng.below(WALLETS as u64) as usize };
                    let from = 1 + rng.below(WALLETS as u64 - 1) as usize;
                    if from == to {
                        continue;
                    }
                    let key = format!("k{crash}-{c}-{i}");
                    i += 1;
                    let body = json!({ "from_wallet_id": wallets[from], "to_wallet_id": wallets[to],
                        "amount_minor": 1 + rng.below(3_000) as i64, "currency": "EUR" });
                    sent.lock().await.insert(key.clone(), Sent { body: body.clone(), acked: None, refused: None });
                    let tries = if rng.below(10) == 0 { 2 } else { 1 };
                    for _ in 0..tries {
                        match http(addr, "/v1/transfers", &token, &key, &body).await {
                            Ok((201, v)) => {
                                let mut s = sent.lock().await;
                                let e = s.get_mut(&key).unwrap();
                                if let Some(prev) = &e.acked {
                                    assert_eq!(prev, &v, "a retry returned another result for {key}");
                                }
                                e.acked = Some(v);
                            }
                            Ok((409, v)) if v["code"] == "insufficient_funds" => {
                                sent.lock().await.get_mut(&key).unwrap().refused = Some("insufficient_funds".into());
                            }
                            Ok((s, v)) => panic!("unexpected {s} {v} for {key}"),
                            Err(_) => {} // the server died: outcome unknown, resolved later
                        }
                    }
                }
            }));
        }
        if crash < CRASHES {
            tokio::time::sleep(Duration::from_millis(300 + rng.below(1_200))).await;
            server.child.start_kill().unwrap(); // SIGKILL
            let _ = server.child.wait().await;
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        for t in tasks {
            t.await.unwrap();
        }
        if crash == CRASHES {
            // Resolve every request whose outcome a crash swallowed: same key, same body.
            let pending: Vec<(String, Value)> = sent
                .lock()
                .await
                .iter()
                .filter(|(_, s)| s.acked.is_none() && s.refused.is_none())
                .map(|(k, s)| (k.clone(), s.body.clone()))
                .collect();
            eprintln!("resolving {} requests with unknown outcome", pending.len());
            for (key, body) in pending {
                match http(addr, "/v1/transfers", &token, &key, &body).await {
                    Ok((201, v)) => sent.lock().await.get_mut(&key).unwrap().acked = Some(v),
                    Ok((409, v)) if v["code"] == "insufficient_funds" => {
                        sent.lock().await.get_mut(&key).unwrap().refused = Some("insufficient_funds".into())
                    }
                    other => panic!("resolving {key}: {other:?}"),
                }
            }
            server.child.start_kill().unwrap();
            let _ = server.child.wait().await;
        }
    }

    // Invariants.
    let mut app = db.connect(DbRole::App).await.unwrap();
    let report = fintrail_api::ledger::check::run(&mut app).await.unwrap();
    assert!(report.ok(), "{:?}", report.violations);
    let dup: i64 = app
        .query_one(
            "SELECT count(*) FROM (SELECT actor, idempotency_key FROM fintrail.transfers WHERE kind = 'transfer' \
             GROUP BY 1, 2 HAVING count(*) > 1) d",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(dup, 0, "an idempotency key was applied twice");
    let sent = sent.lock().await;
    let acked: Vec<&Value> = sent.values().filter_map(|s| s.acked.as_ref()).collect();
    for v in &acked {
        let row = app
            .query_opt(
                "SELECT amount_minor, debit_wallet_id, credit_wallet_id FROM fintrail.transfers WHERE id = $1",
                &[&v["id"].as_i64().unwrap()],
            )
            .await
            .unwrap()
            .expect("an acknowledged transfer is missing");
        assert_eq!(
            (row.get::<_, i64>(0), row.get::<_, i64>(1), row.get::<_, i64>(2)),
            (
                v["amount_minor"].as_i64().unwrap(),
                v["debit_wallet_id"].as_i64().unwrap(),
                v["credit_wallet_id"].as_i64().unwrap()
            )
        );
    }
    let n: i64 =
        app.query_one("SELECT count(*) FROM fintrail.transfers WHERE kind = 'transfer'", &[]).await.unwrap().get(0);
    assert_eq!(
        n as usize,
        acked.len(),
        "every transfer in the database was acknowledged (after resolution) exactly once"
    );
    let total: i64 = app
        .query_one("SELECT sum(balance_minor)::bigint FROM fintrail.wallets WHERE kind = 'customer'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, FUNDING_MINOR * WALLETS as i64, "money is conserved");
    let refused = sent.values().filter(|s| s.acked.is_none() && s.refused.is_some()).count();
    assert!(acked.len() > refused, "most transfers are posted ({} posted, {refused} refused)", acked.len());
    eprintln!(
        "ledger stress: {} requests, {} acknowledged, {refused} refused (insufficient funds), {} crashes",
        sent.len(),
        acked.len(),
        CRASHES
    );
    let _ = std::fs::remove_dir_all(&home);
}
