//! Invoices beyond the subscription cycle: invoice items (prorations and one-off
//! charges), manual invoices, and the explicit `finalize` / `pay` / `void` actions.

use std::collections::BTreeMap;

use super::billing::Charge;
use super::{Invoice, InvoiceItem, InvoiceLine, State, Subscription, new_id};
use crate::error::StripeError;

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

/// Parameters of `POST /v1/invoices`.
#[derive(Debug, Clone, Default)]
pub struct NewInvoice {
    /// The customer billed.
    pub customer: String,
    /// `include` pulls in the customer's pending invoice items; `exclude` (Stripe's
    /// default in current API versions) leaves them pending.
    pub pending_invoice_items_behavior: Option<String>,
    /// `auto_advance` (default false for invoices created through the API).
    pub auto_advance: Option<bool>,
    /// Free text.
    pub description: Option<String>,
    /// Metadata.
    pub metadata: BTreeMap<String, String>,
    /// Invoice-level payment method.
    pub default_payment_method: Option<String>,
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
    /// Stores a draft invoice with the given lines and emits nothing (callers emit
    /// `invoice.created` when Stripe would).
    pub(crate) fn insert_invoice(
        &mut self,
        id: String,
        customer: &str,
        sub: Option<&Subscription>,
        billing_reason: &str,
        lines: Vec<InvoiceLine>,
        (period_start, period_end): (i64, i64),
    ) -> String {
        let now = self.time_for_customer(customer);
        let total: i64 = lines.iter().map(|l| l.amount).sum();
        let seq = self.next_seq();
        let currency = sub
            .map(|s| s.currency.clone())
            .or_else(|| {
                self.invoice_items
                    .values()
                    .find(|i| i.invoice.as_deref() == Some(id.as_str()))
                    .map(|i| i.currency.clone())
            })
            .unwrap_or_else(|| "usd".into());
        self.invoices.insert(
            id.clone(),
            Invoice {
                id: id.clone(),
                seq,
                created: now,
                customer: customer.to_string(),
                subscription: sub.map(|s| s.id.clone()),
                subscription_metadata: sub.map(|s| s.metadata.clone()).unwrap_or_default(),
                status: "draft".into(),
                billing_reason: billing_reason.into(),
                currency,
                total,
                amount_due: total.max(0),
                amount_paid: 0,
                starting_balance: 0,
                ending_balance: None,
                auto_advance: sub.is_some(),
                description: None,
                metadata: BTreeMap::new(),
                attempt_count: 0,
                attempted: false,
                next_payment_attempt: None,
                first_failed_at: None,
                automatically_finalizes_at: None,
                period_start,
                period_end,
                lines,
                number: None,
                finalized_at: None,
                paid_at: None,
                voided_at: None,
                marked_uncollectible_at: None,
                default_payment_method: None,
            },
        );
        id
    }

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

    /// `POST /v1/invoices`: a draft `manual` invoice; emits `invoice.created`.
    pub fn create_manual_invoice(&mut self, p: NewInvoice) -> Result<String, StripeError> {
        if !self.customers.contains_key(&p.customer) {
            return Err(StripeError::missing("customer", &p.customer, "customer"));
        }
        if let Some(pm) = &p.default_payment_method {
            self.check_payment_method(&p.customer, pm, "default_payment_method")?;
        }
        let include = match p.pending_invoice_items_behavior.as_deref() {
            None | Some("exclude") => false,
            Some("include") => true,
            Some(_) => {
                return Err(StripeError::invalid_param(
                    "pending_invoice_items_behavior",
                    "Invalid pending_invoice_items_behavior: must be one of include or exclude",
                ));
            }
        };
        let id = new_id("in_");
        let lines = if include {
            self.take_pending_items(&p.customer, None, &id)
        } else {
            Vec::new()
        };
        let now = self.time_for_customer(&p.customer);
        let currency = self
            .invoice_items
            .values()
            .find(|i| i.invoice.as_deref() == Some(id.as_str()))
            .map(|i| i.currency.clone());
        let id = self.insert_invoice(id, &p.customer, None, "manual", lines, (now, now));
        if let Some(inv) = self.invoices.get_mut(&id) {
            inv.auto_advance = p.auto_advance.unwrap_or(false);
            inv.description = p.description;
            inv.metadata = p.metadata;
            inv.default_payment_method = p.default_payment_method;
            if let Some(c) = currency {
                inv.currency = c;
            }
        }
        let obj = self.render_invoice(&id);
        self.emit("invoice.created", now, obj, None);
        Ok(id)
    }

