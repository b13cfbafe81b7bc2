//! The billing engine: all simulated Stripe state, the transitions that change it, and
//! the events they emit. No I/O and no locking here — the [`crate::Simulator`] owns a
//! `Mutex<State>` and hands out `&mut State` for one operation at a time; emitted events
//! are collected in an outbox the caller drains and gives to webhook delivery.
//!
//! Time: every object's time comes from [`State::time_for_customer`], so per-customer
//! test clocks can later replace the single simulated clock without touching transitions.

mod billing;
mod clocks;
mod invoicing;
mod payment_methods;
mod render;
mod schedule;
mod subscribe;

use std::collections::BTreeMap;

use serde_json::Value;

pub use billing::{CheckoutOutcome, NewCheckout, NewCustomer, SubscriptionUpdate};
pub use invoicing::{NewInvoice, NewInvoiceItem};
pub use render::expand;
pub use schedule::Due;
pub use subscribe::{NewPrice, NewSubscription};

/// Stripe API version the simulator speaks (the one async-stripe 1.0.0-rc.10 pins).
pub const API_VERSION: &str = "2026-09-30.endive";

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

/// What happens when payment retries of a renewal run out (a Stripe account setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AfterRetries {
    /// The subscription is canceled (`customer.subscription.deleted`).
    Cancel,
    /// The subscription stays, status `unpaid`; its invoices stay open.
    Unpaid,
}

/// A product and recurring price seeded at start. In a plans file (JSON: an array of
/// these, or `{"plans": [...]}`) `lookup_key`, `currency` (`usd`) and `interval_count`
/// (1) may be left out.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PlanSeed {
    /// Product id (`prod_...`).
    pub product_id: String,
    /// Product name shown on the hosted pages.
    pub product_name: String,
    /// Price id (`price_...`).
    pub price_id: String,
    /// Lookup key of the price (empty: none).
    #[serde(default)]
    pub lookup_key: String,
    /// Amount in the smallest currency unit.
    pub unit_amount: i64,
    /// Lower-case ISO currency.
    #[serde(default = "default_currency")]
    pub currency: String,
    /// `day`, `week`, `month` or `year`.
    pub interval: String,
    /// Number of intervals per period.
    #[serde(default = "one")]
    pub interval_count: i64,
}

fn default_currency() -> String {
    "usd".into()
}

fn one() -> i64 {
    1
}

impl PlanSeed {
    /// Reads extra plans from a JSON file: an array of plans or `{"plans": [...]}`.
    pub fn load(path: &std::path::Path) -> std::io::Result<Vec<PlanSeed>> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum File {
            List(Vec<PlanSeed>),
            Wrapped { plans: Vec<PlanSeed> },
        }
        let text = std::fs::read_to_string(path)?;
        let file: File = serde_json::from_str(&text).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
        Ok(match file {
            File::List(p) | File::Wrapped { plans: p } => p,
        })
    }

    /// The two plans of My Smart Road: weekly 25 USD and monthly 79 USD.
    pub fn defaults() -> Vec<PlanSeed> {
        vec![
            PlanSeed {
                product_id: "prod_msr_weekly".into(),
                product_name: "My Smart Road weekly".into(),
                price_id: "price_msr_weekly".into(),
                lookup_key: "msr_weekly".into(),
                unit_amount: 2500,
                currency: "usd".into(),
                interval: "week".into(),
                interval_count: 1,
            },
            PlanSeed {
                product_id: "prod_msr_monthly".into(),
                product_name: "My Smart Road monthly".into(),
                price_id: "price_msr_monthly".into(),
                lookup_key: "msr_monthly".into(),
                unit_amount: 7900,
                currency: "usd".into(),
                interval: "month".into(),
                interval_count: 1,
            },
        ]
    }
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

