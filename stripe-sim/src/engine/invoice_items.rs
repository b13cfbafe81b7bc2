//! Invoice items (`/v1/invoiceitems`): prorations and one-off charges or credits that
//! wait for the next invoice, and Stripe's proration formula.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::render::metadata;
use super::{InvoiceLine, State, new_id};
use crate::error::StripeError;

/// A pending (or invoiced) invoice item: a proration or a one-off charge/credit.
#[derive(Debug, Clone)]
pub struct InvoiceItem {
    pub(crate) id: String,
    pub(crate) seq: u64,
    pub(crate) created: i64,
    pub(crate) customer: String,
    pub(crate) amount: i64,
    pub(crate) currency: String,
    pub(crate) description: Option<String>,
    pub(crate) price: Option<String>,
    pub(crate) quantity: i64,
    pub(crate) period_start: i64,
    pub(crate) period_end: i64,
    pub(crate) proration: bool,
    pub(crate) subscription: Option<String>,
    pub(crate) subscription_item: Option<String>,
    /// The invoice that took it; `None` while pending.
    pub(crate) invoice: Option<String>,
    pub(crate) metadata: BTreeMap<String, String>,
}

/// Parameters of `POST /v1/invoiceitems`.
#[derive(Debug, Clone, Default)]
pub struct NewInvoiceItem {
    /// The customer billed.
    pub customer: String,
    /// Amount in cents (negative for a credit); or use `price`.
    pub amount: Option<i64>,
    /// A price whose `unit_amount × quantity` is the amount.
    pub price: Option<String>,
    /// Quantity of `price` (default 1).
    pub quantity: Option<i64>,
    /// Currency (default: the price's, else `usd`).
    pub currency: Option<String>,
    /// Line description.
    pub description: Option<String>,
    /// Attach to this subscription's next invoice.
    pub subscription: Option<String>,
    /// Put on this draft invoice instead of leaving it pending.
    pub invoice: Option<String>,
    /// Metadata.
    pub metadata: BTreeMap<String, String>,
}

/// Stripe's proration: `amount × remaining / period`, rounded half away from zero —
/// computed on whole seconds, as Stripe does.
pub(crate) fn prorate(amount: i64, remaining: i64, period: i64) -> i64 {
    if period <= 0 {
        return 0;
    }
    let num = i128::from(amount) * i128::from(remaining.clamp(0, period));
    let den = i128::from(period);
    let rounded = if num >= 0 {
        (2 * num + den) / (2 * den)
    } else {
        -((-2 * num + den) / (2 * den))
    };
    i64::try_from(rounded).unwrap_or(0)
}

impl State {
    /// Moves the customer's pending invoice items onto invoice `inv_id` and returns them
    /// as lines. With a subscription, items of other subscriptions stay pending.
    pub(crate) fn take_pending_items(
        &mut self,
        customer: &str,
        sub: Option<&str>,
        inv_id: &str,
    ) -> Vec<InvoiceLine> {
        let mut pending: Vec<&mut InvoiceItem> = self
            .invoice_items
            .values_mut()
            .filter(|i| i.invoice.is_none() && i.customer == customer)
            .filter(|i| match (sub, &i.subscription) {
                (Some(s), Some(is)) => s == is,
                _ => true,
            })
            .collect();
        pending.sort_by_key(|i| i.seq);
        pending
            .into_iter()
            .map(|item| {
                item.invoice = Some(inv_id.to_string());
                line_of(item)
            })
            .collect()
    }

