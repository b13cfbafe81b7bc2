//! Stripe's HTTP API under `/v1`: the route table, the request extractor (form or query
//! in bracket notation), list pagination and `expand[]`.
//!
//! Middleware, outermost first: request id → auth → rate limit → idempotency → injected
//! faults → handler. Faults sit inside idempotency so an injected 500 is saved and
//! replayed like any other response, as Stripe does.

mod catalog;
mod checkout;
mod clocks;
mod customers;
mod entitlements;
mod events;
mod intents;
mod invoices;
mod middleware;
mod schedules;
mod subscriptions;

// The control API sits behind the same key check and request ids as `/v1`.
pub(crate) use middleware::{auth, request_id};

use axum::Router;
use axum::extract::{FromRequest, Request};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::Simulator;
use crate::engine::{RequestInfo, State, expand};
use crate::error::StripeError;
use crate::form::Params;

/// Handler result: a JSON object or Stripe's error envelope.
pub(crate) type ApiResult = Result<axum::Json<Value>, StripeError>;

/// Every `/v1` route.
pub(crate) fn router(sim: Simulator) -> Router {
    let v1 = Router::new()
        .route(
            "/v1/customers",
            post(customers::create).get(customers::list),
        )
        .route(
            "/v1/customers/{id}",
            get(customers::retrieve)
                .post(customers::update)
                .delete(customers::delete),
        )
        .route(
            "/v1/customers/{id}/payment_methods",
            get(customers::list_customer_payment_methods),
        )
        .route(
            "/v1/products",
            get(catalog::list_products).post(catalog::create_product),
        )
        .route("/v1/products/{id}", get(catalog::retrieve_product))
        .route(
            "/v1/products/{id}/features",
            get(entitlements::list_product_features).post(entitlements::attach),
        )
        .route(
            "/v1/products/{id}/features/{product_feature}",
            get(entitlements::retrieve_product_feature).delete(entitlements::detach),
        )
        .route(
            "/v1/prices",
            get(catalog::list_prices).post(catalog::create_price),
        )
        .route("/v1/prices/{id}", get(catalog::retrieve_price))
        .route(
            "/v1/checkout/sessions",
            post(checkout::create).get(checkout::list),
        )
        .route("/v1/checkout/sessions/{id}", get(checkout::retrieve))
        .route("/v1/checkout/sessions/{id}/expire", post(checkout::expire))
        .route("/v1/billing_portal/sessions", post(checkout::create_portal))
        .route(
            "/v1/subscriptions",
            get(subscriptions::list).post(subscriptions::create),
        )
        .route(
            "/v1/subscriptions/{id}",
            get(subscriptions::retrieve)
                .post(subscriptions::update)
                .delete(subscriptions::cancel),
        )
        .route("/v1/subscriptions/{id}/resume", post(subscriptions::resume))
        .route(
            "/v1/subscription_schedules",
            get(schedules::list).post(schedules::create),
        )
        .route(
            "/v1/subscription_schedules/{id}",
            get(schedules::retrieve).post(schedules::update),
        )
        .route(
            "/v1/subscription_schedules/{id}/cancel",
            post(schedules::cancel),
        )
        .route(
            "/v1/subscription_schedules/{id}/release",
            post(schedules::release),
        )
        .route("/v1/invoices", get(invoices::list).post(invoices::create))
        .route(
            "/v1/invoices/{id}",
            get(invoices::retrieve).delete(invoices::delete),
        )
        .route("/v1/invoices/{id}/finalize", post(invoices::finalize))
        .route("/v1/invoices/{id}/pay", post(invoices::pay))
        .route("/v1/invoices/{id}/void", post(invoices::void))
        .route(
            "/v1/invoices/{id}/mark_uncollectible",
            post(invoices::mark_uncollectible),
        )
        .route(
            "/v1/invoiceitems",
            get(invoices::list_items).post(invoices::create_item),
        )
        .route("/v1/invoiceitems/{id}", get(invoices::retrieve_item))
        .route(
            "/v1/payment_methods",
            get(customers::list_payment_methods).post(customers::create_payment_method),
        )
        .route(
            "/v1/payment_methods/{id}",
            get(customers::retrieve_payment_method),
        )
        .route(
            "/v1/payment_methods/{id}/attach",
            post(customers::attach_payment_method),
        )
        .route(
            "/v1/payment_methods/{id}/detach",
            post(customers::detach_payment_method),
        )
        .route(
            "/v1/payment_intents",
            get(intents::list_payment_intents).post(intents::create_payment_intent),
        )
        .route(
            "/v1/payment_intents/{id}",
            get(intents::retrieve_payment_intent).post(intents::update_payment_intent),
        )
        .route(
            "/v1/payment_intents/{id}/confirm",
            post(intents::confirm_payment_intent),
        )
        .route(
            "/v1/payment_intents/{id}/capture",
            post(intents::capture_payment_intent),
        )
        .route(
            "/v1/payment_intents/{id}/cancel",
            post(intents::cancel_payment_intent),
        )
        .route("/v1/charges", get(intents::list_charges))
        .route("/v1/charges/{id}", get(intents::retrieve_charge))
        .route(
            "/v1/setup_intents",
            get(intents::list_setup_intents).post(intents::create_setup_intent),
        )
        .route(
            "/v1/setup_intents/{id}",
            get(intents::retrieve_setup_intent).post(intents::update_setup_intent),
        )
        .route(
            "/v1/setup_intents/{id}/confirm",
            post(intents::confirm_setup_intent),
        )
        .route(
            "/v1/setup_intents/{id}/cancel",
            post(intents::cancel_setup_intent),
        )
        .route(
            "/v1/test_helpers/test_clocks",
            get(clocks::list).post(clocks::create),
        )
        .route(
            "/v1/test_helpers/test_clocks/{id}",
            get(clocks::retrieve).delete(clocks::delete),
        )
        .route(
            "/v1/test_helpers/test_clocks/{id}/advance",
            post(clocks::advance),
        )
        .route(
            "/v1/entitlements/features",
            get(entitlements::list_features).post(entitlements::create_feature),
        )
        .route(
            "/v1/entitlements/features/{id}",
            get(entitlements::retrieve_feature).post(entitlements::update_feature),
        )
        .route(
            "/v1/entitlements/active_entitlements",
            get(entitlements::list_active),
        )
        .route(
            "/v1/entitlements/active_entitlements/{id}",
            get(entitlements::retrieve_active),
        )
        .route("/v1/events", get(events::list))
        .route("/v1/events/{id}", get(events::retrieve))
        .route("/v1/{*rest}", axum::routing::any(unknown_route));
    v1.layer(axum::middleware::from_fn_with_state(
        sim.clone(),
        middleware::faults,
    ))
    .layer(axum::middleware::from_fn_with_state(
        sim.clone(),
        middleware::idempotency,
    ))
    .layer(axum::middleware::from_fn_with_state(
        sim.clone(),
        middleware::rate_limit,
    ))
    .layer(axum::middleware::from_fn_with_state(
        sim.clone(),
        middleware::auth,
    ))
    .layer(axum::middleware::from_fn(middleware::request_id))
    .with_state(sim)
}

