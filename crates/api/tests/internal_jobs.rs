//! `POST /internal/jobs/{name}` accepts only a Google-signed OIDC ID token. A local JWKS is
//! served over real HTTP and tokens are signed with a test key made by `openssl genrsa` at test
//! time (no private key in the repository): expired, wrong audience, wrong issuer, wrong email,
//! unsigned (`alg: none`), a bad signature and no token are refused with 401/403 and each
//! leaves an `access.denied` event; a valid token runs the job. The keys are fetched once and
//! cached, and fetched again when a token names a key the cache does not hold (rotation).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use fintrail_api::state::{AppConfig, AppState};
use fintrail_db::testing::{fresh_db, TestDb};
use fintrail_db::{Context, DbRole, Home};
use fintrail_jobs::oidc::OidcConfig;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const AUDIENCE: &str = "https://fintrail-test.run.app";
const EMAIL: &str = "fintrail-test-scheduler@fintrail-test.iam.gserviceaccount.com";
const ISSUER: &str = "https://accounts.google.com";

/// An RSA test key: its signing half and its JWK.
struct TestKey {
    signing: EncodingKey,
    jwk: Value,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn openssl(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf8")
}

fn test_key(dir: &std::path::Path, kid: &str) -> TestKey {
    let file = format!("{kid}.pem");
    openssl(dir, &["genrsa", "-traditional", "-out", &file, "2048"]);
    let modulus = openssl(dir, &["rsa", "-in", &file, "-noout", "-modulus"]);
    let hex_n = modulus.trim().strip_prefix("Modulus=").expect("Modulus=");
    let n = hex::decode(hex_n).expect("hex modulus");
    let pem = std::fs::read(dir.join(&file)).expect("pem");
    TestKey {
        signing: EncodingKey::from_rsa_pem(&pem).expect("rsa pem"),
        // openssl genrsa's public exponent is 65537 (AQAB).
        jwk: json!({ "kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid, "n": b64(&n), "e": "AQAB" }),
    }
}

fn claims(exp_from_now_secs: i64) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({ "iss": ISSUER, "aud": AUDIENCE, "email": EMAIL, "email_verified": true,
            "sub": "1234567890", "iat": now - 60, "exp": now + exp_from_now_secs })
}

fn sign(key: &TestKey, kid: &str, claims: &Value) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, claims, &key.signing).expect("sign")
}

/// A JWKS endpoint over real HTTP; counts its fetches.
struct Jwks {
    url: String,
    keys: Arc<Mutex<Vec<Value>>>,
    hits: Arc<AtomicUsize>,
}

