//! Sessions: the login form (a staff bearer token for a cookie), the guard in front of every
//! protected page (session → CSRF → permission), logout. See the crate documentation.

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Form;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use fintrail_audit::NewEvent;
use fintrail_domain::audit::AuditAction;
use fintrail_domain::{Permission, Role};
use maud::html;
use rand::RngCore as _;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use crate::host::{HostError, Staff};
use crate::html::{error_page, page, redirect};
use crate::Console;

/// The session cookie over plain HTTP (local use).
pub const SESSION_COOKIE: &str = "ft_console";
/// The session cookie over TLS (`__Host-`: `Secure`, `Path=/`, no `Domain`, enforced by browsers).
pub const SESSION_COOKIE_TLS: &str = "__Host-ft_console";
/// The login form's double-submit cookie (plain HTTP / TLS).
pub const LOGIN_COOKIE: &str = "ft_console_login";
const LOGIN_COOKIE_TLS: &str = "__Host-ft_console_login";
/// A session's lifetime (the database's trigger stamps the same; its CHECK caps it).
pub const SESSION_MAX_AGE_SECS: u64 = 8 * 3600;
/// A session unused this long is dead (migration 0044; the actor check holds the same rule).
pub const SESSION_IDLE_SECS: i64 = 30 * 60;
/// The last use is renewed at most this often: a page view is not a write each time.
pub const SESSION_RENEW_SECS: i64 = 60;
const LOGIN_MAX_AGE_SECS: u64 = 600;
/// The form field carrying the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
/// Largest form body the guard reads (every console form is small).
const FORM_MAX_BYTES: usize = 16 * 1024;
/// Longest bearer token the login form accepts (the API's `TOKEN_MAX_LEN`).
const TOKEN_MAX_LEN: usize = 64;

/// The signed-in staff member on a protected page, with the page's permission and request id.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// Who.
    pub staff: Staff,
    /// The page's permission.
    pub permission: Permission,
    /// This request's id.
    pub request_id: String,
    /// The CSRF token every form on the page must carry.
    pub csrf: String,
}

impl Viewer {
    /// The viewer acting under the page's permission.
    pub fn acting(&self) -> crate::Acting {
        crate::Acting { staff: self.staff.clone(), permission: self.permission, request_id: self.request_id.clone() }
    }
    /// Whether the viewer's role holds `p` (to offer a button or a link, never to authorize:
    /// the target's own guard does that).
    pub fn may(&self, p: Permission) -> bool {
        self.staff.role.grants(p)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Viewer {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // Only reachable without the guard if a page was registered around the registry: fail closed.
        parts
            .extensions
            .get::<Viewer>()
            .cloned()
            .ok_or_else(|| error_page(None, &HostError::new(401, "unauthenticated", "no session")).into_response())
    }
}

fn new_secret() -> String {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// What the database stores of a session secret.
pub fn session_hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The CSRF token of a secret: SHA-256 under its own domain (distinct from the stored hash).
pub fn csrf_token(purpose: &str, secret: &str) -> String {
    hex::encode(Sha256::digest(format!("fintrail.console.csrf.v1\n{purpose}\n{secret}").as_bytes()))
}

fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Whether the request came over TLS (the front end terminating it says so).
fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').next().unwrap_or("").trim().eq_ignore_ascii_case("https"))
}

/// A cookie's value from the request (`None` if absent or not a secret of ours).
fn cookie<'a>(headers: &'a HeaderMap, names: &[&str]) -> Option<&'a str> {
    for v in headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()) {
        for pair in v.split(';') {
            if let Some((k, val)) = pair.trim().split_once('=') {
                if names.contains(&k)
                    && val.len() == 43
                    && val.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return Some(val);
                }
            }
        }
    }
    None
}

