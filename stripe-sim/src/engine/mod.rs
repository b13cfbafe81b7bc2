//! The billing engine: all simulated Stripe state, the transitions that change it, and
//! the events they emit. No I/O and no locking here — the [`crate::Simulator`] owns a
//! `Mutex<State>` and hands out `&mut State` for one operation at a time; emitted events
//! are collected in an outbox the caller drains and gives to webhook delivery.
//!
//! Time: every object's time comes from [`State::time_for_customer`], so per-customer
//! test clocks can later replace the single simulated clock without touching transitions.
//!
//! One module per Stripe resource, each with its object struct, its transitions and its
//! `render_*`: `customers`, `payment_methods` (and the test cards), `catalog` (products,
//! prices, seeded plans), `checkout` (all three modes), `portal`, `subscriptions` (create,
//! `update`, `lifecycle`), `invoices`, `invoice_items`, `payments` (charging invoices,
//! retries), `payment_intents` (PaymentIntents and their charges), `setup_intents`,
//! `clocks` (test clocks), `schedules` (subscription schedules), `entitlements` (features,
//! product features, each customer's active entitlements). `schedule` says what is due
//! when; `render` holds the shared JSON helpers. This file keeps the state itself, the clock
//! and event emission.

mod catalog;
mod charges;
mod checkout;
mod clocks;
mod customers;
mod entitlements;
mod invoice_items;
mod invoices;
mod payment_intents;
mod payment_methods;
mod payments;
mod portal;
mod render;
mod schedule;
mod schedules;
mod setup_intents;
mod subscriptions;

use std::collections::BTreeMap;

use serde_json::Value;

pub use catalog::{NewPrice, PlanSeed, Price, Product};
pub use charges::Charge;
pub use checkout::{
    CheckoutMode, CheckoutOutcome, CheckoutSession, NewCheckout, NewLineItem, NewPriceData,
};
pub use clocks::TestClock;
pub use customers::{Customer, NewCustomer};
pub use invoice_items::{InvoiceItem, NewInvoiceItem};
pub use invoices::{Invoice, InvoiceLine, NewInvoice};
pub use payment_intents::{IntentParams, PaymentIntent};
pub(crate) use payment_methods::is_shortcut;
pub use payment_methods::{PaymentMethod, TestCard};
pub use portal::PortalSession;
pub use render::expand;
pub use schedule::Due;
pub use schedules::{
    NewPhase, NewSchedule, SchedulePhase, ScheduleUpdate, StartDate, SubscriptionSchedule,
};
pub use setup_intents::{SetupIntent, SetupParams};
pub use subscriptions::{
    NewSubscription, PauseCollection, Subscription, SubscriptionItem, SubscriptionUpdate,
};

/// Stripe API version the simulator speaks (the one async-stripe 1.0.0-rc.10 pins).
pub const API_VERSION: &str = "2026-09-30.endive";

/// What happens when payment retries of a renewal run out (a Stripe account setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AfterRetries {
    /// The subscription is canceled (`customer.subscription.deleted`).
    Cancel,
    /// The subscription stays, status `unpaid`; its invoices stay open.
    Unpaid,
}

/// Engine settings derived from [`crate::SimConfig`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// Base URL of hosted pages, with trailing slash.
    pub public_url: String,
    /// Delays (seconds after the first failed attempt) of the renewal payment retries.
    pub retry_delays: Vec<i64>,
    /// What happens after the last failed retry.
    pub after_retries: AfterRetries,
    /// Seconds between a renewal invoice's creation (draft) and its finalization + payment.
    pub finalize_delay: i64,
    /// Seconds after which an unpaid `incomplete` subscription expires (Stripe: 23 h).
    pub incomplete_expiry: i64,
    /// Seconds a Checkout Session stays open (Stripe default: 24 h).
    pub checkout_expiry: i64,
    /// Number of webhook endpoints, reported as `pending_webhooks` on new events.
    pub webhook_endpoints: i64,
}

/// The API request that caused the events being emitted (Stripe reports it on each event).
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    /// `req_...` id of the API request; `None` for clock-driven changes.
    pub id: Option<String>,
    /// The request's `Idempotency-Key`, if any.
    pub idempotency_key: Option<String>,
}

