//! `/v1/entitlements/features`, `/v1/products/{id}/features` and
//! `/v1/entitlements/active_entitlements`.

use axum::extract::{Path, State};
use serde_json::json;

use super::{ApiRequest, ApiResult, list_page, one};
use crate::Simulator;
use crate::error::StripeError;
use crate::form::MetadataUpdate;

const FEATURE: &str = "entitlements.feature";
const ACTIVE_ENTITLEMENT: &str = "entitlements.active_entitlement";

/// `POST /v1/entitlements/features` (`name`, `lookup_key`, `metadata`).
pub(crate) async fn create_feature(State(sim): State<Simulator>, req: ApiRequest) -> ApiResult {
    let p = req.params;
    let name = p.required_str("name")?;
    let lookup_key = p.required_str("lookup_key")?;
    let metadata = p
        .metadata("metadata")?
        .map(MetadataUpdate::into_map)
        .unwrap_or_default();
    sim.mutate(req.info, |st| {
        let id = st.create_feature(name, lookup_key, metadata)?;
        one(st, &id, FEATURE, &p)
    })
}

/// `GET /v1/entitlements/features/{id}`.
pub(crate) async fn retrieve_feature(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    sim.read(|st| one(st, &id, FEATURE, &req.params))
}

/// `POST /v1/entitlements/features/{id}` (`name`, `metadata`, `active`).
pub(crate) async fn update_feature(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    let p = req.params;
    let name = p.str("name")?;
    if name.as_deref() == Some("") {
        return Err(StripeError::invalid_param(
            "name",
            "A feature needs a name.",
        ));
    }
    let metadata = p.metadata("metadata")?;
    let active = p.bool("active")?;
    sim.mutate(req.info, |st| {
        st.update_feature(&id, name, metadata, active)?;
        one(st, &id, FEATURE, &p)
    })
}

/// `GET /v1/entitlements/features` with `lookup_key` and `archived` filters; archived
/// features are listed only with `archived=true`, as on Stripe.
pub(crate) async fn list_features(State(sim): State<Simulator>, req: ApiRequest) -> ApiResult {
    let p = req.params;
    let lookup_key = p.str("lookup_key")?;
    let archived = p.bool("archived")?.unwrap_or(false);
    sim.read(|st| {
        let items = st
            .entitlements
            .features
            .values()
            .filter(|f| f.active != archived)
            .filter(|f| lookup_key.as_ref().is_none_or(|k| *k == f.lookup_key))
            .map(|f| (f.seq, f.id.clone()))
            .collect();
        list_page(st, "/v1/entitlements/features", items, &p)
    })
}

/// `POST /v1/products/{id}/features` (`entitlement_feature`).
pub(crate) async fn attach(
    State(sim): State<Simulator>,
    Path(product): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    let p = req.params;
    let feature = p.required_str("entitlement_feature")?;
    sim.mutate(req.info, |st| {
        let id = st.attach_feature(&product, &feature)?;
        one(st, &id, "product_feature", &p)
    })
}

/// `GET /v1/products/{id}/features`.
pub(crate) async fn list_product_features(
    State(sim): State<Simulator>,
    Path(product): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    let p = req.params;
    sim.read(|st| {
        if !st.products.contains_key(&product) {
            return Err(StripeError::missing("product", &product, "product"));
        }
        let items = st
            .entitlements
            .product_features
            .values()
            .filter(|pf| pf.product == product)
            .map(|pf| (pf.seq, pf.id.clone()))
            .collect();
        list_page(st, &format!("/v1/products/{product}/features"), items, &p)
    })
}

/// `GET /v1/products/{id}/features/{product_feature}`.
pub(crate) async fn retrieve_product_feature(
    State(sim): State<Simulator>,
    Path((product, id)): Path<(String, String)>,
    req: ApiRequest,
) -> ApiResult {
    sim.read(|st| {
        st.product_feature_of(&product, &id)?;
        one(st, &id, "product_feature", &req.params)
    })
}

/// `DELETE /v1/products/{id}/features/{product_feature}`.
pub(crate) async fn detach(
    State(sim): State<Simulator>,
    Path((product, id)): Path<(String, String)>,
    req: ApiRequest,
) -> ApiResult {
    sim.mutate(req.info, |st| {
        st.detach_feature(&product, &id)?;
        Ok(axum::Json(
            json!({"id": id, "object": "product_feature", "deleted": true}),
        ))
    })
}

/// `GET /v1/entitlements/active_entitlements?customer=cus_…` (required), paginated;
/// `expand[]=data.feature` inlines the features.
pub(crate) async fn list_active(State(sim): State<Simulator>, req: ApiRequest) -> ApiResult {
    let p = req.params;
    let customer = p.required_str("customer")?;
    sim.read(|st| {
        if !st.customers.contains_key(&customer) && !st.deleted_customers.contains(&customer) {
            return Err(StripeError::missing("customer", &customer, "customer"));
        }
        let items = st.active_entitlements_of(&customer);
        list_page(st, "/v1/entitlements/active_entitlements", items, &p)
    })
}

/// `GET /v1/entitlements/active_entitlements/{id}`: 404 once the customer lost it.
pub(crate) async fn retrieve_active(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    sim.read(|st| one(st, &id, ACTIVE_ENTITLEMENT, &req.params))
}
