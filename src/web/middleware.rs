//! Cross-cutting layers: request ids, the trace span, error logging, body limits and the timeout.

use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::request_id::{MakeRequestId, RequestId};

use crate::error::{AppError, ErrorCause};

/// Drops a caller's `X-Request-Id` that is not 1–64 characters of `[A-Za-z0-9._-]`, so that
/// [`MakeId`] makes a new one: the id is written into every log line of the request, and a sent
/// one could be thousands of characters or forge log fields.
pub fn drop_unusable_request_id<B>(mut request: axum::http::Request<B>) -> axum::http::Request<B> {
    let usable = |v: &HeaderValue| {
        let b = v.as_bytes();
        (1..=64).contains(&b.len())
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
    };
    let headers = request.headers_mut();
    let all_usable = {
        let mut values = headers.get_all("x-request-id").iter();
        // One value, and a usable one: several would be ambiguous.
        values.next().is_none_or(usable) && values.next().is_none()
    };
    if !all_usable {
        headers.remove("x-request-id");
    }
    request
}

/// Makes a random 16-hex-digit request id when the caller sent none (or none usable).
#[derive(Debug, Clone, Copy, Default)]
pub struct MakeId;

impl MakeRequestId for MakeId {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        let id = format!("{:016x}", rand::random::<u64>());
        HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}

/// The span every log line of a request is written in. The query string is left out: it can carry
/// tokens (the sign-in hand-off) that must never reach a log.
pub fn make_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %request_id,
        // Filled in once the caller is known (X-User-Id or the session), so every later line of
        // the request carries it.
        user_id = tracing::field::Empty,
    )
}

/// The request's own span, kept in its extensions: layers inside (tower-sessions) open spans of
/// their own, so "the current span" in an extractor is not the request's.
#[derive(Clone)]
pub struct RequestSpan(pub tracing::Span);

/// Keeps the request span where extractors can find it.
pub async fn remember_span(mut request: Request, next: Next) -> Response {
    request
        .extensions_mut()
        .insert(RequestSpan(tracing::Span::current()));
    next.run(request).await
}

/// Records who the request is for on its span, so every later line of it carries the user id.
pub fn record_user(parts: &axum::http::request::Parts, user: &crate::domain::UserId) {
    if let Some(RequestSpan(span)) = parts.extensions.get::<RequestSpan>() {
        span.record("user_id", tracing::field::display(user));
    }
}

/// Logs every error response once, inside the request's span: 5xx as errors with their internal
/// cause (or that none was recorded: a layer's own answer), 4xx with a cause at debug level.
pub async fn log_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    log_cause(&response);
    response
}

fn log_cause(response: &Response) {
    let status = response.status().as_u16();
    match response.extensions().get::<ErrorCause>() {
        Some(ErrorCause(cause)) if response.status().is_server_error() => {
            tracing::error!(status, cause = %cause, "request failed");
        }
        Some(ErrorCause(cause)) => tracing::debug!(status, cause = %cause, "request refused"),
        None if response.status().is_server_error() => {
            tracing::error!(status, cause = "none recorded", "request failed");
        }
        None => {}
    }
}

/// Answers 413 before reading anything when `Content-Length` announces more than the route takes.
/// Bodies without a length are cut by axum's `DefaultBodyLimit` as they are read.
pub async fn limit_body(State(limit): State<usize>, request: Request, next: Next) -> Response {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match announced {
        Some(n) if n > limit as u64 => AppError::PayloadTooLarge(limit).into_response(),
        _ => next.run(request).await,
    }
}

/// Ends a request that takes longer than the configured timeout with a 503 envelope.
pub async fn timeout(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    within(limit, request, next).await
}

/// Runs the rest of the stack, or answers the 503 envelope once `limit` has passed.
async fn within(limit: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => AppError::Timeout.into_response(),
    }
}

/// What the API's lean lane needs to know.
#[derive(Debug, Clone, Copy)]
pub struct Lane {
    /// Served over https (HSTS).
    pub https: bool,
    /// The request timeout.
    pub timeout: Duration,
}

/// The lane of the entitlement check and the webhook: everything the other layers do for them (the
/// span other layers read, the timeout, error logging, security headers, request metrics) in one
/// middleware, and no session or HTML error handling, which machines calling them never use. The
/// check runs in front of every paid request of the platform; each boxed layer it skips counts.
pub async fn lane(State(lane): State<Lane>, mut request: Request, next: Next) -> Response {
    request
        .extensions_mut()
        .insert(RequestSpan(tracing::Span::current()));
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let started = std::time::Instant::now();
    let mut response = within(lane.timeout, request, next).await;
    log_cause(&response);
    super::security::add(response.headers_mut(), false, lane.https);
    super::ops::record_request(
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        &method,
        response.status(),
        started,
    );
    response
}
