//! `/v1/subscriptions` and (read-only) `/v1/invoices`.

use axum::extract::{Path, State};

use super::{ApiRequest, ApiResult, created_filter, list_page, one};
use crate::Simulator;
use crate::engine::SubscriptionUpdate;
use crate::error::StripeError;
use crate::form::Params;

/// `GET /v1/subscriptions/{id}`.
pub(crate) async fn retrieve(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    sim.read(|st| one(st, &id, "subscription", &req.params))
}

/// `GET /v1/subscriptions`: `customer`, `price`, `status` (default: all but canceled;
/// `all`; `ended` = canceled + incomplete_expired), `created`.
pub(crate) async fn list(State(sim): State<Simulator>, req: ApiRequest) -> ApiResult {
    let p = req.params;
    let customer = p.str("customer")?;
    let price = p.str("price")?;
    let status = p.str("status")?;
    let created = created_filter(&p)?;
    sim.read(|st| {
        let items = st
            .subscriptions
            .values()
            .filter(|s| customer.as_ref().is_none_or(|c| *c == s.customer))
            .filter(|s| {
                price
                    .as_ref()
                    .is_none_or(|pr| s.items.iter().any(|i| i.price == *pr))
            })
            .filter(|s| match status.as_deref() {
                None => s.status != "canceled",
                Some("all") => true,
                Some("ended") => matches!(s.status.as_str(), "canceled" | "incomplete_expired"),
                Some(x) => s.status == x,
            })
            .filter(|s| created(s.created))
            .map(|s| (s.seq, s.id.clone()))
            .collect();
        list_page(st, "/v1/subscriptions", items, &p)
    })
}

fn parse_update(p: &Params) -> Result<SubscriptionUpdate, StripeError> {
    let cancel_at = match p.str("cancel_at")?.as_deref() {
        None => None,
        Some("") => Some(None),
        Some(_) => Some(p.i64("cancel_at")?),
    };
    let pause_collection = match p.get("pause_collection") {
        None => None,
        Some(serde_json::Value::String(s)) if s.is_empty() => Some(None),
        Some(_) => {
            let pc = p.nested("pause_collection")?.unwrap_or_default();
            let behavior = pc
                .required_str("behavior")
                .map_err(|_| StripeError::missing_param("pause_collection[behavior]"))?;
            Some(Some((behavior, pc.i64("resumes_at")?)))
        }
    };
    let items = p
        .nested_list("items")?
        .iter()
        .map(|i| Ok((i.str("id")?, i.str("price")?, i.i64("quantity")?)))
        .collect::<Result<Vec<_>, StripeError>>()?;
    let trial_end = match p.str("trial_end")?.as_deref() {
        None => None,
        Some("now") => Some(None),
        Some(_) => Some(Some(p.i64("trial_end")?.unwrap_or_default())),
    };
    Ok(SubscriptionUpdate {
        cancel_at_period_end: p.bool("cancel_at_period_end")?,
        cancel_at,
        pause_collection,
        items,
        proration_behavior: p.str("proration_behavior")?,
        metadata: p.metadata("metadata")?,
        trial_end,
        default_payment_method: p.str("default_payment_method")?.filter(|s| !s.is_empty()),
    })
}

/// `POST /v1/subscriptions/{id}`.
pub(crate) async fn update(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    let p = req.params;
    let u = parse_update(&p)?;
    sim.mutate(req.info, |st| {
        st.update_subscription(&id, u)?;
        one(st, &id, "subscription", &p)
    })
}

/// `DELETE /v1/subscriptions/{id}`: cancel now.
pub(crate) async fn cancel(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    let p = req.params;
    sim.mutate(req.info, |st| {
        st.cancel_subscription(&id)?;
        one(st, &id, "subscription", &p)
    })
}

/// `POST /v1/subscriptions/{id}/resume`.
pub(crate) async fn resume(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    let p = req.params;
    sim.mutate(req.info, |st| {
        st.resume_subscription(&id)?;
        one(st, &id, "subscription", &p)
    })
}

/// `GET /v1/invoices/{id}`.
pub(crate) async fn retrieve_invoice(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    sim.read(|st| one(st, &id, "invoice", &req.params))
}

/// `GET /v1/invoices` with `customer`, `subscription`, `status` filters.
pub(crate) async fn list_invoices(State(sim): State<Simulator>, req: ApiRequest) -> ApiResult {
    let p = req.params;
    let customer = p.str("customer")?;
    let subscription = p.str("subscription")?;
    let status = p.str("status")?;
    sim.read(|st| {
        let items = st
            .invoices
            .values()
            .filter(|i| customer.as_ref().is_none_or(|c| *c == i.customer))
            .filter(|i| subscription.as_ref().is_none_or(|s| *s == i.subscription))
            .filter(|i| status.as_ref().is_none_or(|s| *s == i.status))
            .map(|i| (i.seq, i.id.clone()))
            .collect();
        list_page(st, "/v1/invoices", items, &p)
    })
}
