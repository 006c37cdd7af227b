//! Issue 16, items 11–16 (the HTTP and files part of the trust boundary): each attack is
//! performed over real HTTP against the real server, on the real filesystem and the real
//! database, and the test asserts that it is refused or detected with the expected error.

mod common;

use common::{spawn, TestApp};
use fintrail_db::DbRole;
use fintrail_domain::Role;
use fintrail_tooling::fixtures;
use serde_json::{json, Value};

/// `(transfers, entries, audit events)` as the app role sees them.
async fn counts(app: &TestApp) -> (i64, i64) {
    let c = app.db.database().connect(DbRole::App).await.expect("connect");
    let r = c
        .query_one("SELECT (SELECT count(*) FROM fintrail.transfers), (SELECT count(*) FROM fintrail.entries)", &[])
        .await
        .expect("counts");
    (r.get(0), r.get(1))
}

/// Every `access.denied` event: `(subject, actor, permission)`.
async fn denials(app: &TestApp) -> Vec<(String, String, Option<String>)> {
    let c = app.db.database().connect(DbRole::App).await.expect("connect");
    c.query(
        "SELECT subject, actor, permission FROM fintrail.audit_events WHERE action = 'access.denied' AND NOT allowed ORDER BY seq",
        &[],
    )
    .await
    .expect("denials")
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

async fn raw_post(app: &TestApp, path: &str, token: &str, key: &str, body: &str) -> (u16, Value) {
    let res = app
        .http
        .post(format!("{}{path}", app.base))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// An approved customer with a EUR wallet holding `funds`, and the customer's token.
async fn funded_customer(app: &TestApp, admin: &str, funds: i64) -> (i64, i64, String) {
    let db = app.db.database();
    let customer = fixtures::approved_customers(db, 1).await.expect("customer")[0];
    let token = fixtures::token(db, Role::Customer, Some(customer)).await.expect("token");
    let (s, w) = app.post("/v1/wallets", admin, json!({ "customer_id": customer, "currency": "EUR" })).await;
    assert_eq!(s, 201, "{w}");
    let wallet = w["id"].as_i64().expect("id");
    if funds > 0 {
        let body = json!({ "wallet_id": wallet, "amount_minor": funds, "currency": "EUR" }).to_string();
        let (s, v) = raw_post(app, "/v1/deposits", admin, &format!("fund-{wallet}"), &body).await;
        assert_eq!(s, 201, "{v}");
    }
    (customer, wallet, token)
}

/// Item 11: `1.00000000000000000001` used to be parsed through an f64, rounded to 1 and posted.
/// Every fraction or exponent spelling is now a 422 and nothing moves.
#[tokio::test]
async fn item_11_a_non_integral_amount_is_refused_and_nothing_moves() {
    let app = spawn().await;
    let admin = app.staff_token(Role::Admin).await;
    let (_, a, _) = funded_customer(&app, &admin, 1_000).await;
    let (_, b, _) = funded_customer(&app, &admin, 0).await;
    let before = counts(&app).await;
    for (i, amount) in
        ["1.00000000000000000001", "1.0", "1e0", "0.99999999999999999999", "1E2", "-0"].iter().enumerate()
    {
        let transfer =
            format!(r#"{{"from_wallet_id":{a},"to_wallet_id":{b},"amount_minor":{amount},"currency":"EUR"}}"#);
        let (s, v) = raw_post(&app, "/v1/transfers", &admin, &format!("frac-t-{i}"), &transfer).await;
        assert_eq!((s, v["code"].as_str()), (422, Some("unprocessable")), "transfer of {amount}: {v}");
        assert!(v["message"].as_str().is_some_and(|m| m.contains("without fraction or exponent")), "{v}");
        let deposit = format!(r#"{{"wallet_id":{b},"amount_minor":{amount},"currency":"EUR"}}"#);
        let (s, v) = raw_post(&app, "/v1/deposits", &admin, &format!("frac-d-{i}"), &deposit).await;
        assert_eq!((s, v["code"].as_str()), (422, Some("unprocessable")), "deposit of {amount}: {v}");
        // Ids are integers the same way.
        let id_as_float = format!(r#"{{"from_wallet_id":{a}.0,"to_wallet_id":{b},"amount_minor":1,"currency":"EUR"}}"#);
        let (s, _) = raw_post(&app, "/v1/transfers", &admin, &format!("frac-id-{i}"), &id_as_float).await;
        assert_eq!(s, 422);
    }
    assert_eq!(counts(&app).await, before, "no refused amount was posted");
    // The integer spelling still works, and the document writes integer bounds as integers.
    let ok = format!(r#"{{"from_wallet_id":{a},"to_wallet_id":{b},"amount_minor":1,"currency":"EUR"}}"#);
    assert_eq!(raw_post(&app, "/v1/transfers", &admin, "int-ok", &ok).await.0, 201);
    let doc: Value =
        app.http.get(format!("{}/openapi.json", app.base)).send().await.expect("doc").json().await.expect("json");
    let amount = &doc["components"]["schemas"]["TransferRequest"]["properties"]["amount_minor"];
    assert_eq!((&amount["minimum"], &amount["maximum"]), (&json!(1), &json!(1_000_000_000_000_000_i64)), "{amount}");
    app.handle.shutdown().await.expect("shutdown");
}

/// Item 12: another customer's wallet, statement or debit on the ledger routes answers 404 and
/// writes `access.denied`, like the KYC and media routes; an id that does not exist is a
/// plain 404 with no record.
#[tokio::test]
async fn item_12_cross_customer_probes_on_ledger_routes_are_audited() {
    let app = spawn().await;
    let admin = app.staff_token(Role::Admin).await;
    let (_, victim_wallet, _) = funded_customer(&app, &admin, 500).await;
    let (attacker, attacker_wallet, attacker_token) = funded_customer(&app, &admin, 0).await;
    assert!(denials(&app).await.is_empty());
    let before = counts(&app).await;

    let (s, v) = app.get(&format!("/v1/me/wallets/{victim_wallet}"), &attacker_token).await;
    assert_eq!((s, v["code"].as_str()), (404, Some("not_found")), "{v}");
    let (s, v) = app.get(&format!("/v1/me/wallets/{victim_wallet}/entries"), &attacker_token).await;
    assert_eq!((s, v["code"].as_str()), (404, Some("not_found")), "{v}");
    let steal = json!({ "from_wallet_id": victim_wallet, "to_wallet_id": attacker_wallet, "amount_minor": 5, "currency": "EUR" });
    let (s, v) = raw_post(&app, "/v1/me/transfers", &attacker_token, "steal", &steal.to_string()).await;
    assert_eq!((s, v["code"].as_str()), (404, Some("not_found")), "{v}");
    assert_eq!(counts(&app).await, before, "nothing moved");

    let d = denials(&app).await;
    let subject = format!("wallet:{victim_wallet}");
    assert_eq!(d.len(), 3, "{d:?}");
    for (i, perm) in ["wallet.own.read", "wallet.own.read", "wallet.own.transfer"].iter().enumerate() {
        assert_eq!(d[i].0, subject);
        assert_eq!(d[i].1, format!("customer:{attacker}"));
        assert_eq!(d[i].2.as_deref(), Some(*perm));
    }
    // Unknown ids and one's own wallet: no denial recorded.
    assert_eq!(app.get("/v1/me/wallets/999999999", &attacker_token).await.0, 404);
    assert_eq!(app.get("/v1/me/wallets/999999999/entries", &attacker_token).await.0, 404);
    assert_eq!(app.get(&format!("/v1/me/wallets/{attacker_wallet}"), &attacker_token).await.0, 200);
    assert_eq!(denials(&app).await.len(), 3);
    app.handle.shutdown().await.expect("shutdown");
}

/// Item 13: a path over 200 characters made the denial record violate the `subject` CHECK, so
/// the 403 became a 422 and the probe left no trace. Now the subject is cut with a marker.
#[tokio::test]
async fn item_13_a_long_path_cannot_suppress_the_denial_record() {
    let app = spawn().await;
    let admin = app.staff_token(Role::Admin).await;
    let (customer, token) = app.customer(&admin).await;
    let long_id = "9".repeat(400);
    for path in [format!("/v1/kyc/cases/{long_id}"), format!("/v1/customers/{}", "%41".repeat(300))] {
        let (s, v) = app.get(&path, &token).await;
        assert_eq!((s, v["code"].as_str()), (403, Some("forbidden")), "{path}: {v}");
    }
    let d = denials(&app).await;
    assert_eq!(d.len(), 2, "{d:?}");
    for (subject, actor, _) in &d {
        assert_eq!(subject.chars().count(), fintrail_api::auth::SUBJECT_MAX_CHARS, "{subject}");
        assert!(subject.ends_with(fintrail_api::auth::TRUNCATED_MARKER), "{subject}");
        assert_eq!(actor, &format!("customer:{customer}"));
    }
    assert!(d[0].0.starts_with("route:GET /v1/kyc/cases/999"), "{}", d[0].0);
    app.handle.shutdown().await.expect("shutdown");
}

/// A client whose connections come from `ip` (any 127.0.0.0/8 address is this machine).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder().local_address(ip.parse::<std::net::IpAddr>().expect("ip")).build().expect("client")
}

async fn audit_event_count(app: &TestApp) -> i64 {
    let c = app.db.database().connect(DbRole::App).await.expect("connect");
    c.query_one("SELECT count(*) FROM fintrail.audit_events", &[]).await.expect("count").get(0)
}

/// Uploads one document for a new customer and returns `(media id, analyst token, signed URL)`.
async fn media_and_url(app: &TestApp, admin: &str) -> (i64, String, String) {
    let analyst = app.staff_token(Role::KycAnalyst).await;
    let (_, tok) = app.customer(admin).await;
    let (_, case) = app.post("/v1/me/kyc/cases", &tok, json!({})).await;
    let case_id = case["id"].as_i64().expect("id");
    let r = app
        .http
        .post(format!("{}/v1/me/kyc/cases/{case_id}/media?kind=id_document", app.base))
        .bearer_auth(&tok)
        .header("content-type", "application/pdf")
        .body(vec![1u8, 2, 3])
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), 201);
    let media_id = r.json::<Value>().await.expect("json")["id"].as_i64().expect("id");
    let (s, signed) = app.post(&format!("/v1/media/{media_id}/signed-url"), &analyst, json!({})).await;
    assert_eq!(s, 200, "{signed}");
    (media_id, analyst, signed["url"].as_str().expect("url").to_owned())
}

/// Item 14: anyone could grow the trail without a token (one event per refused download), and
/// a signed URL kept working for up to 7 days after its issuing token was revoked.
#[tokio::test]
async fn item_14_unauthenticated_refusals_are_limited_and_aggregated_and_urls_die_with_their_token() {
    let app = spawn().await;
    let admin = app.staff_token(Role::Admin).await;
    let (_, _, url) = media_and_url(&app, &admin).await;

    // Signed URLs die with their issuing token.
    let get = |client: reqwest::Client, path: String| {
        let base = app.base.clone();
        async move {
            let r = client.get(format!("{base}{path}")).send().await.expect("request");
            let status = r.status().as_u16();
            let retry = r.headers().get("retry-after").is_some();
            (status, r.json::<Value>().await.unwrap_or(Value::Null), retry)
        }
    };
    assert_eq!(get(app.http.clone(), url.clone()).await.0, 200, "the URL works while its token lives");
    let by = url.split("by=").nth(1).and_then(|s| s.split('&').next()).expect("by").to_owned();
    let (s, v) = app.post(&format!("/v1/tokens/{by}/revoke"), &admin, json!({})).await;
    assert_eq!(s, 200, "{v}");
    let (s, v, _) = get(app.http.clone(), url.clone()).await;
    assert_eq!((s, v["code"].as_str()), (403, Some("forbidden")), "{v}");
    assert!(v["message"].as_str().is_some_and(|m| m.contains("issuing_token_revoked")), "{v}");

    // A flood of forged downloads from one address: limited (429 + Retry-After once its burst
    // is spent), and not one event written while it lasts.
    let (_, _, fresh) = media_and_url(&app, &admin).await;
    let forged = {
        let mut u = fresh.clone();
        let last = u.pop().expect("char");
        u.push(if last == '0' { '1' } else { '0' });
        u
    };
    let events_before = audit_event_count(&app).await;
    let flooder = client_from("127.0.0.2");
    let flood = 300;
    let (mut refused, mut limited) = (0, 0);
    for _ in 0..flood {
        match get(flooder.clone(), forged.clone()).await {
            (403, v, _) => {
                assert_eq!(v["message"], "signed URL refused: bad_signature");
                refused += 1;
            }
            (429, v, retry) => {
                assert_eq!(v["code"], "rate_limited");
                assert!(retry, "429 carries Retry-After");
                limited += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(limited > 0 && refused >= fintrail_api::refusals::BURST as usize, "refused {refused}, limited {limited}");
    // Unauthenticated API calls are limited the same way and are never written either.
    let prober = client_from("127.0.0.3");
    let mut limited_401 = 0;
    for _ in 0..300 {
        let r = prober.get(format!("{}/v1/me", app.base)).bearer_auth("not-a-token").send().await.expect("req");
        match r.status().as_u16() {
            401 => {}
            429 => limited_401 += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(limited_401 > 0);
    assert_eq!(audit_event_count(&app).await, events_before, "the flood wrote nothing to the trail");
    // Another address is not affected: the fresh URL works from there.
    assert_eq!(get(client_from("127.0.0.4"), fresh.clone()).await.0, 200);

    // The window is written as one event (at shutdown here; every 60 s while running).
    app.handle.shutdown().await.expect("shutdown");
    let c = app.db.database().connect(DbRole::App).await.expect("connect");
    let rows = c
        .query(
            "SELECT actor, subject, after FROM fintrail.audit_events WHERE action = 'media.signed_url.refused' AND NOT allowed",
            &[],
        )
        .await
        .expect("refusals");
    assert_eq!(rows.len(), 1, "one aggregated event for {} refusals", flood + 1);
    assert_eq!(rows[0].get::<_, &str>(0), fintrail_api::refusals::AGGREGATE_ACTOR);
    assert_eq!(rows[0].get::<_, &str>(1), fintrail_api::refusals::AGGREGATE_SUBJECT);
    let after: Value = serde_json::from_str(rows[0].get::<_, &str>(2)).expect("json");
    assert_eq!(after["refusals"], flood + 1, "{after}");
    assert_eq!(after["by_reason"]["issuing_token_revoked"], 1, "{after}");
    assert_eq!(after["by_reason"]["bad_signature"], refused, "{after}");
    assert_eq!(after["by_reason"]["rate_limited"], limited, "{after}");
}

fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o777
}

fn set_mode(p: &std::path::Path, m: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).expect("chmod");
}

/// Runs `cmd args` as the OS user `nobody`; `None` when this process cannot switch users
/// (not root, or no `runuser`).
fn as_nobody(cmd: &str, args: &[&std::path::Path]) -> Option<std::process::Output> {
    let root = std::process::Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&root.stdout).trim() != "0" {
        return None;
    }
    std::process::Command::new("runuser").args(["-u", "nobody", "--", cmd]).args(args).output().ok()
}

/// Item 15: media (ID documents, selfies) were 0644 in 0755 folders and `FINTRAIL_HOME` 0755:
/// any OS user could read them. Now the home is 0700, media folders 0700 and files 0600,
/// through `fintrail_db::home::owner_only`. The attack is performed as the OS user `nobody`
/// when the tests run as root (CI does): every layer alone refuses it.
#[tokio::test]
async fn item_15_other_os_users_cannot_read_media_or_list_the_home() {
    let db = fintrail_db::testing::fresh_db().await;
    let parent = tempfile::tempdir().expect("tmp");
    let root = parent.path().join("home");
    std::fs::create_dir_all(&root).expect("mkdir");
    set_mode(parent.path(), 0o755);
    set_mode(&root, 0o755); // as an earlier version left it
    let home = fintrail_db::Home::new(&root).expect("home");
    home.create().expect("create");
    assert_eq!(mode(&root), 0o700, "FINTRAIL_HOME");
    let ctx = fintrail_db::Context::new(db.database().clone(), home.clone());
    let config = fintrail_api::AppConfig { checkpoint_interval_secs: 0, ..Default::default() };
    let handle = fintrail_api::start_with(&ctx, "127.0.0.1:0".parse().expect("addr"), config).await.expect("start");
    let app_base = format!("http://{}", handle.local_addr());
    let http = reqwest::Client::new();
    let admin = fixtures::token(db.database(), Role::Admin, None).await.expect("admin");
    let customer = fixtures::approved_customers(db.database(), 1).await.expect("c")[0];
    // A new case for the customer (approved customers already have one: open another).
    let tok = fixtures::token(db.database(), Role::Customer, Some(customer)).await.expect("tok");
    let r =
        http.post(format!("{app_base}/v1/me/kyc/cases")).bearer_auth(&tok).json(&json!({})).send().await.expect("case");
    assert_eq!(r.status(), 201);
    let case_id = r.json::<Value>().await.expect("json")["id"].as_i64().expect("id");
    let r = http
        .post(format!("{app_base}/v1/me/kyc/cases/{case_id}/media?kind=selfie"))
        .bearer_auth(&tok)
        .header("content-type", "image/png")
        .body(b"\x89PNG secret face".to_vec())
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), 201);
    let _ = admin;
    let c = db.database().connect(DbRole::App).await.expect("connect");
    let key: String = c.query_one("SELECT storage_key FROM fintrail.media_objects", &[]).await.expect("key").get(0);
    let media = home.media_dir();
    let object = media.join("objects").join(&key);
    // Every folder from the media root to the object's is 0700, the object 0600.
    let mut folders = vec![media.clone(), media.join("staging")];
    let mut d = object.parent().expect("parent").to_path_buf();
    while d != media {
        folders.push(d.clone());
        d = d.parent().expect("parent").to_path_buf();
    }
    for f in &folders {
        assert_eq!(mode(f), 0o700, "{}", f.display());
    }
    assert_eq!(mode(&object), 0o600, "{}", object.display());
    assert_eq!(std::fs::read(&object).expect("owner reads"), b"\x89PNG secret face");
    // The attack, as another OS user.
    if let Some(out) = as_nobody("ls", &[&root]) {
        assert!(!out.status.success(), "nobody listed the home");
        assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"), "{out:?}");
        let out = as_nobody("cat", &[&object]).expect("runuser");
        assert!(!out.status.success() && out.stdout.is_empty(), "nobody read the selfie: {out:?}");
        // Even with every folder opened for traversal, the file itself refuses.
        set_mode(&root, 0o711);
        for f in &folders {
            set_mode(f, 0o711);
        }
        let out = as_nobody("cat", &[&object]).expect("runuser");
        assert!(!out.status.success() && out.stdout.is_empty(), "nobody read the 0600 file: {out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"), "{out:?}");
        // And the folders alone refuse too (the file opened, the folders as the server made them).
        set_mode(&object, 0o644);
        for f in &folders {
            set_mode(f, 0o700);
        }
        let out = as_nobody("cat", &[&object]).expect("runuser");
        assert!(!out.status.success() && out.stdout.is_empty(), "nobody went through a 0700 folder: {out:?}");
        set_mode(&object, 0o600);
    } else {
        eprintln!("not root: the attack as another OS user is skipped; the modes were checked");
    }
    // A restart tightens folders an earlier version left open.
    set_mode(&media.join("objects"), 0o755);
    handle.shutdown().await.expect("shutdown");
    let again = fintrail_api::start_with(
        &ctx,
        "127.0.0.1:0".parse().expect("addr"),
        fintrail_api::AppConfig { checkpoint_interval_secs: 0, ..Default::default() },
    )
    .await
    .expect("restart");
    assert_eq!(mode(&media.join("objects")), 0o700);
    again.shutdown().await.expect("shutdown");
}

/// Limits small enough to be crossed in a test.
fn short_limits() -> fintrail_api::limits::Limits {
    use std::time::Duration;
    fintrail_api::limits::Limits {
        header_read: Duration::from_secs(1),
        body_idle: Duration::from_secs(1),
        request: Duration::from_secs(3),
        statement: Duration::from_millis(1_000),
        idle_in_transaction: Duration::from_millis(1_000),
    }
}

/// Sends `bytes` on a new connection, keeps it open without sending more, and returns what
/// the server answered before closing (or after `wait`) and how long that took.
async fn stall(addr: std::net::SocketAddr, bytes: &[u8], wait: std::time::Duration) -> (String, std::time::Duration) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let t = std::time::Instant::now();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut got)).await;
    (String::from_utf8_lossy(&got).into_owned(), t.elapsed())
}

