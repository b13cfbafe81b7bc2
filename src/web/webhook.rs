//! `POST /billing/webhook`: verify, record, then apply.
//!
//! 400 only for a signature that does not verify (nothing is stored); 413 over 1 MiB; 503 when the
//! event cannot be recorded (Stripe will retry); 200 for every recorded event, whatever applying it
//! did (a failure is ours to retry, by the background worker).

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

use crate::billing::{ingest, pipeline};
use crate::db::events::EventState;
use crate::error::AppError;
use crate::stripe::signature;
use crate::telemetry::Counters;
use crate::web::AppState;

/// Largest webhook body accepted.
pub const WEBHOOK_BODY_LIMIT: usize = 1024 * 1024;

/// How long the request waits for the event to be applied before leaving it to the worker.
const APPLY_WAIT: Duration = Duration::from_secs(5);

/// The webhook route, with its own body limit.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/billing/webhook", post(receive))
        .layer(axum::middleware::from_fn_with_state(
            WEBHOOK_BODY_LIMIT,
            super::middleware::limit_body,
        ))
        .layer(DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT))
}

async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let header = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    let now = chrono::Utc::now().timestamp();
    if let Err(e) = signature::verify(header, &body, &state.settings.stripe.webhook_secrets, now) {
        Counters::bump(&state.counters.signature_failures);
        metrics::counter!("msr_webhook_signature_failures_total", "reason" => e.label())
            .increment(1);
        tracing::warn!(
            reason = e.label(),
            bytes = body.len(),
            "webhook refused: bad signature"
        );
        return Ok((
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": {"code": "invalid_signature", "message": e.to_string()}})),
        )
            .into_response());
    }
    let prepared = ingest::prepare(&state, &body, "webhook");
    let delivery = pipeline::record(&state, prepared).await?;
    let (id, new) = (delivery.prepared.id.clone(), delivery.new);
    // A duplicate of an event still waiting (its first delivery was cut off after the insert) is
    // applied now; for anything already applied the claim fails at once and nothing happens.
    // The apply stage goes on if this connection drops or the wait below runs out: a slow Stripe
    // re-fetch must not hold Stripe's delivery, nor be abandoned half-way.
    let applied = if delivery.prepared.state == EventState::Pending {
        tokio::time::timeout(APPLY_WAIT, pipeline::apply(&state, delivery)).await
    } else {
        Ok(Ok(None))
    };
    let outcome = match applied {
        Ok(Ok(Some(state))) => state.as_str(),
        Ok(Ok(None)) if new => "in_progress",
        Ok(Ok(None)) => "already_processed",
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "event recorded; applying it failed and will be retried");
            "pending"
        }
        Err(_) => "pending",
    };
    let mut answer = json!({"received": true, "id": id, "state": outcome});
    if !new {
        answer["duplicate"] = json!(true);
    }
    Ok(axum::Json(answer).into_response())
}
