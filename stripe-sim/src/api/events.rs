//! `/v1/events`: everything emitted, newest first, with `type`, `types[]` and `created`
//! filters. `type` accepts Stripe's wildcard form (`invoice.*`).

use axum::extract::{Path, State};

use super::{ApiRequest, ApiResult, created_filter, list_page};
use crate::Simulator;
use crate::error::StripeError;

/// `GET /v1/events/{id}`.
pub(crate) async fn retrieve(State(sim): State<Simulator>, Path(id): Path<String>) -> ApiResult {
    sim.read(|st| {
        st.event(&id)
            .cloned()
            .map(axum::Json)
            .ok_or_else(|| StripeError::missing("event", &id, "id"))
    })
}

fn type_matches(pattern: &str, t: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => t.starts_with(prefix),
        None => pattern == t,
    }
}

/// `GET /v1/events`.
pub(crate) async fn list(State(sim): State<Simulator>, req: ApiRequest) -> ApiResult {
    let p = req.params;
    let single = p.str("type")?;
    let types = p.str_list("types")?;
    if single.is_some() && !types.is_empty() {
        return Err(StripeError::invalid_param(
            "types",
            "You cannot specify both type and types.",
        ));
    }
    let created = created_filter(&p)?;
    sim.read(|st| {
        let items = st
            .events
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                let t = e["type"].as_str().unwrap_or_default();
                single.as_deref().is_none_or(|s| type_matches(s, t))
                    && (types.is_empty() || types.iter().any(|s| type_matches(s, t)))
                    && created(e["created"].as_i64().unwrap_or_default())
            })
            .map(|(i, e)| {
                (
                    u64::try_from(i).unwrap_or_default(),
                    e["id"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        list_page(st, "/v1/events", items, &p)
    })
}
