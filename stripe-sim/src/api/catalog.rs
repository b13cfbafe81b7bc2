//! `/v1/products` and `/v1/prices`: the seeded catalogue plus whatever the API creates.

use axum::extract::{Path, State};

use super::{ApiRequest, ApiResult, list_page, one};
use crate::Simulator;
use crate::engine::NewPrice;

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
            .filter(|x| {
                kind.as_deref()
                    .is_none_or(|k| (k == "recurring") != x.interval.is_empty())
            })
            .map(|x| (x.seq, x.id.clone()))
            .collect();
        list_page(st, "/v1/prices", items, &p)
    })
}

/// `POST /v1/products` (`name`, `description`, `metadata`, `id`, `default_price_data`).
pub(crate) async fn create_product(State(sim): State<Simulator>, req: ApiRequest) -> ApiResult {
    let p = req.params;
    let name = p.required_str("name")?;
    let description = p.str("description")?;
    let metadata = p
        .metadata("metadata")?
        .map(crate::form::MetadataUpdate::into_map)
        .unwrap_or_default();
    let id = p.str("id")?.filter(|s| !s.is_empty());
    let default_price = match p.nested("default_price_data")? {
        Some(d) => Some(new_price(&d, None)?),
        None => None,
    };
    sim.mutate(req.info, |st| {
        let id = st.create_product(name, description, metadata, id)?;
        if let Some(mut price) = default_price {
            price.product = Some(id.clone());
            st.create_price(price)?;
        }
        one(st, &id, "product", &p)
    })
}

fn new_price(
    p: &crate::form::Params,
    product: Option<String>,
) -> Result<NewPrice, crate::error::StripeError> {
    let recurring = p.nested("recurring")?;
    Ok(NewPrice {
        product,
        product_name: p
            .nested("product_data")?
            .map(|d| d.required_str("name"))
            .transpose()?,
        unit_amount: p
            .i64("unit_amount")?
            .ok_or_else(|| crate::error::StripeError::missing_param("unit_amount"))?,
        currency: p.required_str("currency")?,
        interval: recurring
            .as_ref()
            .map(|r| r.required_str("interval"))
            .transpose()?,
        interval_count: recurring
            .as_ref()
            .map(|r| r.i64("interval_count"))
            .transpose()?
            .flatten(),
        lookup_key: p.str("lookup_key")?.filter(|s| !s.is_empty()),
        transfer_lookup_key: p.bool("transfer_lookup_key")?.unwrap_or(false),
        nickname: p.str("nickname")?,
        metadata: p
            .metadata("metadata")?
            .map(crate::form::MetadataUpdate::into_map)
            .unwrap_or_default(),
        active: p.bool("active")?,
    })
}

/// `POST /v1/prices` (`product` or `product_data[name]`, `unit_amount`, `currency`,
/// `recurring[interval]`, `recurring[interval_count]`, `lookup_key`, `nickname`).
pub(crate) async fn create_price(State(sim): State<Simulator>, req: ApiRequest) -> ApiResult {
    let p = req.params;
    let np = new_price(&p, p.str("product")?.filter(|s| !s.is_empty()))?;
    sim.mutate(req.info, |st| {
        let id = st.create_price(np)?;
        one(st, &id, "price", &p)
    })
}
