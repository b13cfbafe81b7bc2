//! `/v1/customers` and `/v1/payment_methods/{id}`.

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
    })
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
    sim.mutate(req.info, |st| {
        let id = st.create_customer(nc);
        if let Some(c) = card {
            st.attach_card(&id, c)?;
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
    let nc = new_customer(&p)?;
    let default_pm = p
        .nested("invoice_settings")?
        .map(|s| s.str("default_payment_method"))
        .transpose()?
        .flatten();
    sim.mutate(req.info, |st| {
        st.update_customer(&id, nc, default_pm)?;
        one(st, &id, "customer", &p)
    })
}

/// `GET /v1/customers` with `email` and `created` filters.
pub(crate) async fn list(State(sim): State<Simulator>, req: ApiRequest) -> ApiResult {
    let p = req.params;
    let email = p.str("email")?;
    let created = super::created_filter(&p)?;
    sim.read(|st| {
        let items = st
            .customers
            .values()
            .filter(|c| email.is_none() || c.email == email)
            .filter(|c| created(c.created))
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
