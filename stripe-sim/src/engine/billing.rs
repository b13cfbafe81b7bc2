//! Transitions: everything that changes billing state, each emitting the events Stripe
//! emits for it, in Stripe's order. Requests from the API and due moments of the clock
//! both end up here.

use std::collections::BTreeMap;

use super::render::diff;
use super::{
    CheckoutSession, Customer, Invoice, InvoiceLine, PauseCollection, PaymentMethod, PortalSession,
    State, Subscription, SubscriptionItem, TestCard, new_id,
};
use crate::error::StripeError;
use crate::form::MetadataUpdate;
use chrono::{DateTime, Months};

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

/// Parameters of `POST /v1/subscriptions/{id}`.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionUpdate {
    /// `cancel_at_period_end`.
    pub cancel_at_period_end: Option<bool>,
    /// `cancel_at` (`Some(None)`: cleared with an empty string).
    pub cancel_at: Option<Option<i64>>,
    /// `pause_collection` (`Some(None)`: cleared with an empty string).
    pub pause_collection: Option<Option<(String, Option<i64>)>>,
    /// `items[n]`: (item id, new price, new quantity).
    pub items: Vec<(Option<String>, Option<String>, Option<i64>)>,
    /// `proration_behavior`: `create_prorations` (default), `always_invoice`, `none`.
    pub proration_behavior: Option<String>,
    /// `metadata`.
    pub metadata: Option<MetadataUpdate>,
    /// `trial_end`: `Some(None)` for `now`, `Some(Some(t))` for a timestamp.
    pub trial_end: Option<Option<i64>>,
    /// `default_payment_method`.
    pub default_payment_method: Option<String>,
}

/// Result of one charge attempt against the subscription's card.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Charge {
    Succeeded,
    Declined,
    NeedsAuthentication,
    NoPaymentMethod,
}

/// Adds `count` intervals to a timestamp as Stripe does (calendar months, clamped).
pub(crate) fn add_interval(t: i64, interval: &str, count: i64) -> i64 {
    let count = count.max(1);
    match interval {
        "day" => t + 86_400 * count,
        "week" => t + 7 * 86_400 * count,
        "month" | "year" => {
            let months = if interval == "year" {
                12 * count
            } else {
                count
            };
            let Ok(months) = u32::try_from(months) else {
                return t + 30 * 86_400 * count;
            };
            DateTime::from_timestamp(t, 0)
                .and_then(|d| d.checked_add_months(Months::new(months)))
                .map_or(t + 30 * 86_400 * count, |d| d.timestamp())
        }
        _ => t + 86_400 * count,
    }
}

impl State {
    // ---------------------------------------------------------------- customers

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

    /// Renewals of a subscription (id `sub_`) or of every subscription of a customer
    /// (id `cus_`) fail once.
    pub fn fail_next_renewal(&mut self, id: &str) -> Result<(), StripeError> {
        if let Some(s) = self.subscriptions.get_mut(id) {
            s.fail_next_renewal = true;
            return Ok(());
        }
        if let Some(c) = self.customers.get_mut(id) {
            c.fail_next_renewal = true;
            return Ok(());
        }
        Err(StripeError::missing("subscription or customer", id, "id"))
    }

    // ---------------------------------------------------------------- checkout

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

    /// `POST /v1/billing_portal/sessions`.
    pub fn create_portal_session(
        &mut self,
        customer: &str,
        return_url: Option<String>,
    ) -> Result<String, StripeError> {
        if !self.customers.contains_key(customer) {
            return Err(StripeError::missing("customer", customer, "customer"));
        }
        let id = new_id("bps_");
        let created = self.time_for_customer(customer);
        self.portal_sessions.insert(
            id.clone(),
            PortalSession {
                id: id.clone(),
                created,
                customer: customer.to_string(),
                return_url,
            },
        );
        Ok(id)
    }

    // ---------------------------------------------------------------- invoices

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

    /// The payment method an invoice is charged with: the invoice's own, else its
    /// subscription's default, else the customer's `invoice_settings.default_payment_method`.
    pub(crate) fn payment_method_for(&self, inv: &Invoice) -> Option<String> {
        let sub = inv
            .subscription
            .as_ref()
            .and_then(|s| self.subscriptions.get(s));
        inv.default_payment_method
            .clone()
            .or_else(|| sub.and_then(|s| s.default_payment_method.clone()))
            .or_else(|| {
                self.customers
                    .get(&inv.customer)
                    .and_then(|c| c.default_payment_method.clone())
            })
    }