async fn serve_jwks(keys: Vec<Value>) -> Jwks {
    let keys = Arc::new(Mutex::new(keys));
    let hits = Arc::new(AtomicUsize::new(0));
    let (k, h) = (keys.clone(), hits.clone());
    let app = axum::Router::new().route(
        "/certs",
        axum::routing::get(move || {
            h.fetch_add(1, Ordering::SeqCst);
            let body = json!({ "keys": *k.lock().unwrap() });
            async move { ([("cache-control", "public, max-age=3600")], axum::Json(body)) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/certs", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Jwks { url, keys, hits }
}

struct Env {
    db: TestDb,
    base: String,
    http: reqwest::Client,
    _home: tempfile::TempDir,
}

async fn env(jwks: &Jwks) -> Env {
    let db = fresh_db().await;
    let home = tempfile::tempdir().expect("home");
    let ctx = Context::new(db.database().clone(), Home::new(home.path()).expect("home"));
    let state = AppState::new(&ctx, AppConfig { checkpoint_interval_secs: 0, ..AppConfig::default() }).expect("state");
    let config = OidcConfig {
        audience: AUDIENCE.into(),
        email: EMAIL.into(),
        jwks_url: jwks.url.clone(),
        issuers: fintrail_jobs::oidc::GOOGLE_ISSUERS.map(String::from).to_vec(),
        refresh_min: Duration::ZERO,
    };
    let app = fintrail_api::internal_jobs::router(Some(config)).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Env { db, base, http: reqwest::Client::new(), _home: home }
}

impl Env {
    async fn call(&self, job: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.post(format!("{}/internal/jobs/{job}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
    async fn denials(&self) -> Vec<(String, Option<String>, Option<String>)> {
        let c = self.db.connect(DbRole::App).await.unwrap();
        c.query(
            "SELECT actor, after::jsonb->>'status', permission FROM fintrail.audit_events \
             WHERE action = 'access.denied' AND subject = 'job:hold-expiry' AND NOT allowed ORDER BY seq",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
    }
}

#[tokio::test]
async fn only_a_valid_google_oidc_token_runs_a_job_and_every_refusal_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let key = test_key(dir.path(), "k1");
    let other = test_key(dir.path(), "k2");
    let jwks = serve_jwks(vec![key.jwk.clone()]).await;
    let e = env(&jwks).await;

    let mut wrong_aud = claims(3600);
    wrong_aud["aud"] = json!("https://someone-else.run.app");
    let mut wrong_iss = claims(3600);
    wrong_iss["iss"] = json!("https://evil.example");
    let mut wrong_email = claims(3600);
    wrong_email["email"] = json!("intruder@other-project.iam.gserviceaccount.com");
    let unsigned = format!(
        "{}.{}.",
        b64(json!({ "alg": "none", "typ": "JWT", "kid": "k1" }).to_string().as_bytes()),
        b64(claims(3600).to_string().as_bytes())
    );
    let cases: Vec<(&str, Option<String>, u16)> = vec![
        ("no token", None, 401),
        ("expired", Some(sign(&key, "k1", &claims(-3600))), 401),
        ("wrong audience", Some(sign(&key, "k1", &wrong_aud)), 401),
        ("wrong issuer", Some(sign(&key, "k1", &wrong_iss)), 401),
        ("alg none", Some(unsigned), 401),
        ("bad signature", Some(sign(&other, "k1", &claims(3600))), 401),
        ("wrong email", Some(sign(&key, "k1", &wrong_email)), 403),
    ];
    for (what, token, want) in &cases {
        let (status, body) = e.call("hold-expiry", token.as_deref()).await;
        assert_eq!(status, *want, "{what}: {body}");
    }
    let denials = e.denials().await;
    assert_eq!(denials.len(), cases.len(), "one access.denied event per refusal: {denials:?}");
    for ((what, _, want), (actor, status, permission)) in cases.iter().zip(&denials) {
        assert_eq!(status.as_deref(), Some(want.to_string().as_str()), "{what}");
        assert_eq!(permission.as_deref(), Some("wallet.hold.settle"), "{what}");
        let expected_actor =
            if *want == 403 { "oidc:intruder@other-project.iam.gserviceaccount.com" } else { "oidc:unauthenticated" };
        assert_eq!(actor, expected_actor, "{what}");
    }
    let c = e.db.connect(DbRole::App).await.unwrap();
    let runs: i64 = c.query_one("SELECT count(*) FROM fintrail.job_runs", &[]).await.unwrap().get(0);
    assert_eq!(runs, 0, "no refused call ran anything");

    // A valid token runs the job: an overdue hold is released by the HTTP-triggered run.
    let w = fintrail_tooling::fixtures::funded_wallets(&e.db, 2, 1_000).await.unwrap();
    fintrail_tooling::fixtures::overdue_holds(&e.db, w[0], w[1], 1, 100).await.unwrap();
    let valid = sign(&key, "k1", &claims(3600));
    let (status, body) = e.call("hold-expiry", Some(&valid)).await;
    assert_eq!(
        (status, body["outcome"].as_str(), body["counts"]["expired"].as_u64()),
        (200, Some("ok"), Some(1)),
        "{body}"
    );
    let trigger: String =
        c.query_one("SELECT trigger FROM fintrail.job_runs WHERE job = 'hold-expiry'", &[]).await.unwrap().get(0);
    assert_eq!(trigger, "http");
    // A valid token for an unknown job: 404, nothing run.
    assert_eq!(e.call("no-such-job", Some(&valid)).await.0, 404);
    // One JWKS fetch served every call above: the keys are cached.
    assert_eq!(jwks.hits.load(Ordering::SeqCst), 1);

    // Rotation: a token signed by a key published since is accepted after one refresh.
    jwks.keys.lock().unwrap().push(other.jwk.clone());
    let rotated = sign(&other, "k2", &claims(3600));
    let (status, body) = e.call("idempotency-purge", Some(&rotated)).await;
    assert_eq!((status, body["outcome"].as_str()), (200, Some("ok")), "{body}");
    assert_eq!(jwks.hits.load(Ordering::SeqCst), 2);
}
