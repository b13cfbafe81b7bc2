//! Payment methods as an API resource: created from test tokens, attached to and
//! detached from customers. Behaviour comes from the test card the token or id names.

use super::render::diff;
use super::{PaymentMethod, State, TestCard, new_id};
use crate::error::StripeError;

impl State {
    /// `POST /v1/payment_methods` with `type=card` and `card[token]=tok_…` (or a test
    /// `pm_card_…` id): an unattached card. A token Stripe does not know is a 400.
    pub fn create_payment_method(&mut self, token: &str) -> Result<String, StripeError> {
        let Some(card) = TestCard::parse(token) else {
            return Err(StripeError::missing("token", token, "card[token]"));
        };
        let id = new_id("pm_");
        let created = self.now();
        self.payment_methods.insert(
            id.clone(),
            PaymentMethod {
                id: id.clone(),
                created,
                customer: None,
                card,
                brand: TestCard::brand_of(token),
            },
        );
        Ok(id)
    }

    /// `POST /v1/payment_methods/{id}/attach`. A test id such as `pm_card_visa` makes a
    /// new card, as Stripe does (the answer has a new `pm_` id). A card of the
    /// `chargeDeclined` family fails here with 402 `card_declined`. Emits
    /// `payment_method.attached`; it does not become the default by itself.
    pub fn attach_payment_method(
        &mut self,
        pm: &str,
        customer: &str,
    ) -> Result<String, StripeError> {
        if !self.customers.contains_key(customer) {
            return Err(StripeError::missing("customer", customer, "customer"));
        }
        let existing = self.payment_methods.get(pm).cloned();
        let card = match &existing {
            Some(p) => p.card,
            None => TestCard::parse(pm)
                .filter(|_| pm.starts_with("pm_card_"))
                .ok_or_else(|| StripeError::missing("PaymentMethod", pm, "payment_method"))?,
        };
        if card == TestCard::Declined {
            return Err(StripeError::card_declined("Your card was declined."));
        }
        if let Some(p) = &existing
            && let Some(owner) = &p.customer
        {
            if owner == customer {
                return Ok(pm.to_string());
            }
            return Err(StripeError::invalid_state(
                "The payment method you provided has already been attached to a customer.",
            ));
        }
        let now = self.time_for_customer(customer);
        let id = match existing {
            Some(_) => pm.to_string(),
            None => {
                let id = new_id("pm_");
                self.payment_methods.insert(
                    id.clone(),
                    PaymentMethod {
                        id: id.clone(),
                        created: now,
                        customer: None,
                        card,
                        brand: TestCard::brand_of(pm),
                    },
                );
                id
            }
        };
        if let Some(p) = self.payment_methods.get_mut(&id) {
            p.customer = Some(customer.to_string());
        }
        let obj = self.render_payment_method(&id);
        self.emit("payment_method.attached", now, obj, None);
        Ok(id)
    }

    /// `POST /v1/payment_methods/{id}/detach`: emits `payment_method.detached`; a
    /// customer or subscription that had it as default loses it (`customer.updated`,
    /// `customer.subscription.updated`).
    pub fn detach_payment_method(&mut self, pm: &str) -> Result<(), StripeError> {
        let Some(p) = self.payment_methods.get(pm).cloned() else {
            return Err(StripeError::missing("payment_method", pm, "id"));
        };
        let Some(customer) = p.customer else {
            return Err(StripeError::invalid_state(
                "The payment method you provided is not attached to a customer so detachment is impossible.",
            ));
        };
        let now = self.time_for_customer(&customer);
        let before = self.render_payment_method(pm);
        if let Some(p) = self.payment_methods.get_mut(pm) {
            p.customer = None;
        }
        let after = self.render_payment_method(pm);
        let prev = diff(&before, &after);
        self.emit("payment_method.detached", now, after, prev);
        let was_default = self
            .customers
            .get(&customer)
            .is_some_and(|c| c.default_payment_method.as_deref() == Some(pm));
        if was_default {
            let before = self.render_customer(&customer);
            if let Some(c) = self.customers.get_mut(&customer) {
                c.default_payment_method = None;
            }
            let after = self.render_customer(&customer);
            let prev = diff(&before, &after);
            self.emit("customer.updated", now, after, prev);
        }
        let subs: Vec<String> = self
            .subscriptions
            .values()
            .filter(|s| s.default_payment_method.as_deref() == Some(pm))
            .map(|s| s.id.clone())
            .collect();
        for sid in subs {
            let before = self.render_subscription(&sid);
            if let Some(s) = self.subscriptions.get_mut(&sid) {
                s.default_payment_method = None;
            }
            let after = self.render_subscription(&sid);
            let prev = diff(&before, &after);
            self.emit("customer.subscription.updated", now, after, prev);
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
}
