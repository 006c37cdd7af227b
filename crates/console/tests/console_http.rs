//! The console over real HTTP (the API's server on 127.0.0.1:0, a fresh database): sessions,
//! cookies and headers, CSRF, forged POSTs, revocation, the page × role matrix, bounded and
//! keyset-paged lists.

mod common;

use common::{csrf_in, set_cookie, spawn};
use fintrail_db::DbRole;
use fintrail_domain::{Permission, Role};

const STAFF: [Role; 4] = [Role::KycAnalyst, Role::ComplianceOfficer, Role::Auditor, Role::Admin];

#[tokio::test]
async fn login_gives_a_strict_http_only_expiring_cookie_and_every_page_a_strict_csp() {
    let app = spawn().await;
    let analyst = app.staff(Role::KycAnalyst).await;
    let res = app.login_raw(&analyst.token).await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/console");
    let cookie = set_cookie(&res, "ft_console").expect("session cookie").to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP (local): no Secure, or the browser would drop it");
    let csp = res.headers()["content-security-policy"].to_str().expect("csp").to_owned();
    assert!(
        csp.contains("default-src 'none'")
            && csp.contains("form-action 'self'")
            && csp.contains("frame-ancestors 'none'")
    );
    assert!(!csp.contains("unsafe-inline") && !csp.contains("script-src"), "no script at all: {csp}");
    // Behind the TLS-terminating front end: the __Host- cookie, Secure.
    let (login_cookie, csrf) = app.login_form().await;
    let res = app
        .http
        .post(format!("{}/console/login", app.base))
        .header("cookie", login_cookie)
        .header("x-forwarded-proto", "https")
        .form(&[("token", analyst.token.as_str()), ("csrf", &csrf)])
        .send()
        .await
        .expect("login");
    assert_eq!(res.status(), 303);
    let tls = set_cookie(&res, "__Host-ft_console").expect("__Host- cookie over TLS");
    assert!(tls.contains("; Secure") && tls.contains("HttpOnly") && tls.contains("SameSite=Strict"), "{tls}");
    // A page: no-store, nosniff, no-referrer, the CSP; the stored session is a hash, not the secret.
    let session = app.login(&analyst.token).await;
    let res =
        app.http.get(format!("{}/console/kyc", app.base)).header("cookie", &session.cookie).send().await.expect("page");
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert_eq!(res.headers()["referrer-policy"], "no-referrer");
    assert!(res.headers().contains_key("content-security-policy"));
    let html = res.text().await.expect("html");
    assert!(!html.contains("<script") && !html.contains("style="), "no script, no inline style");
    let secret = session.cookie.split_once('=').expect("pair").1;
    let c = app.db.connect(DbRole::App).await.expect("app");
    let stored: Vec<Vec<u8>> = c
        .query("SELECT session_hash FROM fintrail.console_sessions", &[])
        .await
        .expect("rows")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(stored.len(), 3);
    assert!(stored.iter().all(|h| h.len() == 32 && h.as_slice() != secret.as_bytes()));
    // Opening the session is on the trail, as the token's holder.
    let opened = c
        .query_one(
            "SELECT count(*) FROM fintrail.audit_events WHERE action = 'console.session.opened' AND actor = $1",
            &[&format!("staff:{}:{}", analyst.id, analyst.label)],
        )
        .await
        .expect("count")
        .get::<_, i64>(0);
    assert_eq!(opened, 3);
}

