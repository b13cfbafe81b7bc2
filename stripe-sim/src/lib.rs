//! A local Stripe Billing simulator for msr-billing.
//!
//! It speaks Stripe's wire format (API version `2026-09-30.endive`, the one async-stripe
//! 1.0.0-rc.10 pins) over real HTTP, serves hosted Checkout and customer-portal pages,
//! runs subscriptions on a simulated clock and delivers signed webhooks. All state lives
//! here, so the same simulator serves tests (port 0), the demo mode of the service
//! (in-process) and a standalone process.
//!
//! Code tour: [`engine`] (state, transitions, events) → `api` (Stripe's HTTP API) →
//! `pages` (hosted pages) → `control` (`/_sim/...`, behind the API key) → `delivery`
//! (webhooks) → `faults`.

#![recursion_limit = "256"]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod api;
mod control;
mod delivery;
pub mod engine;
mod error;
mod faults;
pub mod form;
mod pages;
mod standalone;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::oneshot;

pub use delivery::{DeliveryRecord, WebhookEndpoint, signature_header};
pub use engine::{API_VERSION, AfterRetries, CheckoutOutcome, PlanSeed, TestCard};
pub use error::StripeError;
pub use faults::{Fault, FaultState};
pub use standalone::{StandaloneOptions, run_standalone};

use delivery::{Deliverer, DeliverySettings, lock};
use engine::{RequestInfo, Settings, State};

/// How the simulator behaves. `SimConfig::default()` is Stripe-like; tests shorten the
/// webhook backoff.
#[derive(Clone)]
pub struct SimConfig {
    /// The only API key accepted by `/v1` and `/_sim` (compared in constant time); `None`
    /// (the default) accepts any `sk_test_…`/`rk_test_…` key. A simulator reachable by
    /// others (the service's demo mode) must set a random one: the control API can pay
    /// checkouts and redirect webhooks. Live keys are refused either way.
    pub api_key: Option<String>,
    /// Webhook receivers (may be empty; see [`Simulator::set_webhook_endpoints`]).
    pub webhook_endpoints: Vec<WebhookEndpoint>,
    /// Base URL browsers use for hosted pages; default: the bound address.
    pub public_url: Option<String>,
    /// Products and prices seeded at start; default: weekly and monthly.
    pub plans: Vec<PlanSeed>,
    /// Webhook attempts per event and endpoint (default 5).
    pub webhook_max_attempts: u32,
    /// Wait before the second webhook attempt, doubled each time (default 1 s).
    pub webhook_backoff: Duration,
    /// A webhook receiver slower than this has failed (default 10 s).
    pub webhook_timeout: Duration,
    /// Renewal payment retries, in seconds after the first failure (default 1, 3, 5 days).
    pub payment_retry_delays: Vec<i64>,
    /// What happens when retries run out (default: cancel).
    pub after_retries: AfterRetries,
    /// Seconds a renewal invoice stays a draft before it is finalized and charged
    /// (Stripe: about an hour; default 3600; 0 charges at the period end itself).
    pub renewal_finalize_delay: i64,
    /// Operations per second allowed while the rate-limit fault is on (default 25).
    pub rate_limit_per_second: u32,
    /// A JSON file with more plans (see [`PlanSeed::load`]), seeded after `plans`.
    /// A file that cannot be read is logged and skipped.
    pub plans_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConfig")
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("webhook_endpoints", &self.webhook_endpoints)
            .field("public_url", &self.public_url)
            .field("plans", &self.plans)
            .field("webhook_max_attempts", &self.webhook_max_attempts)
            .field("webhook_backoff", &self.webhook_backoff)
            .field("webhook_timeout", &self.webhook_timeout)
            .field("payment_retry_delays", &self.payment_retry_delays)
            .field("after_retries", &self.after_retries)
            .field("renewal_finalize_delay", &self.renewal_finalize_delay)
            .field("rate_limit_per_second", &self.rate_limit_per_second)
            .field("plans_file", &self.plans_file)
            .finish()
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            api_key: None,
            webhook_endpoints: Vec::new(),
            public_url: None,
            plans: PlanSeed::defaults(),
            webhook_max_attempts: 5,
            webhook_backoff: Duration::from_secs(1),
            webhook_timeout: Duration::from_secs(10),
            payment_retry_delays: vec![86_400, 3 * 86_400, 5 * 86_400],
            after_retries: AfterRetries::Cancel,
            renewal_finalize_delay: 3600,
            rate_limit_per_second: 25,
            plans_file: None,
        }
    }
}

