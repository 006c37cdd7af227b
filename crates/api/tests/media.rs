//! Media over real HTTP: bounded, typed, streamed uploads with a recorded content hash; signed
//! URLs that open exactly one object, once issued, until expiry, with `Cache-Control: no-store`.

mod common;

use common::spawn;
use fintrail_domain::Role;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

#[tokio::test]
async fn upload_sign_download_and_refusals() {
    let app = spawn().await;
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
    let staging = app.ctx.home.media_dir().join("staging");
    assert_eq!(std::fs::read_dir(&staging).expect("staging").count(), 0, "refused uploads leave nothing behind");
    // A good upload.
    let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let r = upload("id_document", "application/pdf", content.clone()).await.expect("req");
    assert_eq!(r.status(), 201);
    let media: Value = r.json().await.expect("json");
    assert_eq!(media["sha256"], hex::encode(Sha256::digest(&content)));
    assert_eq!(media["size_bytes"], content.len() as i64);
    let media_id = media["id"].as_i64().expect("id");
    let (_, media2) = {
        let r = upload("selfie", "image/jpeg", vec![0xff, 0xd8, 0xff]).await.expect("req");
        (r.status(), r.json::<Value>().await.expect("json"))
    };
    let other_id = media2["id"].as_i64().expect("id");

    // The customer cannot mint URLs; the analyst can; lifetimes are bounded.
    let (s, _) = app.post(&format!("/v1/media/{media_id}/signed-url"), &tok, json!({})).await;
    assert_eq!(s, 403);
    let (s, _) = app.post(&format!("/v1/media/{media_id}/signed-url"), &analyst, json!({"ttl_secs": 604_801})).await;
    assert_eq!(s, 422);
    let (s, signed) = app.post(&format!("/v1/media/{media_id}/signed-url"), &analyst, json!({})).await;
    assert_eq!(s, 200, "{signed}");
    let url = signed["url"].as_str().expect("url").to_owned();
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

    // The trail has the upload, the issue, the redemption and the refusals.
    let (_, page) = app.get("/v1/audit/events?limit=1000", &admin).await;
    let actions: Vec<String> = page["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["action"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(actions.iter().filter(|a| *a == "media.uploaded").count(), 2);
    assert!(actions.iter().any(|a| a == "media.signed_url.issued"));
    assert_eq!(actions.iter().filter(|a| *a == "media.signed_url.redeemed").count(), 1);
    // Refusals are unauthenticated: aggregated per window, never one event each (below).
    assert_eq!(actions.iter().filter(|a| *a == "media.signed_url.refused").count(), 0);
    // No PII or file content in the trail: the upload event references ids and the hash.
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
    // Shutdown wrote the last refusal window: one event for the four refusals.
    let c = app.db.database().connect(fintrail_db::DbRole::App).await.expect("connect");
    let rows = c
        .query("SELECT after FROM fintrail.audit_events WHERE action = 'media.signed_url.refused' AND NOT allowed", &[])
        .await
        .expect("refusals");
    assert_eq!(rows.len(), 1);
    let after: Value = serde_json::from_str(rows[0].get::<_, &str>(0)).expect("json");
    assert_eq!(after["refusals"], 4, "{after}");
    assert_eq!(after["by_reason"]["bad_signature"], 3, "{after}");
    assert_eq!(after["by_reason"]["expired"], 1, "{after}");
}
