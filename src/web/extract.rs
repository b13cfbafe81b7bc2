//! Extractors: the caller's identity on the internal API, and query/JSON readers whose rejections are
//! our JSON envelope instead of axum's plain text.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use crate::domain::UserId;
use crate::error::AppError;
use crate::web::AppState;

/// The user another service acts for: `X-User-Id`, trusted only with `Authorization: Bearer
/// <MSR_INTERNAL_API_KEY>` when a key is configured (debug mode without a key takes the header alone).
#[derive(Debug, Clone)]
pub struct ApiUser(pub UserId);

/// The header that names the user on the internal API.
pub const USER_ID_HEADER: &str = "x-user-id";

impl FromRequestParts<AppState> for ApiUser {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let raw = parts
            .headers
            .get(USER_ID_HEADER)
            .ok_or_else(|| AppError::Unauthorized("the X-User-Id header is required".into()))?;
        if !internal_key_presented(state, &parts.headers) {
            return Err(AppError::Unauthorized(
                "X-User-Id needs Authorization: Bearer <internal API key>; it is missing or wrong"
                    .into(),
            ));
        }
        let raw = raw
            .to_str()
            .map_err(|_| AppError::invalid("invalid_user_id", "X-User-Id must be plain ASCII"))?;
        UserId::parse(raw)
            .inspect(|user| crate::web::middleware::record_user(parts, user))
            .map(ApiUser)
            .map_err(|e| AppError::invalid("invalid_user_id", e.to_string()))
    }
}

/// Whether the request carries `Authorization: Bearer <MSR_INTERNAL_API_KEY>` (compared in constant
/// time). Without a configured key (debug mode only: otherwise the key is required to start) every
/// request does.
pub fn internal_key_presented(state: &AppState, headers: &axum::http::HeaderMap) -> bool {
    let Some(key) = &state.settings.internal_api_key else {
        return true;
    };
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    bool::from(presented.as_bytes().ct_eq(key.expose().as_bytes()))
}

/// Another platform service, acting for no one user: `Authorization: Bearer <MSR_INTERNAL_API_KEY>`
/// (the change feed and the snapshot of every entitlement).
#[derive(Debug, Clone, Copy)]
pub struct InternalCaller;

impl FromRequestParts<AppState> for InternalCaller {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if internal_key_presented(state, &parts.headers) {
            Ok(InternalCaller)
        } else {
            Err(AppError::Unauthorized(
                "this route needs Authorization: Bearer <internal API key>; it is missing or wrong"
                    .into(),
            ))
        }
    }
}

/// `axum::extract::Query` with a 422 envelope for missing or malformed parameters.
#[derive(Debug, Clone)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e: QueryRejection| AppError::invalid("invalid_query", e.body_text()))
    }
}

/// `axum::Json` with our envelope: 400 for broken JSON, 413 past the body limit, 415 for another
/// content type, 422 for JSON of the wrong shape. Every body is an object: serde would read a struct
/// from a sequence (`["weekly"]` as `{"plan":"weekly"}`), which no caller means.
#[derive(Debug, Clone)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(AppError::UnsupportedMediaType(
                "Expected request with `Content-Type: application/json`".into(),
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| match e.status().as_u16() {
                413 => AppError::PayloadTooLarge(super::API_BODY_LIMIT),
                _ => AppError::BadRequest(e.body_text()),
            })?;
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first.is_some_and(|b| *b != b'{') {
            return Err(AppError::invalid(
                "invalid_body",
                "the body must be a JSON object",
            ));
        }
        axum::Json::<T>::from_bytes(&bytes)
            .map(|j| Json(j.0))
            .map_err(|e: JsonRejection| match e.status().as_u16() {
                422 => AppError::invalid("invalid_body", e.body_text()),
                _ => AppError::BadRequest(e.body_text()),
            })
    }
}

/// `application/json`, or any `application/*+json`, as axum's own extractor accepts.
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .is_some_and(|m| {
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        })
}
