//! The layout every page shares, the error page, and the headers of every console response.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use fintrail_domain::Permission as P;
use maud::{html, Markup, DOCTYPE};

use crate::host::HostError;
use crate::session::{Viewer, CSRF_FIELD};

/// The console's Content-Security-Policy: nothing but our own stylesheet and images; no
/// script of any kind, no inline style, forms post only to us, never framed.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                       frame-ancestors 'none'; base-uri 'none'";

/// Adds the console's security headers to every response it gives.
pub async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// `GET /console/static/console.css`.
pub async fn stylesheet() -> Response {
    let mut res = include_str!("../assets/console.css").into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    res
}

/// A 303 to `to` (a path of ours).
pub fn redirect(to: &'static str) -> Response {
    redirect_to(to.to_owned())
}

/// A 303 to a path we built.
pub fn redirect_to(to: String) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(&to) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

/// The navigation: only what the viewer's role may open.
const NAV: [(&str, &str, P); 6] = [
    ("/console/kyc", "KYC queue", P::KycCaseRead),
    ("/console/kyb", "KYB queue", P::KybOrgRead),
    ("/console/audit", "Audit trail", P::AuditRead),
    ("/console/jobs", "Jobs", P::AuditRead),
    ("/console/analytics", "Analytics", P::AnalyticsRead),
    ("/console/iam", "Least privilege", P::IamRead),
];

/// A whole page.
pub fn page(title: &str, viewer: Option<&Viewer>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · fintrail console" }
                link rel="stylesheet" href="/console/static/console.css";
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    span.brand { "fintrail console" }
                    @if let Some(v) = viewer {
                        nav aria-label="Main" {
                            ul {
                                @for (href, label, p) in NAV {
                                    @if v.may(p) { li { a href=(href) { (label) } } }
                                }
                            }
                        }
                        div.who {
                            span { (v.staff.label) " · " (v.staff.role.as_str()) }
                            form method="post" action="/console/logout" {
                                input type="hidden" name=(CSRF_FIELD) value=(v.csrf);
                                button type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main #main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// An error as a page, with the status the API would have answered.
pub fn error_page(viewer: Option<&Viewer>, e: &HostError) -> (StatusCode, Markup) {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let title = status.canonical_reason().unwrap_or("Error");
    let body = html! {
        p.notice.error role="alert" { (e.message) }
        p.muted { "Code: " code { (e.code) } }
        @if status == StatusCode::UNAUTHORIZED { p { a href="/console/login" { "Log in" } } }
        @else { p { a href="/console" { "Back to the console" } } }
    };
    (status, page(title, viewer, body))
}

/// A page, or the error page with the status the API would have answered.
pub fn respond(viewer: &Viewer, page: Result<Markup, HostError>) -> Response {
    match page {
        Ok(m) => m.into_response(),
        Err(e) => error_page(Some(viewer), &e).into_response(),
    }
}

/// A timestamp as people read it (UTC, to the second), in a `<time>` element.
pub fn time(t: &DateTime<Utc>) -> Markup {
    html! { time datetime=(t.to_rfc3339()) { (t.format("%Y-%m-%d %H:%M:%S UTC")) } }
}

/// How long ago, roughly.
pub fn ago(t: &DateTime<Utc>, now: &DateTime<Utc>) -> String {
    let s = (*now - *t).num_seconds().max(0);
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

/// A state name as a badge.
pub fn state_badge(state: &str) -> Markup {
    html! { span class={ "badge state-" (state) } { (state.replace('_', " ")) } }
}