/// Item 16: no timeouts anywhere. A client trickling its headers or its body, a handler
/// stuck on a lock or on the pool, and a transaction left idle all held resources for ever.
#[tokio::test]
async fn item_16_stalled_clients_slow_statements_and_idle_transactions_are_cut_off() {
    use std::time::Duration;
    let limits = short_limits();
    let app = common::spawn_with(fintrail_api::AppConfig {
        checkpoint_interval_secs: 0,
        pool_size: 2,
        limits,
        ..Default::default()
    })
    .await;
    let addr = app.handle.local_addr();
    let admin = app.staff_token(Role::Admin).await;

    // Header read: half a request head, then silence. The connection is closed after ~1 s.
    let (got, took) = stall(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", Duration::from_secs(10)).await;
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(5), "{took:?} {got}");
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 408"), "{got}");

    // Body read: a complete head announcing 100 bytes, 10 sent, then silence: 408 in JSON.
    let head = format!(
        "POST /v1/customers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"display"
    );
    let (got, took) = stall(addr, head.as_bytes(), Duration::from_secs(10)).await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("\"code\":\"body_timeout\""), "{got}");
    assert!(took < Duration::from_secs(5), "{took:?}");

    // Statement: a row lock held elsewhere; the handler's SELECT ... FOR UPDATE is canceled by
    // the pool's statement_timeout (1 s) and answered 503 `timeout`, nothing changed.
    let (_, tok) = app.customer(&admin).await;
    let (_, case) = app.post("/v1/me/kyc/cases", &tok, json!({})).await;
    let case_id = case["id"].as_i64().expect("id");
    let mut locker = app.db.database().connect(DbRole::App).await.expect("connect");
    let tx = locker.transaction().await.expect("tx");
    tx.query_one("SELECT state FROM fintrail.kyc_cases WHERE id = $1 FOR UPDATE", &[&case_id]).await.expect("lock");
    let t = std::time::Instant::now();
    let (s, v) = app
        .post(
            &format!("/v1/me/kyc/cases/{case_id}/transitions"),
            &tok,
            json!({"to": "documents_submitted", "reason": "r"}),
        )
        .await;
    assert_eq!((s, v["code"].as_str()), (503, Some("timeout")), "{v}");
    assert_eq!(v["message"], "the database took too long; retry later");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    tx.rollback().await.expect("rollback");
    let (_, case) = app.get(&format!("/v1/me/kyc/cases/{case_id}"), &tok).await;
    assert_eq!(case["state"], "started");

    // Request: every pooled connection is busy; the request is answered 503 after 3 s, not
    // after the pool's 10 s wait.
    let pool = app.handle.state.pool.clone();
    let held = (pool.get().await.expect("c1"), pool.get().await.expect("c2"));
    let t = std::time::Instant::now();
    let (s, v) = app.post("/v1/customers", &admin, json!({"display_name": "Slow", "email": "s@example.com"})).await;
    assert_eq!((s, v["code"].as_str()), (503, Some("request_timeout")), "{v}");
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(2_900) && took < Duration::from_secs(6), "{took:?}");
    drop(held);

    // The pool's connections carry both database timeouts; a transaction left idle is ended
    // by the server.
    let c = pool.get().await.expect("conn");
    let st: String = c.query_one("SHOW statement_timeout", &[]).await.expect("show").get(0);
    let it: String = c.query_one("SHOW idle_in_transaction_session_timeout", &[]).await.expect("show").get(0);
    assert_eq!((st.as_str(), it.as_str()), ("1s", "1s"));
    let e = c.query_one("SELECT pg_sleep(5)", &[]).await.expect_err("canceled");
    assert_eq!(e.code(), Some(&tokio_postgres::error::SqlState::QUERY_CANCELED), "{e}");
    c.batch_execute("BEGIN; SELECT 1").await.expect("begin");
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    assert!(c.query_one("SELECT 1", &[]).await.is_err(), "the idle transaction's session was ended");
    drop(c);
    // The server still serves (the pool replaced the dead connection).
    let (s, v) = app.post("/v1/customers", &admin, json!({"display_name": "Ok", "email": "o@example.com"})).await;
    assert_eq!(s, 201, "{v}");
    app.handle.shutdown().await.expect("shutdown");
}

