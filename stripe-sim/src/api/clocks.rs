//! `/v1/test_helpers/test_clocks`.

use axum::extract::{Path, State};

use super::{ApiRequest, ApiResult, list_page, one};
use crate::Simulator;

/// `POST /v1/test_helpers/test_clocks` (`frozen_time`, `name`).
pub(crate) async fn create(State(sim): State<Simulator>, req: ApiRequest) -> ApiResult {
    let p = req.params;
    let frozen_time = p
        .i64("frozen_time")?
        .ok_or_else(|| crate::error::StripeError::missing_param("frozen_time"))?;
    let name = p.str("name")?;
    sim.mutate(req.info, |st| {
        let id = st.create_test_clock(frozen_time, name);
        one(st, &id, "test_helpers.test_clock", &p)
    })
}

/// `GET /v1/test_helpers/test_clocks/{id}`.
pub(crate) async fn retrieve(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    sim.read(|st| one(st, &id, "test_helpers.test_clock", &req.params))
}

/// `GET /v1/test_helpers/test_clocks`.
pub(crate) async fn list(State(sim): State<Simulator>, req: ApiRequest) -> ApiResult {
    let p = req.params;
    sim.read(|st| {
        let items = st
            .test_clocks
            .values()
            .map(|c| (c.seq, c.id.clone()))
            .collect();
        list_page(st, "/v1/test_helpers/test_clocks", items, &p)
    })
}

/// `POST /v1/test_helpers/test_clocks/{id}/advance` (`frozen_time`). Answers the clock
/// with status `advancing`, as Stripe does; it is `ready` by the next request.
pub(crate) async fn advance(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    let p = req.params;
    let target = p
        .i64("frozen_time")?
        .ok_or_else(|| crate::error::StripeError::missing_param("frozen_time"))?;
    sim.mutate(req.info, |st| {
        st.advance_test_clock(&id, target).map(axum::Json)
    })
}

/// `DELETE /v1/test_helpers/test_clocks/{id}`.
pub(crate) async fn delete(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    sim.mutate(req.info, |st| {
        st.delete_test_clock(&id)?;
        Ok(axum::Json(serde_json::json!({
            "id": id,
            "object": "test_helpers.test_clock",
            "deleted": true,
        })))
    })
}
