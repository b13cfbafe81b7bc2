//! One error type for the whole service and its JSON presenter.
//!
//! Every API error is the envelope `{"error":{"code":"…","message":"…"}}` with the right status.
//! 5xx bodies never carry internals: the cause travels in a response extension and is logged once,
//! inside the request's span, by [`crate::web::middleware::log_errors`].

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A value in the request has the wrong shape (422).
    #[error("{message}")]
    Invalid {
        /// Machine-readable code.
        code: &'static str,
        /// What is wrong, for a person.
        message: String,
    },
    /// The request cannot be read at all (400).
    #[error("{0}")]
    BadRequest(String),
    /// No identity, or one we cannot trust (401).
    #[error("{0}")]
    Unauthorized(String),
    /// A browser page needs a signed-in user (401; browsers are sent to sign-in).
    #[error("sign in to see this page")]
    SignInRequired,
    /// Signed in, but not allowed (403).
    #[error("{0}")]
    Forbidden(String),
    /// The user id names nobody (404).
    #[error("no user with id {0:?}")]
    UnknownUser(String),
    /// No such route or object (404).
    #[error("{0}")]
    NotFound(String),
    /// What was asked for is no longer kept (410 `changes_expired`: the change log's retention).
    #[error("{0}")]
    ChangesExpired(String),
    /// The route exists but not for this method (405).
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// The request conflicts with what is stored (409).
    #[error("{message}")]
    Conflict {
        /// Machine-readable code.
        code: &'static str,
        /// What conflicts, and what to do instead.
        message: String,
    },
    /// The body is larger than the route accepts (413).
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// The body is not of a type the route reads (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Too many calls of this kind from this caller (429, with `Retry-After`).
    #[error("too many requests; try again in {retry_after_secs} s")]
    TooManyRequests {
        /// Seconds until the next call is allowed.
        retry_after_secs: u64,
    },
    /// The database does not answer (503).
    #[error("the database is unavailable")]
    DatabaseUnavailable(#[source] sqlx::Error),
    /// The request took longer than the configured timeout (503).
    #[error("the request took too long")]
    Timeout,
    /// Stripe failed, refused or was too slow (502). The text is the cause, for the log: Stripe's
    /// own error text can name objects and parameters, so the client gets our message instead
    /// ([`AppError::stripe_message`]).
    #[error("{0}")]
    Stripe(String),
    /// Stripe is not configured on this instance (503).
    #[error(
        "Stripe is not configured: set STRIPE_API_KEY (or run with MSR_DEBUG=true for the simulator)"
    )]
    StripeNotConfigured,
    /// A bug or an unexpected failure (500).
    #[error("internal error")]
    Internal(String),
}

impl AppError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Unauthorized(_) | AppError::SignInRequired => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::UnknownUser(_) | AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            AppError::ChangesExpired(_) => StatusCode::GONE,
            AppError::Conflict { .. } => StatusCode::CONFLICT,
            AppError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::DatabaseUnavailable(_)
            | AppError::Timeout
            | AppError::StripeNotConfigured => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Stripe(_) => StatusCode::BAD_GATEWAY,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable code in the envelope.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Invalid { code, .. } | AppError::Conflict { code, .. } => code,
            AppError::BadRequest(_) => "bad_request",
            AppError::Unauthorized(_) => "unauthorized",
            AppError::SignInRequired => "sign_in_required",
            AppError::Forbidden(_) => "forbidden",
            AppError::UnknownUser(_) => "unknown_user",
            AppError::NotFound(_) => "not_found",
            AppError::MethodNotAllowed => "method_not_allowed",
            AppError::ChangesExpired(_) => "changes_expired",
            AppError::PayloadTooLarge(_) => "payload_too_large",
            AppError::UnsupportedMediaType(_) => "unsupported_media_type",
            AppError::TooManyRequests { .. } => "rate_limited",
            AppError::DatabaseUnavailable(_) => "database_unavailable",
            AppError::Timeout => "timeout",
            AppError::Stripe(_) => "stripe_error",
            AppError::StripeNotConfigured => "stripe_not_configured",
            AppError::Internal(_) => "internal_error",
        }
    }

    /// What a client is told of any Stripe failure (the cause goes to the log).
    pub const STRIPE_MESSAGE: &'static str =
        "Stripe failed or did not answer in time; nothing was charged, try again";

    /// A 422 with a code and message.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        AppError::Invalid {
            code,
            message: message.into(),
        }
    }
}

