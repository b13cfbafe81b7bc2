//! Webhook delivery: signed POSTs of each event to every endpoint, in emission order,
//! from one background dispatcher task. The dispatcher waits for each first attempt to
//! *finish* (so order is kept on a healthy receiver) but never for it to *succeed*: a
//! failure is retried by its own task with exponential backoff while the queue moves on.
//!
//! The dispatcher starts on demand, or a caller runs it under its own supervision
//! ([`crate::Simulator::run_delivery`]): then a run that panics or is stopped gives the queue
//! back, and the next run delivers the event it was on again before the rest (at least once, as
//! Stripe does).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::mpsc;

use crate::engine::{State, wall_clock};
use crate::faults::{FaultState, Reorder};

/// Where events are sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEndpoint {
    /// Full URL of the receiver.
    pub url: String,
    /// Signing secret, `whsec_...`; the whole string is the HMAC key.
    pub secret: String,
}

/// Retry behaviour of deliveries.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// Attempts per event and endpoint, the first included.
    pub max_attempts: u32,
    /// Wait before the second attempt; doubled for each further one.
    pub backoff: Duration,
    /// A receiver slower than this counts as failed.
    pub timeout: Duration,
}

/// One delivery attempt, for the delivery log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryRecord {
    /// Event id.
    pub event_id: String,
    /// Event type.
    pub event_type: String,
    /// Endpoint URL.
    pub endpoint: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// HTTP status, if the receiver answered.
    pub status: Option<u16>,
    /// Transport error or timeout, if it did not.
    pub error: Option<String>,
    /// Wall-clock unix seconds of the attempt.
    pub at: i64,
}

/// Computes the `Stripe-Signature` header value for a body.
pub fn signature_header(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", sign(secret, timestamp, body))
}

fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail; an empty string is a
    // harmless fallback that makes verification fail rather than the simulator panic.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[derive(Clone)]
struct Job {
    event: Value,
    not_before: Option<Instant>,
}

/// Shared by the simulator and its background tasks.
pub(crate) struct Deliverer {
    state: Arc<Mutex<State>>,
    faults: Arc<Mutex<FaultState>>,
    endpoints: Mutex<Vec<WebhookEndpoint>>,
    settings: DeliverySettings,
    log: Mutex<Vec<DeliveryRecord>>,
    /// Events held back by the pause fault.
    held: Mutex<Vec<Value>>,
    /// Events (not attempts) whose delivery, retries included, is not finished.
    in_flight: AtomicUsize,
    sender: Mutex<Option<mpsc::UnboundedSender<Job>>>,
    /// The queue's receiving end while no supervised run holds it.
    parked: Mutex<Option<mpsc::UnboundedReceiver<Job>>>,
    /// The job a dispatcher is on, until its first attempts are done.
    current: Mutex<Option<Job>>,
    /// A caller runs the dispatcher ([`Deliverer::run`]): none is started on demand.
    supervised: AtomicBool,
    client: reqwest::Client,
}

/// Gives a supervised run's receiver back when the run ends, however it ends.
struct Parking {
    deliverer: Arc<Deliverer>,
    rx: Option<mpsc::UnboundedReceiver<Job>>,
}

impl Drop for Parking {
    fn drop(&mut self) {
        if let Some(rx) = self.rx.take() {
            *lock(&self.deliverer.parked) = Some(rx);
        }
    }
}

/// One job's first attempts, ended: `done`, or cut off with its run (which keeps it as the
/// current job, in flight, for the next run to deliver again).
struct Delivering<'a> {
    deliverer: &'a Deliverer,
    done: bool,
}