    /// `POST /v1/invoices/{id}/finalize`. With `auto_advance` the payment is attempted
    /// at once (Stripe does it shortly after finalization).
    pub fn finalize_invoice(
        &mut self,
        id: &str,
        auto_advance: Option<bool>,
    ) -> Result<(), StripeError> {
        let Some(inv) = self.invoices.get_mut(id) else {
            return Err(StripeError::missing("invoice", id, "id"));
        };
        if inv.status != "draft" {
            return Err(StripeError::invalid_state(format!(
                "This invoice is already finalized, you can't re-finalize a non-draft invoice. ({id} is {})",
                inv.status
            )));
        }
        if let Some(a) = auto_advance {
            inv.auto_advance = a;
        }
        let advance = inv.auto_advance;
        self.finalize(id);
        if advance {
            let _ = self.attempt_payment(id);
        }
        Ok(())
    }

    /// `POST /v1/invoices/{id}/pay`: finalizes a draft, then charges now (with
    /// `payment_method` if given). A failed charge answers Stripe's 402 card error.
    pub fn pay_invoice(&mut self, id: &str, pm: Option<String>) -> Result<(), StripeError> {
        let Some(inv) = self.invoices.get(id).cloned() else {
            return Err(StripeError::missing("invoice", id, "id"));
        };
        match inv.status.as_str() {
            "draft" => self.finalize(id),
            "open" => {}
            "paid" => return Err(StripeError::invalid_state("Invoice is already paid")),
            other => {
                return Err(StripeError::invalid_state(format!(
                    "You cannot pay an invoice with status {other}."
                )));
            }
        }
        if let Some(pm) = &pm {
            self.check_payment_method(&inv.customer, pm, "payment_method")?;
            if let Some(i) = self.invoices.get_mut(id) {
                i.default_payment_method = Some(pm.clone());
            }
        }
        match self.attempt_payment(id) {
            Some(Charge::Succeeded) | None => Ok(()),
            Some(Charge::Declined) => Err(StripeError::card_declined("Your card was declined.")),
            Some(Charge::NeedsAuthentication) => Err(StripeError::authentication_required()),
            Some(Charge::NoPaymentMethod) => Err(StripeError::invalid_state(
                "This customer has no attached payment source or default payment method. \
                 Please consider adding a default payment method.",
            )),
        }
    }

    /// `POST /v1/invoices/{id}/void`: only open invoices.
    pub fn void_invoice_api(&mut self, id: &str) -> Result<(), StripeError> {
        match self.invoices.get(id) {
            None => Err(StripeError::missing("invoice", id, "id")),
            Some(i) if i.status != "open" && i.status != "uncollectible" => {
                Err(StripeError::invalid_state(format!(
                    "You can only void an open or uncollectible invoice ({id} is {}).",
                    i.status
                )))
            }
            Some(_) => {
                self.void_invoice(id);
                Ok(())
            }
        }
    }

    /// `POST /v1/invoices/{id}/mark_uncollectible`.
    pub fn mark_uncollectible(&mut self, id: &str) -> Result<(), StripeError> {
        let Some(inv) = self.invoices.get_mut(id) else {
            return Err(StripeError::missing("invoice", id, "id"));
        };
        if inv.status != "open" {
            return Err(StripeError::invalid_state(format!(
                "You can only mark an open invoice as uncollectible ({id} is {}).",
                inv.status
            )));
        }
        let customer = inv.customer.clone();
        inv.status = "uncollectible".into();
        inv.next_payment_attempt = None;
        let now = self.time_for_customer(&customer);
        if let Some(inv) = self.invoices.get_mut(id) {
            inv.marked_uncollectible_at = Some(now);
        }
        let obj = self.render_invoice(id);
        self.emit("invoice.marked_uncollectible", now, obj, None);
        Ok(())
    }

    /// `DELETE /v1/invoices/{id}`: drafts only; their items become pending again.
    pub fn delete_draft_invoice(&mut self, id: &str) -> Result<(), StripeError> {
        match self.invoices.get(id) {
            None => return Err(StripeError::missing("invoice", id, "id")),
            Some(i) if i.status != "draft" => {
                return Err(StripeError::invalid_state(
                    "You can only delete draft invoices.",
                ));
            }
            Some(_) => {}
        }
        let obj = self.render_invoice(id);
        let now = self.invoices.get(id).map_or(0, |i| i.created);
        self.invoices.remove(id);
        for item in self.invoice_items.values_mut() {
            if item.invoice.as_deref() == Some(id) {
                item.invoice = None;
            }
        }
        self.emit("invoice.deleted", now, obj, None);
        Ok(())
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
