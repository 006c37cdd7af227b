//! The tracker adapters against fake ClickUp and GitHub servers on 127.0.0.1 (the real
//! services are unreachable from here). The HTTP is real: the fakes parse what the
//! adapters send and answer from a script.

mod common;

use fintrail_trace::config::Config;
use fintrail_trace::git::{Change, Commit};
use fintrail_trace::message::references;
use fintrail_trace::report::Links;
use fintrail_trace::trace::{evaluate, Traced};
use fintrail_trace::tracker::http::{ApiError, RetryPolicy};
use fintrail_trace::tracker::{publish, ClickUp, GitHub, Tracker};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A request as the fake saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: String,
}

/// One scripted answer.
#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay_ms: u64,
}

fn reply(status: u16, body: &str) -> Reply {
    Reply { status, headers: Vec::new(), body: body.to_owned(), delay_ms: 0 }
}

/// A fake HTTP API on 127.0.0.1: answers each connection with the next scripted reply and
/// records the request. It stops after its script (or 60 s), so no test can hang on it.
struct FakeApi {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Connections accepted and not yet answered (or dropped).
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
}

impl FakeApi {
    fn start(script: Vec<Reply>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let script = Arc::new(Mutex::new(script.into_iter()));
        let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&in_flight);
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                let (stream, _) = match listener.accept() {
                    Ok(s) => s,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                let Some(r) = script.lock().unwrap().next() else { return };
                let record = Arc::clone(&record);
                let counter = Arc::clone(&counter);
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                // One thread per connection, so a slow reply does not delay the next request.
                std::thread::spawn(move || {
                    serve(stream, r, &record);
                    counter.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                });
            }
        });
        Self { url, seen, in_flight }
    }

    /// What the fake saw, once every accepted connection has been handled (a bounded poll,
    /// not a fixed sleep: a loaded machine may be slow to run the connection threads).
    fn seen(&self) -> Vec<Seen> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.in_flight.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            assert!(Instant::now() < deadline, "the fake's connection threads did not finish within 30 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        self.seen.lock().unwrap().clone()
    }
}

fn serve(stream: std::net::TcpStream, r: Reply, record: &Mutex<Vec<Seen>>) {
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or("").to_owned());
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let len: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut body = vec![0u8; len.min(1 << 20)];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    record.lock().unwrap().push(Seen { method, path, headers, body: String::from_utf8_lossy(&body).into_owned() });
    std::thread::sleep(Duration::from_millis(r.delay_ms));
    let mut out = stream;
    let mut head = format!("HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n", r.status, r.body.len());
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = out.write_all(head.as_bytes());
    let _ = out.write_all(r.body.as_bytes());
}

/// The fake ClickUp API (`/api/v2` prefix, like the real one).
struct FakeClickUp(FakeApi);

impl FakeClickUp {
    fn start(script: Vec<Reply>) -> Self {
        Self(FakeApi::start(script))
    }
    fn adapter(&self, policy: RetryPolicy) -> ClickUp {
        let url = format!("{}/api/v2", self.0.url);
        let env = move |k: &str| match k {
            "FINTRAIL_CLICKUP_API_URL" => Some(url.clone()),
            "FINTRAIL_CLICKUP_TOKEN" => Some("pk_test_SECRET".to_owned()),
            _ => None,
        };
        let links = Links { commit_base: Some("https://github.com/acme/fintrail".into()) };
        ClickUp::from_env(&env, links, policy).unwrap()
    }
}

/// The fake GitHub REST API.
struct FakeGitHub(FakeApi);

impl FakeGitHub {
    fn start(script: Vec<Reply>) -> Self {
        Self(FakeApi::start(script))
    }
    fn adapter(&self, policy: RetryPolicy) -> GitHub {
        let url = self.0.url.clone();
        let env = move |k: &str| match k {
            "FINTRAIL_GITHUB_API_URL" => Some(url.clone()),
            "FINTRAIL_GITHUB_TOKEN" => Some("ghp_SECRET".to_owned()),
            "FINTRAIL_GITHUB_REPO" => Some("acme/fintrail".to_owned()),
            _ => None,
        };
        GitHub::from_env(&env, Links::default(), policy).unwrap()
    }
}

fn fast() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        timeout_ms: 2_000,
        backoff_ms: 10,
        max_retry_after_ms: 2_000,
        max_body_bytes: 1 << 20,
    }
}

fn traced(message: &str, paths: &[&str]) -> Traced {
    let config = Config::default();
    let commit = Commit {
        sha: "0123456789abcdef0123456789abcdef01234567".into(), // pragma: allowlist secret (a commit sha)
        parents: vec!["f".repeat(40)],
        author_name: "Ann".into(),
        author_email: "ann@example.com".into(),
        authored_at: "2024-05-01T10:00:00Z".into(),
        committed_at: "2024-05-01T10:00:00Z".into(),
        message: message.into(),
        changes: paths.iter().map(|p| Change { status: "M".into(), path: p.as_bytes().to_vec(), from: None }).collect(),
        shallow_boundary: false,
    };
    let refs = references(message, &config);
    evaluate(commit, refs, &config, |_| None)
}