fn set_cookie(headers: &HeaderMap, plain: &str, tls: &str, value: &str, max_age: u64) -> HeaderValue {
    let (name, secure) = if over_tls(headers) { (tls, "; Secure") } else { (plain, "") };
    HeaderValue::from_str(&format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"))
        .expect("cookie text is ASCII")
}

/// A live session.
#[derive(Debug, Clone)]
pub struct Session {
    /// Row id (`console_session:<id>` in the trail).
    pub id: i64,
    /// Whose.
    pub staff: Staff,
    /// Its CSRF token.
    pub csrf: String,
}

/// The request's session, if its cookie names a live one whose token is still valid.
pub async fn current(console: &Console, headers: &HeaderMap) -> Result<Option<Session>, HostError> {
    let Some(secret) = cookie(headers, &[SESSION_COOKIE_TLS, SESSION_COOKIE]) else { return Ok(None) };
    let client = console.pool().get().await?;
    let row = client
        .query_opt(
            "SELECT s.id, t.id, t.role, t.label FROM fintrail.console_sessions s \
             JOIN fintrail.api_tokens t ON t.id = s.token_id \
             WHERE s.session_hash = $1 AND s.expires_at > now() \
               AND s.last_seen_at > now() - make_interval(secs => $2) \
               AND t.revoked_at IS NULL AND t.expires_at > now() AND t.customer_id IS NULL",
            &[&session_hash(secret).as_slice(), &(SESSION_IDLE_SECS as f64)],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    // The database stamps the time (0044); renewing only when older than a minute keeps a
    // burst of page views from being a burst of writes.
    client
        .execute(
            "UPDATE fintrail.console_sessions SET last_seen_at = now() \
             WHERE id = $1 AND last_seen_at < now() - make_interval(secs => $2)",
            &[&row.get::<_, i64>(0), &(SESSION_RENEW_SECS as f64)],
        )
        .await?;
    let Ok(role) = row.get::<_, &str>(2).parse::<Role>() else { return Ok(None) };
    if role == Role::Customer {
        return Ok(None);
    }
    let staff = Staff {
        token_id: row.get(1),
        role,
        label: row.get(3),
        credential: Some(fintrail_audit::Credential::new(secret)),
    };
    Ok(Some(Session { id: row.get(0), staff, csrf: csrf_token("session", secret) }))
}

/// The CSRF field of an urlencoded form body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).ok()?;
    pairs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// The guard of every protected page: session (else the login page; a POST gets 401), CSRF on
/// every state-changing method (else 403, logged), the page's one permission (else 403,
/// audited as the API audits it).
pub async fn guard(State((console, permission)): State<(Console, Permission)>, req: Request, next: Next) -> Response {
    let request_id = console.request_id(req.extensions());
    let session = match current(&console, req.headers()).await {
        Ok(Some(s)) => s,
        Ok(None) if req.method() == Method::GET || req.method() == Method::HEAD => return redirect("/console/login"),
        Ok(None) => {
            let e = HostError::new(401, "unauthenticated", "your session has ended: log in again");
            return error_page(None, &e).into_response();
        }
        Err(e) => return error_page(None, &e).into_response(),
    };
    let (parts, body) = req.into_parts();
    let mut req = if parts.method == Method::GET || parts.method == Method::HEAD {
        Request::from_parts(parts, body)
    } else {
        let Ok(bytes) = axum::body::to_bytes(body, FORM_MAX_BYTES).await else {
            return error_page(None, &HostError::new(413, "payload_too_large", "form too large")).into_response();
        };
        let given = form_field(&bytes, CSRF_FIELD).unwrap_or_default();
        if !ct_eq(&given, &session.csrf) {
            tracing::warn!(log_class = "app", session = session.id, path = %parts.uri.path(), request_id, "console: CSRF token missing or wrong");
            let e = HostError::new(403, "csrf", "this form is missing its CSRF token or it is wrong: reload the page");
            return error_page(None, &e).into_response();
        }
        Request::from_parts(parts, Body::from(bytes))
    };
    if !session.staff.role.grants(permission) {
        let subject = format!("route:{} {}", req.method(), req.uri().path());
        if let Err(e) = console.record_denial(&session.staff, permission, subject, &request_id).await {
            return error_page(None, &e).into_response();
        }
        let e = HostError::new(403, "forbidden", format!("role {} lacks permission {permission}", session.staff.role));
        return error_page(None, &e).into_response();
    }
    req.extensions_mut().insert(Viewer { staff: session.staff, permission, request_id, csrf: session.csrf });
    next.run(req).await
}

/// `GET /console`: to the review queue when signed in, else to the login form.
pub async fn home(State(console): State<Console>, headers: HeaderMap) -> Response {
    match current(&console, &headers).await {
        Ok(Some(_)) => redirect("/console/kyc"),
        Ok(None) => redirect("/console/login"),
        Err(e) => error_page(None, &e).into_response(),
    }
}

fn login_page(csrf: &str, problem: Option<&str>) -> maud::Markup {
    page(
        "Log in",
        None,
        html! {
            @if let Some(p) = problem { p.notice.error role="alert" { (p) } }
            p { "Paste a staff bearer token (" code { "fintrail token create --role kyc_analyst" } "). It is exchanged for a session cookie and never stored in the browser." }
            form.stack method="post" action="/console/login" {
                input type="hidden" name=(CSRF_FIELD) value=(csrf);
                label for="token" { "Staff token" }
                input #token type="password" name="token" required autocomplete="off" maxlength=(TOKEN_MAX_LEN) autofocus;
                button type="submit" { "Log in" }
            }
        },
    )
}

/// `GET /console/login`: the form, with a fresh double-submit cookie.
pub async fn login_form(headers: HeaderMap) -> Response {
    let secret = new_secret();
    let mut res = (StatusCode::OK, login_page(&csrf_token("login", &secret), None)).into_response();
    res.headers_mut()
        .append(header::SET_COOKIE, set_cookie(&headers, LOGIN_COOKIE, LOGIN_COOKIE_TLS, &secret, LOGIN_MAX_AGE_SECS));
    res
}

/// The login form's fields.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /console/login`: a staff token for a session.
pub async fn login(State(console): State<Console>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let headers = &parts.headers;
    let Ok(bytes) = axum::body::to_bytes(body, FORM_MAX_BYTES).await else {
        return error_page(None, &HostError::new(413, "payload_too_large", "form too large")).into_response();
    };
    let form: LoginForm =
        serde_urlencoded::from_bytes(&bytes).unwrap_or(LoginForm { token: String::new(), csrf: String::new() });
    let expected = cookie(headers, &[LOGIN_COOKIE_TLS, LOGIN_COOKIE]).map(|s| csrf_token("login", s));
    if !expected.is_some_and(|e| ct_eq(&e, &form.csrf)) {
        tracing::warn!(log_class = "app", "console: login without its CSRF token");
        let e = HostError::new(403, "csrf", "this login form is missing its CSRF token or it expired: reload the page");
        return error_page(None, &e).into_response();
    }
    let token = form.token.trim();
    let staff =
        if token.is_empty() || token.len() > TOKEN_MAX_LEN { Ok(None) } else { console.authenticate(token).await };
    let staff = match staff {
        Ok(Some(s)) => s,
        Ok(None) => {
            if let Err(retry_after) = console.refuse_unauthenticated(&parts.extensions) {
                let e =
                    HostError::new(429, "rate_limited", format!("too many refused attempts; retry in {retry_after} s"));
                return error_page(None, &e).into_response();
            }
            let again = new_secret();
            let mut res = (
                StatusCode::UNAUTHORIZED,
                login_page(&csrf_token("login", &again), Some("Unknown, expired or revoked token.")),
            )
                .into_response();
            res.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(headers, LOGIN_COOKIE, LOGIN_COOKIE_TLS, &again, LOGIN_MAX_AGE_SECS),
            );
            return res;
        }
        Err(e) => return error_page(None, &e).into_response(),
    };
    let request_id = console.request_id(&parts.extensions);
    let secret = new_secret();
    match open_session(&console, &staff, &secret, &request_id).await {
        Ok(()) => {}
        Err(e) => return error_page(None, &e).into_response(),
    }
    let mut res = redirect("/console");
    let h = res.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(headers, SESSION_COOKIE, SESSION_COOKIE_TLS, &secret, SESSION_MAX_AGE_SECS),
    );
    h.append(header::SET_COOKIE, set_cookie(headers, LOGIN_COOKIE, LOGIN_COOKIE_TLS, "", 0));
    res
}

