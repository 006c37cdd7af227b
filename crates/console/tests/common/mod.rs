//! Shared scaffolding of the console's tests: the real server (`fintrail serve`'s router and
//! accept loop) on 127.0.0.1:0 against a fresh migrated database, a plain HTTP client that
//! handles cookies by hand (so a test can leave any of them out), and a KYC case with real
//! uploaded documents, driven through the API as customers and analysts drive it.
#![allow(dead_code)] // each test binary uses a different subset

use fintrail_api::identity::create_token;
use fintrail_api::state::AppConfig;
use fintrail_api::ServerHandle;
use fintrail_db::testing::{fresh_db, TestDb};
use fintrail_db::{Context, DbRole, Home};
use fintrail_domain::Role;
use serde_json::{json, Value};

pub struct App {
    pub handle: ServerHandle,
    pub base: String,
    pub http: reqwest::Client,
    pub db: TestDb,
    pub ctx: Context,
    _home: tempfile::TempDir,
}

pub async fn spawn() -> App {
    let db = fresh_db().await;
    let home_dir = tempfile::tempdir().expect("temp home");
    let home = Home::new(home_dir.path()).expect("home");
    let ctx = Context::new(db.database().clone(), home);
    let config = AppConfig { checkpoint_interval_secs: 0, pool_size: 8, ..AppConfig::default() };
    let handle = fintrail_api::start_with(&ctx, "127.0.0.1:0".parse().expect("addr"), config).await.expect("starts");
    let base = format!("http://{}", handle.local_addr());
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    App { handle, base, http, db, ctx, _home: home_dir }
}

/// A staff token and its id.
pub struct Token {
    pub id: i64,
    pub token: String,
    pub label: String,
}

/// A signed-in console session: its cookie and CSRF token.
#[derive(Clone, Debug)]
pub struct Session {
    pub cookie: String,
    pub csrf: String,
}

/// The value of `name="csrf" value="..."` in a page.
pub fn csrf_in(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    Some(html[at..].split('"').next()?.to_owned())
}

/// `name=value` of a `Set-Cookie` header named `name`.
pub fn set_cookie<'a>(res: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
}

impl App {
    pub async fn staff(&self, role: Role) -> Token {
        let label = format!("{}-tester", role.as_str().replace('_', "-"));
        let t = create_token(&self.db, role, None, &label, 3600, "test:setup").await.expect("token");
        Token { id: t.token_id, token: t.token, label }
    }

