//! Per-user limits on the pages that call Stripe for the caller (the portal button, the return
//! page's polling). Stripe's rate limit is shared by every owner: one owner's script must not spend
//! it for all. Token buckets in memory, per instance; a refused call is 429 with `Retry-After`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::domain::UserId;
use crate::error::AppError;

/// What is limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limited {
    /// Opening the customer portal (a Stripe session each time).
    Portal,
    /// The Checkout return page and its polls (each may fetch the session from Stripe).
    Return,
}

impl Limited {
    /// (burst, calls a second afterwards).
    fn rate(self) -> (f64, f64) {
        match self {
            // A person opens the portal a few times a minute at most.
            Limited::Portal => (5.0, 0.1),
            // The return page polls once a second; two tabs still fit.
            Limited::Return => (30.0, 2.0),
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// How many buckets are kept before full ones are forgotten.
const PRUNE_ABOVE: usize = 50_000;

/// Every user's buckets, and the server-side count of each Checkout Session's return polls.
#[derive(Debug, Default)]
pub struct UserLimits {
    buckets: Mutex<HashMap<(Limited, UserId), Bucket>>,
    polls: Mutex<HashMap<String, u32>>,
}

impl UserLimits {
    /// Takes one call of `kind` for `user`, or says when the next one is allowed (429).
    pub fn take(&self, kind: Limited, user: &UserId) -> Result<(), AppError> {
        let (burst, per_sec) = kind.rate();
        let now = Instant::now();
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() > PRUNE_ABOVE {
            buckets
                .retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * per_sec < burst);
        }
        let bucket = buckets.entry((kind, user.clone())).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        bucket.tokens =
            (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * per_sec).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - bucket.tokens) / per_sec).ceil().max(1.0);
        Err(AppError::TooManyRequests {
            retry_after_secs: wait as u64,
        })
    }

    /// Counts one more return poll of a Checkout Session and answers the count so far (this one
    /// included). The count is the server's, whatever the page says.
    pub fn poll(&self, session_id: &str) -> u32 {
        let mut polls = self
            .polls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if polls.len() > PRUNE_ABOVE {
            polls.clear();
        }
        let n = polls.entry(session_id.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_refused_with_the_wait() {
        let limits = UserLimits::default();
        let user = UserId::parse("u1").unwrap();
        for _ in 0..5 {
            limits.take(Limited::Portal, &user).unwrap();
        }
        match limits.take(Limited::Portal, &user) {
            Err(AppError::TooManyRequests { retry_after_secs }) => {
                assert!((1..=10).contains(&retry_after_secs), "{retry_after_secs}")
            }
            other => panic!("{other:?}"),
        }
        // Another user, and another kind, have buckets of their own.
        limits
            .take(Limited::Portal, &UserId::parse("u2").unwrap())
            .unwrap();
        limits.take(Limited::Return, &user).unwrap();
    }

    #[test]
    fn polls_are_counted_per_session() {
        let limits = UserLimits::default();
        assert_eq!(limits.poll("cs_1"), 1);
        assert_eq!(limits.poll("cs_1"), 2);
        assert_eq!(limits.poll("cs_2"), 1);
    }
}