/// Stores the session and its `console.session.opened` event in one transaction; purges a
/// bounded batch of expired sessions on the way.
async fn open_session(console: &Console, staff: &Staff, secret: &str, request_id: &str) -> Result<(), HostError> {
    let mut client = console.pool().get().await?;
    let tx = client.transaction().await?;
    tx.execute(
        "DELETE FROM fintrail.console_sessions WHERE id IN \
         (SELECT id FROM fintrail.console_sessions WHERE expires_at < now() ORDER BY expires_at LIMIT 100)",
        &[],
    )
    .await?;
    let row = tx
        .query_one(
            "INSERT INTO fintrail.console_sessions (session_hash, token_id) VALUES ($1, $2) RETURNING id, expires_at",
            &[&session_hash(secret).as_slice(), &staff.token_id],
        )
        .await?;
    let id: i64 = row.get(0);
    let expires_at: DateTime<Utc> = row.get(1);
    let ev = NewEvent::allowed(
        console.actor(staff),
        AuditAction::ConsoleSessionOpened,
        format!("console_session:{id}"),
        None,
    )
    .credential(staff.credential.clone())
    .request(Some(request_id))
    .change(None, Some(json!({ "token_id": staff.token_id, "expires_at": expires_at })));
    console.audit().append_cached(&tx, &ev).await?;
    tx.commit().await?;
    console.audit().committed();
    tracing::info!(log_class = "app", actor = %console.actor(staff), session = id, request_id, "console: session opened");
    Ok(())
}

