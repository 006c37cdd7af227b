//! The ledger over real HTTP on 127.0.0.1 against a real PostgreSQL: wallets, deposits,
//! transfers, idempotency, bad input (each refused with a JSON error and nothing written),
//! reversals, holds, statements, and concurrency with a hot account.

use std::sync::Arc;

use fintrail_api::{start_with, AppConfig, ServerHandle};
use fintrail_db::testing::{fresh_db, TestDb};
use fintrail_db::DbRole;
use fintrail_domain::{KycState, Role};
use fintrail_tooling::fixtures;
use serde_json::{json, Value};

struct Env {
    _db: TestDb,
    server: ServerHandle,
    http: reqwest::Client,
    base: String,
    admin: String,
    db: fintrail_db::Database,
    /// The server's home (keys, media), removed when the test ends; dropped after the server.
    _home: tempfile::TempDir,
}

async fn env() -> Env {
    let db = fresh_db().await;
    let home_dir = tempfile::Builder::new().prefix("fintrail-ledger-test-").tempdir().unwrap();
    let home = fintrail_db::Home::new(home_dir.path()).unwrap();
    let ctx = fintrail_db::Context::new(db.database().clone(), home);
    let config = AppConfig { checkpoint_interval_secs: 0, ..AppConfig::default() };
    let server = start_with(&ctx, "127.0.0.1:0".parse().unwrap(), config).await.unwrap();
    let base = format!("http://{}", server.local_addr());
    let admin = fixtures::token(&db, Role::Admin, None).await.unwrap();
    Env { db: db.database().clone(), _db: db, _home: home_dir, server, http: reqwest::Client::new(), base, admin }
}

