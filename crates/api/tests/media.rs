//! Media over real HTTP, on both stores: local files (the embedded default) and GCS, here the
//! `fake-gcs-server` emulator started and stopped by each test. One test body per behaviour,
//! run on each backend: bounded, typed, streamed uploads with a recorded content hash; signed
//! URLs that open exactly one object, once issued, until expiry, while their issuing token
//! lives, with `Cache-Control: no-store`; the bytes round-trip exactly; nothing half-registered.
//!
//! The emulator comes from `./dev setup`; without it the GCS tests fail (they do not skip).

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{spawn_with, TestApp};
use fintrail_api::media::gcs::BlobSigner;
use fintrail_api::media::store::{MediaConfig, MediaStore, StoreError};
use fintrail_api::media::testing::{FakeBlobSigner, FakeGcsServer};
use fintrail_api::AppConfig;
use fintrail_db::DbRole;
use fintrail_domain::Role;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt as _;

const BUCKET: &str = "fintrail-test-media";
const SIGNER: &str = "fintrail-test-media-signer@fintrail-test.iam.gserviceaccount.com";

/// The store under test, and a way to look at it behind the API's back.
enum Backend {
    Local,
    Gcs(FakeGcsServer),
}

impl Backend {
    fn gcs() -> Backend {
        let server = FakeGcsServer::start();
        server.create_bucket(BUCKET);
        Backend::Gcs(server)
    }

    fn config(&self, signer: Arc<dyn BlobSigner>) -> MediaConfig {
        match self {
            Backend::Local => MediaConfig::Local,
            Backend::Gcs(s) => MediaConfig::Gcs(s.config(BUCKET, signer)),
        }
    }

    /// Every stored object key.
    fn keys(&self, media_dir: &Path) -> Vec<String> {
        match self {
            Backend::Local => {
                let root = media_dir.join("objects");
                let mut out = Vec::new();
                let mut dirs = vec![root.clone()];
                while let Some(d) = dirs.pop() {
                    for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                        let p = e.path();
                        if p.is_dir() {
                            dirs.push(p);
                        } else {
                            out.push(p.strip_prefix(&root).expect("under root").to_string_lossy().into_owned());
                        }
                    }
                }
                out.sort();
                out
            }
            Backend::Gcs(s) => {
                let mut v = s.list(BUCKET);
                v.sort();
                v
            }
        }
    }

    /// The stored bytes of `key`.
    fn stored(&self, media_dir: &Path, key: &str) -> Option<Vec<u8>> {
        match self {
            Backend::Local => std::fs::read(media_dir.join("objects").join(key)).ok(),
            Backend::Gcs(s) => s.object(BUCKET, key),
        }
    }

    /// Deletes `key` behind the API's back.
    fn delete(&self, media_dir: &Path, key: &str) {
        match self {
            Backend::Local => std::fs::remove_file(media_dir.join("objects").join(key)).expect("remove"),
            Backend::Gcs(s) => assert!(s.delete_object(BUCKET, key)),
        }
    }
}

fn signer() -> Arc<FakeBlobSigner> {
    Arc::new(FakeBlobSigner::generate(SIGNER))
}

async fn spawn_on(backend: &Backend, signer: Arc<dyn BlobSigner>) -> TestApp {
    spawn_with(AppConfig {
        record_stages: true,
        checkpoint_interval_secs: 0,
        pool_size: 8,
        media: backend.config(signer),
        ..AppConfig::default()
    })
    .await
}

async fn storage_key(app: &TestApp, media_id: i64) -> String {
    let c = app.db.database().connect(DbRole::App).await.expect("connect");
    c.query_one("SELECT storage_key FROM fintrail.media_objects WHERE id = $1", &[&media_id]).await.expect("row").get(0)
}

async fn media_rows(app: &TestApp) -> i64 {
    let c = app.db.database().connect(DbRole::App).await.expect("connect");
    c.query_one("SELECT count(*) FROM fintrail.media_objects", &[]).await.expect("count").get(0)
}

