//! `/v1/checkout/sessions` (payment, setup and subscription mode) and
//! `/v1/billing_portal/sessions`.

use axum::extract::{Path, State};

use super::{ApiRequest, ApiResult, list_page, one};
use crate::Simulator;
use crate::engine::{CheckoutMode, NewCheckout, NewLineItem, NewPriceData};
use crate::error::StripeError;
use crate::form::Params;

fn parse_new_checkout(p: &Params) -> Result<NewCheckout, StripeError> {
    let mode = match p.str("mode")?.as_deref() {
        Some(m) => CheckoutMode::parse(m).ok_or_else(|| {
            StripeError::invalid_param(
                "mode",
                "Invalid mode: must be one of payment, setup, or subscription.",
            )
        })?,
        None => return Err(StripeError::missing_param("mode")),
    };
    let line_items = p
        .nested_list("line_items")?
        .iter()
        .enumerate()
        .map(|(n, item)| parse_line_item(item, n))
        .collect::<Result<Vec<_>, StripeError>>()?;
    if mode == CheckoutMode::Subscription && line_items.len() > 1 {
        return Err(StripeError::invalid_param(
            "line_items",
            "The simulator supports exactly one line item in subscription mode.",
        ));
    }
    let sub_data = p.nested("subscription_data")?;
    if mode != CheckoutMode::Subscription && sub_data.is_some() {
        return Err(StripeError::invalid_param(
            "subscription_data",
            "You can only pass `subscription_data` in `subscription` mode.",
        ));
    }
    let sub_data = sub_data.unwrap_or_default();
    let missing_pm = sub_data
        .nested("trial_settings")?
        .and_then(|t| t.nested("end_behavior").transpose())
        .transpose()?
        .map(|e| e.str("missing_payment_method"))
        .transpose()?
        .flatten();
    if let Some(m) = &missing_pm
        && !matches!(m.as_str(), "cancel" | "create_invoice" | "pause")
    {
        return Err(StripeError::invalid_param(
            "subscription_data[trial_settings][end_behavior][missing_payment_method]",
            "Must be one of cancel, create_invoice, pause.",
        ));
    }
    let pmc = p.str("payment_method_collection")?;
    if let Some(v) = &pmc
        && !matches!(v.as_str(), "always" | "if_required")
    {
        return Err(StripeError::invalid_param(
            "payment_method_collection",
            "Must be always or if_required.",
        ));
    }
    let customer_creation = p.str("customer_creation")?;
    match customer_creation.as_deref() {
        None => {}
        Some(_) if mode == CheckoutMode::Subscription => {
            return Err(StripeError::invalid_param(
                "customer_creation",
                "`customer_creation` can only be used in `payment` and `setup` mode.",
            ));
        }
        Some("always" | "if_required") => {}
        Some(_) => {
            return Err(StripeError::invalid_param(
                "customer_creation",
                "Invalid customer_creation: must be one of always or if_required.",
            ));
        }
    }
    Ok(NewCheckout {
        mode,
        customer: p.str("customer")?.filter(|s| !s.is_empty()),
        customer_email: p.str("customer_email")?.filter(|s| !s.is_empty()),
        customer_creation,
        line_items,
        currency: p
            .str("currency")?
            .filter(|s| !s.is_empty())
            .map(|c| c.to_lowercase()),
        payment_method_types: !p.str_list("payment_method_types")?.is_empty(),
        client_reference_id: p.str("client_reference_id")?.filter(|s| !s.is_empty()),
        metadata: p
            .metadata("metadata")?
            .map(|m| m.into_map())
            .unwrap_or_default(),
        subscription_metadata: sub_data
            .metadata("metadata")?
            .map(|m| m.into_map())
            .unwrap_or_default(),
        trial_period_days: sub_data.i64("trial_period_days")?,
        missing_payment_method: missing_pm,
        payment_method_collection: pmc,
        success_url: p.str("success_url")?.filter(|s| !s.is_empty()),
        cancel_url: p.str("cancel_url")?.filter(|s| !s.is_empty()),
        expires_at: p.i64("expires_at")?,
    })
}