impl Env {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value, bool) {
        let mut rb = self.http.request(method.parse().unwrap(), format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(k) = key {
            rb = rb.header("Idempotency-Key", k);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let res = rb.send().await.unwrap();
        let status = res.status().as_u16();
        let replayed = res.headers().get("idempotent-replayed").is_some();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)), replayed)
    }
    async fn post(&self, path: &str, token: &str, key: &str, body: Value) -> (u16, Value) {
        let (s, v, _) = self.call("POST", path, token, Some(key), Some(body)).await;
        (s, v)
    }
    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let (s, v, _) = self.call("GET", path, token, None, None).await;
        (s, v)
    }
    async fn open(&self, customer: i64, currency: &str) -> i64 {
        let (s, v, _) = self
            .call(
                "POST",
                "/v1/wallets",
                &self.admin,
                None,
                Some(json!({ "customer_id": customer, "currency": currency })),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        v["id"].as_i64().unwrap()
    }
    async fn deposit(&self, wallet: i64, amount: i64) {
        let key = format!("dep-{wallet}-{amount}-{}", unique_suffix());
        let (s, v) = self
            .post(
                "/v1/deposits",
                &self.admin,
                &key,
                json!({ "wallet_id": wallet, "amount_minor": amount, "currency": "EUR" }),
            )
            .await;
        assert_eq!(s, 201, "{v}");
    }
    async fn balance(&self, wallet: i64) -> i64 {
        let (s, v) = self.get(&format!("/v1/wallets/{wallet}"), &self.admin).await;
        assert_eq!(s, 200, "{v}");
        v["balance_minor"].as_i64().unwrap()
    }
    async fn counts(&self) -> (i64, i64, i64) {
        let c = self.db.connect(DbRole::App).await.unwrap();
        let r = c
            .query_one(
                "SELECT (SELECT count(*) FROM fintrail.transfers), (SELECT count(*) FROM fintrail.entries), \
                 (SELECT count(*) FROM fintrail.idempotency_keys)",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    }
    async fn check(&self) {
        let mut c = self.db.connect(DbRole::App).await.unwrap();
        let report = fintrail_ledger::check::run(&mut c).await.unwrap();
        assert!(report.ok(), "{:?}", report.violations);
    }
}

/// A suffix unique within this test process (keys, folder names): a counter, not a random
/// number, so a run is replayable.
fn unique_suffix() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

#[tokio::test]
async fn transfers_are_idempotent_audited_and_leave_a_balanced_ledger() {
    let e = env().await;
    let c = fixtures::approved_customers(&e.db, 2).await.unwrap();
    let (a, b) = (e.open(c[0], "EUR").await, e.open(c[1], "EUR").await);
    e.deposit(a, 10_000).await;
    let body = json!({ "from_wallet_id": a, "to_wallet_id": b, "amount_minor": 2_500, "currency": "EUR" });
    let (s1, t1, r1) = e.call("POST", "/v1/transfers", &e.admin, Some("t-1"), Some(body.clone())).await;
    assert_eq!((s1, r1), (201, false), "{t1}");
    // Same key, same body (different JSON spelling): the original result, not a second transfer.
    let respelled = json!({ "currency": "EUR", "amount_minor": 2_500, "to_wallet_id": b, "from_wallet_id": a });
    let (s2, t2, r2) = e.call("POST", "/v1/transfers", &e.admin, Some("t-1"), Some(respelled)).await;
    assert_eq!((s2, r2), (201, true));
    assert_eq!(t1, t2);
    // Same key, different body: 409, nothing written.
    let before = e.counts().await;
    let other = json!({ "from_wallet_id": a, "to_wallet_id": b, "amount_minor": 2_600, "currency": "EUR" });
    let (s3, v3) = e.post("/v1/transfers", &e.admin, "t-1", other).await;
    assert_eq!((s3, v3["code"].as_str()), (409, Some("idempotency_key_reused")), "{v3}");
    assert_eq!(e.counts().await, before);
    // Keys are scoped per principal: another principal may use "t-1".
    let cust = fixtures::token(&e.db, Role::Customer, Some(c[0])).await.unwrap();
    let (s4, v4) = e.post("/v1/me/transfers", &cust, "t-1", body.clone()).await;
    assert_eq!(s4, 201, "{v4}");
    assert_ne!(v4["id"], t1["id"]);
    assert_eq!(e.balance(a).await, 5_000);
    assert_eq!(e.balance(b).await, 5_000);
    // The transfer's audit event is in the trail.
    let app = e.db.connect(DbRole::App).await.unwrap();
    let n: i64 = app
        .query_one(
            "SELECT count(*) FROM fintrail.audit_events WHERE action = 'ledger.transfer.posted' AND subject = $1 AND permission = 'wallet.transfer.create'",
            &[&format!("transfer:{}", t1["id"])],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    // Statement: running balances, paginated.
    let (s, st) = e.get(&format!("/v1/wallets/{a}/entries?limit=2"), &e.admin).await;
    assert_eq!(s, 200, "{st}");
    let lines: Vec<(i64, i64)> = st["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["amount_minor"].as_i64().unwrap(), l["balance_after_minor"].as_i64().unwrap()))
        .collect();
    assert_eq!(lines, vec![(10_000, 10_000), (-2_500, 7_500)]);
    let next = st["next_after"].as_i64().unwrap();
    let (_, st2) = e.get(&format!("/v1/wallets/{a}/entries?limit=2&after={next}"), &e.admin).await;
    assert_eq!(st2["entries"][0]["balance_after_minor"], 5_000);
    assert!(st2["next_after"].is_null());
    // The customer sees their own statement, not another's.
    assert_eq!(e.get(&format!("/v1/me/wallets/{a}/entries"), &cust).await.0, 200);
    assert_eq!(e.get(&format!("/v1/me/wallets/{b}/entries"), &cust).await.0, 404);
    e.check().await;
    e.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_input_is_refused_with_json_errors_and_writes_nothing() {
    let e = env().await;
    let c = fixtures::approved_customers(&e.db, 2).await.unwrap();
    let (a, b) = (e.open(c[0], "EUR").await, e.open(c[1], "EUR").await);
    let usd = e.open(c[1], "USD").await;
    e.deposit(a, 1_000).await;
    let cust_b = fixtures::token(&e.db, Role::Customer, Some(c[1])).await.unwrap();
    let before = e.counts().await;
    let t = |from: i64, to: i64, amount: Value, cur: &str| json!({ "from_wallet_id": from, "to_wallet_id": to, "amount_minor": amount, "currency": cur });
    let cases: Vec<(&str, &str, Value, u16, &str)> = vec![
        ("negative amount", "/v1/transfers", t(a, b, json!(-5), "EUR"), 422, "invalid_request"),
        ("zero amount", "/v1/transfers", t(a, b, json!(0), "EUR"), 422, "invalid_request"),
        (
            "amount above the limit",
            "/v1/transfers",
            t(a, b, json!(1_000_000_000_000_001i64), "EUR"),
            422,
            "invalid_request",
        ),
        ("fractional amount", "/v1/transfers", t(a, b, json!(1.5), "EUR"), 422, "unprocessable"),
        ("currency mismatch", "/v1/transfers", t(a, usd, json!(5), "EUR"), 409, "currency_mismatch"),
        ("wrong request currency", "/v1/transfers", t(a, b, json!(5), "USD"), 409, "currency_mismatch"),
        ("malformed currency", "/v1/transfers", t(a, b, json!(5), "eur"), 422, "invalid_request"),
        ("unknown wallet", "/v1/transfers", t(a, 999_999, json!(5), "EUR"), 404, "not_found"),
        ("same wallet", "/v1/transfers", t(a, a, json!(5), "EUR"), 409, "same_wallet"),
        ("insufficient funds", "/v1/transfers", t(a, b, json!(1_001), "EUR"), 409, "insufficient_funds"),
        (
            "withdraw more than the balance",
            "/v1/withdrawals",
            json!({ "wallet_id": b, "amount_minor": 1, "currency": "EUR" }),
            409,
            "insufficient_funds",
        ),
        (
            "deposit to an unknown wallet",
            "/v1/deposits",
            json!({ "wallet_id": 999_999, "amount_minor": 1, "currency": "EUR" }),
            404,
            "not_found",
        ),
    ];
    for (i, (what, path, body, status, code)) in cases.into_iter().enumerate() {
        let (s, v) = e.post(path, &e.admin, &format!("bad-{i}"), body).await;
        assert_eq!((s, v["code"].as_str()), (status, Some(code)), "{what}: {v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {v}");
    }
    // An amount that does not fit in i64 (raw JSON: serde_json cannot even build it).
    let raw =
        format!(r#"{{"from_wallet_id":{a},"to_wallet_id":{b},"amount_minor":92233720368547758070,"currency":"EUR"}}"#);
    let res = e
        .http
        .post(format!("{}/v1/transfers", e.base))
        .bearer_auth(&e.admin)
        .header("Idempotency-Key", "overflow")
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 422);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["code"], "unprocessable", "{v}");
    // Wrong owner: customer B moves money out of A's wallet.
    let (s, v) = e.post("/v1/me/transfers", &cust_b, "steal", t(a, b, json!(5), "EUR")).await;
    assert_eq!((s, v["code"].as_str()), (404, Some("not_found")), "{v}");
    // No Idempotency-Key, malformed key.
    let (s, v, _) = e.call("POST", "/v1/transfers", &e.admin, None, Some(t(a, b, json!(5), "EUR"))).await;
    assert_eq!((s, v["code"].as_str()), (400, Some("idempotency_key_required")));
    let (s, _) = e.post("/v1/transfers", &e.admin, "has space", t(a, b, json!(5), "EUR")).await;
    assert_eq!(s, 400);
    // Unknown field, missing field.
    let (s, _) = e
        .post(
            "/v1/transfers",
            &e.admin,
            "x1",
            json!({ "from_wallet_id": a, "to_wallet_id": b, "amount_minor": 5, "currency": "EUR", "fee": 1 }),
        )
        .await;
    assert_eq!(s, 422);
    let (s, _) = e
        .post("/v1/transfers", &e.admin, "x2", json!({ "from_wallet_id": a, "amount_minor": 5, "currency": "EUR" }))
        .await;
    assert_eq!(s, 422);
    // A customer token cannot use staff routes (403) and nothing moved.
    assert_eq!(e.post("/v1/transfers", &cust_b, "x3", t(a, b, json!(5), "EUR")).await.0, 403);
    assert_eq!(e.counts().await, before, "refused requests wrote nothing");
    assert_eq!(e.balance(a).await, 1_000);
    // A refused request does not consume its key: the same key works once funds exist.
    e.deposit(a, 1).await;
    let (s, v) = e.post("/v1/transfers", &e.admin, "bad-10", t(a, b, json!(1_001), "EUR")).await;
    assert_eq!(s, 201, "{v}");
    // System accounts are not transfer parties (the funding account exists since the deposits):
    // a clear 409, never a 500, whether Rust or the database refuses it.
    let app = e.db.connect(DbRole::App).await.unwrap();
    let funding: i64 = app
        .query_one("SELECT id FROM fintrail.wallets WHERE kind = 'system' AND currency = 'EUR' LIMIT 1", &[])
        .await
        .unwrap()
        .get(0);
    for (i, (path, body)) in [
        ("/v1/transfers", t(funding, b, json!(1), "EUR")),
        ("/v1/transfers", t(b, funding, json!(1), "EUR")),
        ("/v1/withdrawals", json!({ "wallet_id": funding, "amount_minor": 1, "currency": "EUR" })),
    ]
    .into_iter()
    .enumerate()
    {
        let (s, v) = e.post(path, &e.admin, &format!("sys-{i}"), body).await;
        assert_eq!((s, v["code"].as_str()), (409, Some("system_wallet")), "{path}: {v}");
    }
    // Money is an integer written as one (issue 16, item 11): `2.0` is refused, nothing moves
    // (the schema states integral bounds and says so; see `fintrail_api::ledger::de`).
    let before_float = e.counts().await;
    let (s, v) = e
        .post("/v1/deposits", &e.admin, "float", json!({ "wallet_id": b, "amount_minor": 2.0, "currency": "EUR" }))
        .await;
    assert_eq!((s, v["code"].as_str()), (422, Some("unprocessable")), "{v}");
    assert_eq!(e.counts().await, before_float);
    // Both owners at once matches neither of the schema's alternatives; a negative cursor is
    // below the schema's minimum.
    let both = json!({ "customer_id": c[0], "organization_id": 1, "currency": "GBP" });
    let (s, v, _) = e.call("POST", "/v1/wallets", &e.admin, None, Some(both)).await;
    assert_eq!((s, v["code"].as_str()), (422, Some("unprocessable")), "{v}");
    let (s, v) = e.get(&format!("/v1/wallets/{a}/entries?after=-1"), &e.admin).await;
    assert_eq!((s, v["code"].as_str()), (422, Some("unprocessable")), "{v}");
    e.check().await;
    e.server.shutdown().await.unwrap();
}

/// Issue 16, item 7: three capital letters are not a currency. `ZZZ` (unassigned), `XXX` (no
/// currency) and `XTS` (testing) are refused on every route that takes a currency, with the
/// admin's and the customer's credential: a 422 that names the code, and nothing is written.
/// An assigned code with another minor unit (JPY, 0 decimals) still opens and moves money.
#[tokio::test]
async fn item_7_an_unassigned_currency_is_a_422_and_nothing_is_written() {
    let e = env().await;
    let c = fixtures::approved_customers(&e.db, 2).await.unwrap();
    let (a, b) = (e.open(c[0], "EUR").await, e.open(c[1], "EUR").await);
    e.deposit(a, 1_000).await;
    let cust_a = fixtures::token(&e.db, Role::Customer, Some(c[0])).await.unwrap();
    let app = e.db.connect(DbRole::App).await.unwrap();
    let wallets =
        || async { app.query_one("SELECT count(*) FROM fintrail.wallets", &[]).await.unwrap().get::<_, i64>(0) };
    let (before, wallets_before) = (e.counts().await, wallets().await);
    for (i, cur) in ["ZZZ", "XXX", "XTS"].into_iter().enumerate() {
        let t = json!({ "from_wallet_id": a, "to_wallet_id": b, "amount_minor": 5, "currency": cur });
        let funds = json!({ "wallet_id": a, "amount_minor": 5, "currency": cur });
        let hold = json!({ "from_wallet_id": a, "to_wallet_id": b, "amount_minor": 5, "currency": cur });
        for (path, token, body) in [
            ("/v1/wallets", &e.admin, json!({ "customer_id": c[0], "currency": cur })),
            ("/v1/me/wallets", &cust_a, json!({ "currency": cur })),
            ("/v1/transfers", &e.admin, t.clone()),
            ("/v1/me/transfers", &cust_a, t),
            ("/v1/deposits", &e.admin, funds.clone()),
            ("/v1/withdrawals", &e.admin, funds),
            ("/v1/holds", &e.admin, hold),
        ] {
            let (s, v) = e.post(path, token, &format!("item7-{i}-{}", unique_suffix()), body).await;
            assert_eq!((s, v["code"].as_str()), (422, Some("invalid_request")), "{path} {cur}: {v}");
            let m = v["message"].as_str().unwrap_or_default();
            assert!(m.contains("ISO 4217") && m.contains(cur), "{path} {cur}: {v}");
        }
    }
    assert_eq!((e.counts().await, wallets().await), (before, wallets_before), "refused requests wrote nothing");
    let jpy = e.open(c[0], "JPY").await;
    let (s, v) = e
        .post(
            "/v1/deposits",
            &e.admin,
            "item7-jpy",
            json!({ "wallet_id": jpy, "amount_minor": 500, "currency": "JPY" }),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(e.balance(jpy).await, 500);
    // Each wallet and statement says how many decimals its minor unit has.
    for (w, minor_units) in [(jpy, 0), (a, 2)] {
        let (_, v) = e.get(&format!("/v1/wallets/{w}"), &e.admin).await;
        assert_eq!(v["minor_units"], minor_units, "{v}");
        let (_, v) = e.get(&format!("/v1/wallets/{w}/entries"), &e.admin).await;
        assert_eq!(v["minor_units"], minor_units, "{v}");
    }
    e.check().await;
    e.server.shutdown().await.unwrap();
}

/// A batch runs its statements with generic plans (`SET LOCAL plan_cache_mode`, issue #18):
/// the setting ends with the batch's transaction, so no pooled connection keeps it for the
/// requests that use the connection next.
#[tokio::test]
async fn the_batch_plan_setting_ends_with_its_transaction() {
    let e = env().await;
    let c = fixtures::approved_customers(&e.db, 2).await.unwrap();
    let (a, b) = (e.open(c[0], "EUR").await, e.open(c[1], "EUR").await);
    e.deposit(a, 500).await;
    for i in 0..3 {
        let body = json!({ "from_wallet_id": a, "to_wallet_id": b, "amount_minor": 100, "currency": "EUR" });
        let (s, v) = e.post("/v1/transfers", &e.admin, &format!("plan-{i}"), body).await;
        assert_eq!(s, 201, "{v}");
    }
    assert_eq!((e.balance(a).await, e.balance(b).await), (200, 300));
    // Every idle connection, the batches' included (the pool hands out the most recent first).
    let idle = e.server.state.pool.status().available;
    assert!(idle >= 1, "the batches' connections went back to the pool");
    let mut held = Vec::new();
    for _ in 0..idle {
        let conn = e.server.state.pool.get().await.unwrap();
        let mode: String = conn.query_one("SHOW plan_cache_mode", &[]).await.unwrap().get(0);
        assert_eq!(mode, "auto", "a pooled connection kept the batch's setting");
        held.push(conn);
    }
    drop(held);
    e.check().await;
    e.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn wallets_need_kyc_and_reversals_happen_once() {
    let e = env().await;
    let pending = fixtures::customer_in_kyc_state(&e.db, KycState::DocumentsSubmitted).await.unwrap();
    let (s, v, _) =
        e.call("POST", "/v1/wallets", &e.admin, None, Some(json!({ "customer_id": pending, "currency": "EUR" }))).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("not_eligible")), "{v}");
    let c = fixtures::approved_customers(&e.db, 2).await.unwrap();
    let cust = fixtures::token(&e.db, Role::Customer, Some(c[0])).await.unwrap();
    let (s, w, _) = e.call("POST", "/v1/me/wallets", &cust, None, Some(json!({ "currency": "EUR" }))).await;
    assert_eq!(s, 201, "{w}");
    let a = w["id"].as_i64().unwrap();
    let (s, _, _) = e.call("POST", "/v1/me/wallets", &cust, None, Some(json!({ "currency": "EUR" }))).await;
    assert_eq!(s, 409, "one wallet per currency");
    let b = e.open(c[1], "EUR").await;
    e.deposit(a, 300).await;
    let (_, t) = e
        .post(
            "/v1/transfers",
            &e.admin,
            "r-1",
            json!({ "from_wallet_id": a, "to_wallet_id": b, "amount_minor": 300, "currency": "EUR" }),
        )
        .await;
    let id = t["id"].as_i64().unwrap();
    let (s, r) = e.post(&format!("/v1/transfers/{id}/reversal"), &e.admin, "rev-1", json!({})).await;
    assert_eq!(s, 201, "{r}");
    assert_eq!((r["kind"].as_str(), r["reverses_transfer_id"].as_i64()), (Some("reversal"), Some(id)));
    assert_eq!((e.balance(a).await, e.balance(b).await), (300, 0));
    // Retry of the same reversal: replayed; a new reversal: refused; reversing a reversal: refused.
    let (s, r2) = e.post(&format!("/v1/transfers/{id}/reversal"), &e.admin, "rev-1", json!({})).await;
    assert_eq!((s, &r2), (201, &r));
    let (s, v) = e.post(&format!("/v1/transfers/{id}/reversal"), &e.admin, "rev-2", json!({})).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("already_reversed")), "{v}");
    let (s, v) = e.post(&format!("/v1/transfers/{}/reversal", r["id"]), &e.admin, "rev-3", json!({})).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("not_reversible")), "{v}");
    assert_eq!(e.post("/v1/transfers/999999/reversal", &e.admin, "rev-4", json!({})).await.0, 404);
    e.check().await;
    e.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn holds_reserve_post_partially_void_and_expire() {
    let e = env().await;
    let c = fixtures::approved_customers(&e.db, 2).await.unwrap();
    let (a, b) = (e.open(c[0], "EUR").await, e.open(c[1], "EUR").await);
    e.deposit(a, 1_000).await;
    let hold = |amount: i64, secs: i64| json!({ "from_wallet_id": a, "to_wallet_id": b, "amount_minor": amount, "currency": "EUR", "expires_in_secs": secs });
    let (s, h) = e.post("/v1/holds", &e.admin, "h-1", hold(600, 3600)).await;
    assert_eq!(s, 201, "{h}");
    let h1 = h["id"].as_i64().unwrap();
    let (_, w) = e.get(&format!("/v1/wallets/{a}"), &e.admin).await;
    assert_eq!((w["held_minor"].as_i64(), w["available_minor"].as_i64()), (Some(600), Some(400)));
    // Held funds cannot be spent twice.
    let (s, v) = e.post("/v1/holds", &e.admin, "h-2", hold(401, 3600)).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("insufficient_funds")));
    let (s, v) = e
        .post(
            "/v1/transfers",
            &e.admin,
            "h-t",
            json!({ "from_wallet_id": a, "to_wallet_id": b, "amount_minor": 401, "currency": "EUR" }),
        )
        .await;
    assert_eq!((s, v["code"].as_str()), (409, Some("insufficient_funds")));
    // Post 250 of 600: 250 moves, 350 is released.
    let (s, t) = e.post(&format!("/v1/holds/{h1}/post"), &e.admin, "p-1", json!({ "amount_minor": 250 })).await;
    assert_eq!(s, 201, "{t}");
    assert_eq!((t["kind"].as_str(), t["hold_id"].as_i64()), (Some("hold_post"), Some(h1)));
    let (_, w) = e.get(&format!("/v1/wallets/{a}"), &e.admin).await;
    assert_eq!((w["balance_minor"].as_i64(), w["held_minor"].as_i64()), (Some(750), Some(0)));
    assert_eq!(e.balance(b).await, 250);
    let (s, v) = e.post(&format!("/v1/holds/{h1}/void"), &e.admin, "v-1", json!({})).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("hold_not_pending")));
    // Void releases everything.
    let (_, h2) = e.post("/v1/holds", &e.admin, "h-3", hold(700, 3600)).await;
    let (s, v) = e.post(&format!("/v1/holds/{}/void", h2["id"]), &e.admin, "v-2", json!({})).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("voided")), "{v}");
    // Expiry: a 1-second hold cannot be posted after it expired, and the job releases it.
    let (_, h3) = e.post("/v1/holds", &e.admin, "h-4", hold(100, 1)).await;
    // Wait (bounded poll, the database's clock) until it is past its expiry.
    let c = e.db.connect(DbRole::App).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let past: bool = c
            .query_one("SELECT clock_timestamp() > expires_at FROM fintrail.holds WHERE id = $1", &[&h3["id"].as_i64()])
            .await
            .unwrap()
            .get(0);
        if past {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "hold {} never expired", h3["id"]);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (s, v) = e.post(&format!("/v1/holds/{}/post", h3["id"]), &e.admin, "p-2", json!({})).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("hold_expired")), "{v}");
    let mut app = e.db.connect(DbRole::App).await.unwrap();
    assert_eq!(
        fintrail_ledger::holds::expire_overdue(
            &mut app,
            &fintrail_audit::AuditWriter::new(true),
            &fintrail_ledger::Who {
                actor: "system:job:hold-expiry".into(),
                on_behalf_of: None,
                permission: fintrail_domain::Permission::WalletHoldSettle,
                request_id: None,
                credential: None,
            },
            fintrail_ledger::holds::EXPIRE_MAX,
        )
        .await
        .unwrap(),
        1
    );
    let (_, v) = e.get(&format!("/v1/holds/{}", h3["id"]), &e.admin).await;
    assert_eq!(v["status"].as_str(), Some("expired"));
    let (_, w) = e.get(&format!("/v1/wallets/{a}"), &e.admin).await;
    assert_eq!((w["balance_minor"].as_i64(), w["held_minor"].as_i64()), (Some(750), Some(0)));
    e.check().await;
    e.server.shutdown().await.unwrap();
}

