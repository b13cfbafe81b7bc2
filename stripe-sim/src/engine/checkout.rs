//! Checkout Sessions (`/v1/checkout/sessions`, subscription mode only): creation, what
//! Pay on the hosted page does, and expiry.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::render::metadata;
use super::subscriptions::add_interval;
use super::{NewCustomer, State, Subscription, SubscriptionItem, TestCard, new_id};
use crate::error::StripeError;

/// A Checkout Session (subscription mode only).
#[derive(Debug, Clone)]
pub struct CheckoutSession {
    pub(crate) id: String,
    pub(crate) seq: u64,
    pub(crate) created: i64,
    pub(crate) expires_at: i64,
    pub(crate) customer: Option<String>,
    pub(crate) customer_email: Option<String>,
    pub(crate) price: String,
    pub(crate) quantity: i64,
    pub(crate) client_reference_id: Option<String>,
    pub(crate) metadata: BTreeMap<String, String>,
    pub(crate) subscription_metadata: BTreeMap<String, String>,
    pub(crate) trial_period_days: Option<i64>,
    pub(crate) missing_payment_method: String,
    pub(crate) payment_method_collection: String,
    pub(crate) success_url: Option<String>,
    pub(crate) cancel_url: Option<String>,
    pub(crate) status: String,
    pub(crate) payment_status: String,
    pub(crate) subscription: Option<String>,
    pub(crate) invoice: Option<String>,
}

/// Parameters of `POST /v1/checkout/sessions` (subscription mode).
#[derive(Debug, Clone, Default)]
pub struct NewCheckout {
    /// Existing customer, or `None` to create one on payment.
    pub customer: Option<String>,
    /// Email for a customer created on payment.
    pub customer_email: Option<String>,
    /// The one recurring price bought.
    pub price: String,
    /// Quantity of that price.
    pub quantity: i64,
    /// Caller's own reference (user id).
    pub client_reference_id: Option<String>,
    /// Session metadata.
    pub metadata: BTreeMap<String, String>,
    /// `subscription_data[metadata]`.
    pub subscription_metadata: BTreeMap<String, String>,
    /// `subscription_data[trial_period_days]`.
    pub trial_period_days: Option<i64>,
    /// `subscription_data[trial_settings][end_behavior][missing_payment_method]`.
    pub missing_payment_method: Option<String>,
    /// `payment_method_collection` (`always` or `if_required`).
    pub payment_method_collection: Option<String>,
    /// Where the hosted page sends the browser after payment.
    pub success_url: Option<String>,
    /// Where the hosted page's Cancel link goes.
    pub cancel_url: Option<String>,
    /// Explicit `expires_at`, if sent.
    pub expires_at: Option<i64>,
}

/// What pressing Pay on the hosted page led to.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckoutOutcome {
    /// Paid (or trial started): the browser goes to this URL.
    Completed {
        /// `success_url` with `{CHECKOUT_SESSION_ID}` replaced.
        redirect: Option<String>,
        /// The subscription created.
        subscription: String,
    },
    /// The card needs 3-D Secure, which the simulator never grants: subscription `incomplete`.
    RequiresAction {
        /// The incomplete subscription.
        subscription: String,
    },
}

impl State {
    /// `POST /v1/checkout/sessions`.
    pub fn create_checkout(&mut self, p: NewCheckout) -> Result<String, StripeError> {
        if let Some(c) = &p.customer
            && !self.customers.contains_key(c)
        {
            return Err(StripeError::missing("customer", c, "customer"));
        }
        if !self.prices.contains_key(&p.price) {
            return Err(StripeError::missing(
                "price",
                &p.price,
                "line_items[0][price]",
            ));
        }
        if let Some(d) = p.trial_period_days
            && !(1..=730).contains(&d)
        {
            return Err(StripeError::invalid_param(
                "subscription_data[trial_period_days]",
                "trial_period_days must be between 1 and 730.",
            ));
        }
        let id = new_id("cs_test_");
        let seq = self.next_seq();
        let created = p
            .customer
            .as_deref()
            .map_or_else(|| self.now(), |c| self.time_for_customer(c));
        let session = CheckoutSession {
            id: id.clone(),
            seq,
            created,
            expires_at: p
                .expires_at
                .unwrap_or(created + self.settings.checkout_expiry),
            customer: p.customer,
            customer_email: p.customer_email,
            price: p.price,
            quantity: p.quantity.max(1),
            client_reference_id: p.client_reference_id,
            metadata: p.metadata,
            subscription_metadata: p.subscription_metadata,
            trial_period_days: p.trial_period_days,
            missing_payment_method: p
                .missing_payment_method
                .unwrap_or_else(|| "create_invoice".into()),
            payment_method_collection: p
                .payment_method_collection
                .unwrap_or_else(|| "always".into()),
            success_url: p.success_url,
            cancel_url: p.cancel_url,
            status: "open".into(),
            payment_status: "unpaid".into(),
            subscription: None,
            invoice: None,
        };
        self.checkout_sessions.insert(id.clone(), session);
        Ok(id)
    }