impl Drop for Delivering<'_> {
    fn drop(&mut self) {
        if self.done {
            *lock(&self.deliverer.current) = None;
            self.deliverer.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Deliverer {
    pub(crate) fn new(
        state: Arc<Mutex<State>>,
        faults: Arc<Mutex<FaultState>>,
        endpoints: Vec<WebhookEndpoint>,
        settings: DeliverySettings,
    ) -> Deliverer {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            // Stripe treats a redirect as a failed delivery; following one would also let a
            // loopback endpoint (all the control API accepts) forward signed events elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Deliverer {
            state,
            faults,
            endpoints: Mutex::new(endpoints),
            settings,
            log: Mutex::new(Vec::new()),
            held: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            sender: Mutex::new(None),
            parked: Mutex::new(None),
            current: Mutex::new(None),
            supervised: AtomicBool::new(false),
            client,
        }
    }

    pub(crate) fn set_endpoints(&self, eps: Vec<WebhookEndpoint>) {
        let n = eps.len();
        *lock(&self.endpoints) = eps;
        lock(&self.state).settings.webhook_endpoints = i64::try_from(n).unwrap_or(0);
    }

    pub(crate) fn endpoints(&self) -> Vec<WebhookEndpoint> {
        lock(&self.endpoints).clone()
    }

    pub(crate) fn log(&self) -> Vec<DeliveryRecord> {
        lock(&self.log).clone()
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst) + lock(&self.held).len()
    }

    /// Hands one operation's events to delivery (the unit the reorder faults act on).
    pub(crate) fn enqueue(self: &Arc<Self>, mut batch: Vec<Value>) {
        if batch.is_empty() {
            return;
        }
        let (paused, reorder, delay) = {
            let mut f = lock(&self.faults);
            (
                f.paused,
                if f.paused {
                    None
                } else {
                    f.reorder_next.take()
                },
                f.delay,
            )
        };
        if paused {
            lock(&self.held).extend(batch);
            return;
        }
        match reorder {
            Some(Reorder::Reverse) => batch.reverse(),
            Some(Reorder::Shuffle) => {
                use rand::seq::SliceRandom;
                batch.shuffle(&mut rand::rng());
            }
            None => {}
        }
        let not_before = delay.map(|d| Instant::now() + d);
        for event in batch {
            self.in_flight.fetch_add(1, Ordering::SeqCst);
            let job = Job { event, not_before };
            if let Err(mpsc::error::SendError(job)) = self.send(job) {
                // No runtime to deliver from: keep the event for the next flush.
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                lock(&self.held).push(job.event);
            }
        }
    }

    /// Releases events held by the pause fault.
    pub(crate) fn flush(self: &Arc<Self>) {
        let held = std::mem::take(&mut *lock(&self.held));
        self.enqueue(held);
    }

    fn send(self: &Arc<Self>, job: Job) -> Result<(), mpsc::error::SendError<Job>> {
        let mut sender = lock(&self.sender);
        if let Some(tx) = sender.as_ref()
            && !tx.is_closed()
        {
            return tx.send(job);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        if self.supervised.load(Ordering::SeqCst) {
            // The supervised run takes the queue when it (re)starts.
            *lock(&self.parked) = Some(rx);
        } else {
            let Ok(handle) = tokio::runtime::Handle::try_current() else {
                return Err(mpsc::error::SendError(job));
            };
            let me = Arc::clone(self);
            handle.spawn(async move {
                let mut rx = rx;
                me.dispatch(&mut rx).await;
            });
        }
        let result = tx.send(job);
        *sender = Some(tx);
        result
    }

    /// Runs the dispatcher until it is stopped (dropped), for a caller that supervises it. An
    /// event the last run was on when it ended is delivered again first.
    pub(crate) async fn run(self: Arc<Self>) {
        self.supervised.store(true, Ordering::SeqCst);
        let rx = {
            let mut sender = lock(&self.sender);
            match lock(&self.parked).take() {
                Some(rx) => rx,
                None => {
                    // The first run: a dispatcher started on demand before it (if any) finishes
                    // the old queue and ends when its sender is dropped here.
                    let (tx, rx) = mpsc::unbounded_channel();
                    *sender = Some(tx);
                    rx
                }
            }
        };
        let mut parking = Parking {
            deliverer: Arc::clone(&self),
            rx: Some(rx),
        };
        let interrupted = lock(&self.current).clone();
        if let Some(job) = interrupted {
            self.deliver_job(job).await;
        }
        if let Some(rx) = parking.rx.as_mut() {
            self.dispatch(rx).await;
        }
    }

    async fn dispatch(self: &Arc<Self>, rx: &mut mpsc::UnboundedReceiver<Job>) {
        while let Some(job) = rx.recv().await {
            self.deliver_job(job).await;
        }
    }

    /// Every first attempt of one job (an event to every endpoint).
    async fn deliver_job(self: &Arc<Self>, job: Job) {
        *lock(&self.current) = Some(job.clone());
        let mut delivering = Delivering {
            deliverer: self,
            done: false,
        };
        {
            if let Some(at) = job.not_before {
                tokio::time::sleep_until(at.into()).await;
            }
            let endpoints = self.endpoints();
            let (duplicate, copies) = {
                let f = lock(&self.faults);
                (f.duplicate, f.concurrent_copies.unwrap_or(1))
            };
            let mut firsts = Vec::new();
            for ep in &endpoints {
                for _ in 0..copies {
                    firsts.push(
                        self.clone()
                            .deliver_with_retries(job.event.clone(), ep.clone()),
                    );
                }
            }
            // Wait for every first attempt; retries continue in their own tasks.
            futures::future::join_all(firsts).await;
            if duplicate {
                let again: Vec<_> = endpoints
                    .iter()
                    .map(|ep| {
                        self.clone()
                            .deliver_with_retries(job.event.clone(), ep.clone())
                    })
                    .collect();
                futures::future::join_all(again).await;
            }
        }
        delivering.done = true;
    }

    /// First attempt now; if it fails, a task retries with backoff.
    async fn deliver_with_retries(self: Arc<Self>, event: Value, ep: WebhookEndpoint) {
        if self.attempt(&event, &ep, 1).await {
            return;
        }
        if self.settings.max_attempts <= 1 {
            return;
        }
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let me = Arc::clone(&self);
        tokio::spawn(async move {
            let mut wait = me.settings.backoff;
            for attempt in 2..=me.settings.max_attempts {
                tokio::time::sleep(wait).await;
                if me.attempt(&event, &ep, attempt).await {
                    break;
                }
                wait = wait.saturating_mul(2);
            }
            me.in_flight.fetch_sub(1, Ordering::SeqCst);
        });
    }

    async fn attempt(&self, event: &Value, ep: &WebhookEndpoint, attempt: u32) -> bool {
        let (stale, tamper, wrong) = {
            let f = lock(&self.faults);
            (f.stale_signature, f.tamper_body, f.wrong_secret)
        };
        let body = serde_json::to_string(event).unwrap_or_default();
        let now = wall_clock();
        let t = if stale { now - 600 } else { now };
        let secret = if wrong {
            "whsec_simulator_wrong_secret"
        } else {
            ep.secret.as_str()
        };
        let header = signature_header(secret, t, body.as_bytes());
        let body = if tamper {
            body.replacen("\"livemode\":false", "\"livemode\":true", 1)
        } else {
            body
        };
        let result = self
            .client
            .post(&ep.url)
            .header("content-type", "application/json")
            .header("stripe-signature", header)
            .header(
                "user-agent",
                "Stripe/1.0 (+https://stripe.com/docs/webhooks) msr-stripe-sim",
            )
            .body(body)
            .send()
            .await;
        let event_id = event["id"].as_str().unwrap_or_default().to_string();
        let (status, error) = match &result {
            Ok(resp) => (Some(resp.status().as_u16()), None),
            Err(e) => (
                None,
                Some(if e.is_timeout() {
                    "timeout".to_string()
                } else {
                    e.to_string()
                }),
            ),
        };
        let ok = status.is_some_and(|s| (200..300).contains(&s));
        tracing::debug!(event_id, endpoint = %ep.url, attempt, ?status, "webhook delivery");
        lock(&self.log).push(DeliveryRecord {
            event_id: event_id.clone(),
            event_type: event["type"].as_str().unwrap_or_default().to_string(),
            endpoint: ep.url.clone(),
            attempt,
            status,
            error,
            at: now,
        });
        if ok {
            lock(&self.state).mark_delivered(&event_id);
        }
        ok
    }
}

/// Locks a mutex, recovering from poisoning: the state stays usable for inspection
/// even after a panic in another test thread.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_stripe_documented_scheme() {
        // HMAC-SHA256 of "t.body" keyed with the whole whsec_ string, hex encoded.
        let h = signature_header("whsec_test", 1_700_000_000, b"{}");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"whsec_test").unwrap();
        mac.update(b"1700000000.{}");
        let expected = hex::encode(mac.finalize().into_bytes());
        assert_eq!(h, format!("t=1700000000,v1={expected}"));
    }
}
