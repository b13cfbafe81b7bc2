//! `/v1/customers` and `/v1/payment_methods`.

use axum::extract::{Path, State};

use super::{ApiRequest, ApiResult, list_page, one};
use crate::Simulator;
use crate::engine::{NewCustomer, TestCard, is_shortcut};
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

/// `POST /v1/customers`. `payment_method` (a test id such as `pm_card_visa`, which makes
/// a new card, or an unattached `pm_…`) is attached and made the default (Stripe only
/// attaches it; existing callers rely on the default). A test id in
/// `invoice_settings[default_payment_method]` names the same new card when it repeats
/// `payment_method`, else a new attached copy, as Stripe does.
pub(crate) async fn create(State(sim): State<Simulator>, req: ApiRequest) -> ApiResult {
    let p = req.params;
    let nc = new_customer(&p)?;
    let pm_param = p.str("payment_method")?.filter(|s| !s.is_empty());
    let card = match &pm_param {
        Some(pm) if pm.starts_with("pm_") && !is_shortcut(pm) => None,
        Some(pm) => Some(
            TestCard::parse(pm)
                .ok_or_else(|| StripeError::missing("payment_method", pm, "payment_method"))?,
        ),
        None => None,
    };
    let default_pm = default_pm(&p)?;
    // Declined cards fail at attach: refuse before the customer exists, as Stripe does.
    let declined_default = default_pm
        .as_deref()
        .is_some_and(|pm| is_shortcut(pm) && TestCard::parse(pm) == Some(TestCard::Declined));
    if card == Some(TestCard::Declined) || declined_default {
        return Err(StripeError::card_declined("Your card was declined."));
    }
    sim.mutate(req.info, |st| {
        if let Some(pm) = pm_param.as_ref().filter(|_| card.is_none()) {
            // An existing card: it must exist and be free before the customer is made.
            match st.payment_methods.get(pm) {
                None => return Err(StripeError::missing("payment_method", pm, "payment_method")),
                Some(p) if p.customer.is_some() => {
                    return Err(StripeError::invalid_param(
                        "payment_method",
                        "The payment method you provided has already been attached to a customer.",
                    ));
                }
                Some(p) if p.card == TestCard::Declined => {
                    return Err(StripeError::card_declined("Your card was declined."));
                }
                Some(_) => {}
            }
        }
        let id = st.create_customer(nc)?;
        let attached = match (card, &pm_param) {
            (Some(c), _) => Some(st.attach_card(&id, c)?),
            (None, Some(pm)) => {
                let pm = st.attach_payment_method(pm, &id)?;
                st.set_default_payment_method(&id, Some(pm.clone()));
                Some(pm)
            }
            (None, None) => None,
        };
        if let Some(pm) = default_pm.filter(|s| !s.is_empty()) {
            let pm = match &attached {
                Some(a) if pm_param.as_deref() == Some(pm.as_str()) => a.clone(),
                _ => st.customer_payment_method(&id, &pm)?,
            };
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
        // A test id (`pm_card_visa`) becomes a new card attached to the customer first.
        let default_pm = match default_pm {
            Some(pm) if is_shortcut(&pm) && st.customers.contains_key(&id) => {
                Some(st.customer_payment_method(&id, &pm)?)
            }
            other => other,
        };
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