/// A test clock (`/v1/test_helpers/test_clocks`): a frozen time its customers live on.
#[derive(Debug, Clone)]
pub struct TestClock {
    pub(crate) id: String,
    pub(crate) seq: u64,
    pub(crate) created: i64,
    pub(crate) name: Option<String>,
    pub(crate) frozen_time: i64,
    pub(crate) status: String,
    /// While advancing: the target (`status_details.advancing.target_frozen_time`).
    pub(crate) target: Option<i64>,
}

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

/// A product.
#[derive(Debug, Clone)]
pub struct Product {
    pub(crate) id: String,
    pub(crate) seq: u64,
    pub(crate) created: i64,
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    pub(crate) active: bool,
    pub(crate) metadata: BTreeMap<String, String>,
}

/// A recurring price.
#[derive(Debug, Clone)]
pub struct Price {
    pub(crate) id: String,
    pub(crate) seq: u64,
    pub(crate) created: i64,
    pub(crate) product: String,
    pub(crate) unit_amount: i64,
    pub(crate) currency: String,
    pub(crate) interval: String,
    pub(crate) interval_count: i64,
    pub(crate) lookup_key: Option<String>,
    pub(crate) active: bool,
    pub(crate) nickname: Option<String>,
    pub(crate) metadata: BTreeMap<String, String>,
}

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

/// A billing portal session.
#[derive(Debug, Clone)]
pub struct PortalSession {
    pub(crate) id: String,
    pub(crate) created: i64,
    pub(crate) customer: String,
    pub(crate) return_url: Option<String>,
}

/// One item of a subscription; the billing period lives here in this API version.
#[derive(Debug, Clone)]
pub struct SubscriptionItem {
    pub(crate) id: String,
    pub(crate) created: i64,
    pub(crate) price: String,
    pub(crate) quantity: i64,
    pub(crate) current_period_start: i64,
    pub(crate) current_period_end: i64,
}

/// `pause_collection` of a subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct PauseCollection {
    pub(crate) behavior: String,
    pub(crate) resumes_at: Option<i64>,
}

/// A subscription.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub(crate) id: String,
    pub(crate) seq: u64,
    pub(crate) created: i64,
    pub(crate) customer: String,
    pub(crate) status: String,
    pub(crate) items: Vec<SubscriptionItem>,
    pub(crate) cancel_at_period_end: bool,
    pub(crate) cancel_at: Option<i64>,
    pub(crate) canceled_at: Option<i64>,
    pub(crate) ended_at: Option<i64>,
    pub(crate) cancellation_reason: Option<String>,
    pub(crate) pause_collection: Option<PauseCollection>,
    pub(crate) trial_start: Option<i64>,
    pub(crate) trial_end: Option<i64>,
    pub(crate) missing_payment_method: String,
    pub(crate) latest_invoice: Option<String>,
    pub(crate) default_payment_method: Option<String>,
    pub(crate) billing_cycle_anchor: i64,
    pub(crate) start_date: i64,
    pub(crate) currency: String,
    pub(crate) metadata: BTreeMap<String, String>,
    pub(crate) fail_next_renewal: bool,
    /// `customer.subscription.trial_will_end` was sent for the current trial.
    pub(crate) trial_will_end_sent: bool,
}

impl Subscription {
    /// End of the current period (all items share one period here).
    pub(crate) fn period_end(&self) -> i64 {
        self.items
            .first()
            .map_or(self.billing_cycle_anchor, |i| i.current_period_end)
    }

    pub(crate) fn period_start(&self) -> i64 {
        self.items
            .first()
            .map_or(self.billing_cycle_anchor, |i| i.current_period_start)
    }

    /// Whether the subscription has reached a terminal status.
    pub(crate) fn is_ended(&self) -> bool {
        matches!(self.status.as_str(), "canceled" | "incomplete_expired")
    }
}

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

    /// Records an event for `GET /v1/events` and for delivery.
    pub(crate) fn emit(
        &mut self,
        event_type: &str,
        created: i64,
        object: Value,
        previous_attributes: Option<Value>,
    ) {
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