    /// What pressing Pay on the hosted Checkout page does.
    ///
    /// `card = None` is only allowed for a trial with `payment_method_collection=if_required`.
    pub fn complete_checkout(
        &mut self,
        session_id: &str,
        card: Option<TestCard>,
    ) -> Result<CheckoutOutcome, StripeError> {
        let Some(cs) = self.checkout_sessions.get(session_id).cloned() else {
            return Err(StripeError::missing("checkout.session", session_id, "id"));
        };
        if cs.status != "open" {
            return Err(StripeError::invalid_state(format!(
                "This Checkout Session is no longer open (status {}).",
                cs.status
            )));
        }
        let trial = cs.trial_period_days.filter(|d| *d > 0);
        match card {
            Some(TestCard::Declined) => {
                return Err(StripeError::card_declined("Your card was declined."));
            }
            Some(TestCard::ChargeCustomerFail) if trial.is_none() => {
                return Err(StripeError::card_declined("Your card was declined."));
            }
            None if trial.is_none() || cs.payment_method_collection != "if_required" => {
                return Err(StripeError::missing_param("payment_method"));
            }
            _ => {}
        }

        // A second Pay after "authentication required" pays the same incomplete subscription.
        if let Some(sub_id) = cs.subscription.clone() {
            return self.retry_checkout_payment(session_id, &sub_id, card);
        }

        let customer = match cs.customer.clone() {
            Some(c) => c,
            None => self.create_customer(NewCustomer {
                email: cs.customer_email.clone(),
                ..NewCustomer::default()
            })?,
        };
        let now = self.time_for_customer(&customer);
        let pm = card.map(|c| self.new_payment_method(&customer, c));
        let Some(price) = self.prices.get(&cs.price).cloned() else {
            return Err(StripeError::missing(
                "price",
                &cs.price,
                "line_items[0][price]",
            ));
        };

        let trial_end = trial.map(|d| now + d * 86_400);
        let period_end =
            trial_end.unwrap_or_else(|| add_interval(now, &price.interval, price.interval_count));
        let sub_id = new_id("sub_");
        let seq = self.next_seq();
        let sub = Subscription {
            id: sub_id.clone(),
            seq,
            created: now,
            customer: customer.clone(),
            status: if trial.is_some() {
                "trialing".into()
            } else {
                "incomplete".into()
            },
            items: vec![SubscriptionItem {
                id: new_id("si_"),
                created: now,
                price: price.id.clone(),
                quantity: cs.quantity,
                current_period_start: now,
                current_period_end: period_end,
            }],
            cancel_at_period_end: false,
            cancel_at: None,
            canceled_at: None,
            ended_at: None,
            cancellation_reason: None,
            pause_collection: None,
            trial_start: trial.map(|_| now),
            trial_end,
            missing_payment_method: cs.missing_payment_method.clone(),
            latest_invoice: None,
            default_payment_method: pm.clone(),
            billing_cycle_anchor: trial_end.unwrap_or(now),
            start_date: now,
            currency: price.currency.clone(),
            metadata: cs.subscription_metadata.clone(),
            fail_next_renewal: false,
            trial_will_end_sent: false,
        };
        self.subscriptions.insert(sub_id.clone(), sub);
        let obj = self.render_subscription(&sub_id);
        self.emit("customer.subscription.created", now, obj, None);

        let inv = self.new_invoice(&sub_id, "subscription_create", (now, now), trial.is_some());
        if let Some(s) = self.subscriptions.get_mut(&sub_id) {
            s.latest_invoice = Some(inv.clone());
        }
        let obj = self.render_invoice(&inv);
        self.emit("invoice.created", now, obj, None);
        self.finalize(&inv);
        let _ = self.attempt_payment(&inv);

        if let Some(cs) = self.checkout_sessions.get_mut(session_id) {
            cs.customer = Some(customer);
            cs.subscription = Some(sub_id.clone());
            cs.invoice = Some(inv.clone());
        }
        self.finish_checkout_if_paid(session_id, &sub_id)
    }

    fn retry_checkout_payment(
        &mut self,
        session_id: &str,
        sub_id: &str,
        card: Option<TestCard>,
    ) -> Result<CheckoutOutcome, StripeError> {
        let Some(sub) = self.subscriptions.get(sub_id).cloned() else {
            return Err(StripeError::missing("subscription", sub_id, "subscription"));
        };
        if sub.status != "incomplete" {
            return Err(StripeError::invalid_state(format!(
                "The subscription of this session is {}.",
                sub.status
            )));
        }
        if let Some(c) = card {
            let pm = self.new_payment_method(&sub.customer, c);
            if let Some(s) = self.subscriptions.get_mut(sub_id) {
                s.default_payment_method = Some(pm);
            }
        }
        if let Some(inv) = sub.latest_invoice {
            let _ = self.attempt_payment(&inv);
        }
        self.finish_checkout_if_paid(session_id, sub_id)
    }