/// Item 16: a panic became a dropped connection with no answer. Through the same guard the
/// application router gets (`limits::guard`) and the same accept loop (`server::serve`), it is
/// a JSON 500 without details, and the server keeps serving.
#[tokio::test]
async fn item_16_a_panic_is_a_json_500_without_details() {
    use axum::routing::get;
    let router = axum::Router::new()
        .route(
            "/boom",
            get(|| async {
                if std::hint::black_box(true) {
                    panic!("secret-detail: customer 42 has the token abc");
                }
                "unreachable"
            }),
        )
        .route("/ok", get(|| async { "fine" }));
    let app = fintrail_api::limits::guard(router, short_limits());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(fintrail_api::server::serve(listener, app, short_limits(), async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    for _ in 0..3 {
        let r = http.get(format!("http://{addr}/boom")).send().await.expect("an answer, not a dropped connection");
        assert_eq!(r.status(), 500);
        let text = r.text().await.expect("body");
        assert!(!text.contains("secret") && !text.contains("abc"), "{text}");
        let v: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(v, json!({"code": "internal", "message": "internal error"}));
    }
    assert_eq!(http.get(format!("http://{addr}/ok")).send().await.expect("ok").text().await.expect("t"), "fine");
    let _ = stop.send(());
    server.await.expect("join").expect("serve");
}
