//! The entitlement cache in front of the store: the check other services call sits in front of
//! every paid request, so it must not cost a database round trip each time.
//!
//! Correctness with several instances on one PostgreSQL: every write of a user's entitlement sends
//! `NOTIFY msr_entitlements '<user id>'` in its transaction; each instance `LISTEN`s and evicts
//! that user (its own writes included). While the listener is down the cache is bypassed and
//! cleared, so an instance never answers from entries it might not have heard about. On SQLite
//! (one instance) writes evict in-process. Writes made outside any instance (the `sync` command on
//! SQLite, hand edits) are bounded by `MSR_CACHE_TTL`. A reader that loaded from the store while an
//! eviction happened does not store what it read (the epoch check), so a stale entry cannot slip
//! in between a write's commit and its eviction. `as_of` in an answer is when its entry was read
//! from the store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};

use crate::domain::Entitlement;

/// The channel writes notify on.
pub const CHANNEL: &str = "msr_entitlements";

/// What the check needs of one user, as read from the store.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// `None`: no such user.
    pub known: bool,
    /// The stored entitlement.
    pub entitlement: Option<Entitlement>,
    /// Support's complimentary access.
    pub complimentary_until: Option<DateTime<Utc>>,
    /// When it was read.
    pub loaded_at: DateTime<Utc>,
}

/// The cache.
#[derive(Debug)]
pub struct EntitlementCache {
    entries: RwLock<HashMap<String, Arc<Snapshot>>>,
    epoch: AtomicU64,
    /// False while invalidations may be missed (PostgreSQL listener down): reads bypass the cache.
    healthy: AtomicBool,
    capacity: usize,
    ttl: chrono::Duration,
}

impl EntitlementCache {
    /// A cache of at most `capacity` users whose entries live at most `ttl` (`capacity` 0: off).
    pub fn new(capacity: usize, ttl: chrono::Duration, healthy: bool) -> Self {
        EntitlementCache {
            entries: RwLock::new(HashMap::new()),
            epoch: AtomicU64::new(0),
            healthy: AtomicBool::new(healthy),
            capacity,
            ttl,
        }
    }

    /// A fresh entry, if there is one and the cache can be trusted.
    pub fn get(&self, user: &str, now: DateTime<Utc>) -> Option<Arc<Snapshot>> {
        if self.capacity == 0 || !self.healthy.load(Ordering::Acquire) {
            return None;
        }
        let entries = self
            .entries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries
            .get(user)
            .filter(|s| now - s.loaded_at < self.ttl)
            .cloned()
    }

    /// The epoch to pass to [`EntitlementCache::put`]: read it before loading from the store.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Stores what was loaded, unless something was evicted since `epoch` was read.
    pub fn put(&self, user: &str, snapshot: Arc<Snapshot>, epoch: u64) {
        if self.capacity == 0 || !self.healthy.load(Ordering::Acquire) {
            return;
        }
        let mut entries = self
            .entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.epoch.load(Ordering::Acquire) != epoch {
            return;
        }
        if entries.len() >= self.capacity {
            // Crude but bounded: start over rather than track recency on every read.
            entries.clear();
        }
        entries.insert(user.to_owned(), snapshot);
    }

    /// Forgets one user (their entitlement changed).
    pub fn evict(&self, user: &str) {
        let mut entries = self
            .entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        entries.remove(user);
    }

    /// Forgets everyone and marks the cache trusted or not.
    pub fn reset(&self, healthy: bool) {
        let mut entries = self
            .entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        entries.clear();
        self.healthy.store(healthy, Ordering::Release);
    }

    /// How many users are cached.
    pub fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Listens for entitlement changes on PostgreSQL and evicts; reconnects (clearing the cache and
/// bypassing it meanwhile) when the connection breaks.
pub fn spawn_listener(cache: Arc<EntitlementCache>, url: String) {
    tokio::spawn(async move {
        loop {
            match sqlx::postgres::PgListener::connect(&url).await {
                Ok(mut listener) => {
                    if let Err(e) = listener.listen(CHANNEL).await {
                        tracing::warn!(error = %e, "cannot LISTEN for entitlement changes; cache off");
                    } else {
                        cache.reset(true);
                        loop {
                            match listener.try_recv().await {
                                Ok(Some(n)) => cache.evict(n.payload()),
                                // The connection dropped: anything may have been missed.
                                Ok(None) | Err(_) => {
                                    cache.reset(false);
                                    tracing::warn!(
                                        "entitlement change listener lost; cache off until it reconnects"
                                    );
                                    break;
                                }
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "entitlement change listener cannot connect; cache off")
                }
            }
            cache.reset(false);
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(at: DateTime<Utc>) -> Arc<Snapshot> {
        Arc::new(Snapshot {
            known: true,
            entitlement: None,
            complimentary_until: None,
            loaded_at: at,
        })
    }

    #[test]
    fn entries_expire_and_evictions_win_over_late_readers() {
        let cache = EntitlementCache::new(10, chrono::Duration::seconds(30), true);
        let now = Utc::now();
        let epoch = cache.epoch();
        cache.put("u", snap(now), epoch);
        assert!(cache.get("u", now).is_some());
        assert!(
            cache
                .get("u", now + chrono::Duration::seconds(31))
                .is_none(),
            "expired"
        );
        // A reader loads, a write evicts meanwhile: the reader's value is not stored.
        let reader_epoch = cache.epoch();
        cache.evict("u");
        cache.put("u", snap(now), reader_epoch);
        assert!(cache.get("u", now).is_none());
    }

    #[test]
    fn an_untrusted_cache_answers_nothing_and_capacity_is_bounded() {
        let cache = EntitlementCache::new(2, chrono::Duration::seconds(30), false);
        let now = Utc::now();
        cache.put("a", snap(now), cache.epoch());
        assert!(cache.get("a", now).is_none());
        cache.reset(true);
        for user in ["a", "b", "c"] {
            cache.put(user, snap(now), cache.epoch());
        }
        assert!(cache.len() <= 2);
    }
}