    fn finish_checkout_if_paid(
        &mut self,
        session_id: &str,
        sub_id: &str,
    ) -> Result<CheckoutOutcome, StripeError> {
        let status = self
            .subscriptions
            .get(sub_id)
            .map(|s| s.status.clone())
            .unwrap_or_default();
        if status == "incomplete" {
            return Ok(CheckoutOutcome::RequiresAction {
                subscription: sub_id.to_string(),
            });
        }
        let trialing = status == "trialing";
        let Some(cs) = self.checkout_sessions.get_mut(session_id) else {
            return Err(StripeError::missing("checkout.session", session_id, "id"));
        };
        cs.status = "complete".into();
        cs.payment_status = if trialing {
            "no_payment_required".into()
        } else {
            "paid".into()
        };
        let redirect = cs
            .success_url
            .as_ref()
            .map(|u| u.replace("{CHECKOUT_SESSION_ID}", session_id));
        let customer = cs.customer.clone().unwrap_or_default();
        let now = self.time_for_customer(&customer);
        let obj = self.render_checkout(session_id);
        self.emit("checkout.session.completed", now, obj, None);
        Ok(CheckoutOutcome::Completed {
            redirect,
            subscription: sub_id.to_string(),
        })
    }

    /// `POST /v1/checkout/sessions/{id}/expire`.
    pub fn expire_checkout_now(&mut self, id: &str) -> Result<(), StripeError> {
        match self.checkout_sessions.get(id) {
            None => Err(StripeError::missing("checkout.session", id, "id")),
            Some(cs) if cs.status != "open" => Err(StripeError::invalid_state(format!(
                "Only open Checkout Sessions can be expired ({id} is {}).",
                cs.status
            ))),
            Some(_) => {
                self.expire_checkout(id);
                Ok(())
            }
        }
    }

    pub(crate) fn expire_checkout(&mut self, id: &str) {
        let now = match self
            .checkout_sessions
            .get(id)
            .and_then(|c| c.customer.clone())
        {
            Some(c) => self.time_for_customer(&c),
            None => self.now(),
        };
        if let Some(cs) = self.checkout_sessions.get_mut(id) {
            cs.status = "expired".into();
        } else {
            return;
        }
        let obj = self.render_checkout(id);
        self.emit("checkout.session.expired", now, obj, None);
    }

    /// A Checkout Session; `url` is set only while it is open, as on Stripe.
    pub fn render_checkout(&self, id: &str) -> Value {
        let Some(cs) = self.checkout_sessions.get(id) else {
            return Value::Null;
        };
        let price = self.prices.get(&cs.price);
        let amount = price.map_or(0, |p| p.unit_amount * cs.quantity);
        let amount = if cs.trial_period_days.is_some_and(|d| d > 0) {
            0
        } else {
            amount
        };
        let customer = cs.customer.as_ref().and_then(|c| self.customers.get(c));
        let details = if cs.status == "complete" {
            json!({
                "address": null,
                "email": customer.and_then(|c| c.email.clone()).or_else(|| cs.customer_email.clone()),
                "name": customer.and_then(|c| c.name.clone()),
                "phone": null,
                "tax_exempt": "none",
                "tax_ids": [],
            })
        } else {
            Value::Null
        };
        let url =
            (cs.status == "open").then(|| format!("{}c/pay/{}", self.settings.public_url, cs.id));
        json!({
            "id": cs.id,
            "object": "checkout.session",
            "adaptive_pricing": null,
            "after_expiration": null,
            "allow_promotion_codes": null,
            "amount_subtotal": amount,
            "amount_total": amount,
            "automatic_tax": {"enabled": false, "liability": null, "provider": null, "status": null},
            "billing_address_collection": null,
            "cancel_url": cs.cancel_url,
            "client_reference_id": cs.client_reference_id,
            "client_secret": null,
            "collected_information": null,
            "consent": null,
            "consent_collection": null,
            "created": cs.created,
            "currency": price.map(|p| p.currency.clone()),
            "currency_conversion": null,
            "custom_fields": [],
            "custom_text": {"after_submit": null, "shipping_address": null, "submit": null, "terms_of_service_acceptance": null},
            "customer": cs.customer,
            "customer_creation": if cs.customer.is_some() && cs.customer_email.is_none() { Value::Null } else { json!("always") },
            "customer_details": details,
            "customer_email": cs.customer_email,
            "discounts": [],
            "expires_at": cs.expires_at,
            "invoice": cs.invoice,
            "invoice_creation": null,
            "livemode": false,
            "locale": null,
            "metadata": metadata(&cs.metadata),
            "mode": "subscription",
            "payment_intent": null,
            "payment_link": null,
            "payment_method_collection": cs.payment_method_collection,
            "payment_method_configuration_details": null,
            "payment_method_options": null,
            "payment_method_types": ["card"],
            "payment_status": cs.payment_status,
            "phone_number_collection": null,
            "recovered_from": null,
            "saved_payment_method_options": null,
            "setup_intent": null,
            "shipping_address_collection": null,
            "shipping_cost": null,
            "shipping_options": [],
            "status": cs.status,
            "submit_type": null,
            "subscription": cs.subscription,
            "success_url": cs.success_url,
            "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "ui_mode": "hosted_page",
            "url": url,
        })
    }
}
