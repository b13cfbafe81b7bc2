//! `POST /billing/checkout`, `POST /billing/portal` and the success-page sync, for services that
//! call with `X-User-Id`.

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;

use crate::billing::{checkout, entitlement};
use crate::domain::Plan;
use crate::error::AppError;
use crate::state::AppState;
use crate::web::extract::{ApiUser, Json, Query};
use crate::web::wire;

/// The billing API routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/billing/checkout", post(start_checkout))
        .route("/billing/portal", post(open_portal))
        .route("/billing/checkout/sync", post(sync_checkout))
}

#[derive(Deserialize)]
struct CheckoutBody {
    plan: String,
}

/// 200 `{url, session_id}`; 404 unknown user; 409 already subscribed; 422 unknown plan; 502 Stripe.
async fn start_checkout(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Json(body): Json<CheckoutBody>,
) -> Result<axum::Json<serde_json::Value>, AppError> {
    let plan: Plan = body
        .plan
        .parse()
        .map_err(|e: crate::domain::InvalidValue| {
            AppError::invalid("invalid_plan", e.to_string())
        })?;
    let started = checkout::start(&state, &user, plan).await?;
    Ok(axum::Json(
        json!({"url": started.url, "session_id": started.session_id}),
    ))
}

/// 200 `{url}`; 409 when the user has no Stripe customer yet.
async fn open_portal(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
) -> Result<axum::Json<serde_json::Value>, AppError> {
    let url = checkout::open_portal(&state, &user).await?;
    Ok(axum::Json(json!({"url": url})))
}

#[derive(Deserialize)]
struct SyncParams {
    session_id: String,
}

/// `POST /billing/checkout/sync?session_id=cs_…`: applies the session the owner came back from and
/// answers the entitlement as `GET /billing/entitlement` does (always 200: the caller asked to sync).
async fn sync_checkout(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Query(params): Query<SyncParams>,
) -> Result<axum::Json<serde_json::Value>, AppError> {
    checkout::sync_session(&state, &user, &params.session_id).await?;
    let answer = entitlement::check(&state, &user).await?;
    Ok(axum::Json(wire::entitlement_answer(&answer)))
}
