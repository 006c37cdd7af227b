//! Shared test scaffolding: the real app on 127.0.0.1:0 against a fresh database from the
//! harness, a real HTTP client, and tokens per role.
#![allow(dead_code)] // each test binary uses a different subset

use fintrail_api::identity::create_token;
use fintrail_api::state::AppConfig;
use fintrail_api::ServerHandle;
use fintrail_db::testing::{fresh_db, TestDb};
use fintrail_db::{Context, Home};
use fintrail_domain::Role;
use serde_json::{json, Value};

pub struct TestApp {
    pub handle: ServerHandle,
    pub base: String,
    pub http: reqwest::Client,
    pub db: TestDb,
    pub ctx: Context,
    _home: tempfile::TempDir,
}

pub async fn spawn() -> TestApp {
    spawn_with(AppConfig { record_stages: true, checkpoint_interval_secs: 0, pool_size: 8, ..AppConfig::default() })
        .await
}

pub async fn spawn_with(config: AppConfig) -> TestApp {
    let db = fresh_db().await;
    let home_dir = tempfile::tempdir().expect("temp home");
    let home = Home::new(home_dir.path()).expect("home");
    let ctx = Context::new(db.database().clone(), home);
    let handle =
        fintrail_api::start_with(&ctx, "127.0.0.1:0".parse().expect("addr"), config).await.expect("server starts");
    let base = format!("http://{}", handle.local_addr());
    TestApp { handle, base, http: reqwest::Client::new(), db, ctx, _home: home_dir }
}

impl TestApp {
    pub async fn staff_token(&self, role: Role) -> String {
        create_token(&self.db, role, None, &format!("test-{role}"), 3600, "test:setup").await.expect("token").token
    }

    /// A new customer (created by an admin through the API) and a token for it.
    pub async fn customer(&self, admin: &str) -> (i64, String) {
        let r = self
            .http
            .post(format!("{}/v1/customers", self.base))
            .bearer_auth(admin)
            .json(&json!({ "display_name": "Test Customer", "email": "t@example.com" }))
            .send()
            .await
            .expect("create customer");
        assert_eq!(r.status(), 201);
        let id = r.json::<Value>().await.expect("json")["id"].as_i64().expect("id");
        let r = self
            .http
            .post(format!("{}/v1/customers/{id}/tokens", self.base))
            .bearer_auth(admin)
            .json(&json!({}))
            .send()
            .await
            .expect("issue token");
        assert_eq!(r.status(), 201);
        let token = r.json::<Value>().await.expect("json")["token"].as_str().expect("token").to_owned();
        (id, token)
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let text = res.text().await.expect("body");
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, Some(token), None).await
    }
}
