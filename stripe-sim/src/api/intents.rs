//! `/v1/payment_intents`, `/v1/setup_intents` and `/v1/charges`.

use axum::extract::{Path, State};

use super::{ApiRequest, ApiResult, list_page, one};
use crate::Simulator;
use crate::engine::{IntentParams, SetupParams};
use crate::error::StripeError;
use crate::form::Params;

fn non_empty(p: &Params, key: &str) -> Result<Option<String>, StripeError> {
    Ok(p.str(key)?.filter(|s| !s.is_empty()))
}

fn types(p: &Params) -> Result<Option<Vec<String>>, StripeError> {
    p.has("payment_method_types")
        .then(|| p.str_list("payment_method_types"))
        .transpose()
}

fn intent_params(p: &Params) -> Result<IntentParams, StripeError> {
    Ok(IntentParams {
        amount: p.i64("amount")?,
        currency: p.str("currency")?.map(|c| c.to_lowercase()),
        customer: non_empty(p, "customer")?,
        payment_method: non_empty(p, "payment_method")?,
        capture_method: non_empty(p, "capture_method")?,
        payment_method_types: types(p)?,
        metadata: p.metadata("metadata")?,
        description: p.str("description")?,
        return_url: non_empty(p, "return_url")?,
    })
}

fn setup_params(p: &Params) -> Result<SetupParams, StripeError> {
    Ok(SetupParams {
        customer: non_empty(p, "customer")?,
        payment_method: non_empty(p, "payment_method")?,
        usage: non_empty(p, "usage")?,
        payment_method_types: types(p)?,
        metadata: p.metadata("metadata")?,
        description: p.str("description")?,
        return_url: non_empty(p, "return_url")?,
    })
}

/// `POST /v1/payment_intents` (`confirm=true` confirms at once).
pub(crate) async fn create_payment_intent(
    State(sim): State<Simulator>,
    req: ApiRequest,
) -> ApiResult {
    let p = req.params;
    let ip = intent_params(&p)?;
    let confirm = p.bool("confirm")?.unwrap_or(false);
    sim.mutate(req.info, |st| {
        let id = st.create_payment_intent(ip, confirm)?;
        one(st, &id, "payment_intent", &p)
    })
}

/// `GET /v1/payment_intents/{id}`.
pub(crate) async fn retrieve_payment_intent(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    sim.read(|st| one(st, &id, "payment_intent", &req.params))
}

/// `POST /v1/payment_intents/{id}`.
pub(crate) async fn update_payment_intent(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    let p = req.params;
    let ip = intent_params(&p)?;
    sim.mutate(req.info, |st| {
        st.update_payment_intent(&id, ip)?;
        one(st, &id, "payment_intent", &p)
    })
}

/// `POST /v1/payment_intents/{id}/confirm` (`payment_method`, `return_url`).
pub(crate) async fn confirm_payment_intent(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    let p = req.params;
    let pm = non_empty(&p, "payment_method")?;
    let return_url = non_empty(&p, "return_url")?;
    sim.mutate(req.info, |st| {
        st.confirm_payment_intent(&id, pm, return_url)?;
        one(st, &id, "payment_intent", &p)
    })
}

/// `POST /v1/payment_intents/{id}/capture` (`amount_to_capture`).
pub(crate) async fn capture_payment_intent(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    let p = req.params;
    let amount = p.i64("amount_to_capture")?;
    sim.mutate(req.info, |st| {
        st.capture_payment_intent(&id, amount)?;
        one(st, &id, "payment_intent", &p)
    })
}

/// `POST /v1/payment_intents/{id}/cancel` (`cancellation_reason`).
pub(crate) async fn cancel_payment_intent(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    let p = req.params;
    let reason = non_empty(&p, "cancellation_reason")?;
    sim.mutate(req.info, |st| {
        st.cancel_payment_intent(&id, reason)?;
        one(st, &id, "payment_intent", &p)
    })
}

