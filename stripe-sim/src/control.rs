//! The control API under `/_sim/` (JSON in and out, no auth): what tests in other
//! processes, the dev pages of the service and humans with curl use to drive the
//! simulator — the clock, payment outcomes, faults, webhooks.

// Handlers here return early with a ready response; boxing it would only add noise.
#![allow(clippy::result_large_err)]

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::engine::{CheckoutOutcome, RequestInfo, SubscriptionUpdate, TestCard};
use crate::error::StripeError;
use crate::{Fault, Simulator, WebhookEndpoint};

pub(crate) fn router(sim: Simulator) -> Router {
    Router::new()
        .route("/_sim/state", get(state))
        .route("/_sim/clock/advance", post(advance))
        .route("/_sim/subscriptions/{id}", get(subscription))
        .route(
            "/_sim/subscriptions/{id}/{action}",
            post(subscription_action),
        )
        .route(
            "/_sim/customers/{id}/card",
            post(set_card).delete(remove_card),
        )
        .route(
            "/_sim/customers/{id}/fail_next_renewal",
            post(customer_fail_next),
        )
        .route("/_sim/checkout/{id}/pay", post(pay_checkout))
        .route("/_sim/events", get(events))
        .route("/_sim/events/{id}/redeliver", post(redeliver))
        .route(
            "/_sim/faults",
            get(faults).post(set_faults).delete(clear_faults),
        )
        .route("/_sim/deliveries", get(deliveries))
        .route("/_sim/deliveries/flush", post(flush))
        .route(
            "/_sim/webhook_endpoints",
            get(endpoints).post(set_endpoints),
        )
        .with_state(sim)
}

fn ok(v: Value) -> Response {
    axum::Json(v).into_response()
}

fn bad(message: &str) -> Response {
    StripeError::invalid_state(message).into_response()
}

/// Accepts an absent or empty body as `{}`.
fn body_json(body: &str) -> Result<Value, Response> {
    if body.trim().is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_str(body).map_err(|e| bad(&format!("Invalid JSON body: {e}")))
}

async fn state(State(sim): State<Simulator>) -> Response {
    ok(sim.state_summary())
}

#[derive(Deserialize)]
struct Advance {
    seconds: Option<i64>,
    /// `"next_renewal"` (with `subscription`) or a unix timestamp.
    to: Option<Value>,
    subscription: Option<String>,
}