/// `POST /console/logout`: ends the caller's own session (CSRF-checked), audited.
pub async fn logout(State(console): State<Console>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let session = match current(&console, &parts.headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return redirect("/console/login"),
        Err(e) => return error_page(None, &e).into_response(),
    };
    let Ok(bytes) = axum::body::to_bytes(body, FORM_MAX_BYTES).await else {
        return error_page(None, &HostError::new(413, "payload_too_large", "form too large")).into_response();
    };
    if !ct_eq(&form_field(&bytes, CSRF_FIELD).unwrap_or_default(), &session.csrf) {
        let e = HostError::new(403, "csrf", "this form is missing its CSRF token or it is wrong: reload the page");
        return error_page(None, &e).into_response();
    }
    let request_id = console.request_id(&parts.extensions);
    if let Err(e) = close_session(&console, &session, &request_id).await {
        return error_page(None, &e).into_response();
    }
    let mut res = redirect("/console/login");
    res.headers_mut().append(header::SET_COOKIE, set_cookie(&parts.headers, SESSION_COOKIE, SESSION_COOKIE_TLS, "", 0));
    res
}

async fn close_session(console: &Console, session: &Session, request_id: &str) -> Result<(), HostError> {
    let mut client = console.pool().get().await?;
    let tx = client.transaction().await?;
    // The event first, while the session still proves its actor (the database checks the
    // session's secret against its row: migration 0042), then the row goes.
    // (No row lock: FOR UPDATE needs an UPDATE grant the app does not hold; a concurrent
    // logout's DELETE count below decides instead.)
    let live = tx.query_opt("SELECT 1 FROM fintrail.console_sessions WHERE id = $1", &[&session.id]).await?;
    if live.is_some() {
        let ev = NewEvent::allowed(
            console.actor(&session.staff),
            AuditAction::ConsoleSessionClosed,
            format!("console_session:{}", session.id),
            None,
        )
        .credential(session.staff.credential.clone())
        .request(Some(request_id));
        console.audit().append_cached(&tx, &ev).await?;
        if tx.execute("DELETE FROM fintrail.console_sessions WHERE id = $1", &[&session.id]).await? != 1 {
            return Ok(()); // Closed meanwhile by another request: its event stands, not ours.
        }
    }
    tx.commit().await?;
    console.audit().committed();
    Ok(())
}

/// Typed form helper: `Form<T>` whose rejection is an HTML 400/422 page.
pub struct HtmlForm<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for HtmlForm<T> {
    type Rejection = Response;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match <Form<T> as axum::extract::FromRequest<S>>::from_request(req, state).await {
            Ok(Form(v)) => Ok(HtmlForm(v)),
            Err(rej) => {
                let e = HostError::new(rej.status().as_u16(), "bad_form", rej.body_text());
                Err(error_page(None, &e).into_response())
            }
        }
    }
}

/// `Query<T>` whose rejection is an HTML 400 page.
pub struct HtmlQuery<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for HtmlQuery<T> {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(HtmlQuery(v)),
            Err(rej) => Err(error_page(None, &HostError::new(400, "bad_query", rej.body_text())).into_response()),
        }
    }
}

/// `Path<T>` whose rejection is an HTML 400 page.
pub struct HtmlPath<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for HtmlPath<T> {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(HtmlPath(v)),
            Err(rej) => Err(error_page(None, &HostError::new(400, "bad_path", rej.body_text())).into_response()),
        }
    }
}
