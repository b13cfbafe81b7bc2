//! `/v1/subscriptions`.

use axum::extract::{Path, State};

use super::{ApiRequest, ApiResult, created_filter, list_page, one};
use crate::Simulator;
use crate::engine::{NewSubscription, SubscriptionUpdate};
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

fn parse_trial_end(p: &Params) -> Result<Option<Option<i64>>, StripeError> {
    Ok(match p.str("trial_end")?.as_deref() {
        None => None,
        Some("now") => Some(None),
        Some(_) => Some(Some(p.i64("trial_end")?.unwrap_or_default())),
    })
}

/// `POST /v1/subscriptions`.
pub(crate) async fn create(State(sim): State<Simulator>, req: ApiRequest) -> ApiResult {
    let p = req.params;
    let customer = p.required_str("customer")?;
    let items = p
        .nested_list("items")?
        .iter()
        .enumerate()
        .map(|(n, i)| {
            let price = i
                .str("price")?
                .ok_or_else(|| StripeError::missing_param(&format!("items[{n}][price]")))?;
            Ok((price, i.i64("quantity")?.unwrap_or(1)))
        })
        .collect::<Result<Vec<_>, StripeError>>()?;
    let missing_payment_method = match p.nested("trial_settings")? {
        Some(ts) => match ts.nested("end_behavior")? {
            Some(eb) => eb.str("missing_payment_method")?,
            None => None,
        },
        None => None,
    };
    let ns = NewSubscription {
        customer,
        items,
        trial_period_days: p.i64("trial_period_days")?,
        trial_end: parse_trial_end(&p)?,
        metadata: p
            .metadata("metadata")?
            .map(crate::form::MetadataUpdate::into_map)
            .unwrap_or_default(),
        default_payment_method: p.str("default_payment_method")?.filter(|s| !s.is_empty()),
        payment_behavior: p.str("payment_behavior")?,
        missing_payment_method,
        cancel_at_period_end: p.bool("cancel_at_period_end")?.unwrap_or(false),
        schedule: None,
    };
    sim.mutate(req.info, |st| {
        let mut ns = ns;
        // A test id (`pm_card_visa`) becomes a new card attached to the customer — only
        // when the request can otherwise succeed, so a rejected one attaches nothing.
        if let Some(pm) = ns.default_payment_method.clone()
            && crate::engine::is_shortcut(&pm)
            && st.customers.contains_key(&ns.customer)
            && ns
                .items
                .iter()
                .all(|(price, _)| st.prices.contains_key(price))
        {
            ns.default_payment_method = Some(st.customer_payment_method(&ns.customer, &pm)?);
        }
        let id = st.create_subscription(ns)?;
        one(st, &id, "subscription", &p)
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
    let trial_end = parse_trial_end(p)?;
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
    let mut u = parse_update(&p)?;
    sim.mutate(req.info, |st| {
        // Not for an ended subscription, which refuses the change: nothing gets attached.
        let customer = st
            .subscriptions
            .get(&id)
            .filter(|s| !s.is_ended())
            .map(|s| s.customer.clone());
        if let (Some(pm), Some(customer)) = (u.default_payment_method.clone(), customer)
            && crate::engine::is_shortcut(&pm)
        {
            u.default_payment_method = Some(st.customer_payment_method(&customer, &pm)?);
        }
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
