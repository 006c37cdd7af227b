//! Crash stress test of the ledger: `fintrail serve` as a separate process, 32 concurrent
//! clients with a skewed wallet choice (most transfers credit one hot wallet), 10% of requests
//! retried with the same Idempotency-Key, and the server SIGKILLed at random moments and
//! restarted. Requests whose outcome was lost in a crash are retried after the restart with
//! the same key and body. Afterwards: the ledger check passes, no key was applied twice, and
//! every acknowledged transfer is in the database exactly as acknowledged.
//!
//! Replayable: every request (key, wallets, amount, whether it is sent twice) and every kill
//! delay is drawn up front from one seed into a [`Plan`]. The seed comes from
//! `FINTRAIL_TEST_SEED` or is drawn and printed with its replay command when the test fails;
//! `a_printed_seed_replays_the_same_operations` proves the round trip on the real binary.
//!
//! Deterministic outcome: the funding is computed from the plan, so no funded wallet can run
//! dry whatever the interleaving, and one "dry" wallet (balance 1, never credited, every
//! amount >= 2) is refused every time. So exactly the planned refusals are refused.

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
/// Funded wallets; wallet 0 is the hot one (60% of the credits, never debited).
const WALLETS: usize = 16;
const CRASHES: usize = 5;
const REQUESTS_PER_CLIENT_MAX: usize = 40;
const HTTP_TIMEOUT_MS: u64 = 5_000;
/// A loaded 2-core CI box may take long to start a server next to 32 busy clients.
const SERVER_START_SECS_MAX: u64 = 60;
const AMOUNT_MINOR_MAX: u64 = 3_000;
/// The dry wallet's balance: below every planned amount, so its transfers are always refused.
const DRY_FUNDING_MINOR: i64 = 1;
/// Set by `a_printed_seed_replays_the_same_operations` only: the stress test prints its plan's
/// digest and fails before it touches a database, as a real failure would after its seed line.
const PLAN_ONLY_ENV: &str = "FINTRAIL_LEDGER_STRESS_PLAN_ONLY";
const STRESS_TEST: &str = "sigkilled_server_never_loses_or_duplicates_money";

/// xorshift64: deterministic enough, no dependency.
struct Rng(u64);
impl Rng {
    fn new(seed: u64) -> Rng {
        // xorshift never leaves 0.
        Rng(seed | 1)
    }
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

/// Where a transfer's money comes from: a funded wallet (1..WALLETS) or the dry one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Debit {
    Funded(usize),
    Dry,
}

/// One planned request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Op {
    key: String,
    from: Debit,
    /// Index into the funded wallets.
    to: usize,
    amount_minor: i64,
    /// 1, or 2 when the request is retried with the same key.
    sends: u8,
}

/// Everything the seed implies: per cycle, the delay before the kill (none in the last
/// cycle) and each client's requests. A client sends a prefix of its list: the kill ends it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Plan {
    cycles: Vec<(Option<u64>, Vec<Vec<Op>>)>,
}

impl Plan {
    fn new(seed: &fintrail_testseed::Seed) -> Plan {
        let mut cycles = Vec::new();
        for crash in 0..=CRASHES {
            let kill_after_ms = (crash < CRASHES).then(|| 300 + Rng::new(seed.derive(crash as u64)).below(1_200));
            let mut clients = Vec::new();
            for c in 0..CLIENTS {
                let mut rng = Rng::new(seed.derive((1 + crash * CLIENTS + c) as u64 * 1_000));
                let ops = (0..REQUESTS_PER_CLIENT_MAX)
                    .map(|i| {
                        // Skewed: 60% credit the hot wallet 0; 1 in 20 comes from the dry wallet.
                        let to = if rng.below(10) < 6 { 0 } else { rng.below(WALLETS as u64) as usize };
                        let from = if rng.below(20) == 0 {
                            Debit::Dry
                        } else {
                            // Any funded wallet but `to`.
                            let f = 1 + rng.below(WALLETS as u64 - 1) as usize;
                            Debit::Funded(if f == to { 1 + f % (WALLETS - 1) } else { f })
                        };
                        let amount_minor = 2 + rng.below(AMOUNT_MINOR_MAX - 1) as i64;
                        let sends = if rng.below(10) == 0 { 2 } else { 1 };
                        Op { key: format!("k{crash}-{c}-{i}"), from, to, amount_minor, sends }
                    })
                    .collect();
                clients.push(ops);
            }
            cycles.push((kill_after_ms, clients));
        }
        Plan { cycles }
    }

