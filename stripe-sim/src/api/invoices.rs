//! `/v1/invoices` and `/v1/invoiceitems`.

use axum::extract::{Path, State};

use super::{ApiRequest, ApiResult, created_filter, list_page, one};
use crate::Simulator;
use crate::engine::{NewInvoice, NewInvoiceItem};
use crate::form::MetadataUpdate;

/// `GET /v1/invoices/{id}`.
pub(crate) async fn retrieve(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    sim.read(|st| one(st, &id, "invoice", &req.params))
}

/// `GET /v1/invoices` with `customer`, `subscription`, `status`, `created`; newest first.
pub(crate) async fn list(State(sim): State<Simulator>, req: ApiRequest) -> ApiResult {
    let p = req.params;
    let customer = p.str("customer")?;
    let subscription = p.str("subscription")?;
    let status = p.str("status")?;
    let created = created_filter(&p)?;
    sim.read(|st| {
        let items = st
            .invoices
            .values()
            .filter(|i| customer.as_ref().is_none_or(|c| *c == i.customer))
            .filter(|i| {
                subscription
                    .as_ref()
                    .is_none_or(|s| Some(s) == i.subscription.as_ref())
            })
            .filter(|i| status.as_ref().is_none_or(|s| *s == i.status))
            .filter(|i| created(i.created))
            .map(|i| (i.seq, i.id.clone()))
            .collect();
        list_page(st, "/v1/invoices", items, &p)
    })
}

/// `POST /v1/invoices`: a draft `manual` invoice.
pub(crate) async fn create(State(sim): State<Simulator>, req: ApiRequest) -> ApiResult {
    let p = req.params;
    let ni = NewInvoice {
        customer: p.required_str("customer")?,
        pending_invoice_items_behavior: p.str("pending_invoice_items_behavior")?,
        auto_advance: p.bool("auto_advance")?,
        description: p.str("description")?,
        metadata: p
            .metadata("metadata")?
            .map(MetadataUpdate::into_map)
            .unwrap_or_default(),
        default_payment_method: p.str("default_payment_method")?.filter(|s| !s.is_empty()),
    };
    sim.mutate(req.info, |st| {
        let id = st.create_manual_invoice(ni)?;
        one(st, &id, "invoice", &p)
    })
}

/// `DELETE /v1/invoices/{id}` (drafts only).
pub(crate) async fn delete(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    sim.mutate(req.info, |st| {
        st.delete_draft_invoice(&id)?;
        Ok(axum::Json(
            serde_json::json!({"id": id, "object": "invoice", "deleted": true}),
        ))
    })
}

/// `POST /v1/invoices/{id}/finalize` (`auto_advance`).
pub(crate) async fn finalize(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    let p = req.params;
    let auto_advance = p.bool("auto_advance")?;
    sim.mutate(req.info, |st| {
        st.finalize_invoice(&id, auto_advance)?;
        one(st, &id, "invoice", &p)
    })
}

/// `POST /v1/invoices/{id}/pay` (`payment_method` optional).
pub(crate) async fn pay(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    let p = req.params;
    let pm = p.str("payment_method")?.filter(|s| !s.is_empty());
    sim.mutate(req.info, |st| {
        st.pay_invoice(&id, pm)?;
        one(st, &id, "invoice", &p)
    })
}

/// `POST /v1/invoices/{id}/void`.
pub(crate) async fn void(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    let p = req.params;
    sim.mutate(req.info, |st| {
        st.void_invoice_api(&id)?;
        one(st, &id, "invoice", &p)
    })
}

/// `POST /v1/invoices/{id}/mark_uncollectible`.
pub(crate) async fn mark_uncollectible(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    let p = req.params;
    sim.mutate(req.info, |st| {
        st.mark_uncollectible(&id)?;
        one(st, &id, "invoice", &p)
    })
}

/// `POST /v1/invoiceitems`.
pub(crate) async fn create_item(State(sim): State<Simulator>, req: ApiRequest) -> ApiResult {
    let p = req.params;
    let item = NewInvoiceItem {
        customer: p.required_str("customer")?,
        amount: p.i64("amount")?,
        price: p.str("price")?.filter(|s| !s.is_empty()),
        quantity: p.i64("quantity")?,
        currency: p.str("currency")?.map(|c| c.to_lowercase()),
        description: p.str("description")?,
        subscription: p.str("subscription")?.filter(|s| !s.is_empty()),
        invoice: p.str("invoice")?.filter(|s| !s.is_empty()),
        metadata: p
            .metadata("metadata")?
            .map(MetadataUpdate::into_map)
            .unwrap_or_default(),
    };
    sim.mutate(req.info, |st| {
        let id = st.create_invoice_item(item)?;
        one(st, &id, "invoiceitem", &p)
    })
}

/// `GET /v1/invoiceitems/{id}`.
pub(crate) async fn retrieve_item(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    req: ApiRequest,
) -> ApiResult {
    sim.read(|st| one(st, &id, "invoiceitem", &req.params))
}

/// `GET /v1/invoiceitems` with `customer`, `invoice`, `pending`.
pub(crate) async fn list_items(State(sim): State<Simulator>, req: ApiRequest) -> ApiResult {
    let p = req.params;
    let customer = p.str("customer")?;
    let invoice = p.str("invoice")?;
    let pending = p.bool("pending")?;
    sim.read(|st| {
        let items = st
            .invoice_items
            .values()
            .filter(|i| customer.as_ref().is_none_or(|c| *c == i.customer))
            .filter(|i| invoice.is_none() || i.invoice == invoice)
            .filter(|i| pending.is_none_or(|pe| pe == i.invoice.is_none()))
            .map(|i| (i.seq, i.id.clone()))
            .collect();
        list_page(st, "/v1/invoiceitems", items, &p)
    })
}