#[tokio::test]
async fn bad_tokens_customers_and_forms_without_their_csrf_token_get_no_session() {
    let app = spawn().await;
    let admin = app.staff(Role::Admin).await;
    // Unknown token: 401, the form again, no session.
    let res = app.login_raw("ft_not-a-token").await;
    assert_eq!(res.status(), 401);
    assert!(set_cookie(&res, "ft_console").is_none());
    // A customer's token: the console is for staff.
    let (s, c) = app
        .api(
            reqwest::Method::POST,
            "/v1/customers",
            &admin.token,
            Some(serde_json::json!({"display_name": "C", "email": "c@example.com"})),
        )
        .await;
    assert_eq!(s, 201);
    let id = c["id"].as_i64().expect("id");
    let (_, t) = app
        .api(reqwest::Method::POST, &format!("/v1/customers/{id}/tokens"), &admin.token, Some(serde_json::json!({})))
        .await;
    let res = app.login_raw(t["token"].as_str().expect("token")).await;
    assert_eq!(res.status(), 403);
    assert!(set_cookie(&res, "ft_console").is_none());
    // The login form without its double-submit cookie, or with another form's token: 403.
    let (cookie, _) = app.login_form().await;
    let (_, other_csrf) = app.login_form().await;
    for (cookie, csrf) in [(None, "x"), (Some(cookie.as_str()), other_csrf.as_str()), (Some(cookie.as_str()), "")] {
        let mut req = app
            .http
            .post(format!("{}/console/login", app.base))
            .form(&[("token", admin.token.as_str()), ("csrf", csrf)]);
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        let res = req.send().await.expect("login");
        assert_eq!(res.status(), 403);
        assert!(set_cookie(&res, "ft_console").is_none());
    }
    // No session: pages send to the login form; actions are 401.
    let (s, _) = app.page("ft_console=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "/console/kyc").await;
    assert_eq!(s, 303);
    let res = app.form("", "/console/kyc/1/transitions", &[("to", "approved"), ("reason", "r")]).await;
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn a_post_without_its_csrf_token_is_403_and_changes_nothing() {
    let app = spawn().await;
    let admin = app.staff(Role::Admin).await;
    let case_id = app.submitted_case(&admin.token).await;
    let session = app.login(&admin.token).await;
    let path = format!("/console/kyc/{case_id}/transitions");
    for fields in [
        vec![("to", "in_review"), ("reason", "looks fine")],
        vec![("to", "in_review"), ("reason", "looks fine"), ("csrf", "0000")],
        vec![("to", "in_review"), ("reason", "looks fine"), ("csrf", "")],
    ] {
        let res = app.form(&session.cookie, &path, &fields).await;
        assert_eq!(res.status(), 403);
        assert!(res.text().await.expect("body").contains("CSRF"));
    }
    // Another session's token does not do either.
    let other = app.login(&admin.token).await;
    let res = app.form(&session.cookie, &path, &[("to", "in_review"), ("reason", "r"), ("csrf", &other.csrf)]).await;
    assert_eq!(res.status(), 403);
    assert_eq!(app.case_state(case_id).await, "documents_submitted");
    assert_eq!(
        app.events(&format!("kyc_case:{case_id}"))
            .await
            .iter()
            .filter(|e| e.2 == "kyc.case.transitioned" && e.1.starts_with("staff:"))
            .count(),
        0
    );
    // With it, the transition goes through the API's procedure: history, state, event.
    let res =
        app.form(&session.cookie, &path, &[("to", "in_review"), ("reason", "starting"), ("csrf", &session.csrf)]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"].to_str().expect("loc"), format!("/console/kyc/{case_id}?done=in_review"));
    let request_id = res.headers()["x-request-id"].to_str().expect("rid").to_owned();
    assert_eq!(app.case_state(case_id).await, "in_review");
    let ev = app.events(&format!("kyc_case:{case_id}")).await;
    let last = ev.last().expect("event");
    assert_eq!(
        (last.1.as_str(), last.2.as_str(), last.4.as_deref(), last.5, last.6.as_deref()),
        (
            format!("staff:{}:{}", admin.id, admin.label).as_str(),
            "kyc.case.transitioned",
            Some("kyc.case.review"),
            true,
            Some(request_id.as_str())
        )
    );
    // A reason is required (the API's rule, the API's answer).
    let res = app.form(&session.cookie, &path, &[("to", "approved"), ("reason", ""), ("csrf", &session.csrf)]).await;
    assert_eq!(res.status(), 422);
    assert_eq!(app.case_state(case_id).await, "in_review");
}

#[tokio::test]
async fn without_the_permission_there_is_no_button_and_a_forged_post_is_403_and_audited() {
    let app = spawn().await;
    let admin = app.staff(Role::Admin).await;
    let auditor = app.staff(Role::Auditor).await;
    let case_id = app.submitted_case(&admin.token).await;
    let session = app.login(&auditor.token).await;
    let (s, html) = app.page(&session.cookie, &format!("/console/kyc/{case_id}")).await;
    assert_eq!(s, 200);
    assert!(!html.contains("/transitions") && !html.contains("Start review"), "no transition offered to an auditor");
    assert!(!html.contains("/console/media/"), "no preview without kyc.media.read");
    let path = format!("/console/kyc/{case_id}/transitions");
    let res =
        app.form(&session.cookie, &path, &[("to", "in_review"), ("reason", "forged"), ("csrf", &session.csrf)]).await;
    assert_eq!(res.status(), 403);
    let request_id = res.headers()["x-request-id"].to_str().expect("rid").to_owned();
    assert_eq!(app.case_state(case_id).await, "documents_submitted");
    let denied = app.events(&format!("route:POST {path}")).await;
    assert_eq!(denied.len(), 1, "{denied:?}");
    let d = &denied[0];
    assert_eq!(
        (d.1.as_str(), d.2.as_str(), d.4.as_deref(), d.5, d.6.as_deref()),
        (
            format!("staff:{}:{}", auditor.id, auditor.label).as_str(),
            "access.denied",
            Some("kyc.case.review"),
            false,
            Some(request_id.as_str())
        ),
        "recorded as the API records a 403"
    );
    // The analyst, who holds kyc.case.review and kyc.media.read, is offered both.
    let analyst = app.staff(Role::KycAnalyst).await;
    let s2 = app.login(&analyst.token).await;
    let (_, html) = app.page(&s2.cookie, &format!("/console/kyc/{case_id}")).await;
    assert!(html.contains("Start review") && html.contains("/console/media/"));
    // A preview is a 60-second signed URL issued under the analyst's token, then the bytes.
    let media = html.split("/console/media/").nth(1).and_then(|s| s.split('"').next()).expect("media id").to_owned();
    let res = app
        .http
        .get(format!("{}/console/media/{media}", app.base))
        .header("cookie", &s2.cookie)
        .send()
        .await
        .expect("media");
    assert_eq!(res.status(), 303);
    let url = res.headers()["location"].to_str().expect("loc").to_owned();
    assert!(url.starts_with("/v1/media/download?") && url.contains(&format!("by={}", analyst.id)), "{url}");
    let img = app.http.get(format!("{}{url}", app.base)).send().await.expect("download");
    assert_eq!(img.status(), 200);
    assert_eq!(img.bytes().await.expect("bytes").as_ref(), common::PASSPORT_PNG.as_slice());
    let ev = app.events(&format!("media:{media}")).await;
    assert!(ev.iter().any(|e| e.2 == "media.signed_url.issued"
        && e.1 == format!("staff:{}:{}", analyst.id, analyst.label)
        && e.4.as_deref() == Some("kyc.media.read")));
}

#[tokio::test]
async fn revoking_the_token_ends_its_sessions_on_the_next_request_and_logout_ends_one() {
    let app = spawn().await;
    let analyst = app.staff(Role::KycAnalyst).await;
    let session = app.login(&analyst.token).await;
    assert_eq!(app.page(&session.cookie, "/console/kyc").await.0, 200);
    // Revoked the way `fintrail token revoke` does from another process (this server's token
    // cache never hears of it): the very next request is sent to the login form.
    let c = app.db.connect(DbRole::App).await.expect("app");
    // With its audit event, as the database requires (migration 0036).
    c.batch_execute(&format!(
        "BEGIN; UPDATE fintrail.api_tokens SET revoked_at = now() WHERE id = {}; {}; COMMIT",
        analyst.id,
        fintrail_db::testing::RECORD_THIS_TRANSACTION
    ))
    .await
    .expect("revoke");
    let (s, _) = app.page(&session.cookie, "/console/kyc").await;
    assert_eq!(s, 303, "dead on the next click");
    let res = app
        .form(
            &session.cookie,
            "/console/kyc/1/transitions",
            &[("to", "in_review"), ("reason", "r"), ("csrf", &session.csrf)],
        )
        .await;
    assert_eq!(res.status(), 401);
    // Logout: the row goes, the cookie is cleared, the old cookie opens nothing; on the trail.
    let other = app.staff(Role::Auditor).await;
    let session = app.login(&other.token).await;
    let res = app.form(&session.cookie, "/console/logout", &[]).await;
    assert_eq!(res.status(), 403, "logout needs the CSRF token too");
    let res = app.form(&session.cookie, "/console/logout", &[("csrf", &session.csrf)]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/console/login");
    assert!(set_cookie(&res, "ft_console").expect("cleared").contains("Max-Age=0"));
    assert_eq!(app.page(&session.cookie, "/console/audit").await.0, 303);
    let closed: i64 = c
        .query_one(
            "SELECT count(*) FROM fintrail.audit_events WHERE action = 'console.session.closed' AND actor = $1",
            &[&format!("staff:{}:{}", other.id, other.label)],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(closed, 1);
}

#[tokio::test]
async fn every_page_requires_exactly_its_one_permission_for_every_staff_role() {
    let app = spawn().await;
    let (_, pages) = fintrail_api::console::router(app.handle.state.clone());
    assert!(pages.len() >= 15);
    let admin = app.staff(Role::Admin).await;
    let case_id = app.submitted_case(&admin.token).await;
    let c = app.db.connect(DbRole::App).await.expect("app");
    let media: i64 = c.query_one("SELECT min(id) FROM fintrail.media_objects", &[]).await.expect("m").get(0);
    let org = fintrail_tooling_org(&app).await;
    for role in STAFF {
        let t = app.staff(role).await;
        let session = app.login(&t.token).await;
        for p in &pages {
            let path = p
                .path
                .replace("/console/kyc/{id}", &format!("/console/kyc/{case_id}"))
                .replace("/console/kyb/{id}", &format!("/console/kyb/{org}"))
                .replace("/console/media/{id}", &format!("/console/media/{media}"))
                .replace("{seq}", "1")
                .replace("{id}", "1");
            let status = if p.method == reqwest::Method::GET {
                app.page(&session.cookie, &path).await.0
            } else {
                // A transition that does not exist from the current state: past the guard it is a 409.
                app.form(&session.cookie, &path, &[("to", "started"), ("reason", "matrix"), ("csrf", &session.csrf)])
                    .await
                    .status()
                    .as_u16()
            };
            let denials_before = app.events(&format!("route:{} {path}", p.method)).await.len();
            if role.grants(p.permission) {
                assert!(status != 403 && status != 401 && status < 500, "{role} {} {path}: {status}", p.method);
            } else {
                assert_eq!(status, 403, "{role} {} {path}", p.method);
                assert!(denials_before >= 1, "{role} {} {path}: the 403 is on the trail", p.method);
            }
        }
    }
    // Public by design, and nothing else: the list equals what the registry holds.
    let perms: std::collections::BTreeSet<Permission> = pages.iter().map(|p| p.permission).collect();
    assert!(perms.contains(&Permission::KycCaseReview) && perms.contains(&Permission::AuditRead));
}

async fn fintrail_tooling_org(app: &common::App) -> i64 {
    let c = app.db.connect(DbRole::App).await.expect("app");
    // With its audit event, as the database requires (migration 0036).
    c.batch_execute(&format!(
        "BEGIN; INSERT INTO fintrail.organizations (legal_name, registration_number, country, state) \
         VALUES ('Org', 'R-9', 'DE', 'registered'); {}; COMMIT",
        fintrail_db::testing::RECORD_THIS_TRANSACTION
    ))
    .await
    .expect("org");
    c.query_one("SELECT max(id) FROM fintrail.organizations", &[]).await.expect("org").get(0)
}

#[tokio::test]
async fn queues_and_the_trail_page_by_keyset_with_bounded_sizes() {
    let app = spawn().await;
    let admin = app.staff(Role::Admin).await;
    let mut ids = Vec::new();
    for _ in 0..12 {
        ids.push(app.submitted_case(&admin.token).await);
    }
    let session = app.login(&admin.token).await;
    // Walk the queue 10 at a time, oldest first: every case once, in order.
    let mut seen = Vec::new();
    let mut next = Some("/console/kyc?size=10".to_owned());
    while let Some(path) = next.take() {
        let (s, html) = app.page(&session.cookie, &path).await;
        assert_eq!(s, 200, "{html}");
        for part in html.split("href=\"/console/kyc/").skip(1) {
            seen.push(part.split('"').next().expect("id").parse::<i64>().expect("number"));
        }
        next = next_href(&html);
    }
    assert_eq!(seen, ids, "oldest first, each once, across pages");
    for bad in [
        "/console/kyc?size=1000",
        "/console/kyc?size=0",
        "/console/kyc?state=approved",
        "/console/kyc?after=zz",
        "/console/audit?size=5000",
        "/console/audit?action=nope",
    ] {
        assert_eq!(app.page(&session.cookie, bad).await.0, 400, "{bad}");
    }
    // The trail, filtered by subject, newest first, with the transition and its request id.
    let (s, html) = app.page(&session.cookie, &format!("/console/audit?subject=kyc_case:{}&size=10", ids[0])).await;
    assert_eq!(s, 200);
    assert!(html.contains("kyc.case.transitioned") && html.contains("kyc.case.created"));
    // A time window pages on (at, seq): every event of the last hour, each once, across pages.
    let from = (chrono::Utc::now() - chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M").to_string();
    let mut seqs = Vec::new();
    let mut next = Some(format!("/console/audit?from={from}&size=10"));
    while let Some(path) = next.take() {
        let (s, html) = app.page(&session.cookie, &path).await;
        assert_eq!(s, 200, "{path}: {html}");
        for part in html.split("href=\"/console/audit/events/").skip(1) {
            seqs.push(part.split('"').next().expect("seq").parse::<i64>().expect("number"));
        }
        next = next_href(&html);
    }
    let c = app.db.connect(DbRole::App).await.expect("app");
    let total: i64 = c.query_one("SELECT count(*) FROM fintrail.audit_events", &[]).await.expect("count").get(0);
    let unique: std::collections::BTreeSet<i64> = seqs.iter().copied().collect();
    assert!(total > 50 && seqs.len() as i64 == total && unique.len() == seqs.len(), "{} of {total}", seqs.len());
    let (s, html) = app.page(&session.cookie, "/console/audit/integrity").await;
    assert_eq!(s, 200);
    assert!(html.contains("Hash chain") && html.contains("Signed checkpoints"));
    assert!(csrf_in(&html).is_some());
}

#[tokio::test]
async fn a_customer_their_wallets_and_a_statement_each_under_its_own_permission() {
    let app = spawn().await;
    let wallets = fintrail_tooling::fixtures::funded_wallets(&app.db, 1, 12_345).await.expect("funded wallet");
    let wallet = wallets[0];
    let c = app.db.connect(DbRole::App).await.expect("app");
    let customer: i64 =
        c.query_one("SELECT customer_id FROM fintrail.wallets WHERE id = $1", &[&wallet]).await.expect("w").get(0);
    let auditor = app.staff(Role::Auditor).await;
    let s = app.login(&auditor.token).await;
    let (st, html) = app.page(&s.cookie, &format!("/console/customers/{customer}")).await;
    assert_eq!(st, 200);
    assert!(html.contains("Ledger customer 0") && html.contains("approved"), "profile and its KYC case");
    assert!(html.contains(&format!("/console/customers/{customer}/wallets")), "the auditor may read wallets: linked");
    let (st, html) = app.page(&s.cookie, &format!("/console/customers/{customer}/wallets")).await;
    assert_eq!(st, 200);
    assert!(html.contains("123.45 EUR") && html.contains(&format!("/console/wallets/{wallet}")));
    let (st, html) = app.page(&s.cookie, &format!("/console/wallets/{wallet}")).await;
    assert_eq!(st, 200);
    assert!(html.contains("deposit") && html.contains("123.45 EUR"), "the statement's deposit line");
    // The analyst reads customers but not wallets: no link, and the page is refused.
    let analyst = app.staff(Role::KycAnalyst).await;
    let s = app.login(&analyst.token).await;
    let (_, html) = app.page(&s.cookie, &format!("/console/customers/{customer}")).await;
    assert!(!html.contains("/wallets"), "no link to a page the role may not open");
    assert_eq!(app.page(&s.cookie, &format!("/console/customers/{customer}/wallets")).await.0, 403);
    assert_eq!(app.page(&s.cookie, "/console/customers/999999").await.0, 404);
}

#[tokio::test]
async fn an_organizations_wallets_and_holds_under_wallet_read() {
    let app = spawn().await;
    let org = fintrail_tooling::fixtures::organization(&app.db, fintrail_domain::KybState::Cleared).await.expect("org");
    let c = app.db.connect(DbRole::App).await.expect("app");
    // With its audit event, as the database requires (migration 0036).
    c.batch_execute(&format!(
        "BEGIN; INSERT INTO fintrail.wallets (kind, organization_id, currency) VALUES ('organization', {org}, 'JPY'); {}; COMMIT",
        fintrail_db::testing::RECORD_THIS_TRANSACTION
    ))
    .await
    .expect("organization wallet");
    let wallet: i64 = c
        .query_one("SELECT id FROM fintrail.wallets WHERE organization_id = $1", &[&org])
        .await
        .expect("wallet")
        .get(0);
    let auditor = app.staff(Role::Auditor).await;
    let s = app.login(&auditor.token).await;
    let (st, html) = app.page(&s.cookie, &format!("/console/kyb/{org}")).await;
    assert_eq!(st, 200);
    assert!(html.contains(&format!("/console/kyb/{org}/wallets")), "the auditor may read wallets: linked");
    let (st, html) = app.page(&s.cookie, &format!("/console/kyb/{org}/wallets")).await;
    assert_eq!(st, 200, "{html}");
    assert!(html.contains(&format!("Organization {org}: wallets")), "{html}");
    assert!(html.contains(&format!("/console/wallets/{wallet}")) && html.contains("0 JPY"), "{html}");
    // The analyst screens organizations but may not read wallets: no link, and the page is refused.
    let analyst = app.staff(Role::KycAnalyst).await;
    let s = app.login(&analyst.token).await;
    let (st, html) = app.page(&s.cookie, &format!("/console/kyb/{org}")).await;
    if st == 200 {
        assert!(!html.contains("/wallets"), "no link to a page the role may not open");
    }
    assert_eq!(app.page(&s.cookie, &format!("/console/kyb/{org}/wallets")).await.0, 403);
    // An owner that does not exist is a 404, not an empty list.
    let s = app.login(&auditor.token).await;
    assert_eq!(app.page(&s.cookie, "/console/kyb/999999/wallets").await.0, 404);
    assert_eq!(app.page(&s.cookie, "/console/customers/999999/wallets").await.0, 404);
    assert_eq!(app.page(&s.cookie, "/console/kyb/abc/wallets").await.0, 400);
}

/// The `rel="next"` link of a page, if any.
fn next_href(html: &str) -> Option<String> {
    html.contains("rel=\"next\"").then(|| {
        let before = html.split("rel=\"next\"").next().expect("split");
        let href = before.rsplit("href=\"").next().expect("href");
        href.split('"').next().expect("end").replace("&amp;", "&")
    })
}

/// The least-privilege page analyzes the checked-in `infra/envs` with the `fintrail-iam`
/// library: one section per environment, its findings (excepted ones with their ticket) and
/// its escalation paths. The analytics page without a pipeline or file says so (no 500).
#[tokio::test]
async fn the_iam_page_shows_each_environments_findings_and_paths_and_analytics_degrade_clearly() {
    let app = spawn().await;
    let auditor = app.staff(Role::Auditor).await;
    let session = app.login(&auditor.token).await;
    let (status, html) = app.page(&session.cookie, "/console/iam").await;
    assert_eq!(status, 200, "{html}");
    for env in ["dev", "staging", "prod"] {
        assert!(html.contains(&format!("Environment <code>{env}</code>")), "{env} has its section: {html}");
    }
    assert!(html.contains("IAM010") && html.contains("excepted") && html.contains("ticket"), "{html}");
    assert!(html.contains("media-signer") && html.contains("sign-blob"), "an escalation path and its method: {html}");
    assert!(html.contains("0 failing"), "the checked-in code has no failing finding: {html}");
    let checkout = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("checkout");
    assert!(html.contains("infra/modules/iam/main.tf:"), "{html}");
    assert!(!html.contains(&checkout.display().to_string()), "paths are the checkout's, not the server's folders");
    let (status, html) = app.page(&session.cookie, "/console/analytics").await;
    assert_eq!(status, 200);
    assert_eq!(html.matches("Not available yet").count(), 4, "{html}");
    // The analyst holds neither permission.
    let analyst = app.staff(Role::KycAnalyst).await;
    let session = app.login(&analyst.token).await;
    assert_eq!(app.page(&session.cookie, "/console/iam").await.0, 403);
    assert_eq!(app.page(&session.cookie, "/console/analytics").await.0, 403);
}

/// A session unused for 30 minutes is dead (migration 0044), whatever its 8-hour life says; a
/// used one is renewed by the database's clock, and the application can neither choose that
/// time nor change anything else of a session.
#[tokio::test]
async fn a_session_idle_for_30_minutes_is_dead_and_the_app_cannot_backdate_or_extend_one() {
    let app = spawn().await;
    let analyst = app.staff(Role::KycAnalyst).await;
    let session = app.login(&analyst.token).await;
    let other = app.login(&analyst.token).await;
    let admin = app.db.connect(DbRole::Admin).await.expect("admin");
    let c = app.db.connect(DbRole::App).await.expect("app");
    // The application asks for a stamp in the past, or a longer life: neither happens.
    c.execute("UPDATE fintrail.console_sessions SET last_seen_at = '2000-01-01T00:00:00Z'", &[]).await.expect("renew");
    let stale: i64 = c
        .query_one(
            "SELECT count(*) FROM fintrail.console_sessions WHERE last_seen_at < now() - interval '1 minute'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(stale, 0, "the database stamps now(), not the application's time");
    let e = c
        .execute("UPDATE fintrail.console_sessions SET expires_at = expires_at + interval '1 day'", &[])
        .await
        .expect_err("no longer life");
    let msg = e.as_db_error().map(|d| d.message().to_owned()).unwrap_or_default();
    assert!(msg.contains("permission denied"), "no UPDATE of expires_at is granted: {e:?}");
    // 31 minutes of idleness for one session, as only the owner's DDL could fake it.
    admin
        .batch_execute(
            "ALTER TABLE fintrail.console_sessions DISABLE TRIGGER console_sessions_immutable;
             UPDATE fintrail.console_sessions SET last_seen_at = now() - interval '31 minutes'
              WHERE id = (SELECT min(id) FROM fintrail.console_sessions);
             ALTER TABLE fintrail.console_sessions ENABLE TRIGGER console_sessions_immutable;",
        )
        .await
        .expect("age one session");
    let (s, _) = app.page(&session.cookie, "/console/kyc").await;
    assert_eq!(s, 303, "the idle session is sent to the login form");
    assert_eq!(app.page(&other.cookie, "/console/kyc").await.0, 200, "the other one lives on");
}
