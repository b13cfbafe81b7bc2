//! `/v1/customers` and `/v1/payment_methods`.

use axum::extract::{Path, State};

use super::{ApiRequest, ApiResult, list_page, one};
use crate::Simulator;
use crate::engine::{NewCustomer, TestCard};
use crate::error::StripeError;
use crate::form::Params;

fn new_customer(p: &Params) -> Result<NewCustomer, StripeError> {
    Ok(NewCustomer {
        email: p.str("email")?,
        name: p.str("name")?,
        description: p.str("description")?,
        metadata: p.metadata("metadata")?,
        test_clock: p.str("test_clock")?.filter(|s| !s.is_empty()),
        balance: p.i64("balance")?,
    })
}

fn default_pm(p: &Params) -> Result<Option<String>, StripeError> {
    Ok(p.nested("invoice_settings")?
        .map(|s| s.str("default_payment_method"))
        .transpose()?
        .flatten())
}

/// `POST /v1/customers`. A test payment method id (`payment_method=pm_card_visa`) is
/// attached and made the default, as Stripe does.
pub(crate) async fn create(State(sim): State<Simulator>, req: ApiRequest) -> ApiResult {
    let p = req.params;
    let nc = new_customer(&p)?;
    let card = match p.str("payment_method")? {
        Some(pm) => Some(
            TestCard::parse(&pm)
                .ok_or_else(|| StripeError::missing("payment_method", &pm, "payment_method"))?,
        ),
        None => None,
    };
    if card == Some(TestCard::Declined) {
        return Err(StripeError::card_declined("Your card was declined."));
    }
    let default_pm = default_pm(&p)?;
    sim.mutate(req.info, |st| {
        let id = st.create_customer(nc)?;
        if let Some(c) = card {
            st.attach_card(&id, c)?;
        }
        if let Some(pm) = default_pm.filter(|s| !s.is_empty()) {
            st.update_customer(&id, NewCustomer::default(), Some(pm))?;
        }
        one(st, &id, "customer", &p)
    })
}

/// `GET /v1/customers/{id}`.
pub(crate) async fn retrieve(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    sim.read(|st| one(st, &id, "customer", &req.params))
}

/// `POST /v1/customers/{id}`.
pub(crate) async fn update(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    let p = req.params;
    let mut nc = new_customer(&p)?;
    if nc.test_clock.take().is_some() {
        return Err(StripeError::invalid_param(
            "test_clock",
            "A customer's test clock cannot be changed.",
        ));
    }
    let default_pm = default_pm(&p)?;
    sim.mutate(req.info, |st| {
        st.update_customer(&id, nc, default_pm)?;
        one(st, &id, "customer", &p)
    })
}

/// `DELETE /v1/customers/{id}`.
pub(crate) async fn delete(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    sim.mutate(req.info, |st| {
        st.delete_customer(&id)?;
        Ok(axum::Json(
            serde_json::json!({"id": id, "object": "customer", "deleted": true}),
        ))
    })
}

/// `GET /v1/customers` with `email`, `test_clock` and `created` filters.
pub(crate) async fn list(State(sim): State<Simulator>, req: ApiRequest) -> ApiResult {
    let p = req.params;
    let email = p.str("email")?;
    let clock = p.str("test_clock")?;
    let created = super::created_filter(&p)?;
    sim.read(|st| {
        let items = st
            .customers
            .values()
            .filter(|c| email.is_none() || c.email == email)
            .filter(|c| created(c.created))
            .filter(|c| clock.is_none() || c.test_clock == clock)
            .map(|c| (c.seq, c.id.clone()))
            .collect();
        list_page(st, "/v1/customers", items, &p)
    })
}

/// `GET /v1/payment_methods/{id}`.
pub(crate) async fn retrieve_payment_method(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    sim.read(|st| one(st, &id, "payment_method", &req.params))
}

/// `POST /v1/payment_methods`: `type=card` with `card[token]=tok_visa` (or a test id).
pub(crate) async fn create_payment_method(
    State(sim): State<Simulator>,
    req: ApiRequest,
) -> ApiResult {
    let p = req.params;
    let kind = p.str("type")?.unwrap_or_else(|| "card".into());
    if kind != "card" {
        return Err(StripeError::invalid_param(
            "type",
            "The simulator only supports type=card.",
        ));
    }
    let token = match p.nested("card")? {
        Some(card) => card.str("token")?,
        None => None,
    }
    .or(p.str("payment_method")?)
    .ok_or_else(|| StripeError::missing_param("card[token]"))?;
    sim.mutate(req.info, |st| {
        let id = st.create_payment_method(&token)?;
        one(st, &id, "payment_method", &p)
    })
}

/// `POST /v1/payment_methods/{id}/attach` (`customer`).
pub(crate) async fn attach_payment_method(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    let p = req.params;
    let customer = p.required_str("customer")?;
    sim.mutate(req.info, |st| {
        let pm = st.attach_payment_method(&id, &customer)?;
        one(st, &pm, "payment_method", &p)
    })
}

/// `POST /v1/payment_methods/{id}/detach`.
pub(crate) async fn detach_payment_method(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    let p = req.params;
    sim.mutate(req.info, |st| {
        st.detach_payment_method(&id)?;
        one(st, &id, "payment_method", &p)
    })
}

/// `GET /v1/payment_methods?customer=…&type=card`.
pub(crate) async fn list_payment_methods(
    State(sim): State<Simulator>,
    req: ApiRequest,
) -> ApiResult {
    let p = req.params;
    let customer = p.str("customer")?;
    list_pms(&sim, customer, &p, "/v1/payment_methods")
}

/// `GET /v1/customers/{id}/payment_methods`.
pub(crate) async fn list_customer_payment_methods(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    let p = req.params;
    if !sim.read(|st| st.customers.contains_key(&id)) {
        return Err(StripeError::missing("customer", &id, "customer"));
    }
    let url = format!("/v1/customers/{id}/payment_methods");
    list_pms(&sim, Some(id), &p, &url)
}

fn list_pms(sim: &Simulator, customer: Option<String>, p: &Params, url: &str) -> ApiResult {
    let kind = p.str("type")?;
    if kind.as_deref().is_some_and(|k| k != "card") {
        return Ok(axum::Json(
            serde_json::json!({"object": "list", "data": [], "has_more": false, "url": url}),
        ));
    }
    sim.read(|st| {
        // Payment methods carry no sequence number; creation time then id keeps the
        // order stable for the cursors.
        let mut pms: Vec<&crate::engine::PaymentMethod> = st
            .payment_methods
            .values()
            .filter(|pm| pm.customer.is_some())
            .filter(|pm| customer.is_none() || pm.customer == customer)
            .collect();
        pms.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        let items = pms
            .into_iter()
            .enumerate()
            .map(|(n, pm)| (u64::try_from(n).unwrap_or_default(), pm.id.clone()))
            .collect();
        list_page(st, url, items, p)
    })
}