    fn charge(&mut self, inv: &Invoice, renewal_first_attempt: bool) -> Charge {
        let sub = inv
            .subscription
            .as_ref()
            .and_then(|s| self.subscriptions.get(s))
            .cloned();
        if renewal_first_attempt && let Some(sub) = &sub {
            let forced_sub = sub.fail_next_renewal;
            let forced_cus = self
                .customers
                .get(&sub.customer)
                .is_some_and(|c| c.fail_next_renewal);
            if forced_sub || forced_cus {
                if let Some(s) = self.subscriptions.get_mut(&sub.id) {
                    s.fail_next_renewal = false;
                }
                if let Some(c) = self.customers.get_mut(&sub.customer) {
                    c.fail_next_renewal = false;
                }
                return Charge::Declined;
            }
        }
        self.charge_outcome(self.payment_method_for(inv).as_deref())
    }

    /// What charging a payment method would do (no state change).
    pub(crate) fn charge_outcome(&self, pm: Option<&str>) -> Charge {
        match pm.and_then(|p| self.payment_methods.get(p)).map(|p| p.card) {
            None => Charge::NoPaymentMethod,
            Some(TestCard::Visa) => Charge::Succeeded,
            Some(TestCard::ChargeCustomerFail | TestCard::Declined) => Charge::Declined,
            Some(TestCard::AuthenticationRequired) => Charge::NeedsAuthentication,
        }
    }

    /// One payment attempt on an open invoice, with everything that follows from it:
    /// paid → subscription active again; failed → retry schedule, `past_due`, and when
    /// retries run out `canceled` or `unpaid`.
    ///
    /// Returns the outcome (`None` if the invoice is not open), for `POST /v1/invoices/{id}/pay`.
    pub(crate) fn attempt_payment(&mut self, inv_id: &str) -> Option<Charge> {
        let inv = self.invoices.get(inv_id).cloned()?;
        if inv.status != "open" {
            return None;
        }
        let now = self.time_for_customer(&inv.customer);
        // A manual invoice has no subscription: "" names none in the lookups below.
        let sub_id = inv.subscription.clone().unwrap_or_default();
        let outcome = if inv.amount_due == 0 {
            Charge::Succeeded
        } else {
            let first_renewal_try =
                inv.billing_reason == "subscription_cycle" && inv.attempt_count == 0;
            self.charge(&inv, first_renewal_try)
        };
        if let Some(i) = self.invoices.get_mut(inv_id)
            && i.amount_due > 0
        {
            i.attempt_count += 1;
            i.attempted = true;
        }
        let sub_before = self.render_subscription(&sub_id);
        let sub_status = self
            .subscriptions
            .get(&sub_id)
            .map(|s| s.status.clone())
            .unwrap_or_default();

        if outcome == Charge::Succeeded {
            if let Some(i) = self.invoices.get_mut(inv_id) {
                i.status = "paid".into();
                i.amount_paid = i.amount_due;
                i.paid_at = Some(now);
                i.next_payment_attempt = None;
                i.attempted = true;
            }
            let obj = self.render_invoice(inv_id);
            self.emit("invoice.paid", now, obj.clone(), None);
            self.emit("invoice.payment_succeeded", now, obj, None);
            if matches!(sub_status.as_str(), "incomplete" | "past_due" | "unpaid") {
                if let Some(s) = self.subscriptions.get_mut(&sub_id) {
                    s.status = "active".into();
                }
                let after = self.render_subscription(&sub_id);
                let prev = diff(&sub_before, &after);
                self.emit("customer.subscription.updated", now, after, prev);
            }
            return Some(outcome);
        }

        let needs_auth = outcome == Charge::NeedsAuthentication;
        if sub_status == "incomplete" || inv.subscription.is_none() {
            // The first invoice is not retried on a schedule; it waits 23 hours for the
            // customer, then the subscription expires.
            let obj = self.render_invoice(inv_id);
            if needs_auth {
                self.emit("invoice.payment_action_required", now, obj, None);
            } else {
                self.emit("invoice.payment_failed", now, obj, None);
            }
            return Some(outcome);
        }

        let (attempts, first_failed) = match self.invoices.get_mut(inv_id) {
            Some(i) => {
                let first = *i.first_failed_at.get_or_insert(now);
                (i.attempt_count, first)
            }
            None => return Some(outcome),
        };
        let next = usize::try_from(attempts - 1)
            .ok()
            .and_then(|n| self.settings.retry_delays.get(n))
            .map(|d| (first_failed + d).max(now + 1));
        if let Some(i) = self.invoices.get_mut(inv_id) {
            i.next_payment_attempt = next;
        }
        let obj = self.render_invoice(inv_id);
        self.emit("invoice.payment_failed", now, obj.clone(), None);
        if needs_auth {
            self.emit("invoice.payment_action_required", now, obj, None);
        }

        if next.is_some() {
            if matches!(sub_status.as_str(), "active" | "trialing") {
                if let Some(s) = self.subscriptions.get_mut(&sub_id) {
                    s.status = "past_due".into();
                }
                let after = self.render_subscription(&sub_id);
                let prev = diff(&sub_before, &after);
                self.emit("customer.subscription.updated", now, after, prev);
            }
            return Some(outcome);
        }
        match self.settings.after_retries {
            super::AfterRetries::Cancel => self.end_subscription(&sub_id, "payment_failed"),
            super::AfterRetries::Unpaid => {
                if sub_status != "unpaid" {
                    if let Some(s) = self.subscriptions.get_mut(&sub_id) {
                        s.status = "unpaid".into();
                    }
                    let after = self.render_subscription(&sub_id);
                    let prev = diff(&sub_before, &after);
                    self.emit("customer.subscription.updated", now, after, prev);
                }
            }
        }
        Some(outcome)
    }

