//! `/v1/subscription_schedules`.

use axum::extract::{Path, State};

use super::{ApiRequest, ApiResult, list_page, one};
use crate::Simulator;
use crate::engine::{NewPhase, NewSchedule, ScheduleUpdate, StartDate};
use crate::error::StripeError;
use crate::form::Params;

const KIND: &str = "subscription_schedule";

/// `now` or a unix timestamp.
fn start_date(p: &Params, key: &str) -> Result<Option<StartDate>, StripeError> {
    Ok(match p.str(key)?.as_deref() {
        None | Some("") => None,
        Some("now") => Some(StartDate::Now),
        Some(_) => p.i64(key)?.map(StartDate::At),
    })
}

/// `phases[n][items][m][price|quantity]`, `[end_date]`, `[iterations]`,
/// `[proration_behavior]`, and `phases[0][start_date]` on update.
fn parse_phases(p: &Params) -> Result<Vec<NewPhase>, StripeError> {
    p.nested_list("phases")?
        .iter()
        .enumerate()
        .map(|(n, ph)| {
            let items = ph
                .nested_list("items")?
                .iter()
                .enumerate()
                .map(|(m, i)| {
                    let price = i.str("price")?.filter(|s| !s.is_empty()).ok_or_else(|| {
                        StripeError::missing_param(&format!("phases[{n}][items][{m}][price]"))
                    })?;
                    Ok((price, i.i64("quantity")?.unwrap_or(1)))
                })
                .collect::<Result<Vec<_>, StripeError>>()?;
            Ok(NewPhase {
                items,
                start_date: start_date(ph, "start_date")?,
                end_date: ph.i64("end_date")?,
                iterations: ph.i64("iterations")?,
                proration_behavior: ph.str("proration_behavior")?,
            })
        })
        .collect()
}

/// `POST /v1/subscription_schedules`.
pub(crate) async fn create(State(sim): State<Simulator>, req: ApiRequest) -> ApiResult {
    let p = req.params;
    let ns = NewSchedule {
        from_subscription: p.str("from_subscription")?.filter(|s| !s.is_empty()),
        customer: p.str("customer")?.filter(|s| !s.is_empty()),
        start_date: start_date(&p, "start_date")?,
        phases: parse_phases(&p)?,
        end_behavior: p.str("end_behavior")?,
        metadata: p
            .metadata("metadata")?
            .map(crate::form::MetadataUpdate::into_map)
            .unwrap_or_default(),
    };
    sim.mutate(req.info, |st| {
        let id = st.create_schedule(ns)?;
        one(st, &id, KIND, &p)
    })
}

/// `GET /v1/subscription_schedules/{id}`.
pub(crate) async fn retrieve(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    sim.read(|st| one(st, &id, KIND, &req.params))
}

/// `GET /v1/subscription_schedules` with the `customer` filter.
pub(crate) async fn list(State(sim): State<Simulator>, req: ApiRequest) -> ApiResult {
    let p = req.params;
    let customer = p.str("customer")?;
    sim.read(|st| {
        let items = st
            .subscription_schedules
            .values()
            .filter(|s| customer.as_ref().is_none_or(|c| *c == s.customer))
            .map(|s| (s.seq, s.id.clone()))
            .collect();
        list_page(st, "/v1/subscription_schedules", items, &p)
    })
}

/// `POST /v1/subscription_schedules/{id}`: `phases`, `end_behavior`, `metadata`.
pub(crate) async fn update(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    let p = req.params;
    let u = ScheduleUpdate {
        phases: if p.has("phases") {
            Some(parse_phases(&p)?)
        } else {
            None
        },
        end_behavior: p.str("end_behavior")?,
        metadata: p.metadata("metadata")?,
    };
    sim.mutate(req.info, |st| {
        st.update_schedule(&id, u)?;
        one(st, &id, KIND, &p)
    })
}

/// `POST /v1/subscription_schedules/{id}/cancel` (`invoice_now` and `prorate` are accepted
/// and ignored: nothing is invoiced or prorated on cancel here).
pub(crate) async fn cancel(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    let p = req.params;
    sim.mutate(req.info, |st| {
        st.cancel_schedule(&id)?;
        one(st, &id, KIND, &p)
    })
}

/// `POST /v1/subscription_schedules/{id}/release`.
pub(crate) async fn release(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    let p = req.params;
    sim.mutate(req.info, |st| {
        st.release_schedule(&id)?;
        one(st, &id, KIND, &p)
    })
}