async fn unknown_route(req: Request) -> StripeError {
    StripeError::unknown_route(req.method().as_str(), req.uri().path())
}

/// A parsed API request: parameters from the body (POST) and the query string.
pub(crate) struct ApiRequest {
    pub(crate) params: Params,
    pub(crate) info: RequestInfo,
}

impl<S: Send + Sync> FromRequest<S> for ApiRequest {
    type Rejection = StripeError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let query = req.uri().query().unwrap_or_default().to_string();
        let info = RequestInfo {
            id: req
                .extensions()
                .get::<middleware::RequestId>()
                .map(|r| r.0.clone()),
            idempotency_key: req
                .headers()
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        };
        let body = axum::body::to_bytes(req.into_body(), 1 << 20)
            .await
            .map_err(|_| {
                StripeError::invalid_param("body", "Request body too large or unreadable.")
            })?;
        let body = std::str::from_utf8(&body)
            .map_err(|_| StripeError::invalid_param("body", "Request body is not UTF-8."))?;
        // Body parameters win over query parameters, as the body is what POSTs mean.
        let mut params = Params::parse(&query)?;
        if !body.trim().is_empty() {
            let from_body = Params::parse(body)?;
            if let (Value::Object(base), Value::Object(extra)) = (&mut params.0, from_body.0) {
                base.extend(extra);
            }
        }
        Ok(ApiRequest { params, info })
    }
}