    // ---------------------------------------------------------------- subscriptions

    /// Period (or trial) end: start the next period and bill it. The invoice is a draft
    /// for `finalize_delay` seconds, then it is finalized and charged.
    pub(crate) fn period_end(&mut self, sub_id: &str) {
        let Some(sub) = self.subscriptions.get(sub_id).cloned() else {
            return;
        };
        if sub.is_ended() {
            return;
        }
        let now = self.time_for_customer(&sub.customer);
        let before = self.render_subscription(sub_id);
        let was_trialing = sub.status == "trialing";
        if was_trialing {
            let has_pm = sub.default_payment_method.is_some()
                || self
                    .customers
                    .get(&sub.customer)
                    .is_some_and(|c| c.default_payment_method.is_some());
            if !has_pm {
                match sub.missing_payment_method.as_str() {
                    "pause" => {
                        if let Some(s) = self.subscriptions.get_mut(sub_id) {
                            s.status = "paused".into();
                        }
                        let after = self.render_subscription(sub_id);
                        let prev = diff(&before, &after);
                        self.emit("customer.subscription.updated", now, after.clone(), prev);
                        self.emit("customer.subscription.paused", now, after, None);
                        return;
                    }
                    "cancel" => {
                        self.end_subscription(sub_id, "payment_failed");
                        return;
                    }
                    _ => {}
                }
            }
        }
        let old_start = sub.period_start();
        let old_end = sub.period_end();
        let prices = self.prices.clone();
        if let Some(s) = self.subscriptions.get_mut(sub_id) {
            if was_trialing {
                s.status = "active".into();
            }
            for item in &mut s.items {
                let (interval, count) = prices
                    .get(&item.price)
                    .map_or(("month".to_string(), 1), |p| {
                        (p.interval.clone(), p.interval_count)
                    });
                item.current_period_start = old_end;
                item.current_period_end = add_interval(old_end, &interval, count);
            }
        }
        let inv = self.new_invoice(sub_id, "subscription_cycle", (old_start, old_end), false);
        let delay = self.settings.finalize_delay;
        if let Some(i) = self.invoices.get_mut(&inv) {
            i.automatically_finalizes_at = Some(now + delay);
        }
        if let Some(s) = self.subscriptions.get_mut(sub_id) {
            s.latest_invoice = Some(inv.clone());
        }
        let obj = self.render_invoice(&inv);
        self.emit("invoice.created", now, obj, None);
        let after = self.render_subscription(sub_id);
        let prev = diff(&before, &after);
        self.emit("customer.subscription.updated", now, after, prev);
        if delay <= 0 {
            self.finalize_and_charge(&inv);
        }
    }