/// A saved idempotent response.
#[derive(Debug, Clone)]
pub(crate) enum Idem {
    InFlight,
    Done {
        fingerprint: String,
        status: u16,
        body: axum::body::Bytes,
        request_id: String,
        at: i64,
    },
}

pub(crate) struct Inner {
    pub(crate) state: Arc<Mutex<State>>,
    pub(crate) faults: Arc<Mutex<FaultState>>,
    pub(crate) deliverer: Arc<Deliverer>,
    pub(crate) idempotency: Mutex<std::collections::HashMap<String, Idem>>,
    pub(crate) rate_window: Mutex<std::collections::VecDeque<Instant>>,
    pub(crate) rate_limit_per_second: u32,
    /// [`SimConfig::api_key`]: the one key `/v1` and `/_sim` accept, if set.
    pub(crate) api_key: Option<String>,
}

/// The simulator. Cheap to clone; every clone shares the same state.
#[derive(Clone)]
pub struct Simulator {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("now", &self.now())
            .finish_non_exhaustive()
    }
}

fn with_slash(url: &str) -> String {
    if url.ends_with('/') {
        url.to_string()
    } else {
        format!("{url}/")
    }
}

impl Simulator {
    /// A simulator with fresh state. Hosted-page URLs use `config.public_url`, or
    /// `http://127.0.0.1:12111/` until [`Simulator::set_public_url`] says otherwise.
    pub fn new(config: SimConfig) -> Simulator {
        let settings = Settings {
            public_url: with_slash(
                config
                    .public_url
                    .as_deref()
                    .unwrap_or("http://127.0.0.1:12111/"),
            ),
            retry_delays: config.payment_retry_delays.clone(),
            after_retries: config.after_retries,
            finalize_delay: config.renewal_finalize_delay.max(0),
            incomplete_expiry: 23 * 3600,
            checkout_expiry: 24 * 3600,
            webhook_endpoints: i64::try_from(config.webhook_endpoints.len()).unwrap_or(0),
        };
        let mut plans = config.plans.clone();
        if let Some(path) = &config.plans_file {
            match PlanSeed::load(path) {
                Ok(extra) => plans.extend(extra),
                Err(e) => tracing::error!(error = %e, "stripe simulator: plans file skipped"),
            }
        }
        let state = Arc::new(Mutex::new(State::new(settings, &plans)));
        let faults = Arc::new(Mutex::new(FaultState::default()));
        let deliverer = Arc::new(Deliverer::new(
            Arc::clone(&state),
            Arc::clone(&faults),
            config.webhook_endpoints.clone(),
            DeliverySettings {
                max_attempts: config.webhook_max_attempts.max(1),
                backoff: config.webhook_backoff,
                timeout: config.webhook_timeout,
            },
        ));
        Simulator {
            inner: Arc::new(Inner {
                state,
                faults,
                deliverer,
                idempotency: Mutex::new(std::collections::HashMap::new()),
                rate_window: Mutex::new(std::collections::VecDeque::new()),
                rate_limit_per_second: config.rate_limit_per_second.max(1),
                api_key: config.api_key.clone(),
            }),
        }
    }

    /// Every route (Stripe API under `/v1`, hosted pages under `/c` and `/p`, control
    /// under `/_sim`) with this simulator as state, ready to serve or nest. `/v1` and
    /// `/_sim` need the API key ([`SimConfig::api_key`]); the hosted pages do not, as
    /// browsers open them.
    pub fn router(&self) -> axum::Router {
        axum::Router::new()
            .merge(api::router(self.clone()))
            .merge(pages::router(self.clone()))
            .merge(control::router(self.clone()))
    }

