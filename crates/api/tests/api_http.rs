//! The real app over real HTTP: middleware order, the authorization matrix, cross-customer
//! access, every (from, to) pair of both state machines through the API, bad input.

mod common;

use std::collections::BTreeSet;

use common::{spawn, TestApp};
use fintrail_domain::{KybState, KycState, Permission, Role, State};
use reqwest::Method;
use serde_json::{json, Value};

fn stages(app: &TestApp, request_id: &str) -> Vec<&'static str> {
    app.handle.state.stages.as_ref().map(|s| s.of(request_id)).unwrap_or_default()
}

async fn with_request_id(app: &TestApp, path: &str, token: Option<&str>, rid: &str) -> u16 {
    let mut req = app.http.get(format!("{}{path}", app.base)).header("x-request-id", rid);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.expect("request");
    assert_eq!(res.headers().get("x-request-id").and_then(|v| v.to_str().ok()), Some(rid), "request id echoed");
    res.status().as_u16()
}

#[tokio::test]
async fn middleware_order_unauthenticated_never_reaches_authorization_or_handler() {
    let app = spawn().await;
    let auditor = app.staff_token(Role::Auditor).await;
    let analyst = app.staff_token(Role::KycAnalyst).await;
    // No token, a malformed header, an unknown token: stopped at authentication.
    assert_eq!(with_request_id(&app, "/v1/audit/events", None, "rid-none").await, 401);
    assert_eq!(stages(&app, "rid-none"), vec!["authn"]);
    let res = app
        .http
        .get(format!("{}/v1/audit/events", app.base))
        .header("authorization", "Basic abc")
        .header("x-request-id", "rid-basic")
        .send()
        .await
        .expect("req");
    assert_eq!(res.status(), 401);
    assert_eq!(stages(&app, "rid-basic"), vec!["authn"]);
    assert_eq!(with_request_id(&app, "/v1/audit/events", Some("ft_not-a-real-token"), "rid-bogus").await, 401);
    assert_eq!(stages(&app, "rid-bogus"), vec!["authn"]);
    // Authenticated without the permission: stopped at authorization.
    assert_eq!(with_request_id(&app, "/v1/audit/events", Some(&analyst), "rid-denied").await, 403);
    assert_eq!(stages(&app, "rid-denied"), vec!["authn", "authz"]);
    // Allowed: all the way, in order.
    assert_eq!(with_request_id(&app, "/v1/audit/events", Some(&auditor), "rid-ok").await, 200);
    assert_eq!(stages(&app, "rid-ok"), vec!["authn", "authz", "handler"]);
    // A revoked token no longer authenticates.
    let admin = app.staff_token(Role::Admin).await;
    let (_, tokens_page) = app.get("/v1/audit/events?limit=1000", &admin).await;
    let auditor_token_id = tokens_page["events"]
        .as_array()
        .and_then(|evs| evs.iter().find(|e| e["action"] == "token.issued" && e["after"]["role"] == "auditor"))
        .and_then(|e| e["after"]["token_id"].as_i64())
        .expect("auditor token issue event");
    let (s, _) = app.post(&format!("/v1/tokens/{auditor_token_id}/revoke"), &admin, json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(with_request_id(&app, "/v1/audit/events", Some(&auditor), "rid-revoked").await, 401);
    assert_eq!(stages(&app, "rid-revoked"), vec!["authn"]);
    app.handle.shutdown().await.expect("shutdown");
}

/// Fills path parameters with ids that exist (so allowed cells can succeed).
fn concrete(path: &str, case_id: i64, org_id: i64, customer_id: i64, media_id: i64, token_id: i64) -> String {
    path.replace("{case_id}", &case_id.to_string())
        .replace("{org_id}", &org_id.to_string())
        .replace("{customer_id}", &customer_id.to_string())
        .replace("{media_id}", &media_id.to_string())
        .replace("{token_id}", &token_id.to_string())
}

#[tokio::test]
async fn authorization_matrix_every_endpoint_every_role_and_no_idor() {
    let app = spawn().await;
    let admin = app.staff_token(Role::Admin).await;
    let (cust_a, tok_a) = app.customer(&admin).await;
    let (_cust_b, tok_b) = app.customer(&admin).await;
    let (s, case) = app.post("/v1/me/kyc/cases", &tok_a, json!({})).await;
    assert_eq!(s, 201);
    let case_id = case["id"].as_i64().expect("case id");
    let res = app
        .http
        .post(format!("{}/v1/me/kyc/cases/{case_id}/media?kind=selfie", app.base))
        .bearer_auth(&tok_a)
        .header("content-type", "image/png")
        .body(vec![0x89, b'P', b'N', b'G', 1, 2, 3])
        .send()
        .await
        .expect("upload");
    assert_eq!(res.status(), 201);
    let media_id = res.json::<Value>().await.expect("json")["id"].as_i64().expect("media id");
    let (s, org) = app
        .post(
            "/v1/kyb/organizations",
            &admin,
            json!({"legal_name": "Acme", "registration_number": "R1", "country": "DE"}),
        )
        .await;
    assert_eq!(s, 201);
    let org_id = org["id"].as_i64().expect("org id");

    let mut tokens: Vec<(Role, String)> = vec![(Role::Customer, tok_a.clone())];
    for r in Role::ALL.into_iter().filter(|r| *r != Role::Customer) {
        tokens.push((r, app.staff_token(r).await));
    }
    // A token id that exists, to be revoked by allowed cells (a fresh one per attempt).
    let endpoints = app.handle.endpoints.clone();
    assert!(endpoints.len() >= 17, "every protected route is registered");
    let mut cells = 0;
    for ep in &endpoints {
        for (role, token) in &tokens {
            let victim = fintrail_api::identity::create_token(&app.db, Role::Auditor, None, "victim", 60, "test")
                .await
                .expect("victim")
                .token_id;
            let path = concrete(ep.path, case_id, org_id, cust_a, media_id, victim);
            let body = match (ep.method.as_str(), ep.path) {
                ("GET", _) => None,
                (_, "/v1/customers") => Some(json!({"display_name": "M", "email": "m@example.com"})),
                (_, "/v1/kyb/organizations") => {
                    Some(json!({"legal_name": "M", "registration_number": "M", "country": "FR"}))
                }
                // A target each endpoint's own permission covers (the table may still say 409).
                (_, "/v1/me/kyc/cases/{case_id}/transitions") => {
                    Some(json!({"to": "documents_submitted", "reason": "matrix"}))
                }
                (_, "/v1/kyc/cases/{case_id}/transitions") => Some(json!({"to": "in_review", "reason": "matrix"})),
                (_, p) if p.ends_with("/screening") => Some(json!({"to": "screening", "reason": "matrix"})),
                (_, p) if p.ends_with("/decision") => Some(json!({"to": "manual_review", "reason": "matrix"})),
                _ => Some(json!({})),
            };
            let (status, resp) = if ep.path.ends_with("/media") {
                let r = app
                    .http
                    .post(format!("{}{path}?kind=selfie", app.base))
                    .bearer_auth(token)
                    .header("content-type", "image/png")
                    .body(vec![1, 2, 3])
                    .send()
                    .await
                    .expect("upload");
                let s = r.status().as_u16();
                (s, r.json::<Value>().await.unwrap_or(Value::Null))
            } else {
                app.send(ep.method.clone(), &path, Some(token), body).await
            };
            cells += 1;
            if role.grants(ep.permission) {
                assert!(
                    status != 401 && status != 403 && status < 500,
                    "{role} holds {} but {} {} answered {status} {resp}",
                    ep.permission,
                    ep.method,
                    ep.path
                );
            } else {
                assert_eq!(
                    status, 403,
                    "{role} lacks {} yet {} {} answered {status} {resp}",
                    ep.permission, ep.method, ep.path
                );
                assert_eq!(resp["code"], "forbidden");
            }
        }
    }
    assert_eq!(cells, endpoints.len() * Role::ALL.len());

    // Cross-customer: B cannot read, submit, or upload to A's case; same answer as "no such case".
    let (s, case) = app.post("/v1/me/kyc/cases", &tok_a, json!({})).await;
    assert_eq!(s, 201);
    let case_id = case["id"].as_i64().expect("case id");
    let (s, _) = app.get(&format!("/v1/me/kyc/cases/{case_id}"), &tok_b).await;
    assert_eq!(s, 404);
    let (s, _) = app
        .post(
            &format!("/v1/me/kyc/cases/{case_id}/transitions"),
            &tok_b,
            json!({"to": "documents_submitted", "reason": "x"}),
        )
        .await;
    assert_eq!(s, 404);
    let r = app
        .http
        .post(format!("{}/v1/me/kyc/cases/{case_id}/media?kind=selfie", app.base))
        .bearer_auth(&tok_b)
        .header("content-type", "image/png")
        .body(vec![1])
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), 404);
    let (s, _) = app.get("/v1/me/kyc/cases/999999", &tok_b).await;
    assert_eq!(s, 404);
    // A's case is untouched and the attempts are on record as denied.
    let (_, a_case) = app.get(&format!("/v1/me/kyc/cases/{case_id}"), &tok_a).await;
    assert_eq!(a_case["state"], "started");
    let (_, page) = app.get("/v1/audit/events?limit=1000", &admin).await;
    let denied = page["events"]
        .as_array()
        .map(|e| {
            e.iter().filter(|e| e["action"] == "access.denied" && e["subject"] == format!("kyc_case:{case_id}")).count()
        })
        .unwrap_or(0);
    assert_eq!(denied, 3, "read, submit and upload attempts by B are audited");

    // The OpenAPI document lists every registered endpoint and names its permission.
    let doc = fintrail_api::openapi::document();
    for ep in &endpoints {
        let op = &doc["paths"][ep.path][ep.method.as_str().to_lowercase()];
        assert!(op.is_object(), "{} {} missing from OpenAPI", ep.method, ep.path);
        let desc = op["description"].as_str().unwrap_or_default();
        assert!(
            desc.contains(&format!("`{}`", ep.permission.as_str())),
            "{} {} description names {}",
            ep.method,
            ep.path,
            ep.permission
        );
    }
    app.handle.shutdown().await.expect("shutdown");
}