/// `GET /v1/payment_intents` with the `customer` and `created` filters.
pub(crate) async fn list_payment_intents(
    State(sim): State<Simulator>,
    req: ApiRequest,
) -> ApiResult {
    let p = req.params;
    let customer = p.str("customer")?;
    let created = super::created_filter(&p)?;
    sim.read(|st| {
        let items = st
            .payment_intents
            .values()
            .filter(|pi| customer.is_none() || pi.customer == customer)
            .filter(|pi| created(pi.created))
            .map(|pi| (pi.seq, pi.id.clone()))
            .collect();
        list_page(st, "/v1/payment_intents", items, &p)
    })
}

/// `GET /v1/charges/{id}`.
pub(crate) async fn retrieve_charge(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    sim.read(|st| one(st, &id, "charge", &req.params))
}

/// `GET /v1/charges` with the `customer`, `payment_intent` and `created` filters.
pub(crate) async fn list_charges(State(sim): State<Simulator>, req: ApiRequest) -> ApiResult {
    let p = req.params;
    let customer = p.str("customer")?;
    let intent = p.str("payment_intent")?;
    let created = super::created_filter(&p)?;
    sim.read(|st| {
        let items = st
            .charges
            .values()
            .filter(|c| customer.is_none() || c.customer == customer)
            .filter(|c| intent.as_ref().is_none_or(|i| &c.payment_intent == i))
            .filter(|c| created(c.created))
            .map(|c| (c.seq, c.id.clone()))
            .collect();
        list_page(st, "/v1/charges", items, &p)
    })
}

/// `POST /v1/setup_intents` (`confirm=true` confirms at once).
pub(crate) async fn create_setup_intent(
    State(sim): State<Simulator>,
    req: ApiRequest,
) -> ApiResult {
    let p = req.params;
    let sp = setup_params(&p)?;
    let confirm = p.bool("confirm")?.unwrap_or(false);
    sim.mutate(req.info, |st| {
        let id = st.create_setup_intent(sp, confirm)?;
        one(st, &id, "setup_intent", &p)
    })
}

/// `GET /v1/setup_intents/{id}`.
pub(crate) async fn retrieve_setup_intent(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    sim.read(|st| one(st, &id, "setup_intent", &req.params))
}

/// `POST /v1/setup_intents/{id}`.
pub(crate) async fn update_setup_intent(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    let p = req.params;
    let mut sp = setup_params(&p)?;
    if sp.usage.take().is_some() {
        return Err(StripeError::invalid_param(
            "usage",
            "usage can only be set when the SetupIntent is created.",
        ));
    }
    sim.mutate(req.info, |st| {
        st.update_setup_intent(&id, sp)?;
        one(st, &id, "setup_intent", &p)
    })
}

/// `POST /v1/setup_intents/{id}/confirm` (`payment_method`, `return_url`).
pub(crate) async fn confirm_setup_intent(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    let p = req.params;
    let pm = non_empty(&p, "payment_method")?;
    let return_url = non_empty(&p, "return_url")?;
    sim.mutate(req.info, |st| {
        st.confirm_setup_intent(&id, pm, return_url)?;
        one(st, &id, "setup_intent", &p)
    })
}

/// `POST /v1/setup_intents/{id}/cancel` (`cancellation_reason`).
pub(crate) async fn cancel_setup_intent(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    let p = req.params;
    let reason = non_empty(&p, "cancellation_reason")?;
    sim.mutate(req.info, |st| {
        st.cancel_setup_intent(&id, reason)?;
        one(st, &id, "setup_intent", &p)
    })
}

/// `GET /v1/setup_intents` with the `customer`, `payment_method` and `created` filters.
pub(crate) async fn list_setup_intents(State(sim): State<Simulator>, req: ApiRequest) -> ApiResult {
    let p = req.params;
    let customer = p.str("customer")?;
    let pm = p.str("payment_method")?;
    let created = super::created_filter(&p)?;
    sim.read(|st| {
        let items = st
            .setup_intents
            .values()
            .filter(|si| customer.is_none() || si.customer == customer)
            .filter(|si| pm.is_none() || si.payment_method == pm)
            .filter(|si| created(si.created))
            .map(|si| (si.seq, si.id.clone()))
            .collect();
        list_page(st, "/v1/setup_intents", items, &p)
    })
}
