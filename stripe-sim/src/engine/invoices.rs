//! Invoices (`/v1/invoices`): drafts for a subscription's period and manual ones,
//! finalization (which applies the customer balance), void, uncollectible and delete,
//! and the invoice object. Charging them is in `payments`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::render::{diff, metadata};
use super::{State, Subscription, new_id};
use crate::error::StripeError;

/// One line of an invoice.
#[derive(Debug, Clone)]
pub struct InvoiceLine {
    pub(crate) id: String,
    pub(crate) price: Option<String>,
    pub(crate) quantity: i64,
    pub(crate) amount: i64,
    pub(crate) period_start: i64,
    pub(crate) period_end: i64,
    pub(crate) subscription_item: Option<String>,
    /// Set for lines that come from an invoice item (prorations, one-off items).
    pub(crate) invoice_item: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) proration: bool,
}

/// An invoice: of a subscription, or a manual one (`subscription: None`).
#[derive(Debug, Clone)]
pub struct Invoice {
    pub(crate) id: String,
    pub(crate) seq: u64,
    pub(crate) created: i64,
    pub(crate) customer: String,
    pub(crate) subscription: Option<String>,
    pub(crate) subscription_metadata: BTreeMap<String, String>,
    pub(crate) status: String,
    pub(crate) billing_reason: String,
    pub(crate) currency: String,
    /// Sum of the lines (negative for a downgrade's credit).
    pub(crate) total: i64,
    pub(crate) amount_due: i64,
    pub(crate) amount_paid: i64,
    /// Customer balance applied at finalization (`starting_balance` / `ending_balance`).
    pub(crate) starting_balance: i64,
    pub(crate) ending_balance: Option<i64>,
    pub(crate) auto_advance: bool,
    pub(crate) description: Option<String>,
    pub(crate) metadata: BTreeMap<String, String>,
    pub(crate) attempt_count: i64,
    pub(crate) attempted: bool,
    pub(crate) next_payment_attempt: Option<i64>,
    pub(crate) first_failed_at: Option<i64>,
    pub(crate) automatically_finalizes_at: Option<i64>,
    pub(crate) period_start: i64,
    pub(crate) period_end: i64,
    pub(crate) lines: Vec<InvoiceLine>,
    pub(crate) number: Option<String>,
    pub(crate) finalized_at: Option<i64>,
    pub(crate) paid_at: Option<i64>,
    pub(crate) voided_at: Option<i64>,
    pub(crate) marked_uncollectible_at: Option<i64>,
    /// Invoice-level payment method (`pay` with `payment_method` sets it).
    pub(crate) default_payment_method: Option<String>,
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

