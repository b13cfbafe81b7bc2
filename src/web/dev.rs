//! The seed's developer routes, mounted only when `MSR_DEBUG=true`.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use crate::billing::entitlement;
use crate::billing::users::{self, Created};
use crate::db;
use crate::domain::{Email, UserId};
use crate::error::AppError;
use crate::state::AppState;
use crate::web::extract::Query;
use crate::web::wire;

/// `/dev/create_user` and `/dev/status`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dev/create_user", post(create_user))
        .route("/dev/status", get(status))
}

#[derive(Deserialize)]
struct CreateUserParams {
    user_id: String,
    email: String,
}

fn parse_user_id(raw: &str) -> Result<UserId, AppError> {
    UserId::parse(raw).map_err(|e| AppError::invalid("invalid_user_id", e.to_string()))
}

/// `POST /dev/create_user?user_id=…&email=…`: 201 when created, 200 when it existed as asked.
async fn create_user(
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
struct StatusParams {
    user_id: String,
}

/// `GET /dev/status?user_id=…`: the user, the stored entitlement and the policy's decision.
async fn status(
    State(state): State<AppState>,
    Query(params): Query<StatusParams>,
) -> Result<impl IntoResponse, AppError> {
    let id = parse_user_id(&params.user_id)?;
    let answer = entitlement::check(&state, &id).await?;
    let user = db::users::find(&state.db.pool, &id)
        .await?
        .ok_or_else(|| AppError::UnknownUser(id.to_string()))?;
    Ok(axum::Json(json!({
        "user": wire::user(&user),
        "entitlement": wire::stored_entitlement(&answer),
        "entitled": answer.decision.entitled,
        "reason": answer.decision.reason.as_str(),
        "valid_until": answer.decision.valid_until.map(wire::time),
        "as_of": wire::time(answer.as_of),
    })))
}