    fn ops(&self) -> impl Iterator<Item = &Op> {
        self.cycles.iter().flat_map(|(_, clients)| clients.iter().flatten())
    }

    /// Opening balance of every funded wallet: the most any one of them could be debited if
    /// every planned request were posted, so no interleaving can make one run dry.
    fn funding_minor(&self) -> i64 {
        let mut debits = [0i64; WALLETS];
        for op in self.ops() {
            if let Debit::Funded(f) = op.from {
                debits[f] += op.amount_minor;
            }
        }
        debits.into_iter().max().unwrap_or(0).max(1)
    }

    /// A digest of the whole plan (printed; compared across runs of the same binary, which is
    /// all it is for: std's default hasher has fixed keys but no cross-version guarantee).
    fn digest(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.hash(&mut h);
        format!("{:016x}", h.finish())
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

/// `db_env`: `DATABASE_URL` and the TLS settings (`Database::child_env`).
async fn start_server(
    db_env: &[(&'static str, String)],
    app_password: &str,
    home: &std::path::Path,
    addr: SocketAddr,
) -> Server {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_fintrail"))
        .args(["serve", "--listen", &addr.to_string(), "--checkpoint-interval-secs", "0"])
        .envs(db_env.iter().cloned())
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
    let deadline = Instant::now() + Duration::from_secs(SERVER_START_SECS_MAX);
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
    let seed = fintrail_testseed::seed!();
    let plan = Plan::new(&seed);
    let funding_minor = plan.funding_minor();
    eprintln!("ledger stress plan {} (funding {funding_minor} per wallet)", plan.digest());
    assert!(std::env::var_os(PLAN_ONLY_ENV).is_none(), "{PLAN_ONLY_ENV} is set: stopping after the plan");
    let planned_refusals: std::collections::HashSet<&str> =
        plan.ops().filter(|op| op.from == Debit::Dry).map(|op| op.key.as_str()).collect();

    let db = fresh_db().await;
    let wallets = fintrail_tooling::fixtures::funded_wallets(&db, WALLETS, funding_minor).await.unwrap();
    let dry = fintrail_tooling::fixtures::funded_wallets(&db, 1, DRY_FUNDING_MINOR).await.unwrap()[0];
    let token = fintrail_tooling::fixtures::token(&db, fintrail_domain::Role::Admin, None).await.unwrap();
    let db_env = db.child_env(DbRole::Admin);
    let app_password = db.params(DbRole::App).password.unwrap_or_default();
    let home = std::env::temp_dir().join(format!("fintrail-ledger-stress-{}", std::process::id()));
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();

    let sent: Arc<Mutex<HashMap<String, Sent>>> = Arc::new(Mutex::new(HashMap::new()));
    let wallets = Arc::new(wallets);
    let token = Arc::new(token);
    let body_of = {
        let wallets = wallets.clone();
        move |op: &Op| {
            let from = match op.from {
                Debit::Funded(f) => wallets[f],
                Debit::Dry => dry,
            };
            json!({ "from_wallet_id": from, "to_wallet_id": wallets[op.to],
                "amount_minor": op.amount_minor, "currency": "EUR" })
        }
    };
    for (crash, (kill_after_ms, clients)) in plan.cycles.iter().enumerate() {
        let mut server = start_server(&db_env, &app_password, &home, addr).await;
        // Clients run until the kill (the last cycle runs to completion without a kill).
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for ops in clients {
            let (sent, token, stop) = (sent.clone(), token.clone(), stop.clone());
            let requests: Vec<(Op, Value)> = ops.iter().map(|op| (op.clone(), body_of(op))).collect();
            tasks.push(tokio::spawn(async move {
                for (op, body) in requests {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let key = op.key;
                    sent.lock().await.insert(key.clone(), Sent { body: body.clone(), acked: None, refused: None });
                    for _ in 0..op.sends {
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
        if let Some(ms) = kill_after_ms {
            tokio::time::sleep(Duration::from_millis(*ms)).await;
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
    let report = fintrail_ledger::check::run(&mut app).await.unwrap();
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
    assert_eq!(total, funding_minor * WALLETS as i64 + DRY_FUNDING_MINOR, "money is conserved");
    // Exactly what the plan implies: every sent request from the dry wallet refused, every
    // other one posted (funding covers any interleaving).
    for (key, s) in sent.iter() {
        let dry = planned_refusals.contains(key.as_str());
        assert_eq!(
            (s.acked.is_some(), s.refused.is_some()),
            (!dry, dry),
            "{key}: posted {} refused {:?}, planned {}",
            s.acked.is_some(),
            s.refused,
            if dry { "refused (dry wallet)" } else { "posted" }
        );
    }
    let refused = sent.values().filter(|s| s.refused.is_some()).count();
    eprintln!(
        "ledger stress: {} requests, {} acknowledged, {refused} refused (insufficient funds), {} crashes",
        sent.len(),
        acked.len(),
        CRASHES
    );
    let _ = std::fs::remove_dir_all(&home);
}

/// The replay contract, end to end on this very test binary: run the stress test so that it
/// fails right after drawing its plan, take the seed out of the failure output, run it again
/// with `FINTRAIL_TEST_SEED` set to that seed, and get the same plan; another seed gives
/// another plan.
#[test]
fn a_printed_seed_replays_the_same_operations() {
    fn run(seed: Option<u64>) -> (String, String) {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args([STRESS_TEST, "--exact", "--test-threads=1"]).env(PLAN_ONLY_ENV, "1");
        match seed {
            Some(s) => cmd.env(fintrail_testseed::ENV, s.to_string()),
            None => cmd.env_remove(fintrail_testseed::ENV),
        };
        let out = cmd.output().expect("the test binary runs");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success(), "the plan-only run must fail like a real failure:\n{text}");
        let digest = text
            .lines()
            .find_map(|l| {
                l.split_once("ledger stress plan ").map(|(_, r)| r.split_whitespace().next().unwrap_or("").to_string())
            })
            .unwrap_or_else(|| panic!("no plan digest in:\n{text}"));
        (text, digest)
    }
    let (first, digest) = run(None);
    let seed = fintrail_testseed::find_in(&first).unwrap_or_else(|| panic!("no seed in the failure output:\n{first}"));
    let command = format!("--test ledger_stress -- {STRESS_TEST} --exact");
    assert!(first.contains(&command), "the failure prints the replay command ({command}):\n{first}");
    let (again, replayed) = run(Some(seed));
    assert_eq!(replayed, digest, "the same seed replays the same operations:\n{again}");
    assert_eq!(fintrail_testseed::find_in(&again), Some(seed));
    let (_, other) = run(Some(seed ^ 1));
    assert_ne!(other, digest, "another seed gives other operations");
}

#[test]
fn the_plan_implies_its_outcome() {
    let seed = fintrail_testseed::seed!();
    let plan = Plan::new(&seed);
    assert_eq!(plan, Plan::new(&fintrail_testseed::Seed::fixed(seed.value(), String::new())));
    let funding = plan.funding_minor();
    for op in plan.ops() {
        assert!(op.amount_minor > DRY_FUNDING_MINOR && op.amount_minor <= AMOUNT_MINOR_MAX as i64);
        assert!(op.to < WALLETS && op.from != Debit::Funded(op.to) && op.from != Debit::Funded(0));
        assert!(op.sends == 1 || op.sends == 2);
    }
    // Funding covers the heaviest-debited wallet.
    for w in 1..WALLETS {
        let debits: i64 = plan.ops().filter(|op| op.from == Debit::Funded(w)).map(|op| op.amount_minor).sum();
        assert!(debits <= funding, "wallet {w}: {debits} > {funding}");
    }
    let dry = plan.ops().filter(|op| op.from == Debit::Dry).count();
    assert!(dry > 0 && dry < plan.ops().count() / 10, "some, not many, planned refusals: {dry}");
}