impl From<crate::stripe::StripeCallError> for AppError {
    /// Whatever went wrong at Stripe is a 502 for our caller; the cause (Stripe's own text) is
    /// logged, never sent.
    fn from(e: crate::stripe::StripeCallError) -> Self {
        use crate::stripe::StripeCallError as E;
        AppError::Stripe(match e {
            E::Unreachable(cause) => format!("Stripe unreachable: {cause}"),
            E::Api {
                status, message, ..
            } => format!("Stripe refused the request ({status}): {message}"),
            E::Parse(cause) => format!("Stripe's answer could not be read: {cause}"),
        })
    }
}

impl From<sqlx::Error> for AppError {
    /// Policy: a database we cannot reach is a 503 (the caller may retry); anything else is a bug.
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => AppError::DatabaseUnavailable(e),
            sqlx::Error::Database(ref db) if is_unavailable_code(db.code().as_deref()) => {
                AppError::DatabaseUnavailable(e)
            }
            other => AppError::Internal(format!("database: {other}")),
        }
    }
}

/// SQLite busy/locked/read-only/I/O/full/cannot-open (primary result codes; sqlx reports extended
/// ones such as 778 = SQLITE_IOERR_WRITE), and PostgreSQL connection exceptions (08), not accepting
/// connections (55000), insufficient resources (53) and shutdown (57P).
fn is_unavailable_code(code: Option<&str>) -> bool {
    let Some(code) = code else { return false };
    // PostgreSQL's SQLSTATE is always five characters; SQLite's result codes are plain numbers.
    if code.len() == 5 {
        return code.starts_with("08")
            || code.starts_with("53")
            || code.starts_with("57P")
            || code == "55000";
    }
    code.parse::<i64>()
        .is_ok_and(|n| matches!(n & 0xff, 5 | 6 | 8 | 10 | 13 | 14))
}

/// What the client may see of an error, left for the HTML presenter (`web::html`).
#[derive(Debug, Clone)]
pub struct PublicError {
    /// Machine-readable code.
    pub code: &'static str,
    /// The message sent to the client.
    pub message: String,
}

/// The cause of a failed request, left for the logging middleware.
#[derive(Debug, Clone)]
pub struct ErrorCause(pub String);

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = if status.is_server_error() {
            match &self {
                AppError::DatabaseUnavailable(_) => "the database is unavailable; try again shortly".to_owned(),
                AppError::Timeout => "the request took too long; try again".to_owned(),
                AppError::Stripe(_) => AppError::STRIPE_MESSAGE.to_owned(),
                AppError::StripeNotConfigured => self.to_string(),
                _ => "internal error; the request id in the x-request-id header identifies it in the logs".to_owned(),
            }
        } else {
            self.to_string()
        };
        let cause = match &self {
            AppError::DatabaseUnavailable(e) => format!("{self}: {e}"),
            AppError::Internal(detail) => detail.clone(),
            other => other.to_string(),
        };
        let body = Json(json!({"error": {"code": self.code(), "message": &message}}));
        let mut response = (status, body).into_response();
        if let AppError::TooManyRequests { retry_after_secs } = &self {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(*retry_after_secs),
            );
        }
        response.extensions_mut().insert(ErrorCause(cause));
        response.extensions_mut().insert(PublicError {
            code: self.code(),
            message,
        });
        response
    }
}

#[cfg(test)]
mod tests {
    use super::is_unavailable_code;

    #[test]
    fn outage_codes_of_both_databases_are_recognised() {
        for code in [
            "5", "517", "8", "778", "1546", "13", "14", "08006", "57P01", "55000", "53300",
        ] {
            assert!(is_unavailable_code(Some(code)), "{code}");
        }
        for code in ["19", "2067", "23505", "42P01", "1"] {
            assert!(!is_unavailable_code(Some(code)), "{code}");
        }
    }
}