async fn advance(State(sim): State<Simulator>, body: String) -> Response {
    let v = match body_json(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let a: Advance = match serde_json::from_value(v) {
        Ok(a) => a,
        Err(e) => return bad(&format!("Invalid body: {e}")),
    };
    let before = sim.now();
    let events_before = sim.read(|st| st.events.len());
    match (a.seconds, a.to) {
        (Some(s), None) => sim.advance_clock(s).await,
        (None, Some(Value::String(t))) if t == "next_renewal" => {
            let Some(sub) = a.subscription else {
                return bad("`subscription` is required with to=next_renewal");
            };
            if sim.advance_to_next_renewal(&sub).await.is_none() {
                return bad(&format!("{sub} has no upcoming renewal"));
            }
        }
        (None, Some(Value::Number(n))) => match n.as_i64() {
            Some(t) => sim.advance_clock_to(t).await,
            None => return bad("`to` must be an integer timestamp"),
        },
        _ => {
            return bad(
                "Send {\"seconds\": N}, {\"to\": UNIX} or {\"to\": \"next_renewal\", \"subscription\": \"sub_...\"}",
            );
        }
    }
    let emitted: Vec<Value> = sim.read(|st| {
        st.events[events_before.min(st.events.len())..]
            .iter()
            .map(|e| json!({"id": e["id"], "type": e["type"], "created": e["created"]}))
            .collect()
    });
    ok(json!({"from": before, "now": sim.now(), "events": emitted}))
}

async fn subscription(State(sim): State<Simulator>, Path(id): Path<String>) -> Response {
    match sim.subscription(&id) {
        Some(s) => ok(s),
        None => StripeError::missing("subscription", &id, "id").into_response(),
    }
}

async fn subscription_action(
    State(sim): State<Simulator>,
    Path((id, action)): Path<(String, String)>,
    body: String,
) -> Response {
    let v = match body_json(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let result = sim.mutate(RequestInfo::default(), |st| match action.as_str() {
        "fail_next_renewal" => st.fail_next_renewal(&id),
        "end_trial" => st.end_trial_now(&id),
        "cancel" => {
            if v["at_period_end"].as_bool().unwrap_or(false) {
                st.update_subscription(
                    &id,
                    SubscriptionUpdate {
                        cancel_at_period_end: Some(true),
                        ..Default::default()
                    },
                )
            } else {
                st.cancel_subscription(&id)
            }
        }
        "pause" => {
            let behavior = v["behavior"].as_str().unwrap_or("void").to_string();
            let resumes_at = v["resumes_at"].as_i64();
            st.update_subscription(
                &id,
                SubscriptionUpdate {
                    pause_collection: Some(Some((behavior, resumes_at))),
                    ..Default::default()
                },
            )
        }
        "unpause" => st.update_subscription(
            &id,
            SubscriptionUpdate {
                pause_collection: Some(None),
                ..Default::default()
            },
        ),
        "resume" => st.resume_subscription(&id),
        other => Err(StripeError::invalid_param(
            "action",
            &format!("Unknown action {other}."),
        )),
    });
    match result {
        Ok(()) => ok(sim.subscription(&id).unwrap_or(Value::Null)),
        Err(e) => e.into_response(),
    }
}

fn card_from(v: &Value) -> Result<TestCard, Response> {
    let name = v["card"].as_str().unwrap_or("visa");
    TestCard::parse(name).ok_or_else(|| bad(&format!("Unknown card {name}; use visa, charge_customer_fail, authentication_required or declined")))
}

async fn set_card(State(sim): State<Simulator>, Path(id): Path<String>, body: String) -> Response {
    let card = match body_json(&body).and_then(|v| card_from(&v)) {
        Ok(c) => c,
        Err(r) => return r,
    };
    match sim.set_card(&id, card).await {
        Ok(pm) => ok(json!({"customer": id, "payment_method": pm, "card": card})),
        Err(e) => e.into_response(),
    }
}

async fn remove_card(State(sim): State<Simulator>, Path(id): Path<String>) -> Response {
    match sim.remove_card(&id).await {
        Ok(()) => ok(json!({"customer": id, "payment_method": null})),
        Err(e) => e.into_response(),
    }
}

async fn customer_fail_next(State(sim): State<Simulator>, Path(id): Path<String>) -> Response {
    match sim.fail_next_renewal(&id) {
        Ok(()) => ok(json!({"id": id, "fail_next_renewal": true})),
        Err(e) => e.into_response(),
    }
}

async fn pay_checkout(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    body: String,
) -> Response {
    let v = match body_json(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let result = if v["card"].as_str() == Some("none") {
        sim.pay_checkout_without_card(&id).await
    } else {
        match card_from(&v) {
            Ok(card) => sim.pay_checkout(&id, card).await,
            Err(r) => return r,
        }
    };
    match result {
        Ok(CheckoutOutcome::Completed {
            redirect,
            subscription,
        }) => ok(json!({"status": "complete", "redirect": redirect, "subscription": subscription})),
        Ok(CheckoutOutcome::RequiresAction { subscription }) => (
            StatusCode::PAYMENT_REQUIRED,
            axum::Json(json!({"status": "requires_action", "subscription": subscription})),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn events(State(sim): State<Simulator>) -> Response {
    ok(Value::Array(sim.events()))
}

async fn redeliver(State(sim): State<Simulator>, Path(id): Path<String>) -> Response {
    if sim.redeliver(&id).await {
        ok(json!({"redelivered": id}))
    } else {
        StripeError::missing("event", &id, "id").into_response()
    }
}

async fn faults(State(sim): State<Simulator>) -> Response {
    ok(serde_json::to_value(sim.faults()).unwrap_or(Value::Null))
}

/// One fault object, or an array of them.
async fn set_faults(State(sim): State<Simulator>, body: String) -> Response {
    let v = match body_json(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let list = match v {
        Value::Array(items) => items,
        other => vec![other],
    };
    let mut parsed = Vec::new();
    for item in list {
        match serde_json::from_value::<Fault>(item) {
            Ok(f) => parsed.push(f),
            Err(e) => return bad(&format!("Invalid fault: {e}")),
        }
    }
    for f in parsed {
        sim.set_fault(f).await;
    }
    ok(serde_json::to_value(sim.faults()).unwrap_or(Value::Null))
}

async fn clear_faults(State(sim): State<Simulator>) -> Response {
    sim.clear_faults().await;
    ok(serde_json::to_value(sim.faults()).unwrap_or(Value::Null))
}

async fn deliveries(State(sim): State<Simulator>) -> Response {
    ok(serde_json::to_value(sim.deliveries()).unwrap_or(Value::Null))
}

async fn flush(State(sim): State<Simulator>) -> Response {
    sim.flush_deliveries();
    ok(json!({"flushed": true}))
}

async fn endpoints(State(sim): State<Simulator>) -> Response {
    // Secrets are shown: this is a local test tool and the caller set them.
    ok(serde_json::to_value(sim.webhook_endpoints()).unwrap_or(Value::Null))
}

async fn set_endpoints(State(sim): State<Simulator>, body: String) -> Response {
    let v = match body_json(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let list = match v {
        Value::Array(_) => v,
        other => Value::Array(vec![other]),
    };
    match serde_json::from_value::<Vec<WebhookEndpoint>>(list) {
        Ok(eps) => {
            sim.set_webhook_endpoints(eps);
            ok(serde_json::to_value(sim.webhook_endpoints()).unwrap_or(Value::Null))
        }
        Err(e) => bad(&format!("Invalid endpoints: {e}")),
    }
}