/// Drives a record through the API to `target` along valid transitions.
async fn kyc_drive(app: &TestApp, case_id: i64, customer: &str, staff: &str, target: KycState) {
    let mut at = KycState::INITIAL;
    for next in KycState::path_from_initial(target).expect("reachable") {
        let (s, b) = kyc_attempt(app, case_id, customer, staff, at, next).await;
        assert_eq!(s, 200, "drive {at:?} -> {next:?}: {b}");
        at = next;
    }
}

async fn kyc_attempt(
    app: &TestApp,
    case_id: i64,
    customer: &str,
    staff: &str,
    from: KycState,
    to: KycState,
) -> (u16, Value) {
    let body = json!({"to": to.as_str(), "reason": "exhaustive"});
    match KycState::transition(from, to) {
        Some(Permission::KycCaseSubmit) => {
            app.post(&format!("/v1/me/kyc/cases/{case_id}/transitions"), customer, body).await
        }
        _ => app.post(&format!("/v1/kyc/cases/{case_id}/transitions"), staff, body).await,
    }
}

#[tokio::test]
async fn kyc_every_pair_via_api_matches_rust_table() {
    let app = spawn().await;
    let admin = app.staff_token(Role::Admin).await;
    let analyst = app.staff_token(Role::KycAnalyst).await;
    let mut accepted = BTreeSet::new();
    for from in KycState::ALL {
        for to in KycState::ALL {
            let (_, tok) = app.customer(&admin).await;
            let (s, case) = app.post("/v1/me/kyc/cases", &tok, json!({})).await;
            assert_eq!(s, 201);
            let id = case["id"].as_i64().expect("id");
            kyc_drive(&app, id, &tok, &analyst, *from).await;
            let (s, body) = kyc_attempt(&app, id, &tok, &analyst, *from, *to).await;
            let (_, now) = app.get(&format!("/v1/kyc/cases/{id}"), &analyst).await;
            if s == 200 {
                accepted.insert((from.as_str(), to.as_str()));
                assert_eq!(now["state"], to.as_str());
                assert_eq!(
                    body["history"].as_array().map(Vec::len),
                    Some(KycState::path_from_initial(*from).map_or(0, |p| p.len()) + 1)
                );
            } else {
                assert_eq!(s, 409, "{from:?} -> {to:?}: {body}");
                assert_eq!(body["code"], "invalid_transition");
                assert_eq!(now["state"], from.as_str(), "nothing half-written");
                // The customer endpoint refuses it too (409 or, for staff transitions, 403/409).
                let (s2, _) = app
                    .post(
                        &format!("/v1/me/kyc/cases/{id}/transitions"),
                        &tok,
                        json!({"to": to.as_str(), "reason": "x"}),
                    )
                    .await;
                assert!(s2 == 409 || s2 == 403, "{from:?} -> {to:?} via customer: {s2}");
            }
        }
    }
    let rust: BTreeSet<_> = KycState::TRANSITIONS.iter().map(|t| (t.from.as_str(), t.to.as_str())).collect();
    assert_eq!(accepted, rust, "the API accepts exactly the Rust table");
    app.handle.shutdown().await.expect("shutdown");
}

