//! Faults a test can switch on to see how the service copes with a misbehaving Stripe:
//! odd webhook deliveries (duplicates, reordering, bad signatures, delays, a paused
//! queue) and a failing API (500s, hangs, rate limiting).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One fault. Set from Rust with [`crate::Simulator::set_fault`] or over HTTP with
/// `POST /_sim/faults` and a JSON body such as `{"kind":"api_errors","count":2,
/// "path_prefix":"/v1/checkout/sessions"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Deliver every event twice (one after the other).
    DuplicateDeliveries,
    /// Deliver every event as `copies` simultaneous requests.
    ConcurrentCopies {
        /// Number of simultaneous copies (at least 1).
        copies: u32,
    },
    /// Deliver the next batch (the events of the next operation) in reverse order.
    ReverseNextBatch,
    /// Deliver the next batch in a random order.
    ShuffleNextBatch,
    /// Hold every delivery back by `delay_ms` after its event was emitted.
    DelayDeliveries {
        /// Delay in milliseconds.
        delay_ms: u64,
    },
    /// Sign with a timestamp 600 s in the past (outside the usual 300 s tolerance).
    StaleSignature,
    /// Change the body after signing it (`"livemode":false` becomes `true`).
    TamperBody,
    /// Sign with a secret other than the endpoint's.
    WrongSecret,
    /// Queue deliveries until [`crate::Simulator::flush_deliveries`] (or clearing faults).
    PauseDeliveries,
    /// The next `count` API requests (under `path_prefix`, if given) answer 500 `api_error`.
    ApiErrors {
        /// How many requests fail.
        count: u32,
        /// Only requests whose path starts with this (e.g. `/v1/subscriptions`).
        #[serde(default)]
        path_prefix: Option<String>,
    },
    /// The next `count` API requests (under `path_prefix`) wait `delay_ms` before answering.
    ApiHang {
        /// How many requests hang.
        count: u32,
        /// Only requests whose path starts with this.
        #[serde(default)]
        path_prefix: Option<String>,
        /// How long each waits, in milliseconds.
        delay_ms: u64,
    },
    /// Switch Stripe's test-mode rate limit (25 operations per second) on or off.
    RateLimit {
        /// On or off.
        on: bool,
    },
}

/// How the next batch is reordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reorder {
    /// Last event first.
    Reverse,
    /// Random order.
    Shuffle,
}

/// A counted API fault.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CountedFault {
    /// Requests still to be affected.
    pub remaining: u32,
    /// Path prefix filter.
    pub path_prefix: Option<String>,
    /// Hang duration (hang faults only).
    pub delay: Option<Duration>,
}

impl CountedFault {
    fn matches(&self, path: &str) -> bool {
        self.remaining > 0
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|p| path.starts_with(p))
    }
}

/// Every fault currently switched on.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FaultState {
    /// See [`Fault::DuplicateDeliveries`].
    pub duplicate: bool,
    /// See [`Fault::ConcurrentCopies`].
    pub concurrent_copies: Option<u32>,
    /// See [`Fault::ReverseNextBatch`] / [`Fault::ShuffleNextBatch`].
    pub reorder_next: Option<Reorder>,
    /// See [`Fault::DelayDeliveries`].
    pub delay: Option<Duration>,
    /// See [`Fault::StaleSignature`].
    pub stale_signature: bool,
    /// See [`Fault::TamperBody`].
    pub tamper_body: bool,
    /// See [`Fault::WrongSecret`].
    pub wrong_secret: bool,
    /// See [`Fault::PauseDeliveries`].
    pub paused: bool,
    /// See [`Fault::ApiErrors`].
    pub api_errors: Vec<CountedFault>,
    /// See [`Fault::ApiHang`].
    pub api_hangs: Vec<CountedFault>,
    /// See [`Fault::RateLimit`].
    pub rate_limit: bool,
}

impl FaultState {
    /// Switches one fault on (or, for `RateLimit { on: false }`, off).
    pub fn apply(&mut self, f: Fault) {
        match f {
            Fault::DuplicateDeliveries => self.duplicate = true,
            Fault::ConcurrentCopies { copies } => self.concurrent_copies = Some(copies.max(1)),
            Fault::ReverseNextBatch => self.reorder_next = Some(Reorder::Reverse),
            Fault::ShuffleNextBatch => self.reorder_next = Some(Reorder::Shuffle),
            Fault::DelayDeliveries { delay_ms } => {
                self.delay = Some(Duration::from_millis(delay_ms))
            }
            Fault::StaleSignature => self.stale_signature = true,
            Fault::TamperBody => self.tamper_body = true,
            Fault::WrongSecret => self.wrong_secret = true,
            Fault::PauseDeliveries => self.paused = true,
            Fault::ApiErrors { count, path_prefix } => {
                self.api_errors.push(CountedFault {
                    remaining: count,
                    path_prefix,
                    delay: None,
                });
            }
            Fault::ApiHang {
                count,
                path_prefix,
                delay_ms,
            } => self.api_hangs.push(CountedFault {
                remaining: count,
                path_prefix,
                delay: Some(Duration::from_millis(delay_ms)),
            }),
            Fault::RateLimit { on } => self.rate_limit = on,
        }
    }

    /// Consumes one injected 500 for this path, if one is armed.
    pub fn take_api_error(&mut self, path: &str) -> bool {
        take(&mut self.api_errors, path).is_some()
    }

    /// Consumes one injected hang for this path, returning how long to wait.
    pub fn take_api_hang(&mut self, path: &str) -> Option<Duration> {
        take(&mut self.api_hangs, path).and_then(|f| f.delay)
    }
}

fn take(list: &mut Vec<CountedFault>, path: &str) -> Option<CountedFault> {
    let f = list.iter_mut().find(|f| f.matches(path))?;
    f.remaining -= 1;
    let taken = f.clone();
    list.retain(|f| f.remaining > 0);
    Some(taken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_faults_respect_prefix_and_count() {
        let mut s = FaultState::default();
        s.apply(Fault::ApiErrors {
            count: 2,
            path_prefix: Some("/v1/subscriptions".into()),
        });
        assert!(!s.take_api_error("/v1/customers"));
        assert!(s.take_api_error("/v1/subscriptions/sub_1"));
        assert!(s.take_api_error("/v1/subscriptions"));
        assert!(!s.take_api_error("/v1/subscriptions"));
    }

    #[test]
    fn faults_parse_from_json() {
        let f: Fault =
            serde_json::from_str(r#"{"kind":"api_hang","count":1,"delay_ms":50}"#).unwrap();
        assert_eq!(
            f,
            Fault::ApiHang {
                count: 1,
                path_prefix: None,
                delay_ms: 50
            }
        );
        let f: Fault = serde_json::from_str(r#"{"kind":"reverse_next_batch"}"#).unwrap();
        assert_eq!(f, Fault::ReverseNextBatch);
    }
}