async fn audit_actions(app: &TestApp, admin: &str) -> Vec<String> {
    let (_, page) = app.get("/v1/audit/events?limit=1000", admin).await;
    page["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["action"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn staging_count(app: &TestApp) -> usize {
    std::fs::read_dir(app.ctx.home.media_dir().join("staging")).expect("staging").count()
}

#[tokio::test]
async fn upload_sign_download_and_refusals_on_local_files() {
    upload_sign_download_and_refusals(Backend::Local).await;
}

#[tokio::test]
async fn upload_sign_download_and_refusals_on_the_gcs_emulator() {
    upload_sign_download_and_refusals(Backend::gcs()).await;
}

async fn upload_sign_download_and_refusals(backend: Backend) {
    let app = spawn_on(&backend, signer()).await;
    let media_dir = app.ctx.home.media_dir();
    let admin = app.staff_token(Role::Admin).await;
    let analyst = app.staff_token(Role::KycAnalyst).await;
    let (_, tok) = app.customer(&admin).await;
    let (_, case) = app.post("/v1/me/kyc/cases", &tok, json!({})).await;
    let case_id = case["id"].as_i64().expect("id");
    let upload = |kind: &'static str, ct: &'static str, body: Vec<u8>| {
        app.http
            .post(format!("{}/v1/me/kyc/cases/{case_id}/media?kind={kind}", app.base))
            .bearer_auth(&tok)
            .header("content-type", ct)
            .body(body)
            .send()
    };
    // Refusals: wrong type for the kind, unknown kind, empty, too large (streamed, no buffering).
    assert_eq!(upload("selfie", "application/pdf", vec![1]).await.expect("req").status(), 415);
    assert_eq!(upload("selfie", "text/html", vec![1]).await.expect("req").status(), 415);
    assert_eq!(upload("passport", "image/png", vec![1]).await.expect("req").status(), 400);
    assert_eq!(upload("selfie", "image/png", vec![]).await.expect("req").status(), 422);
    let big = vec![7u8; (fintrail_domain::media::MAX_UPLOAD_BYTES + 1) as usize];
    let r = upload("id_document", "application/pdf", big).await.expect("req");
    assert_eq!(r.status(), 413);
    assert_eq!(r.json::<Value>().await.expect("json")["code"], "payload_too_large");
    assert_eq!(staging_count(&app), 0, "refused uploads leave nothing behind");
    assert!(backend.keys(&media_dir).is_empty(), "refused uploads store nothing");
    // A good upload: every byte value, an odd size over several chunks.
    let content: Vec<u8> = (0..200_003u32).map(|i| (i % 251) as u8).collect();
    let r = upload("id_document", "application/pdf", content.clone()).await.expect("req");
    assert_eq!(r.status(), 201);
    let media: Value = r.json().await.expect("json");
    assert_eq!(media["sha256"], hex::encode(Sha256::digest(&content)));
    assert_eq!(media["size_bytes"], content.len() as i64);
    let media_id = media["id"].as_i64().expect("id");
    let key = storage_key(&app, media_id).await;
    assert_eq!(backend.stored(&media_dir, &key).as_deref(), Some(content.as_slice()), "stored exactly");
    assert_eq!(staging_count(&app), 0, "the staging copy is gone once stored");
    let (_, media2) = {
        let r = upload("selfie", "image/jpeg", vec![0xff, 0xd8, 0xff]).await.expect("req");
        (r.status(), r.json::<Value>().await.expect("json"))
    };
    let other_id = media2["id"].as_i64().expect("id");
    assert_eq!(backend.keys(&media_dir).len(), 2);

    // The customer cannot mint URLs; the analyst can; lifetimes are bounded.
    let (s, _) = app.post(&format!("/v1/media/{media_id}/signed-url"), &tok, json!({})).await;
    assert_eq!(s, 403);
    let (s, _) = app.post(&format!("/v1/media/{media_id}/signed-url"), &analyst, json!({"ttl_secs": 604_801})).await;
    assert_eq!(s, 422);
    let (s, signed) = app.post(&format!("/v1/media/{media_id}/signed-url"), &analyst, json!({})).await;
    assert_eq!(s, 200, "{signed}");
    let url = signed["url"].as_str().expect("url").to_owned();
    assert!(url.starts_with("/v1/media/download?"), "our URL, never the store's: {url}");
    let expires_in =
        chrono::DateTime::parse_from_rfc3339(signed["expires_at"].as_str().expect("exp")).expect("time").timestamp()
            - chrono::Utc::now().timestamp();
    assert!((890..=900).contains(&expires_in), "default 15 minutes: {expires_in}");

    // Download: exact bytes, no-store, no bearer token needed.
    let r = app.http.get(format!("{}{url}", app.base)).send().await.expect("download");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers().get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    assert_eq!(r.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("application/pdf"));
    assert_eq!(r.bytes().await.expect("bytes").as_ref(), content.as_slice());

    // Tampered: another object (replay), another expiry, a flipped signature digit, expired.
    let other = url.replace(&format!("object={media_id}"), &format!("object={other_id}"));
    let later = {
        let exp = url.split("expires=").nth(1).and_then(|s| s.split('&').next()).expect("expires");
        url.replace(&format!("expires={exp}"), &format!("expires={}", exp.parse::<i64>().expect("n") + 60))
    };
    let flipped = {
        let last = url.chars().last().expect("char");
        let mut u = url.clone();
        u.pop();
        u.push(if last == '0' { '1' } else { '0' });
        u
    };
    let expired = {
        let q = app.handle.state.signer.sign("GET", media_id, 1, chrono::Utc::now().timestamp() - 1000, 60);
        format!("/v1/media/download?{}", fintrail_api::media::signing::UrlSigner::query_string(&q))
    };
    for bad in [&other, &later, &flipped, &expired] {
        let r = app.http.get(format!("{}{bad}", app.base)).send().await.expect("download");
        assert_eq!(r.status(), 403, "{bad}");
        assert_eq!(r.json::<Value>().await.expect("json")["code"], "forbidden");
    }
    let r = app.http.get(format!("{}/v1/media/download?object=1", app.base)).send().await.expect("download");
    assert_eq!(r.status(), 400, "malformed signed URL");

    // A missing object: a valid URL for a row whose object is gone answers 404, redeems nothing.
    let (_, signed2) = app.post(&format!("/v1/media/{other_id}/signed-url"), &analyst, json!({})).await;
    let url2 = signed2["url"].as_str().expect("url").to_owned();
    backend.delete(&media_dir, &storage_key(&app, other_id).await);
    let r = app.http.get(format!("{}{url2}", app.base)).send().await.expect("download");
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.expect("json")["code"], "not_found");

    // A row the database refuses after the object was stored: the object goes too.
    {
        let c = app.db.database().connect(DbRole::Admin).await.expect("admin");
        c.batch_execute(
            "CREATE FUNCTION fintrail.test_refuse_media() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN RAISE EXCEPTION 'refused for the test' USING ERRCODE = 'FT999'; END $$; \
             CREATE TRIGGER test_refuse_media BEFORE INSERT ON fintrail.media_objects \
             FOR EACH ROW EXECUTE FUNCTION fintrail.test_refuse_media();",
        )
        .await
        .expect("trigger");
        let (rows_before, keys_before) = (media_rows(&app).await, backend.keys(&media_dir));
        let r = upload("selfie", "image/png", vec![0x89, b'P', b'N', b'G']).await.expect("req");
        assert_eq!(r.status(), 409);
        assert_eq!(r.json::<Value>().await.expect("json")["code"], "refused_by_database");
        assert_eq!(media_rows(&app).await, rows_before, "no row");
        assert_eq!(backend.keys(&media_dir), keys_before, "and no object without its row");
        assert_eq!(staging_count(&app), 0);
        c.batch_execute("DROP TRIGGER test_refuse_media ON fintrail.media_objects").await.expect("drop");
    }

    // The URL dies with its issuing token.
    let by = url.split("by=").nth(1).and_then(|s| s.split('&').next()).expect("by").to_owned();
    let (s, v) = app.post(&format!("/v1/tokens/{by}/revoke"), &admin, json!({})).await;
    assert_eq!(s, 200, "{v}");
    let r = app.http.get(format!("{}{url}", app.base)).send().await.expect("download");
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.expect("json");
    assert!(v["message"].as_str().is_some_and(|m| m.contains("issuing_token_revoked")), "{v}");

    // The trail has the uploads, the issues, the one redemption; refusals come aggregated.
    let actions = audit_actions(&app, &admin).await;
    assert_eq!(actions.iter().filter(|a| *a == "media.uploaded").count(), 2);
    assert_eq!(actions.iter().filter(|a| *a == "media.signed_url.issued").count(), 2);
    assert_eq!(
        actions.iter().filter(|a| *a == "media.signed_url.redeemed").count(),
        1,
        "nothing served, nothing redeemed"
    );
    assert_eq!(actions.iter().filter(|a| *a == "media.signed_url.refused").count(), 0);
    let (_, page) = app.get("/v1/audit/events?limit=1000", &admin).await;
    let up = page["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["action"] == "media.uploaded")
        .expect("upload event");
    assert_eq!(up["after"]["media_id"], media_id);

    // Uploads are closed once the case was submitted.
    let (s, _) = app
        .post(
            &format!("/v1/me/kyc/cases/{case_id}/transitions"),
            &tok,
            json!({"to": "documents_submitted", "reason": "done"}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(upload("selfie", "image/png", vec![1]).await.expect("req").status(), 409);
    app.handle.shutdown().await.expect("shutdown");
    // Shutdown wrote the last refusal window: one event for the five refusals.
    let c = app.db.database().connect(DbRole::App).await.expect("connect");
    let rows = c
        .query("SELECT after FROM fintrail.audit_events WHERE action = 'media.signed_url.refused' AND NOT allowed", &[])
        .await
        .expect("refusals");
    assert_eq!(rows.len(), 1);
    let after: Value = serde_json::from_str(rows[0].get::<_, &str>(0)).expect("json");
    assert_eq!(after["refusals"], 5, "{after}");
    assert_eq!(after["by_reason"]["bad_signature"], 3, "{after}");
    assert_eq!(after["by_reason"]["expired"], 1, "{after}");
    assert_eq!(after["by_reason"]["issuing_token_revoked"], 1, "{after}");
}

#[tokio::test]
async fn the_store_contract_on_local_files() {
    store_contract(Backend::Local).await;
}

#[tokio::test]
async fn the_store_contract_on_the_gcs_emulator() {
    store_contract(Backend::gcs()).await;
}

async fn read_all(store: &dyn MediaStore, key: &str) -> Result<Vec<u8>, StoreError> {
    let mut r = store.open(key).await?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).await?;
    Ok(out)
}

fn stage(store: &dyn MediaStore, bytes: &[u8]) -> PathBuf {
    let p = store.staging_path();
    std::fs::write(&p, bytes).expect("stage");
    p
}

/// The interface itself, below HTTP: what the handlers rely on.
async fn store_contract(backend: Backend) {
    let home = tempfile::tempdir().expect("dir");
    let media_dir = home.path().join("media");
    let store = backend.config(signer()).build(media_dir.clone()).expect("store");
    // Round trip: every byte value, sizes around the 64 KiB chunking, up to the 10 MiB cap.
    let mut keys = Vec::new();
    for size in [1usize, 65_535, 65_536, 65_537, 10 * 1024 * 1024] {
        let bytes: Vec<u8> = (0..size).map(|i| (i * 7 % 256) as u8).collect();
        let staged = stage(store.as_ref(), &bytes);
        let key = fintrail_api::media::store::new_key();
        store.commit(&staged, &key, "application/pdf").await.expect("commit");
        assert!(!staged.exists(), "the staging file is consumed");
        assert_eq!(read_all(store.as_ref(), &key).await.expect("read"), bytes, "{size} bytes round-trip");
        assert_eq!(backend.stored(&media_dir, &key).expect("stored"), bytes);
        keys.push(key);
    }
    // Missing: open and remove say NotFound.
    let missing = fintrail_api::media::store::new_key();
    assert!(matches!(store.open(&missing).await, Err(StoreError::NotFound)));
    assert!(matches!(store.remove(&missing).await, Err(StoreError::NotFound) | Ok(())));
    // Remove: gone, and the others stay.
    store.remove(&keys[0]).await.expect("remove");
    assert!(matches!(store.open(&keys[0]).await, Err(StoreError::NotFound)));
    assert!(backend.stored(&media_dir, &keys[0]).is_none());
    assert_eq!(backend.keys(&media_dir).len(), keys.len() - 1);
    // Keys that are not ours never reach the store.
    for bad in ["../etc/passwd", "media/../../x", "media/x?alt=json", "Media/X"] {
        assert!(matches!(store.open(bad).await, Err(StoreError::Io(_))), "{bad}");
        let staged = stage(store.as_ref(), b"x");
        assert!(store.commit(&staged, bad, "image/png").await.is_err(), "{bad}");
        assert!(!staged.exists(), "a failed commit consumes its staging file too");
    }
    assert_eq!(std::fs::read_dir(media_dir.join("staging")).expect("staging").count(), 0);
}

/// A signer that can be switched to fail like an unreachable IAM Credentials API.
#[derive(Debug)]
struct Switchable {
    inner: FakeBlobSigner,
    down: AtomicBool,
}

impl BlobSigner for Switchable {
    fn email(&self) -> &str {
        self.inner.email()
    }
    fn sign_blob(&self, blob: &[u8]) -> Result<Vec<u8>, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("signBlob: connection refused".into()));
        }
        self.inner.sign_blob(blob)
    }
}

