//! Timeouts and the panic guard (issue 16, item 16). `axum::serve` installs no timer, so
//! before this a client could hold a connection open for ever: headers sent one byte a minute,
//! a body that never ends, a handler waiting on a lock. Three bounds, each answered in JSON:
//!
//! * **Header read** ([`Limits::header_read`], default 10 s): hyper's HTTP/1 `header_read_timeout`
//!   with a Tokio timer, set by our own accept loop (`server::serve`); a client that has not
//!   sent its complete request head in time has its connection closed.
//! * **Body read** ([`Limits::body_idle`], default 10 s): the request body is wrapped so that a
//!   wait of more than this for the next chunk ends the read; the request is answered 408
//!   `body_timeout` whatever the handler made of the failed read.
//! * **Request** ([`Limits::request`], default 60 s: a 10 MiB upload on a slow link fits):
//!   the whole handler, body read included, up to its response head; answered 503
//!   `request_timeout` (the handler's future is dropped: its open transaction rolls back).
//!
//! The app role's connections in the pool carry `statement_timeout` and
//! `idle_in_transaction_session_timeout` ([`Limits::pg_options`], default 15 s each).
//!
//! A panic in a handler or middleware below is caught and answered 500 `internal` with the
//! fixed message "internal error": the panic message goes to the log only (ErrorBody never
//! carries details). Without this, hyper dropped the connection with no answer at all.
//!
//! Our own middleware rather than tower-http's layers (docs/adr/0001): their timeout answers
//! an empty 408 and their body timeout surfaces as an extractor error (400), where every error
//! of this API is JSON with a code.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt as _;
use http_body::{Frame, SizeHint};

use crate::error::ApiError;

/// The three bounds of one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest time to receive a request's head (request line and headers).
    pub header_read: Duration,
    /// Longest wait for the next chunk of a request body.
    pub body_idle: Duration,
    /// Longest time for a whole request, up to the response head.
    pub request: Duration,
    /// `statement_timeout` of the pool's (app role) connections.
    pub statement: Duration,
    /// `idle_in_transaction_session_timeout` of the pool's (app role) connections.
    pub idle_in_transaction: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(10),
            body_idle: Duration::from_secs(10),
            request: Duration::from_secs(60),
            statement: Duration::from_secs(15),
            idle_in_transaction: Duration::from_secs(15),
        }
    }
}

impl Limits {
    /// The startup `options` that set the two database timeouts on every pooled connection.
    /// On the pool rather than `ALTER ROLE fintrail_app SET ...`: the same role runs the
    /// offline tools (`audit verify` streams the whole trail in one statement, the
    /// benchmarks), which a server-sized bound would cut short. A database-side cancel
    /// (57014) answers 503 `timeout`; a session killed for idling in a transaction is
    /// dropped by the pool's recycling.
    pub fn pg_options(&self) -> String {
        format!(
            "-c statement_timeout={} -c idle_in_transaction_session_timeout={}",
            self.statement.as_millis().max(1),
            self.idle_in_transaction.as_millis().max(1)
        )
    }
}

/// Request and body-read timeouts (a middleware; state: the limits).
pub async fn timeouts(State(limits): State<Limits>, req: Request, next: Next) -> Response {
    let timed_out = Arc::new(AtomicBool::new(false));
    let flag = timed_out.clone();
    let req = req.map(|body| Body::new(IdleTimeout::new(body, limits.body_idle, flag)));
    let res = tokio::time::timeout(limits.request, next.run(req)).await;
    if timed_out.load(Ordering::Acquire) {
        tracing::warn!(log_class = "app", idle_ms = limits.body_idle.as_millis() as u64, "request body read timed out");
        return ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "the request body stalled; send it without pauses",
        )
        .into_response();
    }
    match res {
        Ok(res) => res,
        Err(_) => {
            tracing::warn!(log_class = "app", timeout_ms = limits.request.as_millis() as u64, "request timed out");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "request_timeout", "the request took too long; retry later")
                .into_response()
        }
    }
}

/// Turns a panic below into a JSON 500 without details (the details are logged).
pub async fn catch_panic(req: Request, next: Next) -> Response {
    match std::panic::AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(res) => res,
        Err(payload) => {
            let detail = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".into());
            // `internal` logs the detail and answers the fixed "internal error".
            ApiError::internal(format!("handler panicked: {detail}")).into_response()
        }
    }
}

/// A request body that fails when the next chunk is more than `idle` away.
struct IdleTimeout {
    inner: Body,
    idle: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    fired: Arc<AtomicBool>,
}

impl IdleTimeout {
    fn new(inner: Body, idle: Duration, fired: Arc<AtomicBool>) -> Self {
        Self { inner, idle, sleep: Box::pin(tokio::time::sleep(idle)), fired }
    }
}

/// The error a stalled body ends with.
#[derive(Debug)]
struct BodyStalled(Duration);

impl std::fmt::Display for BodyStalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no request body data for {} ms", self.0.as_millis())
    }
}

impl std::error::Error for BodyStalled {}

impl http_body::Body for IdleTimeout {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let deadline = tokio::time::Instant::now() + this.idle;
                this.sleep.as_mut().reset(deadline);
                Poll::Ready(frame)
            }
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.fired.store(true, Ordering::Release);
                    Poll::Ready(Some(Err(axum::Error::new(BodyStalled(this.idle)))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Wraps `router` in the panic guard and the timeouts (inside the request id and access log,
/// which `routes::build` adds around it, so a timed-out or panicked request is still logged
/// with its id).
pub fn guard(router: axum::Router, limits: Limits) -> axum::Router {
    router.layer(axum::middleware::from_fn(catch_panic)).layer(axum::middleware::from_fn_with_state(limits, timeouts))
}
