//! The console in a real browser: Debian's headless Chromium driven over WebDriver
//! (`chromedriver`, installed by `./dev setup`) with `fantoccini`. The real server runs on
//! 127.0.0.1:0 against a fresh database; the browser's network is closed (only loopback).
//! Screenshots of every step are saved under `<target>/console-screenshots/` (printed).

mod common;

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{spawn, App};
use fantoccini::{Client, ClientBuilder, Locator};
use fintrail_db::DbRole;
use fintrail_domain::Role;

/// chromedriver on a free loopback port, in a process group of its own; when dropped (test
/// passed or panicked), the group is ended by its id: chromedriver and the Chromium it started.
struct Driver {
    child: Child,
    url: String,
    profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group's id is chromedriver's pid: only what this test started.
        let _ = Command::new("kill").arg("--").arg(format!("-{}", self.child.id())).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromedriver() -> PathBuf {
    let p =
        std::env::var_os("CHROMEDRIVER").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/chromedriver"));
    assert!(p.exists(), "{} not found: `./dev setup` installs Debian's chromium and chromium-driver", p.display());
    p
}

async fn start_driver() -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let child = Command::new(chromedriver())
        .arg(format!("--port={port}"))
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "chromedriver did not listen within 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A fresh profile per run: no state from an earlier browser, nothing shared.
    Driver { child, url, profile: tempfile::tempdir().expect("profile dir") }
}

