//! Checkout Sessions (`/v1/checkout/sessions`) in all three modes: creation and its
//! validation, what Pay on the hosted page does (`subscription.rs` for subscription mode,
//! `one_time.rs` for payment and setup mode), expiry (by request or by the clock, see
//! `engine/schedule.rs`) and the session object.

mod one_time;
mod subscription;

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::render::metadata;
use super::{Price, Product, State, TestCard, new_id};
use crate::error::StripeError;

/// Shortest and longest lifetime `expires_at` may give a session (Stripe: 30 min to 24 h).
const MIN_EXPIRY: i64 = 30 * 60;
const MAX_EXPIRY: i64 = 24 * 3600;

/// `mode` of a Checkout Session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CheckoutMode {
    /// One-time payment of the line items.
    Payment,
    /// Collects a card for later payments; no charge.
    Setup,
    /// Starts a subscription to the one recurring line item.
    #[default]
    Subscription,
}

impl CheckoutMode {
    /// Parses Stripe's `mode` value.
    pub fn parse(s: &str) -> Option<CheckoutMode> {
        match s {
            "payment" => Some(CheckoutMode::Payment),
            "setup" => Some(CheckoutMode::Setup),
            "subscription" => Some(CheckoutMode::Subscription),
            _ => None,
        }
    }

    /// Stripe's `mode` value.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckoutMode::Payment => "payment",
            CheckoutMode::Setup => "setup",
            CheckoutMode::Subscription => "subscription",
        }
    }
}

/// A Checkout Session.
#[derive(Debug, Clone)]
pub struct CheckoutSession {
    pub(crate) id: String,
    pub(crate) seq: u64,
    pub(crate) created: i64,
    pub(crate) expires_at: i64,
    pub(crate) mode: CheckoutMode,
    pub(crate) customer: Option<String>,
    pub(crate) customer_email: Option<String>,
    /// `always` or `if_required` (payment and setup mode).
    pub(crate) customer_creation: String,
    /// (price id, quantity); inline `price_data` became a price of its own. Empty in setup mode.
    pub(crate) line_items: Vec<(String, i64)>,
    /// `currency` of a setup-mode session.
    pub(crate) currency: Option<String>,
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
    /// `pi_…` of a paid payment-mode session (PaymentIntents are not objects here).
    pub(crate) payment_intent: Option<String>,
    /// `seti_…` of a completed setup-mode session (SetupIntents are not objects here).
    pub(crate) setup_intent: Option<String>,
}

/// `line_items[n][price_data]`: an inline one-time price.
#[derive(Debug, Clone, Default)]
pub struct NewPriceData {
    /// `price_data[currency]`.
    pub currency: String,
    /// `price_data[unit_amount]`, in minor units.
    pub unit_amount: i64,
    /// `price_data[product]`, an existing product.
    pub product: Option<String>,
    /// `price_data[product_data][name]`, a new product.
    pub product_name: Option<String>,
    /// `price_data[recurring][interval]` (refused in payment mode).
    pub interval: Option<String>,
}

/// One `line_items[n]` entry: `price` or `price_data`, and `quantity`.
#[derive(Debug, Clone, Default)]
pub struct NewLineItem {
    /// `line_items[n][price]`.
    pub price: Option<String>,
    /// `line_items[n][price_data]`.
    pub price_data: Option<NewPriceData>,
    /// `line_items[n][quantity]` (at least 1).
    pub quantity: i64,
}

impl NewLineItem {
    /// A line item for an existing price.
    pub fn price(price: &str, quantity: i64) -> NewLineItem {
        NewLineItem {
            price: Some(price.to_string()),
            price_data: None,
            quantity,
        }
    }
}

/// Parameters of `POST /v1/checkout/sessions`.
#[derive(Debug, Clone, Default)]
pub struct NewCheckout {
    /// `mode`.
    pub mode: CheckoutMode,
    /// Existing customer, or `None` to create one on payment (subscription mode, or
    /// `customer_creation=always`).
    pub customer: Option<String>,
    /// Email for a customer created on payment.
    pub customer_email: Option<String>,
    /// `customer_creation` (`always` or `if_required`; payment and setup mode only).
    pub customer_creation: Option<String>,
    /// `line_items` (exactly one recurring price in subscription mode, none in setup mode).
    pub line_items: Vec<NewLineItem>,
    /// `currency` (required in setup mode unless `payment_method_types` is sent).
    pub currency: Option<String>,
    /// Whether `payment_method_types[]` was sent.
    pub payment_method_types: bool,
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
    /// Explicit `expires_at`, if sent (30 min to 24 h after creation).
    pub expires_at: Option<i64>,
}