/// A new organization registered through the API by `token`; its id.
async fn new_org(app: &TestApp, token: &str, legal_name: &str) -> i64 {
    let body = json!({"legal_name": legal_name, "registration_number": "R", "country": "NL"});
    let (s, org) = app.post("/v1/kyb/organizations", token, body).await;
    assert_eq!(s, 201, "{org}");
    org["id"].as_i64().expect("id")
}

async fn kyb_attempt(app: &TestApp, org: i64, token: &str, from: KybState, to: KybState) -> (u16, Value) {
    let body = json!({"to": to.as_str(), "reason": "exhaustive"});
    match KybState::transition(from, to) {
        Some(Permission::KybOrgDecide) => app.post(&format!("/v1/kyb/organizations/{org}/decision"), token, body).await,
        _ => app.post(&format!("/v1/kyb/organizations/{org}/screening"), token, body).await,
    }
}

#[tokio::test]
async fn kyb_every_pair_via_api_matches_rust_table() {
    let app = spawn().await;
    let officer = app.staff_token(Role::ComplianceOfficer).await;
    let mut accepted = BTreeSet::new();
    for from in KybState::ALL {
        for to in KybState::ALL {
            let id = new_org(&app, &officer, "Acme").await;
            let mut at = KybState::INITIAL;
            for next in KybState::path_from_initial(*from).expect("reachable") {
                assert_eq!(kyb_attempt(&app, id, &officer, at, next).await.0, 200);
                at = next;
            }
            let (s, body) = kyb_attempt(&app, id, &officer, *from, *to).await;
            let (_, now) = app.get(&format!("/v1/kyb/organizations/{id}"), &officer).await;
            if s == 200 {
                accepted.insert((from.as_str(), to.as_str()));
                assert_eq!(now["state"], to.as_str());
            } else {
                assert_eq!(s, 409, "{from:?} -> {to:?}: {body}");
                assert_eq!(now["state"], from.as_str());
            }
        }
    }
    let rust: BTreeSet<_> = KybState::TRANSITIONS.iter().map(|t| (t.from.as_str(), t.to.as_str())).collect();
    assert_eq!(accepted, rust, "the API accepts exactly the Rust table");
    // A valid transition through the wrong endpoint is a 403 (the table names another permission).
    let id = new_org(&app, &officer, "W").await;
    let (s, b) = app
        .post(
            &format!("/v1/kyb/organizations/{id}/decision"),
            &officer,
            json!({"to": "screening", "reason": "wrong door"}),
        )
        .await;
    assert_eq!(s, 403, "{b}");
    app.handle.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn concurrent_reviews_of_one_case_cannot_both_win() {
    let app = spawn().await;
    let admin = app.staff_token(Role::Admin).await;
    let (_, tok) = app.customer(&admin).await;
    let (_, case) = app.post("/v1/me/kyc/cases", &tok, json!({})).await;
    let id = case["id"].as_i64().expect("id");
    kyc_drive(&app, id, &tok, &admin, KycState::InReview).await;
    let path = format!("/v1/kyc/cases/{id}/transitions");
    let (a, b) = tokio::join!(
        app.post(&path, &admin, json!({"to": "approved", "reason": "a"})),
        app.post(&path, &admin, json!({"to": "rejected", "reason": "b"}))
    );
    let wins = [a.0, b.0].iter().filter(|s| **s == 200).count();
    assert_eq!(wins, 1, "{a:?} {b:?}");
    assert!([a.0, b.0].contains(&409));
    app.handle.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn bad_input_is_a_4xx_json_error_and_writes_nothing() {
    let app = spawn().await;
    let admin = app.staff_token(Role::Admin).await;
    let count = || async {
        let c = app.db.connect(fintrail_db::DbRole::App).await.expect("app");
        let n: i64 = c
            .query_one("SELECT (SELECT count(*) FROM customers) + (SELECT count(*) FROM organizations)", &[])
            .await
            .expect("count")
            .get(0);
        n
    };
    let before = count().await;
    let raw = |body: &'static str, ct: &'static str| {
        app.http
            .post(format!("{}/v1/customers", app.base))
            .bearer_auth(&admin)
            .header("content-type", ct)
            .body(body)
            .send()
    };
    for (body, ct, want) in [
        ("{not json", "application/json", 400),
        (r#"{"display_name": 5, "email": "a@b.c"}"#, "application/json", 422),
        (r#"{"display_name": "x", "email": "a@b.c", "admin": true}"#, "application/json", 422),
        (r#"{"display_name": "x"}"#, "application/json", 422),
        (r#"{"display_name": "", "email": "a@b.c"}"#, "application/json", 422),
        (r#"{"display_name": "x", "email": "no-at-sign"}"#, "application/json", 422),
        (r#"{"display_name": "x", "email": "a@b.c"}"#, "text/plain", 415),
        ("[]", "application/json", 422),
    ] {
        let res = raw(body, ct).await.expect("request");
        let status = res.status().as_u16();
        let v: Value = res.json().await.expect("JSON error body");
        assert_eq!(status, want, "{body} ({ct}): {v}");
        assert!(v["code"].is_string() && v["message"].is_string(), "{v}");
    }
    let huge = format!(r#"{{"display_name": "{}", "email": "a@b.c"}}"#, "x".repeat(100_000));
    let res = app
        .http
        .post(format!("{}/v1/customers", app.base))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .expect("req");
    assert_eq!(res.status(), 413);
    assert_eq!(res.json::<Value>().await.expect("json")["code"], "payload_too_large");
    // Bad organization fields, unknown ids, malformed ids, unknown routes, unknown state names.
    for (path, body, want) in [
        ("/v1/kyb/organizations", json!({"legal_name": "A", "registration_number": "R", "country": "germany"}), 422),
        ("/v1/kyb/organizations/424242/screening", json!({"to": "screening", "reason": "r"}), 404),
        ("/v1/kyb/organizations/abc/screening", json!({"to": "screening", "reason": "r"}), 400),
        ("/v1/kyb/organizations/1/screening", json!({"to": "teleported", "reason": "r"}), 422),
        ("/v1/kyc/cases/424242/transitions", json!({"to": "approved", "reason": "r"}), 404),
        ("/v1/customers/424242/tokens", json!({}), 404),
        ("/v1/customers/1/tokens", json!({"ttl_secs": 0}), 422),
        ("/v1/media/424242/signed-url", json!({}), 404),
        ("/v1/tokens/424242/revoke", json!({}), 404),
    ] {
        let (s, v) = app.post(path, &admin, body).await;
        assert_eq!(s, want, "{path}: {v}");
        assert!(v["code"].is_string(), "{path}: {v}");
    }
    let (s, v) = app.get("/v1/no/such/route", &admin).await;
    assert_eq!(s, 404);
    assert_eq!(v["code"], "not_found");
    let (s, _) = app.get("/v1/audit/events?limit=0", &admin).await;
    assert_eq!(s, 422);
    let (s, _) = app.get("/v1/audit/events?limit=abc", &admin).await;
    assert_eq!(s, 400);
    let (s, _) = app.get("/v1/audit/events?bogus=1", &admin).await;
    assert_eq!(s, 400);
    // A transition reason that is too long: refused, nothing written.
    let (_, org) = app
        .post("/v1/kyb/organizations", &admin, json!({"legal_name": "A", "registration_number": "R", "country": "DE"}))
        .await;
    let id = org["id"].as_i64().expect("id");
    let (s, _) = app
        .post(
            &format!("/v1/kyb/organizations/{id}/screening"),
            &admin,
            json!({"to": "screening", "reason": "r".repeat(1001)}),
        )
        .await;
    assert_eq!(s, 422);
    let (_, now) = app.get(&format!("/v1/kyb/organizations/{id}"), &admin).await;
    assert_eq!(now["state"], "registered");
    assert_eq!(count().await, before + 1, "only the one valid organization was written");
    app.handle.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn health_and_openapi_are_public() {
    let app = spawn().await;
    let (s, v) = app.send(Method::GET, "/healthz", None, None).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")));
    let (s, v) = app.send(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(s, 200);
    assert!(v["openapi"].as_str().is_some_and(|o| o.starts_with("3.")));
    assert!(v["components"]["securitySchemes"]["bearer"].is_object());
    // The schema's "not blank" pattern is the one the server enforces.
    assert_eq!(
        v["components"]["schemas"]["CreateCustomer"]["properties"]["display_name"]["pattern"].as_str(),
        Some(fintrail_api::validate::NON_BLANK_PATTERN)
    );
    app.handle.shutdown().await.expect("shutdown");
}

/// An organization rescreened for years outgrows what a response lists: the API then lists its
/// newest transitions (oldest first, ending with the latest), not its first ones, and `version`
/// still counts them all.
#[tokio::test]
async fn a_long_history_lists_the_newest_transitions() {
    use fintrail_api::machines::apply_transition;
    use fintrail_api::transition::HISTORY_LISTED_MAX;

    let app = spawn().await;
    let officer = app.staff_token(Role::ComplianceOfficer).await;
    let id = new_org(&app, &officer, "Old Co").await;
    // Written directly, in one transaction with their audit events (through the API this would
    // take minutes): screening, clear, then (screening, clear) cycles past the limit.
    let total = HISTORY_LISTED_MAX + 3;
    let mut admin = app.db.connect(fintrail_db::DbRole::Admin).await.expect("admin");
    let tx = admin.transaction().await.expect("begin");
    let mut at = KybState::INITIAL;
    let mut ids = Vec::new();
    for i in 0..total {
        let next = if i % 2 == 0 { KybState::Screening } else { KybState::Clear };
        ids.push(apply_transition(&tx, id, at, next, "system:test", "rescreening", None).await.expect("transition"));
        at = next;
    }
    tx.batch_execute(fintrail_db::testing::RECORD_THIS_TRANSACTION).await.expect("audit events");
    tx.commit().await.expect("commit");

    let (s, now) = app.get(&format!("/v1/kyb/organizations/{id}"), &officer).await;
    assert_eq!(s, 200, "{now}");
    let listed: Vec<i64> =
        now["history"].as_array().expect("history").iter().map(|h| h["id"].as_i64().expect("id")).collect();
    let newest = &ids[ids.len() - HISTORY_LISTED_MAX as usize..];
    assert_eq!(listed, newest, "the newest {HISTORY_LISTED_MAX} transitions, oldest first");
    assert_eq!(now["version"].as_i64(), Some(total), "version counts every transition");
    assert_eq!(now["state"], at.as_str());
    // Below the limit, every transition is listed.
    let small_id = new_org(&app, &officer, "New Co").await;
    assert_eq!(kyb_attempt(&app, small_id, &officer, KybState::INITIAL, KybState::Screening).await.0, 200);
    let (_, small) = app.get(&format!("/v1/kyb/organizations/{small_id}"), &officer).await;
    assert_eq!(small["history"].as_array().map(Vec::len), Some(1));
    assert_eq!(small["version"].as_i64(), Some(1));
    app.handle.shutdown().await.expect("shutdown");
}