/// Renders one object with `expand[]` applied, or 404.
pub(crate) fn one(st: &State, id: &str, kind: &str, p: &Params) -> ApiResult {
    let Some(mut v) = st.render_by_id(id).filter(|v| v["object"] == kind) else {
        return Err(StripeError::missing(kind, id, "id"));
    };
    expand(st, &mut v, &p.str_list("expand")?);
    Ok(axum::Json(v))
}

/// A Stripe list page: newest first, `limit` (1..=100, default 10), `starting_after` /
/// `ending_before` cursors. `items` are (creation sequence, id) pairs.
pub(crate) fn list_page(
    st: &State,
    url: &str,
    mut items: Vec<(u64, String)>,
    p: &Params,
) -> ApiResult {
    items.sort_by_key(|(seq, _)| std::cmp::Reverse(*seq));
    let limit = match p.i64("limit")? {
        None => 10,
        Some(l) if (1..=100).contains(&l) => usize::try_from(l).unwrap_or(10),
        Some(_) => {
            return Err(StripeError::invalid_param(
                "limit",
                "Invalid integer: limit must be between 1 and 100.",
            ));
        }
    };
    let position = |param: &str, id: &str| {
        items
            .iter()
            .position(|(_, i)| i == id)
            .ok_or_else(|| StripeError::missing("object", id, param))
    };
    let (page, has_more): (Vec<&(u64, String)>, bool) =
        if let Some(after) = p.str("starting_after")? {
            let at = position("starting_after", &after)?;
            let rest: Vec<_> = items.iter().skip(at + 1).collect();
            let more = rest.len() > limit;
            (rest.into_iter().take(limit).collect(), more)
        } else if let Some(before) = p.str("ending_before")? {
            let at = position("ending_before", &before)?;
            let head: Vec<_> = items.iter().take(at).collect();
            let more = head.len() > limit;
            let skip = head.len().saturating_sub(limit);
            (head.into_iter().skip(skip).collect(), more)
        } else {
            let more = items.len() > limit;
            (items.iter().take(limit).collect(), more)
        };
    let expand_paths: Vec<String> = p
        .str_list("expand")?
        .into_iter()
        .filter_map(|e| e.strip_prefix("data.").map(str::to_string))
        .collect();
    let data: Vec<Value> = page
        .into_iter()
        .filter_map(|(_, id)| {
            let mut v = st.render_by_id(id).or_else(|| st.event(id).cloned())?;
            expand(st, &mut v, &expand_paths);
            Some(v)
        })
        .collect();
    Ok(axum::Json(json!({
        "object": "list",
        "data": data,
        "has_more": has_more,
        "url": url,
    })))
}

/// `created` filter of list endpoints: `created=N` or `created[gt|gte|lt|lte]=N`.
pub(crate) fn created_filter(p: &Params) -> Result<impl Fn(i64) -> bool + use<>, StripeError> {
    let mut bounds: Vec<(String, i64)> = Vec::new();
    match p.get("created") {
        None => {}
        Some(Value::Object(map)) => {
            for (op, v) in map {
                let n = v
                    .as_str()
                    .and_then(|s| s.parse::<i64>().ok())
                    .ok_or_else(|| {
                        StripeError::invalid_param(&format!("created[{op}]"), "Invalid integer.")
                    })?;
                if !matches!(op.as_str(), "gt" | "gte" | "lt" | "lte") {
                    return Err(StripeError::invalid_param(
                        &format!("created[{op}]"),
                        "Unknown operator.",
                    ));
                }
                bounds.push((op.clone(), n));
            }
        }
        Some(_) => {
            let n = p.i64("created")?.unwrap_or_default();
            bounds.push(("eq".into(), n));
        }
    }
    Ok(move |t: i64| {
        bounds.iter().all(|(op, n)| match op.as_str() {
            "gt" => t > *n,
            "gte" => t >= *n,
            "lt" => t < *n,
            "lte" => t <= *n,
            _ => t == *n,
        })
    })
}