    /// Ends a subscription now; emits `customer.subscription.deleted`.
    pub(crate) fn end_subscription(&mut self, sub_id: &str, reason: &str) {
        let Some(sub) = self.subscriptions.get(sub_id).cloned() else {
            return;
        };
        if sub.is_ended() {
            return;
        }
        let now = self.time_for_customer(&sub.customer);
        if let Some(s) = self.subscriptions.get_mut(sub_id) {
            s.status = "canceled".into();
            s.ended_at = Some(now);
            if !(s.cancel_at_period_end && s.canceled_at.is_some()) {
                s.canceled_at = Some(now);
            }
            s.cancellation_reason = Some(reason.to_string());
        }
        // A canceled subscription collects nothing more.
        for inv in self
            .invoices
            .values_mut()
            .filter(|i| i.subscription.as_deref() == Some(sub_id))
        {
            inv.next_payment_attempt = None;
            inv.automatically_finalizes_at = None;
        }
        let obj = self.render_subscription(sub_id);
        self.emit("customer.subscription.deleted", now, obj, None);
    }

    pub(crate) fn cancel_due(&mut self, sub_id: &str) {
        self.end_subscription(sub_id, "cancellation_requested");
    }

    pub(crate) fn expire_incomplete(&mut self, sub_id: &str) {
        let Some(sub) = self.subscriptions.get(sub_id).cloned() else {
            return;
        };
        if sub.status != "incomplete" {
            return;
        }
        let now = self.time_for_customer(&sub.customer);
        if let Some(inv) = sub.latest_invoice.as_deref()
            && self.invoices.get(inv).is_some_and(|i| i.status == "open")
        {
            self.void_invoice(inv);
        }
        let before = self.render_subscription(sub_id);
        if let Some(s) = self.subscriptions.get_mut(sub_id) {
            s.status = "incomplete_expired".into();
            s.ended_at = Some(now);
        }
        let after = self.render_subscription(sub_id);
        let prev = diff(&before, &after);
        self.emit("customer.subscription.updated", now, after, prev);
    }

    pub(crate) fn resume_collection_due(&mut self, sub_id: &str) {
        let Some(sub) = self.subscriptions.get(sub_id) else {
            return;
        };
        let now = self.time_for_customer(&sub.customer.clone());
        let before = self.render_subscription(sub_id);
        if let Some(s) = self.subscriptions.get_mut(sub_id) {
            s.pause_collection = None;
        }
        let after = self.render_subscription(sub_id);
        let prev = diff(&before, &after);
        self.emit("customer.subscription.updated", now, after, prev);
    }

    /// `DELETE /v1/subscriptions/{id}`: cancel now.
    pub fn cancel_subscription(&mut self, sub_id: &str) -> Result<(), StripeError> {
        let Some(sub) = self.subscriptions.get(sub_id) else {
            return Err(StripeError::missing("subscription", sub_id, "id"));
        };
        if sub.is_ended() {
            return Err(StripeError::invalid_state(format!(
                "A canceled subscription can only update its cancellation_details and metadata. \
                 ({sub_id} is {})",
                sub.status
            )));
        }
        self.end_subscription(sub_id, "cancellation_requested");
        Ok(())
    }