    pub async fn api(&self, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let text = res.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// The login form's cookie and CSRF token.
    pub async fn login_form(&self) -> (String, String) {
        let res = self.http.get(format!("{}/console/login", self.base)).send().await.expect("login form");
        assert_eq!(res.status(), 200);
        let cookie =
            set_cookie(&res, "ft_console_login").expect("login cookie").split(';').next().expect("pair").to_owned();
        let html = res.text().await.expect("html");
        (cookie, csrf_in(&html).expect("csrf field"))
    }

    /// Logs in with `token`; returns the response (303 on success).
    pub async fn login_raw(&self, token: &str) -> reqwest::Response {
        let (cookie, csrf) = self.login_form().await;
        self.http
            .post(format!("{}/console/login", self.base))
            .header("cookie", cookie)
            .form(&[("token", token), ("csrf", &csrf)])
            .send()
            .await
            .expect("login")
    }

    pub async fn login(&self, token: &str) -> Session {
        let res = self.login_raw(token).await;
        assert_eq!(res.status(), 303, "login succeeds");
        let cookie =
            set_cookie(&res, "ft_console").expect("session cookie").split(';').next().expect("pair").to_owned();
        let (status, html) = self.page(&cookie, "/console/kyc").await;
        assert_eq!(status, 200, "{html}");
        Session { cookie, csrf: csrf_in(&html).expect("logout form carries the csrf token") }
    }

    /// GET a console page with a session cookie: status and body.
    pub async fn page(&self, cookie: &str, path: &str) -> (u16, String) {
        let res = self.http.get(format!("{}{path}", self.base)).header("cookie", cookie).send().await.expect("page");
        (res.status().as_u16(), res.text().await.expect("body"))
    }

    /// POST a console form with a session cookie.
    pub async fn form(&self, cookie: &str, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .header("cookie", cookie)
            .form(fields)
            .send()
            .await
            .expect("form post")
    }

    /// Events of the trail (seq, actor, action, subject, permission, allowed, request id).
    pub async fn events(
        &self,
        subject: &str,
    ) -> Vec<(i64, String, String, String, Option<String>, bool, Option<String>)> {
        let c = self.db.connect(DbRole::App).await.expect("app");
        c.query(
            "SELECT seq, actor, action, subject, permission, allowed, request_id FROM fintrail.audit_events \
             WHERE subject = $1 ORDER BY seq",
            &[&subject],
        )
        .await
        .expect("events")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6)))
        .collect()
    }

    pub async fn case_state(&self, case_id: i64) -> String {
        let c = self.db.connect(DbRole::App).await.expect("app");
        c.query_one("SELECT state FROM fintrail.kyc_cases WHERE id = $1", &[&case_id]).await.expect("case").get(0)
    }

    /// A customer's KYC case with an ID document (PNG) and a selfie (PDF stands in for a
    /// second kind), submitted for review: `documents_submitted`. Returns the case id.
    pub async fn submitted_case(&self, admin: &str) -> i64 {
        let (s, c) = self
            .api(
                reqwest::Method::POST,
                "/v1/customers",
                admin,
                Some(json!({"display_name": "Ada Example", "email": "ada@example.com"})),
            )
            .await;
        assert_eq!(s, 201, "{c}");
        let customer = c["id"].as_i64().expect("id");
        let (s, t) =
            self.api(reqwest::Method::POST, &format!("/v1/customers/{customer}/tokens"), admin, Some(json!({}))).await;
        assert_eq!(s, 201, "{t}");
        let tok = t["token"].as_str().expect("token").to_owned();
        let (s, case) = self.api(reqwest::Method::POST, "/v1/me/kyc/cases", &tok, None).await;
        assert_eq!(s, 201, "{case}");
        let case_id = case["id"].as_i64().expect("case id");
        for (kind, ct, body) in
            [("id_document", "image/png", PASSPORT_PNG.to_vec()), ("selfie", "image/png", PASSPORT_PNG.to_vec())]
        {
            let r = self
                .http
                .post(format!("{}/v1/me/kyc/cases/{case_id}/media?kind={kind}", self.base))
                .bearer_auth(&tok)
                .header("content-type", ct)
                .body(body)
                .send()
                .await
                .expect("upload");
            assert_eq!(r.status(), 201);
        }
        let (s, v) = self
            .api(
                reqwest::Method::POST,
                &format!("/v1/me/kyc/cases/{case_id}/transitions"),
                &tok,
                Some(json!({"to": "documents_submitted", "reason": "my passport and a selfie"})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        case_id
    }
}

/// A small, valid PNG (a 160×100 "passport" in two colours), made at build time of this test
/// from raw pixels: no binary fixture in the repository.
pub static PASSPORT_PNG: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| png(160, 100));

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + x as u32) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut c = kind.to_vec();
    c.extend_from_slice(data);
    out.extend_from_slice(&c);
    out.extend_from_slice(&crc32(&c).to_be_bytes());
}

/// An RGB PNG, zlib "stored" blocks (no compression needed for a few hundred bytes).
fn png(w: u32, h: u32) -> Vec<u8> {
    let mut raw = Vec::new();
    for y in 0..h {
        raw.push(0u8);
        for x in 0..w {
            let border = x == 0 || y == 0 || x == w - 1 || y == h - 1;
            raw.extend_from_slice(if border {
                &[20, 60, 120]
            } else if x < w / 3 {
                &[200, 170, 140]
            } else {
                &[235, 235, 225]
            });
        }
    }
    let mut z = vec![0x78, 0x01, 0x01];
    z.extend_from_slice(&(raw.len() as u16).to_le_bytes());
    z.extend_from_slice(&(!(raw.len() as u16)).to_le_bytes());
    z.extend_from_slice(&raw);
    z.extend_from_slice(&adler32(&raw).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &z);
    chunk(&mut out, b"IEND", &[]);
    out
}
