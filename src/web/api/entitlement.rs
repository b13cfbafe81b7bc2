//! `GET /billing/entitlement`, its forward-auth twin for gateways, and [`RequireEntitlement`] for
//! routes inside this process.

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::billing::entitlement::{self, EntitlementAnswer};
use crate::billing::feed;
use crate::error::AppError;
use crate::web::AppState;
use crate::web::extract::{ApiUser, Query};
use crate::web::wire;

/// Routes of the entitlement check.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/billing/entitlement", get(check))
        .route("/billing/entitlement/forward-auth", get(forward_auth))
}

/// 200 when entitled, 402 Payment Required when not; the same body either way.
#[utoipa::path(get, path = "/billing/entitlement", tag = "entitlement",
    params(("X-User-Id" = String, Header, description = "the platform user id the caller acts for"),
        ("at" = Option<String>, Query, description = "an RFC 3339 instant in the past: the answer the check gave then (as_of = at), from the change log")),
    security(("internal_key" = [])),
    responses(
        (status = 200, description = "entitled", body = crate::web::wire::EntitlementBody),
        (status = 402, description = "not entitled", body = crate::web::wire::EntitlementBody),
        (status = 401, description = "no X-User-Id, or the internal key is missing or wrong", body = crate::web::wire::ErrorBody),
        (status = 404, description = "unknown user", body = crate::web::wire::ErrorBody),
        (status = 422, description = "malformed user id (invalid_user_id), a malformed or future `at` (invalid_query), or `at` before the change log begins for the user (history_unavailable)", body = crate::web::wire::ErrorBody),
    ))]
pub(crate) async fn check(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Query(q): Query<CheckQuery>,
) -> Result<Response, AppError> {
    let answer = entitlement::check(&state, &user).await?;
    let body = match q.at.as_deref() {
        None => wire::entitlement_answer(&answer),
        Some(raw) => {
            let at = past_instant(raw)?;
            let change = feed::answer_at(&state, &user, at).await?;
            wire::answer_as_of(change.answer, at)
        }
    };
    let status = if body.entitled {
        StatusCode::OK
    } else {
        StatusCode::PAYMENT_REQUIRED
    };
    Ok((status, axum::Json(body)).into_response())
}

/// The check's query: `at`, an RFC 3339 instant in the past, asks what the check said then.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct CheckQuery {
    at: Option<String>,
}

/// An RFC 3339 instant, not in the future (422 `invalid_query` otherwise).
fn past_instant(raw: &str) -> Result<DateTime<Utc>, AppError> {
    let at = DateTime::parse_from_rfc3339(raw)
        .map_err(|e| {
            AppError::invalid(
                "invalid_query",
                format!("at must be an RFC 3339 time such as 2026-12-03T09:00:00Z ({e})"),
            )
        })?
        .with_timezone(&Utc);
    if at > Utc::now() {
        return Err(AppError::invalid(
            "invalid_query",
            "at is in the future: the check answers what was, not what will be",
        ));
    }
    Ok(at)
}

const STATUS_HEADER: HeaderName = HeaderName::from_static("x-entitlement-status");
const REASON_HEADER: HeaderName = HeaderName::from_static("x-entitlement-reason");

/// For nginx `auth_request` and Traefik/Envoy forward-auth, which only understand 2xx/401/403:
/// 200 or 403 with the decision in headers. An unknown user is a 403 (`reason: unknown_user`).
#[utoipa::path(get, path = "/billing/entitlement/forward-auth", tag = "entitlement",
    params(("X-User-Id" = String, Header, description = "the platform user id the caller acts for")),
    security(("internal_key" = [])),
    responses(
        (status = 200, description = "entitled; X-Entitlement-Status and X-Entitlement-Reason headers", body = crate::web::wire::EntitlementBody),
        (status = 403, description = "not entitled (or unknown user: reason unknown_user)"),
        (status = 401, description = "no X-User-Id, or the internal key is missing or wrong", body = crate::web::wire::ErrorBody),
    ))]
pub(crate) async fn forward_auth(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
) -> Result<Response, AppError> {
    let (code, status, reason, body) = match entitlement::check(&state, &user).await {
        Ok(answer) => {
            let code = if answer.decision.entitled {
                StatusCode::OK
            } else {
                StatusCode::FORBIDDEN
            };
            (
                code,
                answer.status(),
                answer.decision.reason.as_str(),
                serde_json::to_value(wire::entitlement_answer(&answer)).unwrap_or_default(),
            )
        }
        Err(e @ AppError::UnknownUser(_)) => (
            StatusCode::FORBIDDEN,
            "none",
            "unknown_user",
            serde_json::json!({"error": {"code": e.code(), "message": e.to_string()}}),
        ),
        Err(other) => return Err(other),
    };
    let mut response = (code, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(STATUS_HEADER, HeaderValue::from_static(status));
    response
        .headers_mut()
        .insert(REASON_HEADER, HeaderValue::from_static(reason));
    Ok(response)
}

/// An extractor for paid routes inside this process: it identifies the caller like the internal API
/// and lets the handler run only when the caller is entitled; otherwise it answers 402 with the same
/// body as `GET /billing/entitlement`.
#[derive(Debug, Clone)]
pub struct RequireEntitlement(pub EntitlementAnswer);

/// Why [`RequireEntitlement`] refused.
#[derive(Debug)]
pub enum EntitlementRejection {
    /// No identity, unknown user, database down…
    Error(AppError),
    /// Known and identified, but not entitled.
    NotEntitled(Box<EntitlementAnswer>),
}

impl IntoResponse for EntitlementRejection {
    fn into_response(self) -> Response {
        match self {
            EntitlementRejection::Error(e) => e.into_response(),
            EntitlementRejection::NotEntitled(answer) => (
                StatusCode::PAYMENT_REQUIRED,
                axum::Json(wire::entitlement_answer(&answer)),
            )
                .into_response(),
        }
    }
}

impl FromRequestParts<AppState> for RequireEntitlement {
    type Rejection = EntitlementRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let ApiUser(user) = ApiUser::from_request_parts(parts, state)
            .await
            .map_err(EntitlementRejection::Error)?;
        let answer = entitlement::check(state, &user)
            .await
            .map_err(EntitlementRejection::Error)?;
        if answer.decision.entitled {
            Ok(RequireEntitlement(answer))
        } else {
            Err(EntitlementRejection::NotEntitled(Box::new(answer)))
        }
    }
}
