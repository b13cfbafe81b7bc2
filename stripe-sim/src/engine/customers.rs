//! Customers (`/v1/customers`): create, update and delete, and the customer object.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::render::{diff, metadata};
use super::{State, new_id};
use crate::error::StripeError;
use crate::form::MetadataUpdate;

/// A customer.
#[derive(Debug, Clone)]
pub struct Customer {
    pub(crate) id: String,
    pub(crate) seq: u64,
    pub(crate) created: i64,
    pub(crate) email: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) metadata: BTreeMap<String, String>,
    pub(crate) default_payment_method: Option<String>,
    /// Renewals of this customer's subscriptions fail once, as if the card had been declined.
    pub(crate) fail_next_renewal: bool,
    /// Stripe's customer balance in cents: negative is credit the next invoices use.
    pub(crate) balance: i64,
    /// The test clock whose time this customer (and everything of theirs) lives on.
    pub(crate) test_clock: Option<String>,
}

/// Parameters of `POST /v1/customers`.
#[derive(Debug, Clone, Default)]
pub struct NewCustomer {
    /// Email address.
    pub email: Option<String>,
    /// Full name.
    pub name: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Metadata to set.
    pub metadata: Option<MetadataUpdate>,
    /// `test_clock` (create only): the customer lives on that clock's time.
    pub test_clock: Option<String>,
    /// `balance`: starting customer balance in cents (negative = credit).
    pub balance: Option<i64>,
}

impl State {
    /// `POST /v1/customers`; emits `customer.created`. A test clock holds at most three
    /// customers, as on Stripe.
    pub fn create_customer(&mut self, p: NewCustomer) -> Result<String, StripeError> {
        let created = match &p.test_clock {
            Some(clock) => {
                let Some(c) = self.test_clocks.get(clock) else {
                    return Err(StripeError::missing("test_clock", clock, "test_clock"));
                };
                let on_clock = self
                    .customers
                    .values()
                    .filter(|c| c.test_clock.as_deref() == Some(clock.as_str()))
                    .count();
                if on_clock >= 3 {
                    return Err(StripeError::invalid_param(
                        "test_clock",
                        "You can only have 3 customers on a test clock.",
                    ));
                }
                c.frozen_time
            }
            None => self.now(),
        };
        let id = new_id("cus_");
        let seq = self.next_seq();
        self.customers.insert(
            id.clone(),
            Customer {
                id: id.clone(),
                seq,
                created,
                email: p.email,
                name: p.name,
                description: p.description,
                metadata: p.metadata.map(MetadataUpdate::into_map).unwrap_or_default(),
                default_payment_method: None,
                fail_next_renewal: false,
                balance: p.balance.unwrap_or(0),
                test_clock: p.test_clock,
            },
        );
        let obj = self.render_customer(&id);
        self.emit("customer.created", created, obj, None);
        Ok(id)
    }

    /// `POST /v1/customers/{id}`; emits `customer.updated` when something changed.
    pub fn update_customer(
        &mut self,
        id: &str,
        p: NewCustomer,
        default_payment_method: Option<String>,
    ) -> Result<(), StripeError> {
        if !self.customers.contains_key(id) {
            return Err(StripeError::missing("customer", id, "id"));
        }
        if let Some(pm) = &default_payment_method
            && !pm.is_empty()
        {
            self.check_payment_method(id, pm, "invoice_settings[default_payment_method]")?;
        }
        let before = self.render_customer(id);
        let Some(c) = self.customers.get_mut(id) else {
            return Err(StripeError::missing("customer", id, "id"));
        };
        if let Some(e) = p.email {
            c.email = Some(e).filter(|s| !s.is_empty());
        }
        if let Some(n) = p.name {
            c.name = Some(n).filter(|s| !s.is_empty());
        }
        if let Some(d) = p.description {
            c.description = Some(d).filter(|s| !s.is_empty());
        }
        if let Some(b) = p.balance {
            c.balance = b;
        }
        if let Some(m) = p.metadata {
            m.apply(&mut c.metadata);
        }
        let pm_changed = default_payment_method.is_some();
        if let Some(pm) = default_payment_method {
            c.default_payment_method = Some(pm).filter(|s| !s.is_empty());
        }
        let after = self.render_customer(id);
        if let Some(prev) = diff(&before, &after) {
            let now = self.time_for_customer(id);
            self.emit("customer.updated", now, after, Some(prev));
        }
        if pm_changed {
            self.retry_after_card_change(id);
        }
        Ok(())
    }

    /// `DELETE /v1/customers/{id}`: live subscriptions are canceled now
    /// (`customer.subscription.deleted`), then `customer.deleted`.
    pub fn delete_customer(&mut self, id: &str) -> Result<(), StripeError> {
        if !self.customers.contains_key(id) {
            return Err(StripeError::missing("customer", id, "id"));
        }
        self.delete_customer_inner(id);
        Ok(())
    }

    pub(crate) fn delete_customer_inner(&mut self, id: &str) {
        let now = self.time_for_customer(id);
        let subs: Vec<String> = self
            .subscriptions
            .values()
            .filter(|s| s.customer == id && !s.is_ended())
            .map(|s| s.id.clone())
            .collect();
        for sid in subs {
            self.end_subscription(&sid, "cancellation_requested");
        }
        let obj = self.render_customer(id);
        self.customers.remove(id);
        self.deleted_customers.insert(id.to_string());
        for p in self.payment_methods.values_mut() {
            if p.customer.as_deref() == Some(id) {
                p.customer = None;
            }
        }
        self.emit("customer.deleted", now, obj, None);
    }

    /// A customer (`Value::Null` if unknown).
    pub fn render_customer(&self, id: &str) -> Value {
        let Some(c) = self.customers.get(id) else {
            if self.deleted_customers.contains(id) {
                return json!({"id": id, "object": "customer", "deleted": true});
            }
            return Value::Null;
        };
        let delinquent = self
            .subscriptions
            .values()
            .any(|s| s.customer == id && matches!(s.status.as_str(), "past_due" | "unpaid"));
        json!({
            "id": c.id,
            "object": "customer",
            "address": null,
            "balance": c.balance,
            "created": c.created,
            "currency": self.subscriptions.values().find(|s| s.customer == id).map(|s| s.currency.clone()),
            "default_source": null,
            "delinquent": delinquent,
            "description": c.description,
            "discount": null,
            "email": c.email,
            "invoice_prefix": c.id.trim_start_matches("cus_").chars().take(8).collect::<String>().to_uppercase(),
            "invoice_settings": {
                "custom_fields": null,
                "default_payment_method": c.default_payment_method,
                "footer": null,
                "rendering_options": null,
            },
            "livemode": false,
            "metadata": metadata(&c.metadata),
            "name": c.name,
            "next_invoice_sequence": 1 + self.invoices.values().filter(|i| i.customer == id && i.number.is_some()).count(),
            "phone": null,
            "preferred_locales": [],
            "shipping": null,
            "tax_exempt": "none",
            "test_clock": c.test_clock,
        })
    }
}