    /// `POST /v1/subscriptions/{id}`; emits one `customer.subscription.updated` with
    /// `previous_attributes` when something changed (and the trial-end events when the
    /// trial is ended with `trial_end=now`).
    pub fn update_subscription(
        &mut self,
        sub_id: &str,
        u: SubscriptionUpdate,
    ) -> Result<(), StripeError> {
        let Some(sub) = self.subscriptions.get(sub_id).cloned() else {
            return Err(StripeError::missing("subscription", sub_id, "id"));
        };
        let only_metadata = u.cancel_at_period_end.is_none()
            && u.cancel_at.is_none()
            && u.pause_collection.is_none()
            && u.items.is_empty()
            && u.trial_end.is_none()
            && u.default_payment_method.is_none();
        if sub.is_ended() && !only_metadata {
            return Err(StripeError::invalid_state(
                "A canceled subscription can only update its cancellation_details and metadata.",
            ));
        }
        if let Some(Some((behavior, _))) = &u.pause_collection
            && !matches!(
                behavior.as_str(),
                "keep_as_draft" | "mark_uncollectible" | "void"
            )
        {
            return Err(StripeError::invalid_param(
                "pause_collection[behavior]",
                "Invalid pause_collection[behavior]: must be one of keep_as_draft, mark_uncollectible, or void",
            ));
        }
        if let Some(pb) = &u.proration_behavior
            && !matches!(pb.as_str(), "create_prorations" | "none" | "always_invoice")
        {
            return Err(StripeError::invalid_param(
                "proration_behavior",
                "Invalid proration_behavior.",
            ));
        }
        for (n, (item_id, price, _)) in u.items.iter().enumerate() {
            let Some(item_id) = item_id else {
                return Err(StripeError::missing_param(&format!("items[{n}][id]")));
            };
            if !sub.items.iter().any(|i| &i.id == item_id) {
                return Err(StripeError::missing(
                    "subscription_item",
                    item_id,
                    &format!("items[{n}][id]"),
                ));
            }
            if let Some(p) = price
                && !self.prices.contains_key(p)
            {
                return Err(StripeError::missing(
                    "price",
                    p,
                    &format!("items[{n}][price]"),
                ));
            }
        }
        if let Some(pm) = &u.default_payment_method {
            self.check_payment_method(&sub.customer, pm, "default_payment_method")?;
        }
        if let Some(Some(t)) = u.trial_end
            && t <= self.time_for_customer(&sub.customer)
        {
            return Err(StripeError::invalid_param(
                "trial_end",
                "trial_end must be in the future (or `now`).",
            ));
        }

        let now = self.time_for_customer(&sub.customer);
        let before = self.render_subscription(sub_id);
        let Some(s) = self.subscriptions.get_mut(sub_id) else {
            return Err(StripeError::missing("subscription", sub_id, "id"));
        };
        if let Some(flag) = u.cancel_at_period_end {
            s.cancel_at_period_end = flag;
            if flag {
                s.cancel_at = Some(s.period_end());
                s.canceled_at = Some(now);
                s.cancellation_reason = Some("cancellation_requested".into());
            } else {
                s.cancel_at = None;
                s.canceled_at = None;
                s.cancellation_reason = None;
            }
        }
        if let Some(at) = u.cancel_at {
            s.cancel_at = at;
            s.cancel_at_period_end = at.is_some_and(|t| t == s.period_end());
            s.canceled_at = at.map(|_| now);
            s.cancellation_reason = at.map(|_| "cancellation_requested".to_string());
        }
        if let Some(pc) = u.pause_collection {
            s.pause_collection = pc.map(|(behavior, resumes_at)| PauseCollection {
                behavior,
                resumes_at,
            });
        }
        // (item, old price, old quantity, new price, new quantity) of every real change.
        let mut changes: Vec<(String, String, i64, String, i64)> = Vec::new();
        let old_period = (s.period_start(), s.period_end());
        let mut interval_changed = false;
        let prorating = matches!(s.status.as_str(), "active" | "past_due");
        for (item_id, price, quantity) in &u.items {
            if let Some(item) = s.items.iter_mut().find(|i| Some(&i.id) == item_id.as_ref()) {
                let (old_price, old_q) = (item.price.clone(), item.quantity);
                if let Some(p) = price {
                    item.price = p.clone();
                }
                if let Some(q) = quantity {
                    item.quantity = (*q).max(1);
                }
                if (item.price.clone(), item.quantity) != (old_price.clone(), old_q) {
                    let interval = |id: &str| {
                        self.prices
                            .get(id)
                            .map(|p| (p.interval.clone(), p.interval_count))
                    };
                    if interval(&old_price) != interval(&item.price) {
                        interval_changed = true;
                    }
                    changes.push((
                        item.id.clone(),
                        old_price,
                        old_q,
                        item.price.clone(),
                        item.quantity,
                    ));
                }
            }
        }
        if interval_changed && prorating {
            // A new billing interval restarts the billing cycle now, as on Stripe.
            s.billing_cycle_anchor = now;
            for item in &mut s.items {
                let (interval, count) = self
                    .prices
                    .get(&item.price)
                    .map_or(("month".to_string(), 1), |p| {
                        (p.interval.clone(), p.interval_count)
                    });
                item.current_period_start = now;
                item.current_period_end = add_interval(now, &interval, count);
            }
            if s.cancel_at_period_end {
                s.cancel_at = Some(s.period_end());
            }
        }
        if let Some(m) = &u.metadata {
            m.apply(&mut s.metadata);
        }
        if let Some(pm) = &u.default_payment_method {
            s.default_payment_method = Some(pm.clone());
        }
        let mut end_trial_now = false;
        if let Some(t) = u.trial_end {
            match t {
                None if s.status == "trialing" => end_trial_now = true,
                None => {}
                Some(t) if s.status == "trialing" => {
                    s.trial_end = Some(t);
                    for item in &mut s.items {
                        item.current_period_end = t;
                    }
                    s.billing_cycle_anchor = t;
                }
                Some(_) => {}
            }
        }
        let after = self.render_subscription(sub_id);
        if let Some(prev) = diff(&before, &after) {
            self.emit("customer.subscription.updated", now, after, Some(prev));
        }
        if !changes.is_empty() && prorating {
            let behavior = u
                .proration_behavior
                .as_deref()
                .unwrap_or("create_prorations");
            self.prorate_price_change(sub_id, &changes, behavior, old_period, interval_changed);
        }
        if end_trial_now {
            self.end_trial_now(sub_id)?;
        }
        Ok(())
    }

