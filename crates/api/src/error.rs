//! One error type for every handler: a status and a JSON body, never a panic, never a 5xx for
//! bad input. Database errors raised by our triggers (SQLSTATE `FT0xx`) map to 409.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// The JSON error body of every non-2xx response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Machine-readable code (`invalid_transition`, `not_found`, `forbidden`, ...).
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

/// An error returned by a handler or middleware.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status (always 4xx for client mistakes).
    pub status: StatusCode,
    /// See [`ErrorBody::code`].
    pub code: &'static str,
    /// See [`ErrorBody::message`].
    pub message: String,
    /// `Retry-After` seconds (429 only).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// Any status / code / message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None }
    }
    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    /// 401.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }
    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    /// 404 (also for other customers' data: existence is not disclosed).
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }
    /// 409.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }
    /// 422.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable", message)
    }
    /// 500: logged with details, reported without them.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(log_class = "app", error = %err, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
    }
}

impl ApiError {
    /// Adds `Retry-After: secs`.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { code: self.code.to_owned(), message: self.message };
        let mut res = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            res.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
        }
        res
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        if let Some(db) = e.as_db_error() {
            let code = db.code().code();
            if code.starts_with("FT") {
                // Our triggers: the database refused what the Rust check should already have.
                return ApiError::conflict("refused_by_database", db.message().to_owned());
            }
            match code {
                // serialization_failure, deadlock_detected, lock_not_available: retryable.
                "40001" | "40P01" | "55P03" => return ApiError::conflict("retry", "concurrent update; retry"),
                // check_violation, not_null, string too long, invalid text, NUL / untranslatable
                // characters (PostgreSQL text cannot hold U+0000): bad input.
                "23514" | "23502" | "22001" | "22P02" | "22021" | "22P05" => {
                    return ApiError::unprocessable(db.message().to_owned())
                }
                // query_canceled: `statement_timeout` (crate::limits) ended the statement.
                "57014" => {
                    tracing::warn!(log_class = "app", message = db.message(), "statement canceled");
                    return ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "timeout",
                        "the database took too long; retry later",
                    );
                }
                // foreign_key_violation: the referenced object does not exist.
                "23503" => return ApiError::not_found("referenced object"),
                // unique_violation: the object exists already (or a concurrent request created
                // it first). A conflict with the stored state, never a 500.
                "23505" => return ApiError::conflict("already_exists", "the object already exists"),
                _ => {}
            }
        }
        ApiError::internal(e)
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        tracing::error!(log_class = "app", error = %e, "database pool");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "database unavailable")
    }
}

/// Handler result.
pub type ApiResult<T> = Result<T, ApiError>;

/// The ledger's answers in HTTP terms: a missing (or not disclosed) object 404, a ledger rule
/// 409 with its own `code`, a schema-stated shape 422, the database as for every handler.
impl From<fintrail_ledger::Error> for ApiError {
    fn from(e: fintrail_ledger::Error) -> Self {
        use fintrail_ledger::Error as L;
        match e {
            L::NotFound(what) => ApiError::not_found(what),
            L::Refused { code, message } => ApiError::conflict(code, message),
            L::Invalid { code, message } => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message),
            L::Db(e) => ApiError::from(e),
            L::Pool(e) => ApiError::from(e),
            L::Internal(e) => ApiError::internal(e),
        }
    }
}