/// All simulated Stripe state.
#[derive(Debug)]
pub struct State {
    pub(crate) settings: Settings,
    /// Seconds added to the wall clock.
    clock_offset: i64,
    /// While a due moment is processed, the clock stands still at that moment.
    frozen_at: Option<i64>,
    seq: u64,
    invoice_number: u64,
    pub(crate) customers: BTreeMap<String, Customer>,
    pub(crate) payment_methods: BTreeMap<String, PaymentMethod>,
    pub(crate) products: BTreeMap<String, Product>,
    pub(crate) prices: BTreeMap<String, Price>,
    pub(crate) checkout_sessions: BTreeMap<String, CheckoutSession>,
    pub(crate) portal_sessions: BTreeMap<String, PortalSession>,
    pub(crate) subscriptions: BTreeMap<String, Subscription>,
    pub(crate) invoices: BTreeMap<String, Invoice>,
    pub(crate) invoice_items: BTreeMap<String, InvoiceItem>,
    pub(crate) test_clocks: BTreeMap<String, TestClock>,
    pub(crate) subscription_schedules: BTreeMap<String, SubscriptionSchedule>,
    pub(crate) entitlements: entitlements::Entitlements,
    /// PaymentIntents made through `/v1/payment_intents` (invoices do not make any).
    pub(crate) payment_intents: BTreeMap<String, PaymentIntent>,
    /// The charges of those PaymentIntents.
    pub(crate) charges: BTreeMap<String, Charge>,
    pub(crate) setup_intents: BTreeMap<String, SetupIntent>,
    /// Ids of deleted customers, so retrieving one answers `{deleted: true}` as Stripe does.
    pub(crate) deleted_customers: std::collections::BTreeSet<String>,
    /// Every event ever emitted, oldest first.
    pub(crate) events: Vec<Value>,
    /// Events emitted by the current operation, not yet handed to delivery.
    outbox: Vec<Value>,
    pub(crate) request: RequestInfo,
}

/// Unix seconds of the wall clock.
pub fn wall_clock() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A Stripe-style id: prefix plus random alphanumerics.
pub fn new_id(prefix: &str) -> String {
    use rand::distr::{Alphanumeric, SampleString};
    format!(
        "{prefix}{}",
        Alphanumeric.sample_string(&mut rand::rng(), 24)
    )
}

impl State {
    /// Fresh state with the given plans seeded.
    pub fn new(settings: Settings, plans: &[PlanSeed]) -> State {
        let mut st = State {
            settings,
            clock_offset: 0,
            frozen_at: None,
            seq: 0,
            invoice_number: 0,
            customers: BTreeMap::new(),
            payment_methods: BTreeMap::new(),
            products: BTreeMap::new(),
            prices: BTreeMap::new(),
            checkout_sessions: BTreeMap::new(),
            portal_sessions: BTreeMap::new(),
            subscriptions: BTreeMap::new(),
            invoices: BTreeMap::new(),
            invoice_items: BTreeMap::new(),
            test_clocks: BTreeMap::new(),
            subscription_schedules: BTreeMap::new(),
            entitlements: entitlements::Entitlements::default(),
            payment_intents: BTreeMap::new(),
            charges: BTreeMap::new(),
            setup_intents: BTreeMap::new(),
            deleted_customers: std::collections::BTreeSet::new(),
            events: Vec::new(),
            outbox: Vec::new(),
            request: RequestInfo::default(),
        };
        let now = st.now();
        for plan in plans {
            if !st.products.contains_key(&plan.product_id) {
                let seq = st.next_seq();
                st.products.insert(
                    plan.product_id.clone(),
                    Product {
                        id: plan.product_id.clone(),
                        seq,
                        created: now,
                        name: plan.product_name.clone(),
                        description: None,
                        active: true,
                        metadata: BTreeMap::new(),
                    },
                );
            }
            let seq = st.next_seq();
            st.prices.insert(
                plan.price_id.clone(),
                Price {
                    id: plan.price_id.clone(),
                    seq,
                    created: now,
                    product: plan.product_id.clone(),
                    unit_amount: plan.unit_amount,
                    currency: plan.currency.clone(),
                    interval: plan.interval.clone(),
                    interval_count: plan.interval_count.max(1),
                    lookup_key: Some(plan.lookup_key.clone()).filter(|k| !k.is_empty()),
                    active: true,
                    nickname: None,
                    metadata: BTreeMap::new(),
                },
            );
            st.seed_features(&plan.product_id, &plan.features);
        }
        st
    }

    /// Simulated unix seconds.
    pub fn now(&self) -> i64 {
        self.frozen_at
            .unwrap_or_else(|| wall_clock() + self.clock_offset)
    }

    /// The time that governs objects of `customer`: its test clock's frozen time, or the
    /// simulator's clock for customers without one.
    pub(crate) fn time_for_customer(&self, customer: &str) -> i64 {
        match self.clock_of_customer(customer) {
            Some(clock) => self
                .test_clocks
                .get(&clock)
                .map_or_else(|| self.now(), |c| c.frozen_time),
            None => self.now(),
        }
    }

    /// The test clock a customer lives on, if any.
    pub(crate) fn clock_of_customer(&self, customer: &str) -> Option<String> {
        self.customers
            .get(customer)
            .and_then(|c| c.test_clock.clone())
    }