    /// `POST /v1/invoiceitems`; emits `invoiceitem.created`.
    pub fn create_invoice_item(&mut self, p: NewInvoiceItem) -> Result<String, StripeError> {
        if !self.customers.contains_key(&p.customer) {
            return Err(StripeError::missing("customer", &p.customer, "customer"));
        }
        let quantity = p.quantity.unwrap_or(1).max(1);
        let (amount, currency) = match (&p.price, p.amount) {
            (Some(price), _) => {
                let Some(pr) = self.prices.get(price) else {
                    return Err(StripeError::missing("price", price, "price"));
                };
                (pr.unit_amount * quantity, pr.currency.clone())
            }
            (None, Some(a)) => (a, p.currency.clone().unwrap_or_else(|| "usd".into())),
            (None, None) => return Err(StripeError::missing_param("amount")),
        };
        if let Some(s) = &p.subscription
            && !self.subscriptions.contains_key(s)
        {
            return Err(StripeError::missing("subscription", s, "subscription"));
        }
        if let Some(inv) = &p.invoice {
            match self.invoices.get(inv) {
                None => return Err(StripeError::missing("invoice", inv, "invoice")),
                Some(i) if i.status != "draft" => {
                    return Err(StripeError::invalid_state(format!(
                        "Invoice {inv} is not a draft; items can only be added to drafts."
                    )));
                }
                Some(_) => {}
            }
        }
        let now = self.time_for_customer(&p.customer);
        let id = self.add_invoice_item(InvoiceItem {
            id: new_id("ii_"),
            seq: 0,
            created: now,
            customer: p.customer,
            amount,
            currency,
            description: p.description,
            price: p.price,
            quantity,
            period_start: now,
            period_end: now,
            proration: false,
            subscription: p.subscription,
            subscription_item: None,
            invoice: None,
            metadata: p.metadata,
        });
        if let Some(inv) = p.invoice {
            let line = self.invoice_items.get_mut(&id).map(|item| {
                item.invoice = Some(inv.clone());
                line_of(item)
            });
            if let (Some(line), Some(i)) = (line, self.invoices.get_mut(&inv)) {
                i.total += line.amount;
                i.amount_due = i.total.max(0);
                i.lines.push(line);
            }
        }
        Ok(id)
    }

    /// Stores an invoice item and emits `invoiceitem.created`.
    pub(crate) fn add_invoice_item(&mut self, mut item: InvoiceItem) -> String {
        item.seq = self.next_seq();
        let id = item.id.clone();
        let created = item.created;
        self.invoice_items.insert(id.clone(), item);
        let obj = self.render_invoice_item(&id);
        self.emit("invoiceitem.created", created, obj, None);
        id
    }

    /// An invoice item (`invoiceitem`): a proration or a one-off charge or credit.
    pub fn render_invoice_item(&self, id: &str) -> Value {
        let Some(i) = self.invoice_items.get(id) else {
            return Value::Null;
        };
        let price = i.price.as_ref().and_then(|p| self.prices.get(p));
        json!({
            "id": i.id,
            "object": "invoiceitem",
            "amount": i.amount,
            "currency": i.currency,
            "customer": i.customer,
            "customer_account": null,
            "date": i.created,
            "description": i.description,
            "discountable": !i.proration,
            "discounts": [],
            "invoice": i.invoice,
            "livemode": false,
            "metadata": metadata(&i.metadata),
            "net_amount": i.amount,
            "parent": i.subscription.as_ref().map(|s| json!({
                "subscription_details": {"subscription": s, "subscription_item": i.subscription_item},
                "type": "subscription_details",
            })),
            "period": {"end": i.period_end, "start": i.period_start},
            "pricing": price.map(|p| json!({
                "price_details": {"price": p.id, "product": p.product},
                "type": "price_details",
                "unit_amount_decimal": p.unit_amount.to_string(),
            })),
            "proration": i.proration,
            "quantity": i.quantity,
            "quantity_decimal": i.quantity.to_string(),
            "tax_rates": [],
            "test_clock": self.clock_of_customer(&i.customer),
        })
    }
}

fn line_of(item: &InvoiceItem) -> InvoiceLine {
    InvoiceLine {
        id: new_id("il_"),
        price: item.price.clone(),
        quantity: item.quantity,
        amount: item.amount,
        period_start: item.period_start,
        period_end: item.period_end,
        subscription_item: item.subscription_item.clone(),
        invoice_item: Some(item.id.clone()),
        description: item.description.clone(),
        proration: item.proration,
    }
}

#[cfg(test)]
mod tests {
    use super::prorate;

    #[test]
    fn proration_rounds_half_away_from_zero_on_seconds() {
        assert_eq!(prorate(3000, 1, 2), 1500);
        assert_eq!(prorate(1000, 1, 3), 333);
        assert_eq!(prorate(-1000, 2, 3), -667);
        assert_eq!(prorate(1000, 5, 0), 0);
        assert_eq!(prorate(7900, 2_592_000, 2_592_000), 7900);
    }
}
