//! `POST /billing/checkout`, `POST /billing/portal` and the success-page sync, for services that
//! call with `X-User-Id`.

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;

use crate::billing::{checkout, entitlement};
use crate::domain::Plan;
use crate::error::AppError;
use crate::web::AppState;
use crate::web::extract::{ApiUser, Json, Query, USER_ID_HEADER};
use crate::web::html::is_browser;
use crate::web::limits::Limited;
use crate::web::pages;
use crate::web::session::CsrfForm;
use crate::web::wire;

/// The billing API routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/billing/checkout", post(start_checkout))
        .route("/billing/portal", post(open_portal))
        .route("/billing/checkout/sync", post(sync_checkout))
}

/// `POST /billing/checkout` body.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct CheckoutBody {
    /// `weekly` or `monthly`.
    #[schema(example = "monthly")]
    plan: String,
}

/// A browser form (session + CSRF, no `X-User-Id`) rather than an API call.
fn from_browser_form(request: &Request) -> bool {
    !request.headers().contains_key(USER_ID_HEADER) && is_browser(request.headers())
}

/// API: 200 `{url, session_id}`; 404 unknown user; 409 already subscribed; 422 unknown plan; 502
/// Stripe. Browser form: 303 to Stripe Checkout.
#[utoipa::path(post, path = "/billing/checkout", tag = "billing",
    params(("X-User-Id" = String, Header, description = "the platform user id the caller acts for")),
    request_body = CheckoutBody,
    security(("internal_key" = [])),
    responses(
        (status = 200, description = "a Checkout Session to send the owner to", body = crate::web::wire::CheckoutStartedBody),
        (status = 400, description = "unreadable JSON", body = crate::web::wire::ErrorBody),
        (status = 401, description = "no X-User-Id, or the internal key is missing or wrong", body = crate::web::wire::ErrorBody),
        (status = 404, description = "unknown user", body = crate::web::wire::ErrorBody),
        (status = 409, description = "already subscribed: use the portal", body = crate::web::wire::ErrorBody),
        (status = 422, description = "unknown plan", body = crate::web::wire::ErrorBody),
        (status = 502, description = "Stripe failed or was too slow", body = crate::web::wire::ErrorBody),
    ))]
pub(crate) async fn start_checkout(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, AppError> {
    if from_browser_form(&request) {
        let form = CsrfForm::from_request(request, &state).await?;
        return pages::checkout_form(&state, form).await;
    }
    let (mut parts, body) = request.into_parts();
    let ApiUser(user) = ApiUser::from_request_parts(&mut parts, &state).await?;
    let Json(body) =
        Json::<CheckoutBody>::from_request(Request::from_parts(parts, body), &state).await?;
    let plan: Plan = body
        .plan
        .parse()
        .map_err(|e: crate::domain::InvalidValue| {
            AppError::invalid("invalid_plan", e.to_string())
        })?;
    let started = checkout::start(&state, &user, plan).await?;
    Ok(axum::Json(json!({"url": started.url, "session_id": started.session_id})).into_response())
}

/// API: 200 `{url}`; 409 when the user has no Stripe customer yet. Browser form: 303 to the portal.
#[utoipa::path(post, path = "/billing/portal", tag = "billing",
    params(("X-User-Id" = String, Header, description = "the platform user id the caller acts for")),
    security(("internal_key" = [])),
    responses(
        (status = 200, description = "the customer portal", body = crate::web::wire::PortalBody),
        (status = 401, description = "no X-User-Id, or the internal key is missing or wrong", body = crate::web::wire::ErrorBody),
        (status = 404, description = "unknown user", body = crate::web::wire::ErrorBody),
        (status = 409, description = "no Stripe customer yet", body = crate::web::wire::ErrorBody),
        (status = 429, description = "too many portal sessions for this user; see Retry-After", body = crate::web::wire::ErrorBody),
        (status = 502, description = "Stripe failed", body = crate::web::wire::ErrorBody),
    ))]
pub(crate) async fn open_portal(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, AppError> {
    if from_browser_form(&request) {
        let form = CsrfForm::from_request(request, &state).await?;
        return pages::portal_form(&state, form).await;
    }
    let (mut parts, _) = request.into_parts();
    let ApiUser(user) = ApiUser::from_request_parts(&mut parts, &state).await?;
    state.limits.take(Limited::Portal, &user)?;
    let url = checkout::open_portal(&state, &user).await?;
    Ok(axum::Json(json!({"url": url})).into_response())
}

#[derive(Deserialize)]
pub(crate) struct SyncParams {
    session_id: String,
}

/// `POST /billing/checkout/sync?session_id=cs_…`: applies the session the owner came back from and
/// answers the entitlement as `GET /billing/entitlement` does (always 200: the caller asked to sync).
#[utoipa::path(post, path = "/billing/checkout/sync", tag = "billing",
    params(("X-User-Id" = String, Header, description = "the platform user id the caller acts for"), ("session_id" = String, Query, description = "cs_…")),
    security(("internal_key" = [])),
    responses(
        (status = 200, description = "applied; the entitlement now", body = crate::web::wire::EntitlementBody),
        (status = 404, description = "unknown user, or not this user's session", body = crate::web::wire::ErrorBody),
        (status = 422, description = "malformed session id", body = crate::web::wire::ErrorBody),
        (status = 429, description = "too many syncs for this user; see Retry-After", body = crate::web::wire::ErrorBody),
        (status = 502, description = "Stripe failed", body = crate::web::wire::ErrorBody),
    ))]
pub(crate) async fn sync_checkout(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Query(params): Query<SyncParams>,
) -> Result<axum::Json<wire::EntitlementBody>, AppError> {
    state.limits.take(Limited::Return, &user)?;
    checkout::sync_session(&state, &user, &params.session_id).await?;
    let answer = entitlement::check(&state, &user).await?;
    Ok(axum::Json(wire::entitlement_answer(&answer)))
}
