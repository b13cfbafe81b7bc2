//! Payment methods (`/v1/payment_methods`): created from test tokens, attached to and
//! detached from customers; a customer's default card and what a new card retries.
//! Behaviour comes from the test card (`TestCard`) the token or id names.

use serde_json::{Value, json};

use super::render::diff;
use super::{State, new_id};
use crate::error::StripeError;

/// A card from Stripe's test-mode catalogue, by behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestCard {
    /// `pm_card_visa`: attaches, every charge succeeds.
    Visa,
    /// `pm_card_chargeCustomerFail`: attaches, every charge fails with `card_declined`.
    ChargeCustomerFail,
    /// `pm_card_authenticationRequired`: every payment needs 3DS, which never comes.
    AuthenticationRequired,
    /// `pm_card_chargeDeclined`: attaching already fails with `card_declined`.
    Declined,
}

impl TestCard {
    /// All cards, in the order the hosted pages list them.
    pub const ALL: [TestCard; 4] = [
        TestCard::Visa,
        TestCard::ChargeCustomerFail,
        TestCard::AuthenticationRequired,
        TestCard::Declined,
    ];

    /// The snake_case name used in forms and the control API.
    pub fn as_str(self) -> &'static str {
        match self {
            TestCard::Visa => "visa",
            TestCard::ChargeCustomerFail => "charge_customer_fail",
            TestCard::AuthenticationRequired => "authentication_required",
            TestCard::Declined => "declined",
        }
    }

    /// Parses a form/control name or a Stripe test payment-method id.
    pub fn parse(s: &str) -> Option<TestCard> {
        match s {
            "visa" | "pm_card_visa" | "pm_card_mastercard" | "tok_visa" | "tok_mastercard"
            | "mastercard" => Some(TestCard::Visa),
            "charge_customer_fail" | "pm_card_chargeCustomerFail" | "tok_chargeCustomerFail" => {
                Some(TestCard::ChargeCustomerFail)
            }
            "authentication_required"
            | "pm_card_authenticationRequired"
            | "pm_card_threeDSecure2Required"
            | "tok_threeDSecure2Required"
            | "tok_authenticationRequired" => Some(TestCard::AuthenticationRequired),
            "declined"
            | "pm_card_chargeDeclined"
            | "pm_card_visa_chargeDeclined"
            | "tok_chargeDeclined"
            | "tok_visa_chargeDeclined" => Some(TestCard::Declined),
            _ => None,
        }
    }

    /// What the hosted pages show.
    pub fn label(self) -> &'static str {
        match self {
            TestCard::Visa => "Visa 4242 — succeeds",
            TestCard::ChargeCustomerFail => "Visa 0341 — attaches, charges fail",
            TestCard::AuthenticationRequired => "Visa 3184 — needs 3-D Secure (never given)",
            TestCard::Declined => "Visa 0002 — declined",
        }
    }

    /// The card brand a test id or token names (`mastercard` for the Mastercard ones).
    pub(crate) fn brand_of(name: &str) -> &'static str {
        if name.contains("mastercard") {
            "mastercard"
        } else {
            "visa"
        }
    }

    fn last4(self) -> &'static str {
        match self {
            TestCard::Visa => "4242",
            TestCard::ChargeCustomerFail => "0341",
            TestCard::AuthenticationRequired => "3184",
            TestCard::Declined => "0002",
        }
    }
}

/// Whether `pm` is one of Stripe's test payment-method ids (`pm_card_visa`, …) the simulator
/// knows; such an id stands for a new card each time it is used.
pub(crate) fn is_shortcut(pm: &str) -> bool {
    pm.starts_with("pm_card_") && TestCard::parse(pm).is_some()
}