async fn browser(driver: &Driver) -> Client {
    let profile = driver.profile.path();
    let args = vec![
        "--headless".to_owned(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-dev-shm-usage".into(),
        "--window-size=1280,1000".into(),
        format!("--user-data-dir={}", profile.display()),
    ];
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({ "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()), "args": args }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a WebDriver session with headless Chromium")
}

/// Where this run's screenshots go.
fn shots_dir() -> PathBuf {
    let target =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).parent().map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    let path = shots_dir().join(format!("{name}.png"));
    std::fs::write(&path, png).expect("write screenshot");
    println!("screenshot: {}", path.display());
}

/// The page's `<h1>` once it reads `want` (a navigation may still be under way: polled for at
/// most 10 s); the last text seen otherwise, for the assertion to show.
async fn h1_is(c: &Client, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(e) = c.find(Locator::Css("main h1")).await {
            if let Ok(t) = e.text().await {
                if t == want {
                    return t;
                }
                last = t;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    last
}

/// The text of `css` once it contains `want` (polled for at most 10 s); the last seen otherwise.
async fn text_of(c: &Client, css: &str, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(e) = c.find(Locator::Css(css)).await {
            if let Ok(t) = e.text().await {
                if t.contains(want) {
                    return t;
                }
                last = t;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    last
}

async fn login(c: &Client, app: &App, token: &str) {
    c.goto(&format!("{}/console/login", app.base)).await.expect("login page");
    c.find(Locator::Id("token")).await.expect("token field").send_keys(token).await.expect("type");
    c.find(Locator::Css("main button[type=submit]")).await.expect("button").click().await.expect("submit");
}

/// Submits a form built in the page (what a hand-forged POST from a signed-in browser is).
async fn forge(c: &Client, action: &str, with_csrf: bool) {
    let script = r#"
        const [action, withCsrf] = arguments;
        const f = document.createElement('form');
        f.method = 'post'; f.action = action;
        const add = (n, v) => { const i = document.createElement('input'); i.type = 'hidden'; i.name = n; i.value = v; f.appendChild(i); };
        add('to', 'in_review'); add('reason', 'forged by hand');
        if (withCsrf) add('csrf', document.querySelector('input[name=csrf]').value);
        document.body.appendChild(f); f.submit();
    "#;
    c.execute(script, vec![serde_json::json!(action), serde_json::json!(with_csrf)]).await.expect("forge");
    wait_for(c, |u| !u.contains("/console/kyc/") || u.contains("/transitions")).await;
}

/// The element `loc` finds once the page has it (polled for at most 10 s).
async fn find_soon(c: &Client, loc: Locator<'_>) -> fantoccini::elements::Element {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match c.find(loc).await {
            Ok(e) => return e,
            Err(e) if Instant::now() > deadline => panic!("{loc:?} not found within 10 s: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn wait_for(c: &Client, cond: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let url = c.current_url().await.expect("url").to_string();
        if cond(&url) || Instant::now() > deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_approve_audit_logout_and_refusals_in_chromium() {
    let app = spawn().await;
    let admin = app.staff(Role::Admin).await;
    let case_id = app.submitted_case(&admin.token).await;
    let other_case = app.submitted_case(&admin.token).await;
    let analyst = app.staff(Role::KycAnalyst).await;
    let auditor = app.staff(Role::Auditor).await;
    let driver = start_driver().await;
    let c = browser(&driver).await;
    println!("screenshots in {}", shots_dir().display());

    // Log in as the analyst: the queue.
    c.goto(&format!("{}/console/login", app.base)).await.expect("login page");
    shot(&c, "01-login").await;
    login(&c, &app, &analyst.token).await;
    wait_for(&c, |u| u.ends_with("/console/kyc")).await;
    assert_eq!(h1_is(&c, "KYC review queue").await, "KYC review queue");
    shot(&c, "02-queue").await;

    // Open the case: its documents are shown through signed URLs.
    c.find(Locator::Css(&format!("a[href='/console/kyc/{case_id}']")))
        .await
        .expect("case link")
        .click()
        .await
        .expect("open");
    assert_eq!(h1_is(&c, &format!("KYC case {case_id}")).await, format!("KYC case {case_id}"));
    let loaded = c
        .execute(
            "return Array.from(document.querySelectorAll('figure img')).map(i => i.complete ? i.naturalWidth : -1)",
            vec![],
        )
        .await
        .expect("images");
    let widths: Vec<i64> = loaded.as_array().expect("array").iter().filter_map(|v| v.as_i64()).collect();
    assert_eq!(widths, vec![160, 160], "both previews decoded (a 160 px wide PNG each)");
    shot(&c, "03-case-with-previews").await;

    // Start the review, then approve, each with a reason.
    c.find(Locator::Id("reason-in_review")).await.expect("reason").send_keys("documents legible").await.expect("type");
    c.find(Locator::Css("button[value=in_review]")).await.expect("button").click().await.expect("start review");
    let notice = text_of(&c, "p.notice.ok", "in review").await;
    assert!(notice.contains("in review"), "{notice}");
    c.find(Locator::Id("reason-approved"))
        .await
        .expect("reason")
        .send_keys("passport matches the selfie")
        .await
        .expect("type");
    shot(&c, "04-approving").await;
    c.find(Locator::Css("button[value=approved]")).await.expect("button").click().await.expect("approve");
    let notice = text_of(&c, "p.notice.ok", "approved").await;
    assert!(notice.contains("approved"), "{notice}");
    shot(&c, "05-approved").await;
    assert_eq!(app.case_state(case_id).await, "approved");
    assert!(
        c.find_all(Locator::LinkText("This case in the audit trail")).await.expect("links").is_empty(),
        "no link to a page the analyst's role may not open (audit.read)"
    );

    // Log out: back to the form, and the session is gone.
    c.find(Locator::Css("header form button")).await.expect("logout").click().await.expect("log out");
    assert_eq!(h1_is(&c, "Log in").await, "Log in");
    c.goto(&format!("{}/console/kyc", app.base)).await.expect("queue");
    assert_eq!(h1_is(&c, "Log in").await, "Log in", "no session after logout");
    shot(&c, "06-logged-out").await;

    // The approval in the audit viewer: actor, permission, request id.
    let db = app.db.connect(DbRole::App).await.expect("app");
    let rid: String = db
        .query_one(
            "SELECT request_id FROM fintrail.kyc_case_transitions WHERE case_id = $1 AND to_state = 'approved'",
            &[&case_id],
        )
        .await
        .expect("history")
        .get(0);
    // The auditor reads the trail: filter by the case, find the approval.
    login(&c, &app, &auditor.token).await;
    // The click submits the form; the next page arrives later: wait for it, then for its nav
    // link (finding it at once raced the navigation: NoSuchElement on the login page).
    wait_for(&c, |u| !u.contains("/console/login")).await;
    find_soon(&c, Locator::LinkText("Audit trail")).await.click().await.expect("audit");
    assert_eq!(h1_is(&c, "Audit trail").await, "Audit trail");
    c.find(Locator::Id("subject"))
        .await
        .expect("subject")
        .send_keys(&format!("kyc_case:{case_id}"))
        .await
        .expect("type");
    c.find(Locator::Css("form.filters button")).await.expect("filter").click().await.expect("filter");
    wait_for(&c, |u| u.contains("subject=kyc_case")).await;
    let actor = format!("staff:{}:{}", analyst.id, analyst.label);
    let rows = c.find_all(Locator::Css("table.audit tbody tr")).await.expect("rows");
    let mut found = None;
    for r in rows {
        let text = r.text().await.expect("row text");
        if text.contains("kyc.case.transitioned") && text.contains(&rid) {
            found = Some(text);
        }
    }
    let row = found.expect("the approval's event is listed with its request id");
    assert!(row.contains(&actor) && row.contains("kyc.case.review") && row.contains("allowed"), "{row}");
    shot(&c, "07-audit-trail").await;
    let seq: i64 = db
        .query_one(
            "SELECT seq FROM fintrail.audit_events WHERE request_id = $1 AND action = 'kyc.case.transitioned'",
            &[&rid],
        )
        .await
        .expect("seq")
        .get(0);
    c.find(Locator::Css(&format!("a[href='/console/audit/events/{seq}']")))
        .await
        .expect("event link")
        .click()
        .await
        .expect("detail");
    let after = text_of(&c, "#after + pre", "approved").await;
    assert!(after.contains("\"state\": \"approved\""), "{after}");
    shot(&c, "08-audit-event").await;

    // The auditor holds no review permission: no transition offered; a hand-forged POST is 403
    // and on the trail; a POST without the CSRF token is 403; nothing changed.
    c.goto(&format!("{}/console/kyc/{other_case}", app.base)).await.expect("case");
    assert!(c.find_all(Locator::Css("form.transition")).await.expect("forms").is_empty(), "no transition button");
    assert!(c.find_all(Locator::Css("button[value=in_review]")).await.expect("buttons").is_empty());
    shot(&c, "09-auditor-sees-no-button").await;
    forge(&c, &format!("/console/kyc/{other_case}/transitions"), true).await;
    assert_eq!(h1_is(&c, "Forbidden").await, "Forbidden");
    shot(&c, "10-forged-post-403").await;
    let denied: i64 = db
        .query_one(
            "SELECT count(*) FROM fintrail.audit_events WHERE action = 'access.denied' AND actor = $1 \
             AND permission = 'kyc.case.review' AND subject = $2 AND NOT allowed AND request_id IS NOT NULL",
            &[
                &format!("staff:{}:{}", auditor.id, auditor.label),
                &format!("route:POST /console/kyc/{other_case}/transitions"),
            ],
        )
        .await
        .expect("denied")
        .get(0);
    assert_eq!(denied, 1);
    c.goto(&format!("{}/console/kyc/{other_case}", app.base)).await.expect("case");
    forge(&c, &format!("/console/kyc/{other_case}/transitions"), false).await;
    assert_eq!(h1_is(&c, "Forbidden").await, "Forbidden");
    let msg = text_of(&c, "p.notice.error", "CSRF").await;
    assert!(msg.contains("CSRF"), "{msg}");
    shot(&c, "11-post-without-csrf-403").await;
    assert_eq!(app.case_state(other_case).await, "documents_submitted");

    // The auditor's token is revoked (by an admin, through the API): the next click is the login form.
    c.goto(&format!("{}/console/audit", app.base)).await.expect("audit");
    assert_eq!(h1_is(&c, "Audit trail").await, "Audit trail");
    let (s, v) = app.api(reqwest::Method::POST, &format!("/v1/tokens/{}/revoke", auditor.id), &admin.token, None).await;
    assert_eq!(s, 200, "{v}");
    c.find(Locator::LinkText("KYC queue")).await.expect("nav link").click().await.expect("click");
    assert_eq!(h1_is(&c, "Log in").await, "Log in", "a revoked token's session is dead on the next click");
    shot(&c, "12-revoked-session-dead").await;
    c.close().await.expect("close browser");
}

/// Whether the analytics page's KYC funnel draws `state` at `cases` cases (its bar's title).
async fn funnel_shows(c: &Client, app: &App, state: &str, cases: u32) -> bool {
    c.goto(&format!("{}/console/analytics", app.base)).await.expect("analytics");
    let html = c.source().await.expect("page source");
    html.contains(&format!("<title>{state}: {cases} cases</title>"))
}

/// The CDC pipeline runs in this process, as inside `fintrail up`: an approval made in the
/// console is in the KYC funnel chart within 2 s (the issue's freshness deadline; the
/// pipeline commits every 200 ms). The page with real charts passes axe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kyc_funnel_chart_reflects_an_approval_within_2_s() {
    let app = spawn().await;
    let admin = app.staff(Role::Admin).await;
    let case_id = app.submitted_case(&admin.token).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let ctx = app.ctx.clone();
    let pipeline = tokio::spawn(async move {
        fintrail_cdc::run_pipeline(&ctx, async move {
            let _ = stopped.await;
        })
        .await
    });
    let axe_js = axe_source();
    let driver = start_driver().await;
    let c = browser(&driver).await;
    login(&c, &app, &admin.token).await;
    wait_for(&c, |u| u.ends_with("/console/kyc")).await;

    // The snapshot is in once the funnel shows the submitted case (bounded poll).
    let deadline = Instant::now() + Duration::from_secs(60);
    while !funnel_shows(&c, &app, "documents_submitted", 1).await {
        assert!(!pipeline.is_finished(), "the pipeline stopped");
        assert!(Instant::now() < deadline, "the pipeline's snapshot did not reach the console within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!funnel_shows(&c, &app, "approved", 1).await);
    shot(&c, "30-analytics-before").await;
    let serious = axe(&c, &axe_js, "analytics").await;
    assert!(serious.is_empty(), "serious accessibility violations:\n{}", serious.join("\n"));
    // The charts' figures are reachable by keyboard (their tables follow each chart).
    tab_to(&c, "a.skip").await;

    // Approve in the console.
    c.goto(&format!("{}/console/kyc/{case_id}", app.base)).await.expect("case");
    for (to, reason) in [("in_review", "documents legible"), ("approved", "passport matches the selfie")] {
        c.find(Locator::Id(&format!("reason-{to}"))).await.expect("reason").send_keys(reason).await.expect("type");
        c.find(Locator::Css(&format!("button[value={to}]"))).await.expect("button").click().await.expect("submit");
        let notice = text_of(&c, "p.notice.ok", &to.replace('_', " ")).await;
        assert!(notice.contains(&to.replace('_', " ")), "{notice}");
    }
    // The approval has committed (the page answered after it): the deadline starts now.
    let committed = Instant::now();
    let mut seen = false;
    while committed.elapsed() < Duration::from_secs(2) {
        if funnel_shows(&c, &app, "approved", 1).await {
            seen = true;
            break;
        }
    }
    assert!(seen, "the approval is not in the KYC funnel 2 s after it committed");
    println!("analytics: the approval reached the KYC funnel after {} ms", committed.elapsed().as_millis());
    shot(&c, "31-analytics-after-approval").await;
    c.close().await.expect("close browser");
    let _ = stop.send(());
    pipeline.await.expect("pipeline task").expect("the pipeline stops cleanly");
}

/// The pinned axe-core (`./dev setup` fetches it from npm, hash-checked, into `.deps/`).
const AXE_JS_SHA256: &str = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"; // pragma: allowlist secret

fn axe_source() -> String {
    use sha2::Digest as _;
    let path = std::env::var_os("FINTRAIL_AXE_JS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.deps/axe-core/axe.min.js"));
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (`./dev setup` fetches axe-core, pinned, from npm)", path.display()));
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&bytes)),
        AXE_JS_SHA256,
        "{} is not the pinned axe-core",
        path.display()
    );
    String::from_utf8(bytes).expect("axe is text")
}

/// Runs axe (WCAG 2.0/2.1 A and AA rules, plus best practices) on the current page; returns
/// the serious and critical violations, and prints every violation found.
async fn axe(c: &Client, axe_js: &str, page: &str) -> Vec<String> {
    let script = format!(
        "const done = arguments[arguments.length - 1];\n{axe_js}\n\
         axe.run(document, {{ runOnly: {{ type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] }} }})\
         .then(r => done({{ passes: r.passes.length, violations: r.violations.map(v => ({{ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' ')) }})) }}))\
         .catch(e => done({{ passes: 0, violations: [{{ id: 'axe-error', impact: 'critical', help: String(e), nodes: [] }}] }}));"
    );
    let out = c.execute_async(&script, vec![]).await.expect("axe runs");
    let passes = out["passes"].as_u64().unwrap_or(0);
    println!("axe: {page}: {passes} rules passed, {} violated", out["violations"].as_array().map_or(0, Vec::len));
    assert!(passes >= 10, "{page}: axe did not run its rules ({out})");
    let mut serious = Vec::new();
    for v in out["violations"].as_array().expect("violations") {
        let line = format!("{page}: {} ({}) {} {}", v["id"], v["impact"], v["help"], v["nodes"]);
        println!("axe: {line}");
        if matches!(v["impact"].as_str(), Some("serious" | "critical")) {
            serious.push(line);
        }
    }
    serious
}

async fn press(c: &Client, keys: &str) {
    c.active_element().await.expect("focus").send_keys(keys).await.expect("keys");
}

/// Tabs forward until the focused element matches `css` (at most 60 presses).
async fn tab_to(c: &Client, css: &str) {
    let tab = fantoccini::key::Key::Tab.to_string();
    for _ in 0..60 {
        let hit = c
            .execute(
                "return document.activeElement && document.activeElement.matches(arguments[0]);",
                vec![serde_json::json!(css)],
            )
            .await
            .expect("focus check");
        if hit.as_bool() == Some(true) {
            return;
        }
        press(c, &tab).await;
    }
    panic!("{css} is not reachable with the Tab key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_passes_axe_and_a_review_works_by_keyboard_alone() {
    let app = spawn().await;
    let admin = app.staff(Role::Admin).await;
    let case_id = app.submitted_case(&admin.token).await;
    let post = |path: String, body: serde_json::Value| {
        let app = &app;
        let token = admin.token.clone();
        async move { app.api(reqwest::Method::POST, &path, &token, Some(body)).await }
    };
    let (s, org) = post(
        "/v1/kyb/organizations".into(),
        serde_json::json!({"legal_name": "Example Trading GmbH", "registration_number": "HRB 1", "country": "DE"}),
    )
    .await;
    assert_eq!(s, 201, "{org}");
    let org = org["id"].as_i64().expect("org id");
    for to in ["screening", "potential_match"] {
        let (s, v) = post(
            format!("/v1/kyb/organizations/{org}/screening"),
            serde_json::json!({"to": to, "reason": "screening run"}),
        )
        .await;
        assert_eq!(s, 200, "{v}");
    }
    let axe_js = axe_source();
    let driver = start_driver().await;
    let c = browser(&driver).await;

    // By keyboard alone: the token field has the focus; Enter logs in.
    c.goto(&format!("{}/console/login", app.base)).await.expect("login");
    let mut serious = axe(&c, &axe_js, "login").await;
    let enter = fantoccini::key::Key::Enter.to_string();
    press(&c, &format!("{}{enter}", admin.token)).await;
    wait_for(&c, |u| u.ends_with("/console/kyc")).await;
    assert_eq!(h1_is(&c, "KYC review queue").await, "KYC review queue");
    // The skip link comes first; the case link is reachable; Enter opens it.
    tab_to(&c, "a.skip").await;
    tab_to(&c, &format!("a[href='/console/kyc/{case_id}']")).await;
    press(&c, &enter).await;
    assert_eq!(h1_is(&c, &format!("KYC case {case_id}")).await, format!("KYC case {case_id}"));
    tab_to(&c, "#reason-in_review").await;
    press(&c, "legible documents, starting").await;
    tab_to(&c, "button[value=in_review]").await;
    press(&c, &enter).await;
    let notice = text_of(&c, "p.notice.ok", "in review").await;
    assert!(notice.contains("in review"), "{notice}");
    assert_eq!(app.case_state(case_id).await, "in_review");
    shot(&c, "20-keyboard-review").await;

    // Every page, signed in as an admin (who sees them all), then the error page and logout.
    let db = app.db.connect(DbRole::App).await.expect("app");
    let seq: i64 = db.query_one("SELECT max(seq) FROM fintrail.audit_events", &[]).await.expect("seq").get(0);
    for (name, path) in [
        ("kyc-queue", "/console/kyc".to_owned()),
        ("kyc-case", format!("/console/kyc/{case_id}")),
        ("kyb-queue", "/console/kyb".to_owned()),
        ("organization", format!("/console/kyb/{org}")),
        ("audit", "/console/audit".to_owned()),
        ("audit-event", format!("/console/audit/events/{seq}")),
        ("integrity", "/console/audit/integrity".to_owned()),
        ("jobs", "/console/jobs".to_owned()),
        ("analytics-unavailable", "/console/analytics".to_owned()),
        ("iam", "/console/iam".to_owned()),
        ("customer", "/console/customers/1".to_owned()),
        ("wallets", "/console/customers/1/wallets".to_owned()),
        ("organization-wallets", format!("/console/kyb/{org}/wallets")),
        ("not-found", "/console/kyc/999999".to_owned()),
    ] {
        c.goto(&format!("{}{path}", app.base)).await.expect("page");
        serious.extend(axe(&c, &axe_js, name).await);
        shot(&c, &format!("21-a11y-{name}")).await;
    }
    // Log out by keyboard.
    tab_to(&c, "header form button").await;
    press(&c, &enter).await;
    assert_eq!(h1_is(&c, "Log in").await, "Log in");
    assert!(serious.is_empty(), "serious accessibility violations:\n{}", serious.join("\n"));
    c.close().await.expect("close browser");
}