    /// Binds `addr` (port 0 picks a free port) and serves the simulator in a tokio task.
    pub async fn spawn(config: SimConfig, addr: SocketAddr) -> std::io::Result<SimHandle> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let base_url = format!("http://{local}/");
        let public = config
            .public_url
            .clone()
            .unwrap_or_else(|| base_url.clone());
        let sim = Simulator::new(config);
        sim.set_public_url(&public);
        let app = sim.router();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = server.await {
                tracing::error!(error = %e, "stripe simulator server stopped");
            }
        });
        Ok(SimHandle {
            base_url,
            addr: local,
            sim,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// Changes the base URL of hosted pages (for a caller that nests [`Simulator::router`]).
    pub fn set_public_url(&self, url: &str) {
        lock(&self.inner.state).settings.public_url = with_slash(url);
    }

    /// Runs one state change with request info, then hands its events to delivery.
    pub(crate) fn mutate<T>(&self, req: RequestInfo, f: impl FnOnce(&mut State) -> T) -> T {
        let (out, events) = {
            let mut st = lock(&self.inner.state);
            st.request = req;
            let out = f(&mut st);
            st.request = RequestInfo::default();
            (out, st.drain_outbox())
        };
        self.inner.deliverer.enqueue(events);
        out
    }

    /// Read-only access to the state.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&lock(&self.inner.state))
    }

    /// Simulated unix seconds (wall clock plus the simulated offset).
    pub fn now(&self) -> i64 {
        self.read(State::now)
    }

    /// Moves the clock forward, running everything due on the way in time order
    /// (renewals, retries, trial ends, cancellations, expiries) and emitting events.
    pub async fn advance_clock(&self, secs: i64) {
        self.mutate(RequestInfo::default(), |st| st.advance(secs));
    }

    /// Moves the clock to a unix time (never backwards).
    pub async fn advance_clock_to(&self, unix: i64) {
        self.mutate(RequestInfo::default(), |st| st.advance_to(unix));
    }

    /// Moves the clock to the moment the subscription's next renewal is charged (period
    /// end plus the finalize delay); returns that moment, or `None` if it will not renew.
    pub async fn advance_to_next_renewal(&self, subscription: &str) -> Option<i64> {
        self.mutate(RequestInfo::default(), |st| {
            let at = st.next_renewal_of(subscription)?;
            st.advance_to(at);
            Some(at)
        })
    }

    /// What pressing Pay on the hosted Checkout page does.
    pub async fn pay_checkout(
        &self,
        session_id: &str,
        card: TestCard,
    ) -> Result<CheckoutOutcome, StripeError> {
        self.mutate(RequestInfo::default(), |st| {
            st.complete_checkout(session_id, Some(card))
        })
    }

    /// Pays a trial checkout without a card (needs `payment_method_collection=if_required`).
    pub async fn pay_checkout_without_card(
        &self,
        session_id: &str,
    ) -> Result<CheckoutOutcome, StripeError> {
        self.mutate(RequestInfo::default(), |st| {
            st.complete_checkout(session_id, None)
        })
    }

    /// Switches a fault on.
    pub async fn set_fault(&self, f: Fault) {
        lock(&self.inner.faults).apply(f);
    }

    /// Switches every fault off and releases deliveries held by the pause fault.
    pub async fn clear_faults(&self) {
        *lock(&self.inner.faults) = FaultState::default();
        self.inner.deliverer.flush();
    }

    /// The faults currently on.
    pub fn faults(&self) -> FaultState {
        lock(&self.inner.faults).clone()
    }

    /// Unpauses deliveries and sends everything held back.
    pub fn flush_deliveries(&self) {
        lock(&self.inner.faults).paused = false;
        self.inner.deliverer.flush();
    }

    /// Every event emitted, oldest first.
    pub fn events(&self) -> Vec<Value> {
        self.read(|st| st.events.clone())
    }

    /// Event types emitted, oldest first (handy in assertions).
    pub fn event_types(&self) -> Vec<String> {
        self.read(|st| {
            st.events
                .iter()
                .map(|e| e["type"].as_str().unwrap_or_default().to_string())
                .collect()
        })
    }

    /// A subscription as Stripe would return it.
    pub fn subscription(&self, id: &str) -> Option<Value> {
        self.read(|st| st.render_by_id(id).filter(|_| id.starts_with("sub_")))
    }

    /// Any object by id (`cus_`, `sub_`, `in_`, `cs_`, `price_`, `prod_`, `pm_`, `bps_`).
    pub fn object(&self, id: &str) -> Option<Value> {
        self.read(|st| st.render_by_id(id))
    }

    /// Replaces the webhook endpoints (tests learn the service's port after starting).
    pub fn set_webhook_endpoints(&self, eps: Vec<WebhookEndpoint>) {
        self.inner.deliverer.set_endpoints(eps);
    }

    /// The current webhook endpoints.
    pub fn webhook_endpoints(&self) -> Vec<WebhookEndpoint> {
        self.inner.deliverer.endpoints()
    }

    /// Runs webhook delivery until the returned future is dropped, for a caller that supervises
    /// it: call it again after it panicked or was stopped, and the queue (with the event the last
    /// run was on, delivered again first) carries on. Once called, events wait for a run instead
    /// of starting a dispatcher of their own.
    pub fn run_delivery(&self) -> impl Future<Output = ()> + Send + use<> {
        let deliverer = Arc::clone(&self.inner.deliverer);
        deliverer.run()
    }

    /// Sends a stored event again to every endpoint; `false` if the id is unknown.
    pub async fn redeliver(&self, event_id: &str) -> bool {
        let Some(ev) = self.read(|st| st.event(event_id).cloned()) else {
            return false;
        };
        self.inner.deliverer.enqueue(vec![ev]);
        true
    }

    /// Every delivery attempt so far.
    pub fn deliveries(&self) -> Vec<DeliveryRecord> {
        self.inner.deliverer.log()
    }

    /// Waits until no delivery (retries included) is pending; `false` on timeout.
    /// Deliveries held by the pause fault count as pending.
    pub async fn wait_for_deliveries(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.inner.deliverer.in_flight() == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The next renewal of a subscription (`sub_`) or of all of a customer's (`cus_`) fails.
    pub fn fail_next_renewal(&self, id: &str) -> Result<(), StripeError> {
        self.mutate(RequestInfo::default(), |st| st.fail_next_renewal(id))
    }

    /// Gives the customer a new default card (also for their subscriptions); waiting
    /// invoices are retried at once. Returns the new `pm_` id.
    pub async fn set_card(&self, customer: &str, card: TestCard) -> Result<String, StripeError> {
        self.mutate(RequestInfo::default(), |st| st.attach_card(customer, card))
    }

    /// Removes the customer's default card (and their subscriptions').
    pub async fn remove_card(&self, customer: &str) -> Result<(), StripeError> {
        self.mutate(RequestInfo::default(), |st| st.detach_card(customer))
    }

    /// Ends a trial now (as `trial_end=now`).
    pub async fn end_trial_now(&self, subscription: &str) -> Result<(), StripeError> {
        self.mutate(RequestInfo::default(), |st| st.end_trial_now(subscription))
    }

    /// Cancels now (as `DELETE /v1/subscriptions/{id}`).
    pub async fn cancel_subscription(&self, subscription: &str) -> Result<(), StripeError> {
        self.mutate(RequestInfo::default(), |st| {
            st.cancel_subscription(subscription)
        })
    }

    /// Sets or clears `cancel_at_period_end`.
    pub async fn cancel_at_period_end(
        &self,
        subscription: &str,
        on: bool,
    ) -> Result<(), StripeError> {
        let u = engine::SubscriptionUpdate {
            cancel_at_period_end: Some(on),
            ..Default::default()
        };
        self.mutate(RequestInfo::default(), |st| {
            st.update_subscription(subscription, u)
        })
    }

    /// Sets (`Some("void" | "keep_as_draft" | "mark_uncollectible")`) or clears `pause_collection`.
    pub async fn pause_collection(
        &self,
        subscription: &str,
        behavior: Option<&str>,
    ) -> Result<(), StripeError> {
        let u = engine::SubscriptionUpdate {
            pause_collection: Some(behavior.map(|b| (b.to_string(), None))),
            ..Default::default()
        };
        self.mutate(RequestInfo::default(), |st| {
            st.update_subscription(subscription, u)
        })
    }

    /// Resumes a `paused` subscription (as `POST /v1/subscriptions/{id}/resume`).
    pub async fn resume(&self, subscription: &str) -> Result<(), StripeError> {
        self.mutate(RequestInfo::default(), |st| {
            st.resume_subscription(subscription)
        })
    }

    /// A JSON summary: clock, customers, subscriptions, next due moment.
    pub fn state_summary(&self) -> Value {
        self.read(State::summary)
    }
}

/// A simulator serving on a socket. Dropping it (or [`SimHandle::shutdown`]) stops the server.
#[derive(Debug)]
pub struct SimHandle {
    /// `http://127.0.0.1:PORT/`, with the trailing slash async-stripe expects.
    pub base_url: String,
    /// The bound address.
    pub addr: SocketAddr,
    /// The simulator, for control from Rust.
    pub sim: Simulator,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl SimHandle {
    /// Stops the server and waits for it to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(mut task) = self.task.take() {
            // Graceful shutdown waits for open connections; a client that keeps one
            // alive must not hang the caller, so give up after a moment.
            if tokio::time::timeout(Duration::from_secs(2), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