/// 32 concurrent clients, skewed choice (most transfers go to one hot merchant wallet), with
/// every 10th request sent twice: money is conserved, no floor is crossed, every key applied
/// at most once, exactly the keys answered 201 were applied, and the ledger check passes.
///
/// The second send is a replay only when the first was posted. A refused request stores
/// nothing (its key stays usable), so when the first send was refused for insufficient funds
/// the second is a fresh attempt and may be posted if money arrived in between. Counting only
/// first sends made this test fail under load (more interleaving: "300 transfers, 298
/// posted"): the accounting was wrong, not the ledger.
#[tokio::test]
async fn concurrent_transfers_with_a_hot_account_keep_every_invariant() {
    let e = Arc::new(env().await);
    const WALLETS: usize = 8;
    const CLIENTS: usize = 32;
    const PER_CLIENT: usize = 25;
    let c = fixtures::approved_customers(&e.db, WALLETS).await.unwrap();
    let mut wallets = Vec::new();
    for id in &c {
        let w = e.open(*id, "EUR").await;
        e.deposit(w, 5_000).await;
        wallets.push(w);
    }
    let wallets = Arc::new(wallets);
    let seed = fintrail_testseed::seed!();
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let (e, wallets) = (e.clone(), wallets.clone());
        // Each client's requests are the seed's (FINTRAIL_TEST_SEED replays them).
        let client_seed = seed.derive(client as u64);
        tasks.push(tokio::spawn(async move {
            use rand::{Rng, SeedableRng};
            let mut rng = rand::rngs::StdRng::seed_from_u64(client_seed);
            // The keys answered 201 (by either send).
            let mut ok: Vec<String> = Vec::new();
            for i in 0..PER_CLIENT {
                let (from, to, amount) = {
                    let from = wallets[rng.gen_range(1..WALLETS)];
                    // 80% to the hot wallet 0.
                    let to = if rng.gen_bool(0.8) { wallets[0] } else { wallets[rng.gen_range(1..WALLETS)] };
                    (from, to, rng.gen_range(1..400i64))
                };
                if from == to {
                    continue;
                }
                let key = format!("c{client}-{i}");
                let body =
                    json!({ "from_wallet_id": from, "to_wallet_id": to, "amount_minor": amount, "currency": "EUR" });
                let (s, v) = e.post("/v1/transfers", &e.admin, &key, body.clone()).await;
                assert!(s == 201 || (s == 409 && v["code"] == "insufficient_funds"), "{s} {v}");
                let mut posted = s == 201;
                if i % 10 == 0 {
                    let (s2, v2, replayed) = e.call("POST", "/v1/transfers", &e.admin, Some(&key), Some(body)).await;
                    if posted {
                        assert_eq!((s2, &v2, replayed), (201, &v, true), "a retry returns the original");
                    } else {
                        // A new attempt (the refusal stored nothing): posted or refused again.
                        assert!(!replayed, "a refusal is never replayed: {v2}");
                        assert!(s2 == 201 || (s2 == 409 && v2["code"] == "insufficient_funds"), "{s2} {v2}");
                        posted = s2 == 201;
                    }
                }
                if posted {
                    ok.push(key);
                }
            }
            ok
        }));
    }
    let mut posted: Vec<String> = Vec::new();
    for t in tasks {
        posted.extend(t.await.unwrap());
    }
    posted.sort();
    let app = e.db.connect(DbRole::App).await.unwrap();
    let dup: i64 = app
        .query_one(
            "SELECT count(*) FROM (SELECT actor, idempotency_key FROM fintrail.transfers WHERE kind = 'transfer' \
             GROUP BY 1, 2 HAVING count(*) > 1) d",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(dup, 0, "a key applied twice");
    let mut applied: Vec<String> = app
        .query("SELECT idempotency_key FROM fintrail.transfers WHERE kind = 'transfer'", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    applied.sort();
    assert_eq!(applied, posted, "exactly the keys answered 201 were applied");
    let mut total = 0;
    for w in wallets.iter() {
        let b = e.balance(*w).await;
        assert!(b >= 0);
        total += b;
    }
    assert_eq!(total, 5_000 * WALLETS as i64, "money is conserved");
    e.check().await;
}

/// One key sent concurrently with different bodies to two servers on one database (as behind a
/// load balancer: two batchers whose transactions race on the key in the database): each key is
/// applied exactly once, every send of the winning body answers that one transfer, every other
/// body is refused with 409, and the money moved is exactly the winners'.
#[tokio::test]
async fn one_key_sent_concurrently_with_different_bodies_is_applied_once() {
    let e = Arc::new(env().await);
    const PAIRS: usize = 4;
    const KEYS: usize = 6;
    const SENDS: usize = 16;
    let c = fixtures::approved_customers(&e.db, 2 * PAIRS).await.unwrap();
    let mut wallets = Vec::new();
    for id in &c {
        let w = e.open(*id, "EUR").await;
        e.deposit(w, 100_000).await;
        wallets.push(w);
    }
    let wallets = Arc::new(wallets);
    // The second server: same database, its own batcher.
    let home_dir = tempfile::Builder::new().prefix("fintrail-ledger-test-2-").tempdir().unwrap();
    let ctx = fintrail_db::Context::new(e.db.clone(), fintrail_db::Home::new(home_dir.path()).unwrap());
    let config = AppConfig { checkpoint_interval_secs: 0, ..AppConfig::default() };
    let second = start_with(&ctx, "127.0.0.1:0".parse().unwrap(), config).await.unwrap();
    let bases = Arc::new([e.base.clone(), format!("http://{}", second.local_addr())]);
    for k in 0..KEYS {
        let key = format!("race-{k}");
        let mut tasks = Vec::new();
        for i in 0..SENDS {
            let (e, wallets, key, bases) = (e.clone(), wallets.clone(), key.clone(), bases.clone());
            tasks.push(tokio::spawn(async move {
                let p = i % PAIRS;
                let body = json!({ "from_wallet_id": wallets[2 * p], "to_wallet_id": wallets[2 * p + 1],
                    "amount_minor": 10 + p as i64, "currency": "EUR" });
                let res = e
                    .http
                    .post(format!("{}/v1/transfers", bases[i % 2]))
                    .bearer_auth(&e.admin)
                    .header("Idempotency-Key", &key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                let s = res.status().as_u16();
                let v: Value = res.json().await.unwrap();
                (p, s, v)
            }));
        }
        let mut winners = std::collections::BTreeSet::new();
        let mut ids = std::collections::BTreeSet::new();
        let mut answers = Vec::new();
        for t in tasks {
            let (p, s, v) = t.await.unwrap();
            assert!(s == 201 || s == 409, "{s} {v}");
            if s == 201 {
                winners.insert(p);
                ids.insert(v["id"].as_i64().unwrap());
            }
            answers.push((p, s));
        }
        assert_eq!(winners.len(), 1, "key {key}: one body wins, got {winners:?}");
        assert_eq!(ids.len(), 1, "key {key}: every winning send answers the same transfer");
        let winner = *winners.iter().next().unwrap();
        for (p, s) in answers {
            assert_eq!(s == 201, p == winner, "key {key}: the winner's body is answered 201, the others 409");
        }
    }
    let app = e.db.connect(DbRole::App).await.unwrap();
    let per_key: Vec<i64> = app
        .query(
            "SELECT count(*) FROM fintrail.transfers WHERE idempotency_key LIKE 'race-%' GROUP BY idempotency_key",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(per_key, vec![1; KEYS], "every key applied exactly once");
    let total: i64 = futures_sum(&e, &wallets).await;
    assert_eq!(total, 100_000 * 2 * PAIRS as i64, "money is conserved");
    e.check().await;
    second.shutdown().await.unwrap();
    drop(home_dir);
}

async fn futures_sum(e: &Env, wallets: &[i64]) -> i64 {
    let mut total = 0;
    for w in wallets {
        total += e.balance(*w).await;
    }
    total
}

/// One append path, one encoding: a ledger event (a posted transfer, appended in a batch by
/// the engine), a wallet opened, and an identity event (a token issued) read back with
/// `before`/`after` in exactly the bytes the audit writer's encoding gives (compact JSON,
/// keys sorted), never in jsonb's output format (`{"a": 1}`).
#[tokio::test]
async fn ledger_and_identity_events_share_one_encoding() {
    let e = env().await;
    let c = fixtures::approved_customers(&e.db, 2).await.unwrap();
    let (a, b) = (e.open(c[0], "EUR").await, e.open(c[1], "EUR").await);
    e.deposit(a, 1_000).await;
    let body = json!({ "from_wallet_id": a, "to_wallet_id": b, "amount_minor": 10, "currency": "EUR" });
    let (s, v) = e.post("/v1/transfers", &e.admin, "enc-1", body).await;
    assert_eq!(s, 201, "{v}");
    let app = e.db.connect(DbRole::App).await.unwrap();
    let rows = app
        .query(
            "SELECT DISTINCT ON (action) action, after FROM fintrail.audit_events \
             WHERE after IS NOT NULL AND action IN ('ledger.transfer.posted', 'ledger.wallet.opened', 'token.issued') \
             ORDER BY action, seq",
            &[],
        )
        .await
        .unwrap();
    let found: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
    assert_eq!(found, ["ledger.transfer.posted", "ledger.wallet.opened", "token.issued"]);
    for r in &rows {
        let (action, after): (String, String) = (r.get(0), r.get(1));
        let value: Value = serde_json::from_str(&after).unwrap();
        assert!(value.as_object().is_some_and(|o| o.len() > 1), "{action}: an object with several keys: {after}");
        assert_eq!(
            fintrail_audit::writer::encode_json(Some(&value)).as_deref(),
            Some(after.as_str()),
            "{action}: {after}"
        );
        assert!(!after.contains(": ") && !after.contains(", "), "{action}: not jsonb's output format: {after}");
    }
}
