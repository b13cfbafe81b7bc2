//! Liveness and readiness for orchestrators.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use crate::web::AppState;

/// `/healthz` and `/readyz`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// The process is alive.
async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

/// The process can serve: the database answers (on SQLite a write commits), and no background
/// loop keeps failing (each one is named).
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if !state.db.ready().await {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(
                json!({"status": "unavailable", "error": {"code": "database_unavailable", "message": "the database does not answer or cannot commit a write"}}),
            ),
        );
    }
    let failing = state.tasks.failing();
    if !failing.is_empty() {
        let names: Vec<&str> = failing.iter().map(|f| f.task).collect();
        let tasks: Vec<_> = failing
            .iter()
            .map(|f| json!({"task": f.task, "restarts": f.restarts, "last_error": f.last_error}))
            .collect();
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(
                json!({"status": "unavailable", "error": {"code": "task_failing",
                "message": format!("background tasks keep stopping: {}", names.join(", "))},
                "tasks": tasks}),
            ),
        );
    }
    (StatusCode::OK, axum::Json(json!({"status": "ready"})))
}