/// What pressing Pay on the hosted page led to.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckoutOutcome {
    /// Paid, trial started, or card saved: the browser goes to `redirect`.
    Completed {
        /// `success_url` with `{CHECKOUT_SESSION_ID}` replaced.
        redirect: Option<String>,
        /// The subscription created (subscription mode; empty in payment and setup mode).
        subscription: String,
        /// `pi_…` of a payment-mode session.
        payment_intent: Option<String>,
        /// `seti_…` of a setup-mode session.
        setup_intent: Option<String>,
    },
    /// The card needs 3-D Secure, which the simulator never grants: subscription `incomplete`.
    RequiresAction {
        /// The incomplete subscription.
        subscription: String,
    },
}

impl State {
    /// `POST /v1/checkout/sessions`. Everything is checked before anything is created, so
    /// a refused session leaves no inline price behind.
    pub fn create_checkout(&mut self, p: NewCheckout) -> Result<String, StripeError> {
        if let Some(c) = &p.customer
            && !self.customers.contains_key(c)
        {
            return Err(StripeError::missing("customer", c, "customer"));
        }
        self.check_line_items(&p)?;
        if let Some(d) = p.trial_period_days
            && !(1..=730).contains(&d)
        {
            return Err(StripeError::invalid_param(
                "subscription_data[trial_period_days]",
                "trial_period_days must be between 1 and 730.",
            ));
        }
        let created = p
            .customer
            .as_deref()
            .map_or_else(|| self.now(), |c| self.time_for_customer(c));
        if let Some(at) = p.expires_at
            && !(created + MIN_EXPIRY..=created + MAX_EXPIRY).contains(&at)
        {
            return Err(StripeError::invalid_param(
                "expires_at",
                "The `expires_at` timestamp must be between 30 minutes and 24 hours after the Checkout Session is created.",
            ));
        }
        let line_items = p
            .line_items
            .iter()
            .map(|li| {
                let price = match (&li.price, &li.price_data) {
                    (Some(price), _) => price.clone(),
                    (None, Some(data)) => self.inline_price(data, created),
                    (None, None) => String::new(),
                };
                (price, li.quantity.max(1))
            })
            .collect();
        let id = new_id("cs_test_");
        let seq = self.next_seq();
        let session = CheckoutSession {
            id: id.clone(),
            seq,
            created,
            expires_at: p
                .expires_at
                .unwrap_or(created + self.settings.checkout_expiry),
            mode: p.mode,
            customer: p.customer,
            customer_email: p.customer_email,
            customer_creation: p.customer_creation.unwrap_or_else(|| "if_required".into()),
            line_items,
            currency: p.currency,
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
            payment_intent: None,
            setup_intent: None,
        };
        self.checkout_sessions.insert(id.clone(), session);
        Ok(id)
    }

    /// Line items as each mode needs them: one price (subscription), one-time prices of one
    /// currency (payment), none (setup, which needs `currency` instead).
    fn check_line_items(&self, p: &NewCheckout) -> Result<(), StripeError> {
        if p.mode == CheckoutMode::Setup {
            if !p.line_items.is_empty() {
                return Err(StripeError::invalid_param(
                    "line_items",
                    "You cannot pass `line_items` in `setup` mode.",
                ));
            }
            if p.currency.is_none() && !p.payment_method_types {
                return Err(StripeError::invalid_param(
                    "currency",
                    "`currency` is required in `setup` mode when `payment_method_types` is not set.",
                ));
            }
            return Ok(());
        }
        if p.line_items.is_empty() {
            return Err(StripeError::missing_param("line_items"));
        }
        let mut currencies = std::collections::BTreeSet::new();
        for (n, li) in p.line_items.iter().enumerate() {
            let param = |field: &str| format!("line_items[{n}][{field}]");
            let (currency, recurring) = match (&li.price, &li.price_data) {
                (Some(_), Some(_)) => {
                    return Err(StripeError::invalid_param(
                        &param("price_data"),
                        "You may only specify one of these parameters: price, price_data.",
                    ));
                }
                (None, None) => return Err(StripeError::missing_param(&param("price"))),
                (Some(id), None) => {
                    let Some(price) = self.prices.get(id) else {
                        return Err(StripeError::missing("price", id, &param("price")));
                    };
                    (price.currency.clone(), !price.interval.is_empty())
                }
                (None, Some(data)) => {
                    if p.mode == CheckoutMode::Subscription {
                        return Err(StripeError::invalid_param(
                            &param("price_data"),
                            "The simulator supports `price` only in `subscription` mode.",
                        ));
                    }
                    check_price_data(self, data, n)?;
                    (data.currency.clone(), data.interval.is_some())
                }
            };
            if p.mode == CheckoutMode::Subscription && !recurring {
                return Err(StripeError::invalid_param(
                    &param("price"),
                    "You must provide at least one recurring price in `subscription` mode when \
                     using prices.",
                ));
            }
            if p.mode == CheckoutMode::Payment && recurring {
                let field = if li.price.is_some() {
                    "price"
                } else {
                    "price_data"
                };
                return Err(StripeError::invalid_param(
                    &param(field),
                    "You specified `payment` mode but passed a recurring price. Either switch to \
                     `subscription` mode or use only one-time prices.",
                ));
            }
            currencies.insert(currency);
        }
        if currencies.len() > 1 {
            return Err(StripeError::invalid_param(
                "line_items",
                "All line items must use the same currency.",
            ));
        }
        Ok(())
    }

