//! The seed's developer routes, mounted only when `MSR_DEBUG=true`.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Deserialize;

use crate::billing::entitlement;
use crate::billing::users::{self, Created};
use crate::domain::{Email, UserId};
use crate::error::AppError;
use crate::web::AppState;
use crate::web::extract::Query;
use crate::web::wire;

/// `/dev/create_user` and `/dev/status`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dev/create_user", post(create_user))
        .route("/dev/status", get(status))
}

#[derive(Deserialize)]
pub(crate) struct CreateUserParams {
    user_id: String,
    email: String,
}

fn parse_user_id(raw: &str) -> Result<UserId, AppError> {
    UserId::parse(raw).map_err(|e| AppError::invalid("invalid_user_id", e.to_string()))
}

/// `POST /dev/create_user?user_id=…&email=…`: 201 when created, 200 when it existed as asked.
#[utoipa::path(post, path = "/dev/create_user", tag = "dev",
    params(("user_id" = String, Query), ("email" = String, Query)),
    responses(
        (status = 201, description = "created", body = crate::web::wire::UserBody),
        (status = 200, description = "the same user existed", body = crate::web::wire::UserBody),
        (status = 409, description = "the id exists with another e-mail", body = crate::web::wire::ErrorBody),
        (status = 422, description = "invalid id or e-mail", body = crate::web::wire::ErrorBody),
    ))]
pub(crate) async fn create_user(
    State(state): State<AppState>,
    Query(params): Query<CreateUserParams>,
) -> Result<impl IntoResponse, AppError> {
    let id = parse_user_id(&params.user_id)?;
    let email = Email::parse(&params.email)
        .map_err(|e| AppError::invalid("invalid_email", e.to_string()))?;
    let (user, created) = users::create(&state, &id, &email).await?;
    let code = if created == Created::New {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, axum::Json(wire::user(&user))))
}

#[derive(Deserialize)]
pub(crate) struct StatusParams {
    user_id: String,
}

/// `GET /dev/status?user_id=…`: the user, the stored entitlement and the policy's decision.
#[utoipa::path(get, path = "/dev/status", tag = "dev",
    params(("user_id" = String, Query)),
    responses(
        (status = 200, description = "the user, the stored entitlement and the decision", body = crate::web::wire::DevStatusBody),
        (status = 404, description = "unknown user", body = crate::web::wire::ErrorBody),
        (status = 422, description = "invalid id", body = crate::web::wire::ErrorBody),
    ))]
pub(crate) async fn status(
    State(state): State<AppState>,
    Query(params): Query<StatusParams>,
) -> Result<impl IntoResponse, AppError> {
    let id = parse_user_id(&params.user_id)?;
    // From the store, not the cache: this shows what is stored (the subscription id included).
    let (user, answer) = entitlement::user_and_stored(&state, &id).await?;
    Ok(axum::Json(wire::DevStatusBody {
        user: wire::user(&user),
        entitlement: wire::stored_entitlement(&answer),
        entitled: answer.decision.entitled,
        reason: answer.decision.reason.as_str().to_owned(),
        valid_until: answer.decision.valid_until.map(wire::time),
        as_of: wire::time(answer.as_of),
    }))
}