    pub(crate) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    pub(crate) fn next_invoice_number(&mut self) -> String {
        self.invoice_number += 1;
        format!("SIM-{:04}", self.invoice_number)
    }

    /// Takes the events emitted since the last call, in emission order.
    pub fn drain_outbox(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.outbox)
    }

    /// Records an event for `GET /v1/events` and for delivery. After a
    /// `customer.subscription.*` event the customer's entitlements are reconciled: every
    /// change of a subscription's status or items announces itself with such an event, so
    /// this one call keeps the active entitlements right for every transition, test clocks
    /// included; the summary event (if the set changed) follows with the same `created`.
    pub(crate) fn emit(
        &mut self,
        event_type: &str,
        created: i64,
        object: Value,
        previous_attributes: Option<Value>,
    ) {
        let subscriber = match object["customer"].as_str() {
            Some(c) if event_type.starts_with("customer.subscription.") => Some(c.to_string()),
            _ => None,
        };
        let mut data = serde_json::Map::new();
        data.insert("object".into(), object);
        if let Some(prev) = previous_attributes {
            data.insert("previous_attributes".into(), prev);
        }
        let event = serde_json::json!({
            "id": new_id("evt_"),
            "object": "event",
            "api_version": API_VERSION,
            "created": created,
            "data": Value::Object(data),
            "livemode": false,
            "pending_webhooks": self.settings.webhook_endpoints,
            "request": {
                "id": self.request.id,
                "idempotency_key": self.request.idempotency_key,
            },
            "type": event_type,
        });
        self.events.push(event.clone());
        self.outbox.push(event);
        if let Some(customer) = subscriber {
            self.reconcile_entitlements(&customer, created);
        }
    }

    /// Lowers `pending_webhooks` of a stored event after a successful delivery.
    pub fn mark_delivered(&mut self, event_id: &str) {
        if let Some(ev) = self.events.iter_mut().rev().find(|e| e["id"] == event_id) {
            let pending = ev["pending_webhooks"].as_i64().unwrap_or(0);
            ev["pending_webhooks"] = Value::from((pending - 1).max(0));
        }
    }

    /// A stored event by id.
    pub fn event(&self, id: &str) -> Option<&Value> {
        self.events.iter().find(|e| e["id"] == id)
    }

    /// Moves the clock forward by `secs`, running every due moment on the way in time
    /// order; each runs with the clock standing at its own moment.
    pub fn advance(&mut self, secs: i64) {
        let target = self.now() + secs.max(0);
        self.advance_to(target);
    }

    /// Moves the clock to `target` (never backwards), running everything due on the way.
    pub fn advance_to(&mut self, target: i64) {
        // A transition always makes its own due moment disappear or move later, so this
        // terminates; the cap only guards against a bug turning into a hung test.
        for _ in 0..100_000 {
            let Some((at, due)) = self.next_due() else {
                break;
            };
            if at > target {
                break;
            }
            let at = at.max(self.now());
            self.frozen_at = Some(at);
            self.run_due(due);
            self.frozen_at = None;
            // Keep the unfrozen clock at least at the moment just processed.
            if self.now() < at {
                self.clock_offset = at - wall_clock();
            }
        }
        if self.now() < target {
            self.clock_offset = target - wall_clock();
        }
    }

    /// A JSON summary for `GET /_sim/state`.
    pub fn summary(&self) -> Value {
        let subs: Vec<Value> = self
            .subscriptions
            .values()
            .map(|s| {
                serde_json::json!({
                    "id": s.id,
                    "customer": s.customer,
                    "status": s.status,
                    "price": s.items.first().map(|i| i.price.clone()),
                    "current_period_start": s.period_start(),
                    "current_period_end": s.period_end(),
                    "cancel_at_period_end": s.cancel_at_period_end,
                    "pause_collection": s.pause_collection.as_ref().map(|p| p.behavior.clone()),
                    "trial_end": s.trial_end,
                    "latest_invoice": s.latest_invoice,
                })
            })
            .collect();
        let customers: Vec<Value> = self
            .customers
            .values()
            .map(|c| {
                serde_json::json!({
                    "id": c.id,
                    "email": c.email,
                    "name": c.name,
                    "default_payment_method": c.default_payment_method,
                    "card": c.default_payment_method.as_ref()
                        .and_then(|pm| self.payment_methods.get(pm))
                        .map(|pm| pm.card.as_str()),
                })
            })
            .collect();
        serde_json::json!({
            "now": self.now(),
            "clock_offset": self.clock_offset,
            "customers": customers,
            "subscriptions": subs,
            "events": self.events.len(),
            "next_due": self.next_due().map(|(at, d)| serde_json::json!({"at": at, "what": d.describe()})),
        })
    }
}

#[cfg(test)]
mod tests;