/// GCS (or signBlob) unreachable: a 503 JSON error, nothing registered, nothing redeemed.
#[tokio::test]
async fn an_unreachable_gcs_answers_503_and_registers_nothing() {
    let backend = Backend::gcs();
    let signer = Arc::new(Switchable { inner: FakeBlobSigner::generate(SIGNER), down: AtomicBool::new(false) });
    let app = spawn_on(&backend, signer.clone()).await;
    let media_dir = app.ctx.home.media_dir();
    let admin = app.staff_token(Role::Admin).await;
    let analyst = app.staff_token(Role::KycAnalyst).await;
    let (_, tok) = app.customer(&admin).await;
    let (_, case) = app.post("/v1/me/kyc/cases", &tok, json!({})).await;
    let case_id = case["id"].as_i64().expect("id");
    let upload = || {
        app.http
            .post(format!("{}/v1/me/kyc/cases/{case_id}/media?kind=selfie", app.base))
            .bearer_auth(&tok)
            .header("content-type", "image/png")
            .body(vec![1u8, 2, 3, 4])
            .send()
    };
    let r = upload().await.expect("req");
    assert_eq!(r.status(), 201);
    let media_id = r.json::<Value>().await.expect("json")["id"].as_i64().expect("id");
    let (_, signed) = app.post(&format!("/v1/media/{media_id}/signed-url"), &analyst, json!({})).await;
    let url = signed["url"].as_str().expect("url").to_owned();

    let check_503 = |r: reqwest::Response| async move {
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"));
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["code"], "storage_unavailable", "{v}");
        assert!(!v["message"].as_str().unwrap_or_default().contains("X-Goog"), "no signed URL in the answer: {v}");
    };
    // signBlob unreachable.
    signer.down.store(true, Ordering::SeqCst);
    check_503(upload().await.expect("req")).await;
    check_503(app.http.get(format!("{}{url}", app.base)).send().await.expect("req")).await;
    signer.down.store(false, Ordering::SeqCst);
    assert_eq!(backend.keys(&media_dir).len(), 1);

    // The bucket unreachable: the emulator stopped.
    let Backend::Gcs(server) = backend else { unreachable!() };
    drop(server);
    check_503(upload().await.expect("req")).await;
    check_503(app.http.get(format!("{}{url}", app.base)).send().await.expect("req")).await;

    assert_eq!(media_rows(&app).await, 1, "no row for the refused uploads");
    assert_eq!(staging_count(&app), 0, "no staging file left");
    let actions = audit_actions(&app, &admin).await;
    assert_eq!(actions.iter().filter(|a| *a == "media.uploaded").count(), 1);
    assert_eq!(actions.iter().filter(|a| *a == "media.signed_url.redeemed").count(), 0, "nothing served");
    app.handle.shutdown().await.expect("shutdown");
}

/// No emulator, no silent pass: the harness fails and says how to install it.
#[test]
fn a_missing_emulator_fails_and_says_to_run_dev_setup() {
    let out = std::process::Command::new(std::env::current_exe().expect("exe"))
        .args(["--exact", "the_store_contract_on_the_gcs_emulator", "--nocapture"])
        .env("FAKE_GCS_SERVER_BIN", "/nonexistent/fake-gcs-server")
        .output()
        .expect("runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("run `./dev setup`"), "{text}");
}