    /// Ends a trial at once, as `trial_end=now` does: the subscription renews now.
    pub fn end_trial_now(&mut self, sub_id: &str) -> Result<(), StripeError> {
        let now = match self.customer_of(sub_id) {
            Some(c) => self.time_for_customer(&c),
            None => self.now(),
        };
        let Some(s) = self.subscriptions.get_mut(sub_id) else {
            return Err(StripeError::missing("subscription", sub_id, "id"));
        };
        if s.status != "trialing" {
            return Err(StripeError::invalid_state(format!(
                "{sub_id} is not trialing (status {}).",
                s.status
            )));
        }
        s.trial_end = Some(now);
        s.billing_cycle_anchor = now;
        for item in &mut s.items {
            item.current_period_end = now;
        }
        self.period_end(sub_id);
        Ok(())
    }

    /// `POST /v1/subscriptions/{id}/resume`: a `paused` subscription becomes `active`,
    /// starts a new period now and is billed for it at once.
    pub fn resume_subscription(&mut self, sub_id: &str) -> Result<(), StripeError> {
        let Some(sub) = self.subscriptions.get(sub_id).cloned() else {
            return Err(StripeError::missing("subscription", sub_id, "id"));
        };
        if sub.status != "paused" {
            return Err(StripeError::invalid_state(format!(
                "Only a paused subscription can be resumed ({sub_id} is {}).",
                sub.status
            )));
        }
        let now = self.time_for_customer(&sub.customer);
        let prices = self.prices.clone();
        let before = self.render_subscription(sub_id);
        if let Some(s) = self.subscriptions.get_mut(sub_id) {
            s.status = "active".into();
            s.billing_cycle_anchor = now;
            for item in &mut s.items {
                let (interval, count) = prices
                    .get(&item.price)
                    .map_or(("month".to_string(), 1), |p| {
                        (p.interval.clone(), p.interval_count)
                    });
                item.current_period_start = now;
                item.current_period_end = add_interval(now, &interval, count);
            }
        }
        let after = self.render_subscription(sub_id);
        let prev = diff(&before, &after);
        self.emit(
            "customer.subscription.resumed",
            now,
            after.clone(),
            prev.clone(),
        );
        self.emit("customer.subscription.updated", now, after, prev);
        let inv = self.new_invoice(sub_id, "subscription_update", (now, now), false);
        if let Some(s) = self.subscriptions.get_mut(sub_id) {
            s.latest_invoice = Some(inv.clone());
        }
        let obj = self.render_invoice(&inv);
        self.emit("invoice.created", now, obj, None);
        self.finalize(&inv);
        let _ = self.attempt_payment(&inv);
        Ok(())
    }

    /// The id of a subscription's customer (for the control API).
    pub fn customer_of(&self, sub_id: &str) -> Option<String> {
        self.subscriptions.get(sub_id).map(|s| s.customer.clone())
    }

    /// Metadata of a stored object, for summaries.
    pub fn subscription_ids_of(&self, customer: &str) -> Vec<String> {
        let mut subs: Vec<&Subscription> = self
            .subscriptions
            .values()
            .filter(|s| s.customer == customer)
            .collect();
        subs.sort_by_key(|s| std::cmp::Reverse(s.seq));
        subs.into_iter().map(|s| s.id.clone()).collect()
    }
}
