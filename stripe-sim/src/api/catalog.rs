//! `/v1/products` and `/v1/prices` (read-only: the catalogue is seeded from the config).

use axum::extract::{Path, State};

use super::{ApiRequest, ApiResult, list_page, one};
use crate::Simulator;

/// `GET /v1/products/{id}`.
pub(crate) async fn retrieve_product(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    sim.read(|st| one(st, &id, "product", &req.params))
}

/// `GET /v1/products`.
pub(crate) async fn list_products(State(sim): State<Simulator>, req: ApiRequest) -> ApiResult {
    let p = req.params;
    sim.read(|st| {
        let items = st
            .products
            .values()
            .map(|x| (x.seq, x.id.clone()))
            .collect();
        list_page(st, "/v1/products", items, &p)
    })
}

/// `GET /v1/prices/{id}`.
pub(crate) async fn retrieve_price(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    sim.read(|st| one(st, &id, "price", &req.params))
}

/// `GET /v1/prices` with `lookup_keys[]`, `active`, `product`, `currency`, `type` filters.
pub(crate) async fn list_prices(State(sim): State<Simulator>, req: ApiRequest) -> ApiResult {
    let p = req.params;
    let lookup_keys = p.str_list("lookup_keys")?;
    let active = p.bool("active")?;
    let product = p.str("product")?;
    let currency = p.str("currency")?;
    let kind = p.str("type")?;
    sim.read(|st| {
        let items = st
            .prices
            .values()
            .filter(|x| {
                lookup_keys.is_empty()
                    || x.lookup_key
                        .as_ref()
                        .is_some_and(|k| lookup_keys.contains(k))
            })
            .filter(|x| active.is_none_or(|a| a == x.active))
            .filter(|x| product.as_ref().is_none_or(|pr| *pr == x.product))
            .filter(|x| currency.as_ref().is_none_or(|c| *c == x.currency))
            .filter(|_| kind.as_deref().is_none_or(|k| k == "recurring"))
            .map(|x| (x.seq, x.id.clone()))
            .collect();
        list_page(st, "/v1/prices", items, &p)
    })
}