#[test]
fn clickup_comment_request_is_built_as_documented() {
    let fake = FakeClickUp::start(vec![reply(200, r#"{"id":"458","hist_id":"x","date":1}"#)]);
    let cu = fake.adapter(fast());
    let t = traced("Grant role\n\nTask: CU-86b1x2\nSee #12", &["infra/iam.tf"]);
    let out = publish(&cu, std::slice::from_ref(&t), false);
    assert_eq!(out.sent, 1, "{:?}", out.failed);
    let seen = fake.0.seen();
    assert_eq!(seen.len(), 1, "the #12 GitHub reference is not a ClickUp task");
    let req = &seen[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/api/v2/task/86b1x2/comment");
    assert_eq!(req.headers["authorization"], "pk_test_SECRET");
    assert_eq!(req.headers["content-type"], "application/json");
    let body: serde_json::Value = serde_json::from_str(&req.body).unwrap();
    assert_eq!(body["notify_all"], false);
    let text = body["comment_text"].as_str().unwrap();
    assert!(text.contains("0123456789") && text.contains("infra/iam.tf"), "{text}");
    assert!(text.contains("https://github.com/acme/fintrail/commit/0123456789abcdef"), "{text}");
}

#[test]
fn clickup_task_status_and_malformed_json() {
    let fake = FakeClickUp::start(vec![
        reply(200, r#"{"id":"86b1x2","status":{"status":"in review","type":"custom"}}"#),
        reply(200, "{not json"),
        reply(200, r#"{"id":"86b1x2"}"#),
    ]);
    let cu = fake.adapter(fast());
    assert_eq!(cu.task_status("CU-86b1x2").unwrap().as_deref(), Some("in review"));
    assert!(matches!(cu.task_status("CU-86b1x2"), Err(ApiError::MalformedResponse(_))));
    assert!(matches!(cu.task_status("CU-86b1x2"), Err(ApiError::MalformedResponse(_))));
    let seen = fake.0.seen();
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].path, "/api/v2/task/86b1x2");
    assert_eq!(cu.task_status("#12").unwrap(), None, "GitHub refs have no ClickUp status");
}

#[test]
fn unauthorized_and_not_found_are_not_retried() {
    let fake = FakeClickUp::start(vec![reply(401, r#"{"err":"Token invalid"}"#), reply(404, "{}")]);
    let cu = fake.adapter(fast());
    assert_eq!(cu.task_status("CU-1").unwrap_err(), ApiError::Unauthorized { status: 401 });
    assert_eq!(cu.task_status("CU-1").unwrap_err(), ApiError::NotFound);
    assert_eq!(fake.0.seen().len(), 2);
    // A refused token stops publishing at once (every request would fail the same way).
    let fake = FakeClickUp::start(vec![reply(401, "{}"), reply(200, "{}")]);
    let cu = fake.adapter(fast());
    let commits = vec![traced("a\n\nTask: CU-1", &[]), traced("b\n\nTask: CU-2", &[])];
    let out = publish(&cu, &commits, false);
    assert_eq!((out.sent, out.failed.len()), (0, 1));
}

#[test]
fn rate_limit_waits_for_retry_after_then_succeeds() {
    let mut limited = reply(429, r#"{"err":"Rate limit reached"}"#);
    limited.headers.push(("Retry-After", "1".into()));
    let fake = FakeClickUp::start(vec![limited, reply(200, r#"{"status":{"status":"open"}}"#)]);
    let cu = fake.adapter(fast());
    let t = Instant::now();
    assert_eq!(cu.task_status("CU-1").unwrap().as_deref(), Some("open"));
    assert!(t.elapsed() >= Duration::from_millis(900), "Retry-After honoured");
    assert_eq!(fake.0.seen().len(), 2);
    // A Retry-After beyond the policy fails fast instead of hanging.
    let mut long = reply(429, "{}");
    long.headers.push(("Retry-After", "3600".into()));
    let fake = FakeClickUp::start(vec![long]);
    let cu = fake.adapter(fast());
    assert_eq!(cu.task_status("CU-1").unwrap_err(), ApiError::RateLimited { retry_after_s: Some(3600) });
}

#[test]
fn server_errors_are_retried_a_bounded_number_of_times() {
    let fake = FakeClickUp::start(vec![reply(502, ""), reply(503, ""), reply(200, r#"{"status":{"status":"done"}}"#)]);
    let cu = fake.adapter(fast());
    assert_eq!(cu.task_status("CU-1").unwrap().as_deref(), Some("done"));
    let fake = FakeClickUp::start(vec![reply(500, ""), reply(500, ""), reply(500, ""), reply(200, "{}")]);
    let cu = fake.adapter(fast());
    assert_eq!(cu.task_status("CU-1").unwrap_err(), ApiError::Server { status: 500 });
    assert_eq!(fake.0.seen().len(), 3, "max_attempts = 3");
}

#[test]
fn timeouts_retry_reads_but_not_posts() {
    let slow = |n: usize| (0..n).map(|_| Reply { delay_ms: 800, ..reply(200, "{}") }).collect::<Vec<_>>();
    let policy = RetryPolicy { timeout_ms: 200, ..fast() };
    let fake = FakeClickUp::start(slow(3));
    let cu = fake.adapter(policy);
    assert_eq!(cu.task_status("CU-1").unwrap_err(), ApiError::Timeout);
    assert_eq!(fake.0.seen().len(), 3);
    let fake = FakeClickUp::start(slow(3));
    let cu = fake.adapter(policy);
    let out = publish(&cu, &[traced("a\n\nTask: CU-1", &[])], false);
    assert_eq!(out.failed.len(), 1);
    assert!(out.failed[0].contains("timeout"), "{:?}", out.failed);
    assert_eq!(fake.0.seen().len(), 1, "a POST that timed out may have landed: not repeated");
}

#[test]
fn connection_refused_is_a_transport_error() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let env = move |k: &str| match k {
        "FINTRAIL_CLICKUP_API_URL" => Some(format!("http://127.0.0.1:{port}/api/v2")),
        "FINTRAIL_CLICKUP_TOKEN" => Some("pk_x".to_owned()),
        _ => None,
    };
    let cu = ClickUp::from_env(&env, Links::default(), fast()).unwrap();
    assert!(matches!(cu.task_status("CU-1"), Err(ApiError::Transport(_))));
}

#[test]
fn github_commit_comment_request_is_built_as_documented() {
    let fake = FakeGitHub::start(vec![reply(201, r#"{"id":1,"body":"x"}"#)]);
    let gh = fake.adapter(fast());
    let t = traced("Grant role\n\nTask: CU-86b1x2", &["infra/iam.tf"]);
    let out = publish(&gh, std::slice::from_ref(&t), false);
    assert_eq!(out.sent, 1, "{:?}", out.failed);
    let req = &fake.0.seen()[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, format!("/repos/acme/fintrail/commits/{}/comments", t.commit.sha));
    assert_eq!(req.headers["authorization"], "Bearer ghp_SECRET");
    assert_eq!(req.headers["accept"], "application/vnd.github+json");
    assert_eq!(req.headers["x-github-api-version"], "2022-11-28");
    assert!(req.headers.contains_key("user-agent"));
    let body: serde_json::Value = serde_json::from_str(&req.body).unwrap();
    assert!(body["body"].as_str().unwrap().contains("CU-86b1x2 (https://app.clickup.com/t/86b1x2)"));
    // Untraced commits are not published.
    assert!(gh.plan(&traced("no ref", &[])).is_empty());
}

#[test]
fn tokens_never_appear_in_debug_output_and_bad_ids_are_not_sent() {
    let fake = FakeClickUp::start(vec![]);
    let cu = fake.adapter(fast());
    let dbg = format!("{cu:?}");
    assert!(!dbg.contains("pk_test_SECRET") && dbg.contains("***"), "{dbg}");
    let fake = FakeGitHub::start(vec![]);
    let dbg = format!("{:?}", fake.adapter(fast()));
    assert!(!dbg.contains("ghp_SECRET"), "{dbg}");
    // An id that would change the URL's path is never planned.
    assert!(cu.plan(&traced("x\n\nTask: CU-../../admin", &[])).is_empty());
    let env = |k: &str| (k == "FINTRAIL_GITHUB_REPO").then(|| "not a repo".to_owned());
    assert!(GitHub::from_env(&env, Links::default(), fast()).is_err());
}

#[test]
fn publish_dry_run_through_the_program_needs_no_token() {
    let r = common::TempRepo::new("publish");
    r.commit("infra/a.tf", "Infra\n\nTask: CU-abc\nReviewed-by: Rita <rita@example.com>");
    let (code, out, err) = common::trace(&r.dir, &["publish", "--tracker", "clickup", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("POST https://api.clickup.com/api/v2/task/abc/comment"), "{out}");
    assert!(out.contains("\"notify_all\":false"), "{out}");
    let (code, _, err) = common::trace(&r.dir, &["publish", "--tracker", "clickup"]);
    assert_eq!(code, 2);
    assert!(err.contains("FINTRAIL_CLICKUP_TOKEN"), "{err}");
}