    /// Creates a draft invoice for the subscription's items over their current period,
    /// taking in the customer's pending invoice items (prorations) as Stripe does.
    pub(crate) fn new_invoice(
        &mut self,
        sub_id: &str,
        billing_reason: &str,
        period: (i64, i64),
        free: bool,
    ) -> String {
        let Some(sub) = self.subscriptions.get(sub_id).cloned() else {
            return String::new();
        };
        let id = new_id("in_");
        let mut lines = self.take_pending_items(&sub.customer, Some(sub_id), &id);
        lines.extend(sub.items.iter().map(|item| {
            let unit = self.prices.get(&item.price).map_or(0, |p| p.unit_amount);
            InvoiceLine {
                id: new_id("il_"),
                price: Some(item.price.clone()),
                quantity: item.quantity,
                amount: if free { 0 } else { unit * item.quantity },
                period_start: item.current_period_start,
                period_end: item.current_period_end,
                subscription_item: Some(item.id.clone()),
                invoice_item: None,
                description: None,
                proration: false,
            }
        }));
        self.insert_invoice(id, &sub.customer, Some(&sub), billing_reason, lines, period)
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

    /// draft → open; emits `invoice.finalized`. The customer balance is applied here, as
    /// on Stripe: a credit (negative balance) lowers `amount_due`, and a negative total
    /// (a downgrade's credit) goes to the balance, so the invoice has nothing to collect.
    pub(crate) fn finalize(&mut self, inv_id: &str) {
        let number = self.next_invoice_number();
        let Some(inv) = self.invoices.get(inv_id).cloned() else {
            return;
        };
        let now = self.time_for_customer(&inv.customer);
        let starting = self.customers.get(&inv.customer).map_or(0, |c| c.balance);
        let owed = inv.total + starting;
        let (amount_due, ending) = if owed >= 0 { (owed, 0) } else { (0, owed) };
        let customer_before = self.render_customer(&inv.customer);
        if let Some(c) = self.customers.get_mut(&inv.customer) {
            c.balance = ending;
        }
        if let Some(inv) = self.invoices.get_mut(inv_id) {
            inv.status = "open".into();
            inv.number = Some(number);
            inv.finalized_at = Some(now);
            inv.automatically_finalizes_at = None;
            inv.starting_balance = starting;
            inv.ending_balance = Some(ending);
            inv.amount_due = amount_due;
        }
        let obj = self.render_invoice(inv_id);
        self.emit("invoice.finalized", now, obj, None);
        if starting != ending {
            let after = self.render_customer(&inv.customer);
            let prev = diff(&customer_before, &after);
            self.emit("customer.updated", now, after, prev);
        }
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

    /// A renewal invoice's hour as a draft is over: finalize it and collect — unless
    /// collection is paused, which decides what happens to the invoice instead.
    pub(crate) fn finalize_and_charge(&mut self, inv_id: &str) {
        let Some(inv) = self.invoices.get(inv_id).cloned() else {
            return;
        };
        if inv.status != "draft" {
            return;
        }
        let now = self.time_for_customer(&inv.customer);
        let sub = inv
            .subscription
            .as_ref()
            .and_then(|s| self.subscriptions.get(s))
            .cloned();
        if let Some(pause) = sub.as_ref().and_then(|s| s.pause_collection.clone()) {
            match pause.behavior.as_str() {
                "mark_uncollectible" => {
                    self.finalize(inv_id);
                    if let Some(i) = self.invoices.get_mut(inv_id) {
                        i.status = "uncollectible".into();
                        i.marked_uncollectible_at = Some(now);
                    }
                    let obj = self.render_invoice(inv_id);
                    self.emit("invoice.marked_uncollectible", now, obj, None);
                }
                "void" => {
                    self.finalize(inv_id);
                    self.void_invoice(inv_id);
                }
                // keep_as_draft: the draft simply stays a draft.
                _ => {
                    if let Some(i) = self.invoices.get_mut(inv_id) {
                        i.automatically_finalizes_at = None;
                    }
                }
            }
            return;
        }
        self.finalize(inv_id);
        if sub.is_some_and(|s| s.status == "unpaid") {
            // Stripe stops collecting for unpaid subscriptions; the invoice just stays open.
            return;
        }
        let _ = self.attempt_payment(inv_id);
    }

    pub(crate) fn void_invoice(&mut self, inv_id: &str) {
        let Some(inv) = self.invoices.get_mut(inv_id) else {
            return;
        };
        let customer = inv.customer.clone();
        inv.status = "void".into();
        inv.next_payment_attempt = None;
        let now = self.time_for_customer(&customer);
        if let Some(inv) = self.invoices.get_mut(inv_id) {
            inv.voided_at = Some(now);
        }
        let obj = self.render_invoice(inv_id);
        self.emit("invoice.voided", now, obj, None);
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

    /// An invoice; its subscription is under `parent.subscription_details`.
    pub fn render_invoice(&self, id: &str) -> Value {
        let Some(inv) = self.invoices.get(id) else {
            return Value::Null;
        };
        let customer = self.customers.get(&inv.customer);
        let lines: Vec<Value> = inv
            .lines
            .iter()
            .map(|l| {
                let price = l.price.as_ref().and_then(|p| self.prices.get(p));
                let product = price.map(|p| p.product.clone()).unwrap_or_default();
                let name = self
                    .products
                    .get(&product)
                    .map(|p| p.name.clone())
                    .unwrap_or_default();
                let parent = match (&l.invoice_item, &l.subscription_item) {
                    (Some(ii), _) => json!({
                        "invoice_item_details": {
                            "invoice_item": ii,
                            "proration": l.proration,
                            "proration_details": {"credited_items": null},
                            "subscription": inv.subscription,
                        },
                        "subscription_item_details": null,
                        "type": "invoice_item_details",
                    }),
                    (None, Some(si)) => json!({
                        "invoice_item_details": null,
                        "subscription_item_details": {
                            "invoice_item": null,
                            "proration": false,
                            "proration_details": {"credited_items": null},
                            "subscription": inv.subscription,
                            "subscription_item": si,
                        },
                        "type": "subscription_item_details",
                    }),
                    (None, None) => Value::Null,
                };
                let pricing = price.map(|p| {
                    json!({
                        "price_details": {"price": p.id, "product": product},
                        "type": "price_details",
                        "unit_amount_decimal": p.unit_amount.to_string(),
                    })
                });
                json!({
                    "id": l.id,
                    "object": "line_item",
                    "amount": l.amount,
                    "currency": inv.currency,
                    "description": l.description.clone().unwrap_or_else(|| format!("{} × {}", l.quantity, name)),
                    "discount_amounts": [],
                    "discountable": !l.proration,
                    "discounts": [],
                    "invoice": inv.id,
                    "livemode": false,
                    "metadata": {},
                    "parent": parent,
                    "period": {"end": l.period_end, "start": l.period_start},
                    "pretax_credit_amounts": [],
                    "pricing": pricing,
                    "quantity": l.quantity,
                    "subtotal": l.amount,
                    "taxes": [],
                })
            })
            .collect();
        let finalized = inv.finalized_at.is_some();
        json!({
            "id": inv.id,
            "object": "invoice",
            "account_country": "US",
            "account_name": "My Smart Road (simulated)",
            "account_tax_ids": null,
            "amount_due": inv.amount_due,
            "amount_overpaid": 0,
            "amount_paid": inv.amount_paid,
            "amount_remaining": if matches!(inv.status.as_str(), "void" | "paid") { 0 } else { inv.amount_due - inv.amount_paid },
            "amount_shipping": 0,
            "application": null,
            "attempt_count": inv.attempt_count,
            "attempted": inv.attempted,
            "auto_advance": inv.auto_advance && matches!(inv.status.as_str(), "draft" | "open"),
            "automatic_tax": {"disabled_reason": null, "enabled": false, "liability": null, "provider": null, "status": null},
            "automatically_finalizes_at": inv.automatically_finalizes_at,
            "billing_reason": inv.billing_reason,
            "collection_method": "charge_automatically",
            "created": inv.created,
            "currency": inv.currency,
            "custom_fields": null,
            "customer": inv.customer,
            "customer_address": null,
            "customer_email": customer.and_then(|c| c.email.clone()),
            "customer_name": customer.and_then(|c| c.name.clone()),
            "customer_phone": null,
            "customer_shipping": null,
            "customer_tax_exempt": "none",
            "customer_tax_ids": [],
            "default_payment_method": inv.default_payment_method,
            "default_source": null,
            "default_tax_rates": [],
            "description": inv.description,
            "discounts": [],
            "due_date": null,
            "effective_at": inv.finalized_at,
            "ending_balance": if finalized { inv.ending_balance } else { None },
            "footer": null,
            "from_invoice": null,
            "hosted_invoice_url": null,
            "invoice_pdf": null,
            "issuer": {"type": "self"},
            "last_finalization_error": null,
            "latest_revision": null,
            "lines": {
                "object": "list",
                "data": lines,
                "has_more": false,
                "total_count": inv.lines.len(),
                "url": format!("/v1/invoices/{}/lines", inv.id),
            },
            "livemode": false,
            "metadata": metadata(&inv.metadata),
            "next_payment_attempt": inv.next_payment_attempt,
            "number": inv.number,
            "on_behalf_of": null,
            "parent": inv.subscription.as_ref().map(|sub| json!({
                "quote_details": null,
                "subscription_details": {
                    "metadata": metadata(&inv.subscription_metadata),
                    "subscription": sub,
                },
                "type": "subscription_details",
            })),
            "payment_settings": {"default_mandate": null, "payment_method_options": null, "payment_method_types": null},
            "period_end": inv.period_end,
            "period_start": inv.period_start,
            "post_payment_credit_notes_amount": 0,
            "pre_payment_credit_notes_amount": 0,
            "receipt_number": null,
            "rendering": null,
            "shipping_cost": null,
            "shipping_details": null,
            "starting_balance": inv.starting_balance,
            "statement_descriptor": null,
            "status": inv.status,
            "status_transitions": {
                "finalized_at": inv.finalized_at,
                "marked_uncollectible_at": inv.marked_uncollectible_at,
                "paid_at": inv.paid_at,
                "voided_at": inv.voided_at,
            },
            "subtotal": inv.total,
            "subtotal_excluding_tax": inv.total,
            "test_clock": self.clock_of_customer(&inv.customer),
            "total": inv.total,
            "total_discount_amounts": [],
            "total_excluding_tax": inv.total,
            "total_pretax_credit_amounts": [],
            "total_taxes": [],
            "webhooks_delivered_at": null,
        })
    }
}