/// A card payment method attached to a customer.
#[derive(Debug, Clone)]
pub struct PaymentMethod {
    pub(crate) id: String,
    pub(crate) created: i64,
    pub(crate) customer: Option<String>,
    pub(crate) card: TestCard,
    /// `visa` or `mastercard` (behaviour comes from `card`).
    pub(crate) brand: &'static str,
}

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
                .filter(|_| is_shortcut(pm))
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

    /// A payment-method parameter naming a card for `customer` (a default payment method):
    /// a `pm_…` id stays as it is (checked later), a test shortcut such as `pm_card_visa`
    /// attaches a new copy to the customer (`payment_method.attached`) and names that, as
    /// Stripe does.
    pub(crate) fn customer_payment_method(
        &mut self,
        customer: &str,
        pm: &str,
    ) -> Result<String, StripeError> {
        if self.payment_methods.contains_key(pm) || !is_shortcut(pm) {
            return Ok(pm.to_string());
        }
        self.attach_payment_method(pm, customer)
    }

    pub(crate) fn check_payment_method(
        &self,
        customer: &str,
        pm: &str,
        param: &str,
    ) -> Result<(), StripeError> {
        match self.payment_methods.get(pm) {
            Some(p) if p.customer.as_deref() == Some(customer) => Ok(()),
            Some(_) => Err(StripeError::invalid_param(
                param,
                "The payment method must be attached to the customer.",
            )),
            None => Err(StripeError::missing("payment_method", pm, param)),
        }
    }

    /// Attaches a test card to a customer and makes it the default for the customer and
    /// their live subscriptions. A `Declined` card fails to attach (402). If a subscription
    /// of the customer waits on an unpaid invoice, the payment is retried right away.
    pub fn attach_card(&mut self, customer: &str, card: TestCard) -> Result<String, StripeError> {
        if !self.customers.contains_key(customer) {
            return Err(StripeError::missing("customer", customer, "customer"));
        }
        if card == TestCard::Declined {
            return Err(StripeError::card_declined("Your card was declined."));
        }
        let pm = self.new_payment_method(customer, card);
        let now = self.time_for_customer(customer);
        let obj = self.render_payment_method(&pm);
        self.emit("payment_method.attached", now, obj, None);
        self.set_default_payment_method(customer, Some(pm.clone()));
        self.retry_after_card_change(customer);
        Ok(pm)
    }

    /// Removes the default card of a customer and their subscriptions (to simulate a
    /// trial that ends without a payment method).
    pub fn detach_card(&mut self, customer: &str) -> Result<(), StripeError> {
        if !self.customers.contains_key(customer) {
            return Err(StripeError::missing("customer", customer, "customer"));
        }
        self.set_default_payment_method(customer, None);
        Ok(())
    }

    pub(crate) fn new_payment_method(&mut self, customer: &str, card: TestCard) -> String {
        let id = new_id("pm_");
        let created = self.time_for_customer(customer);
        self.payment_methods.insert(
            id.clone(),
            PaymentMethod {
                id: id.clone(),
                created,
                customer: Some(customer.to_string()),
                card,
                brand: "visa",
            },
        );
        id
    }

    pub(crate) fn set_default_payment_method(&mut self, customer: &str, pm: Option<String>) {
        let now = self.time_for_customer(customer);
        let before = self.render_customer(customer);
        if let Some(c) = self.customers.get_mut(customer) {
            c.default_payment_method = pm.clone();
        }
        let after = self.render_customer(customer);
        if let Some(prev) = diff(&before, &after) {
            self.emit("customer.updated", now, after, Some(prev));
        }
        let subs: Vec<String> = self
            .subscriptions
            .values()
            .filter(|s| s.customer == customer && !s.is_ended())
            .map(|s| s.id.clone())
            .collect();
        for sid in subs {
            let before = self.render_subscription(&sid);
            if let Some(s) = self.subscriptions.get_mut(&sid) {
                s.default_payment_method = pm.clone();
            }
            let after = self.render_subscription(&sid);
            if let Some(prev) = diff(&before, &after) {
                self.emit("customer.subscription.updated", now, after, Some(prev));
            }
        }
    }

    /// A new card pays what is waiting: open invoices of `past_due`, `unpaid` and
    /// `incomplete` subscriptions are retried immediately, as Stripe does on a card update.
    pub(crate) fn retry_after_card_change(&mut self, customer: &str) {
        let waiting: Vec<String> = self
            .subscriptions
            .values()
            .filter(|s| {
                s.customer == customer
                    && matches!(s.status.as_str(), "past_due" | "unpaid" | "incomplete")
            })
            .filter_map(|s| s.latest_invoice.clone())
            .filter(|inv| self.invoices.get(inv).is_some_and(|i| i.status == "open"))
            .collect();
        for inv in waiting {
            let _ = self.attempt_payment(&inv);
        }
    }

    /// A card payment method.
    pub fn render_payment_method(&self, id: &str) -> Value {
        let Some(pm) = self.payment_methods.get(id) else {
            return Value::Null;
        };
        json!({
            "id": pm.id,
            "object": "payment_method",
            "allow_redisplay": "unspecified",
            "billing_details": {"address": null, "email": null, "name": null, "phone": null, "tax_id": null},
            "card": {
                "brand": pm.brand,
                "checks": {"address_line1_check": null, "address_postal_code_check": null, "cvc_check": "pass"},
                "country": "US",
                "display_brand": pm.brand,
                "exp_month": 12,
                "exp_year": 2034,
                "funding": "credit",
                "last4": if pm.brand == "mastercard" && pm.card == super::TestCard::Visa { "4444" } else { pm.card.last4() },
                "wallet": null,
            },
            "created": pm.created,
            "customer": pm.customer,
            "livemode": false,
            "metadata": {},
            "type": "card",
        })
    }
}
