//! The control API under `/_sim/` (JSON in and out): what tests in other processes,
//! the dev pages of the service and humans with curl use to drive the simulator — the
//! clock, payment outcomes, faults, webhooks.
//!
//! It can pay checkouts and point webhooks anywhere, and in demo mode it shares the
//! service's origin, so: every route needs the API key exactly as `/v1` does, secrets
//! are never shown, and endpoints set over HTTP must be on a loopback host (the Rust API,
//! [`Simulator::set_webhook_endpoints`], stays unrestricted).

// Handlers here return early with a ready response; boxing it would only add noise.
#![allow(clippy::result_large_err)]

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api;
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
        // Outermost last: request id → auth → handler, as on `/v1`.
        .route_layer(axum::middleware::from_fn_with_state(sim.clone(), api::auth))
        .route_layer(axum::middleware::from_fn(api::request_id))
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
            payment_intent,
            setup_intent,
        }) => ok(json!({
            "status": "complete",
            "redirect": redirect,
            "subscription": Some(subscription).filter(|s| !s.is_empty()),
            "payment_intent": payment_intent,
            "setup_intent": setup_intent,
        })),
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

/// Endpoints as the control API shows them: the URL only, never the signing secret
/// (whoever holds it can forge events the service will trust).
fn endpoint_list(sim: &Simulator) -> Response {
    let urls: Vec<Value> = sim
        .webhook_endpoints()
        .into_iter()
        .map(|e| json!({"url": e.url}))
        .collect();
    ok(Value::Array(urls))
}

async fn endpoints(State(sim): State<Simulator>) -> Response {
    endpoint_list(&sim)
}

/// One endpoint object or an array of them; replaces all endpoints, or none if any is refused.
async fn set_endpoints(State(sim): State<Simulator>, body: String) -> Response {
    let v = match body_json(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let list = match v {
        Value::Array(_) => v,
        other => Value::Array(vec![other]),
    };
    let eps = match serde_json::from_value::<Vec<WebhookEndpoint>>(list) {
        Ok(eps) => eps,
        Err(e) => return bad(&format!("Invalid endpoints: {e}")),
    };
    if let Some(e) = eps.iter().find_map(|ep| loopback_only(&ep.url).err()) {
        return e.into_response();
    }
    sim.set_webhook_endpoints(eps);
    endpoint_list(&sim)
}

/// Accepts `http(s)` URLs on `localhost`, `127.x.x.x` or `[::1]`: the simulator posts
/// signed events (with customers' e-mails) there, so a caller must not aim them elsewhere.
fn loopback_only(raw: &str) -> Result<(), StripeError> {
    let url = reqwest::Url::parse(raw)
        .map_err(|e| StripeError::invalid_param("url", &format!("Invalid URL {raw:?}: {e}.")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(StripeError::invalid_param(
            "url",
            &format!("Webhook URLs must be http or https, not {}.", url.scheme()),
        ));
    }
    // The parser normalizes the host (lower-case names, dotted IPv4, bracketed IPv6).
    let host = url.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(StripeError::invalid_param(
            "url",
            &format!(
                "Webhook endpoint host {host:?} refused: only loopback hosts (localhost, \
                 127.x.x.x, [::1]) are allowed over the control API."
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::loopback_only;

    #[test]
    fn loopback_urls_pass_and_every_other_host_or_scheme_is_refused() {
        for ok in [
            "http://127.0.0.1:9/x",
            "https://127.8.9.10/hook",
            "http://[::1]:8080/w",
            "http://localhost:3000/billing/webhook",
            "http://LOCALHOST/x",
            "http://2130706433/x", // 127.0.0.1 as one number
        ] {
            assert!(loopback_only(ok).is_ok(), "{ok}");
        }
        for bad in [
            "https://evil.example/hook",
            "http://127.0.0.1.evil.example/x",
            "http://127.0.0.1@evil.example/x",
            "http://localhost.evil.example/x",
            "http://10.0.0.1/x",
            "http://[::ffff:8.8.8.8]/x",
            "http://0.0.0.0/x",
            "ftp://127.0.0.1/x",
            "file:///etc/passwd",
            "not a url",
        ] {
            assert!(loopback_only(bad).is_err(), "{bad}");
        }
    }
}