    /// An inline one-time price (and product) for `price_data`. Stripe keeps these out of
    /// the catalogue's events; here they are inactive prices without `*.created` events.
    fn inline_price(&mut self, data: &NewPriceData, now: i64) -> String {
        let product = match &data.product {
            Some(p) => p.clone(),
            None => {
                let id = new_id("prod_");
                let seq = self.next_seq();
                self.products.insert(
                    id.clone(),
                    Product {
                        id: id.clone(),
                        seq,
                        created: now,
                        name: data.product_name.clone().unwrap_or_default(),
                        description: None,
                        active: false,
                        metadata: BTreeMap::new(),
                    },
                );
                id
            }
        };
        let id = new_id("price_");
        let seq = self.next_seq();
        self.prices.insert(
            id.clone(),
            Price {
                id: id.clone(),
                seq,
                created: now,
                product,
                unit_amount: data.unit_amount,
                currency: data.currency.clone(),
                interval: String::new(),
                interval_count: 1,
                lookup_key: None,
                active: false,
                nickname: None,
                metadata: BTreeMap::new(),
            },
        );
        id
    }

    /// What pressing Pay on the hosted Checkout page does, in the session's mode.
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
        match cs.mode {
            CheckoutMode::Subscription => self.complete_subscription_checkout(session_id, cs, card),
            CheckoutMode::Payment => self.complete_payment_checkout(session_id, cs, card),
            CheckoutMode::Setup => self.complete_setup_checkout(session_id, cs, card),
        }
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
        let amount: i64 = cs
            .line_items
            .iter()
            .filter_map(|(price, q)| self.prices.get(price).map(|p| p.unit_amount * q))
            .sum();
        let amount = if cs.trial_period_days.is_some_and(|d| d > 0) {
            0
        } else {
            amount
        };
        let currency = cs
            .line_items
            .first()
            .and_then(|(price, _)| self.prices.get(price))
            .map(|p| p.currency.clone())
            .or_else(|| cs.currency.clone());
        let customer_creation = match cs.mode {
            CheckoutMode::Subscription if cs.customer.is_some() && cs.customer_email.is_none() => {
                Value::Null
            }
            CheckoutMode::Subscription => json!("always"),
            _ if cs.customer.is_some() => Value::Null,
            _ => json!(cs.customer_creation),
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
            "currency": currency,
            "currency_conversion": null,
            "custom_fields": [],
            "custom_text": {"after_submit": null, "shipping_address": null, "submit": null, "terms_of_service_acceptance": null},
            "customer": cs.customer,
            "customer_creation": customer_creation,
            "customer_details": details,
            "customer_email": cs.customer_email,
            "discounts": [],
            "expires_at": cs.expires_at,
            "invoice": cs.invoice,
            "invoice_creation": null,
            "livemode": false,
            "locale": null,
            "metadata": metadata(&cs.metadata),
            "mode": cs.mode.as_str(),
            "payment_intent": cs.payment_intent,
            "payment_link": null,
            "payment_method_collection": cs.payment_method_collection,
            "payment_method_configuration_details": null,
            "payment_method_options": null,
            "payment_method_types": ["card"],
            "payment_status": cs.payment_status,
            "phone_number_collection": null,
            "recovered_from": null,
            "saved_payment_method_options": null,
            "setup_intent": cs.setup_intent,
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

fn check_price_data(st: &State, data: &NewPriceData, n: usize) -> Result<(), StripeError> {
    let param = |field: &str| format!("line_items[{n}][price_data][{field}]");
    if data.currency.is_empty() {
        return Err(StripeError::missing_param(&param("currency")));
    }
    if data.unit_amount < 0 {
        return Err(StripeError::invalid_param(
            &param("unit_amount"),
            "Invalid non-negative integer.",
        ));
    }
    match (&data.product, &data.product_name) {
        (Some(p), _) if !st.products.contains_key(p) => {
            Err(StripeError::missing("product", p, &param("product")))
        }
        (None, None) => Err(StripeError::missing_param(&param("product_data][name"))),
        _ => Ok(()),
    }
}