/// `line_items[n]`: `price` or `price_data[currency|unit_amount|product|product_data[name]
/// |recurring[interval]]`, and `quantity` (default 1).
fn parse_line_item(item: &Params, n: usize) -> Result<NewLineItem, StripeError> {
    let quantity = item.i64("quantity")?.unwrap_or(1);
    if quantity < 1 {
        return Err(StripeError::invalid_param(
            &format!("line_items[{n}][quantity]"),
            "Quantity must be at least 1.",
        ));
    }
    let price_data = match item.nested("price_data")? {
        None => None,
        Some(d) => {
            let param = |f: &str| format!("line_items[{n}][price_data][{f}]");
            let unit_amount = d
                .i64("unit_amount")?
                .ok_or_else(|| StripeError::missing_param(&param("unit_amount")))?;
            Some(NewPriceData {
                currency: d
                    .str("currency")?
                    .map(|c| c.to_lowercase())
                    .unwrap_or_default(),
                unit_amount,
                product: d.str("product")?.filter(|s| !s.is_empty()),
                product_name: d
                    .nested("product_data")?
                    .map(|pd| pd.str("name"))
                    .transpose()?
                    .flatten()
                    .filter(|s| !s.is_empty()),
                interval: d
                    .nested("recurring")?
                    .map(|r| r.str("interval"))
                    .transpose()?
                    .flatten(),
            })
        }
    };
    Ok(NewLineItem {
        price: item.str("price")?.filter(|s| !s.is_empty()),
        price_data,
        quantity,
    })
}

/// `POST /v1/checkout/sessions`.
pub(crate) async fn create(State(sim): State<Simulator>, req: ApiRequest) -> ApiResult {
    let p = req.params;
    let nc = parse_new_checkout(&p)?;
    if nc.customer.is_some() && nc.customer_email.is_some() {
        return Err(StripeError::invalid_param(
            "customer_email",
            "You may only specify one of these parameters: customer, customer_email.",
        ));
    }
    sim.mutate(req.info, |st| {
        let id = st.create_checkout(nc)?;
        one(st, &id, "checkout.session", &p)
    })
}

/// `GET /v1/checkout/sessions/{id}` (`expand[]=subscription`, `expand[]=customer`, ...).
pub(crate) async fn retrieve(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    sim.read(|st| one(st, &id, "checkout.session", &req.params))
}

/// `POST /v1/checkout/sessions/{id}/expire`.
pub(crate) async fn expire(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    let p = req.params;
    sim.mutate(req.info, |st| {
        st.expire_checkout_now(&id)?;
        one(st, &id, "checkout.session", &p)
    })
}

/// `GET /v1/checkout/sessions` with `customer`, `subscription`, `status` filters.
pub(crate) async fn list(State(sim): State<Simulator>, req: ApiRequest) -> ApiResult {
    let p = req.params;
    let customer = p.str("customer")?;
    let subscription = p.str("subscription")?;
    let status = p.str("status")?;
    sim.read(|st| {
        let items = st
            .checkout_sessions
            .values()
            .filter(|c| customer.is_none() || c.customer == customer)
            .filter(|c| subscription.is_none() || c.subscription == subscription)
            .filter(|c| status.as_ref().is_none_or(|s| *s == c.status))
            .map(|c| (c.seq, c.id.clone()))
            .collect();
        list_page(st, "/v1/checkout/sessions", items, &p)
    })
}

/// `POST /v1/billing_portal/sessions`.
pub(crate) async fn create_portal(State(sim): State<Simulator>, req: ApiRequest) -> ApiResult {
    let p = req.params;
    let customer = p.required_str("customer")?;
    let return_url = p.str("return_url")?.filter(|s| !s.is_empty());
    sim.mutate(req.info, |st| {
        let id = st.create_portal_session(&customer, return_url)?;
        one(st, &id, "billing_portal.session", &p)
    })
}
