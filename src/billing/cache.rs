//! The entitlement cache in front of the store: the check other services call sits in front of
//! every paid request, so it must not cost a database round trip each time.
//!
//! It is a mirror of the users and entitlements tables, kept compact (about 100 bytes a user):
//! - **Filled ahead**: a background pass reads every user (in keyset chunks) at start and then every
//!   half `MSR_CACHE_TTL`, so a check finds its user loaded whatever the number of users, and a miss
//!   (a user created since the last pass) costs one query.
//! - **Own writes**: every write of a user's entitlement (or complimentary access, or the user
//!   itself) evicts that user after its commit, in this process.
//! - **Other instances** (PostgreSQL): every such write sends `NOTIFY msr_entitlements '<user id>'` in
//!   its transaction; each instance `LISTEN`s and evicts that user. While the listener is down the
//!   cache is bypassed and cleared, so an instance never answers from entries it might not have heard
//!   about.
//! - **Writes outside any instance** (the `sync` command beside a server on SQLite, hand edits) are
//!   bounded by `MSR_CACHE_TTL`: an entry older than that is never answered from.
//! - **No stale refill**: an eviction leaves a tombstone numbered from a global sequence; a reader
//!   (one user or the whole pass) takes the sequence number before it reads the store and may store
//!   what it read only over tombstones older than that, so a value read before a write's commit
//!   cannot land after the write's eviction.
//!
//! `as_of` in an answer is when its entry was read from the store.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};

use crate::db::from_unix;
use crate::domain::{Entitlement, EntitlementStatus, Plan, StripeStatus};

/// The channel writes notify on.
pub use crate::db::entitlements::CHANNEL;

/// Shards of the map: readers on different cores rarely touch the same lock.
const SHARDS: usize = 32;

/// What the check needs of one user, as read from the store (or the cache, which keeps all but the
/// subscription id and the row's `updated_at`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// False: no such user.
    pub known: bool,
    /// The stored entitlement.
    pub entitlement: Option<Entitlement>,
    /// Support's complimentary access.
    pub complimentary_until: Option<DateTime<Utc>>,
    /// When it was read.
    pub loaded_at: DateTime<Utc>,
}

/// Unix seconds, `NONE` for absent: the cached form of an optional time.
const NONE: i64 = i64::MIN;

fn pack_time(t: Option<DateTime<Utc>>) -> i64 {
    t.map_or(NONE, |t| t.timestamp())
}

fn unpack_time(t: i64) -> Option<DateTime<Utc>> {
    (t != NONE).then(|| from_unix(t))
}

const KNOWN: u8 = 1;
const PAUSE: u8 = 2;
const CANCEL_AT_END: u8 = 4;
const ACTION_REQUIRED: u8 = 8;
const TOMBSTONE: u8 = 16;

/// One user's slot in 40 bytes: what the decision needs (not the subscription id, nor when the
/// row changed: whoever shows those reads the store), or a tombstone left by an eviction.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// When it was read (unix seconds); for a tombstone, the eviction's sequence number.
    stamp: i64,
    current_period_end: i64,
    past_due_since: i64,
    complimentary_until: i64,
    /// `None`: the user never subscribed.
    status: Option<EntitlementStatus>,
    stripe_status: StripeStatus,
    plan: Option<Plan>,
    flags: u8,
}

impl Slot {
    fn tombstone(sequence: u64) -> Slot {
        Slot {
            stamp: i64::try_from(sequence).unwrap_or(i64::MAX),
            current_period_end: NONE,
            past_due_since: NONE,
            complimentary_until: NONE,
            status: None,
            stripe_status: StripeStatus::Canceled,
            plan: None,
            flags: TOMBSTONE,
        }
    }

    fn is_tombstone(&self) -> bool {
        self.flags & TOMBSTONE != 0
    }

    fn pack(s: &Snapshot) -> Slot {
        let e = s.entitlement.as_ref();
        let flag = |on: bool, bit: u8| if on { bit } else { 0 };
        Slot {
            stamp: s.loaded_at.timestamp(),
            current_period_end: pack_time(e.and_then(|e| e.current_period_end)),
            past_due_since: pack_time(e.and_then(|e| e.past_due_since)),
            complimentary_until: pack_time(s.complimentary_until),
            status: e.map(|e| e.status),
            stripe_status: e.map_or(StripeStatus::Canceled, |e| e.stripe_status),
            plan: e.and_then(|e| e.plan),
            flags: flag(s.known, KNOWN)
                | flag(e.is_some_and(|e| e.pause_active), PAUSE)
                | flag(e.is_some_and(|e| e.cancel_at_period_end), CANCEL_AT_END)
                | flag(e.is_some_and(|e| e.action_required), ACTION_REQUIRED),
        }
    }

    fn unpack(&self) -> Snapshot {
        let loaded_at = from_unix(self.stamp);
        Snapshot {
            known: self.flags & KNOWN != 0,
            complimentary_until: unpack_time(self.complimentary_until),
            loaded_at,
            entitlement: self.status.map(|status| Entitlement {
                status,
                stripe_status: self.stripe_status,
                pause_active: self.flags & PAUSE != 0,
                plan: self.plan,
                stripe_subscription_id: None,
                current_period_end: unpack_time(self.current_period_end),
                cancel_at_period_end: self.flags & CANCEL_AT_END != 0,
                past_due_since: unpack_time(self.past_due_since),
                action_required: self.flags & ACTION_REQUIRED != 0,
                updated_at: loaded_at,
            }),
        }
    }
}

/// A user id's 128-bit keyed hash: the map holds no strings (two SipHash-1-3 under independent
/// random keys; a collision among a million users has a chance of about 2^-88).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key(u64, u64);

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.0);
    }
}

/// The key is a random hash already: its first half indexes the table as it is.
#[derive(Debug, Default, Clone, Copy)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Not used by `Key`; a plain fold keeps the trait honest.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Map = HashMap<Key, Slot, std::hash::BuildHasherDefault<KeyHasher>>;
type Shard = RwLock<Map>;

/// The cache.
#[derive(Debug)]
pub struct EntitlementCache {
    shards: Box<[Shard]>,
    keys: [std::collections::hash_map::RandomState; 2],
    /// Numbers evictions; see the module documentation.
    sequence: AtomicU64,
    /// The sequence number at the last [`EntitlementCache::reset`]: reads taken before it are
    /// not stored (it leaves no tombstones).
    cleared: AtomicU64,
    /// Slots in use (entries and tombstones), bounded by `capacity`.
    len: AtomicUsize,
    /// False while invalidations may be missed (PostgreSQL listener down): reads bypass the cache.
    healthy: AtomicBool,
    capacity: usize,
    ttl: chrono::Duration,
    /// How often the fill renews the entries: half the TTL, at least a second.
    refill_every: std::time::Duration,
    /// Wakes the fill when the cache becomes trusted again (it was cleared).
    refill: tokio::sync::Notify,
}

fn lock_read(shard: &Shard) -> std::sync::RwLockReadGuard<'_, Map> {
    shard
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn lock_write(shard: &Shard) -> std::sync::RwLockWriteGuard<'_, Map> {
    shard
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl EntitlementCache {
    /// A cache of at most `capacity` users whose entries are answered from for at most `ttl`
    /// (`capacity` 0: off).
    pub fn new(capacity: usize, ttl: std::time::Duration, healthy: bool) -> Self {
        EntitlementCache {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            keys: [
                std::collections::hash_map::RandomState::new(),
                std::collections::hash_map::RandomState::new(),
            ],
            sequence: AtomicU64::new(0),
            cleared: AtomicU64::new(0),
            len: AtomicUsize::new(0),
            healthy: AtomicBool::new(healthy),
            capacity,
            ttl: crate::config::as_chrono(ttl),
            refill_every: (ttl / 2).max(std::time::Duration::from_secs(1)),
            refill: tokio::sync::Notify::new(),
        }
    }

    fn locate(&self, user: &str) -> (&Shard, Key) {
        let key = Key(self.keys[0].hash_one(user), self.keys[1].hash_one(user));
        // SHARDS is a power of two; the second half picks the shard, the first the bucket.
        (&self.shards[(key.1 as usize) % SHARDS], key)
    }

    /// Whether answers may come from here now.
    pub fn enabled(&self) -> bool {
        self.capacity > 0 && self.healthy.load(Ordering::Acquire)
    }

    /// How long entries are answered from: the bound on writes no instance told us about.
    pub fn ttl(&self) -> chrono::Duration {
        self.ttl
    }

    /// A fresh entry, if there is one and the cache can be trusted. It carries what the decision
    /// needs: not the subscription id, and the row's `updated_at` reads as when it was loaded.
    pub fn get(&self, user: &str, now: DateTime<Utc>) -> Option<Snapshot> {
        if !self.enabled() {
            return None;
        }
        let oldest = (now - self.ttl).timestamp();
        let (shard, key) = self.locate(user);
        let slot = *lock_read(shard).get(&key)?;
        (!slot.is_tombstone() && slot.stamp > oldest).then(|| slot.unpack())
    }

    /// The sequence number to pass to [`EntitlementCache::put`]: take it before reading the store.
    pub fn sequence(&self) -> u64 {
        self.sequence.load(Ordering::Acquire)
    }

    /// Stores what was read from the store after `sequence` was taken, unless the user was evicted
    /// since (a tombstone newer than `sequence`) or a newer read is already there. New users are
    /// not added once `capacity` slots are in use.
    pub fn put(&self, user: &str, snapshot: &Snapshot, sequence: u64) {
        if !self.enabled() {
            return;
        }
        let (shard, key) = self.locate(user);
        let mut shard = lock_write(shard);
        // Read under the shard's lock: a reset marks before it clears each shard.
        if sequence < self.cleared.load(Ordering::Acquire) {
            return;
        }
        match shard.get_mut(&key) {
            Some(slot) if slot.is_tombstone() && slot.stamp as u64 > sequence => {}
            Some(slot) if !slot.is_tombstone() && slot.stamp > snapshot.loaded_at.timestamp() => {}
            Some(slot) => *slot = Slot::pack(snapshot),
            None => {
                if self.len.load(Ordering::Relaxed) < self.capacity {
                    self.len.fetch_add(1, Ordering::Relaxed);
                    shard.insert(key, Slot::pack(snapshot));
                }
            }
        }
    }

    /// Forgets one user (their entitlement changed): a tombstone stops any read that started
    /// before now from storing what it read.
    pub fn evict(&self, user: &str) {
        if self.capacity == 0 {
            // Off: nothing is ever stored, so there is no read to stop.
            return;
        }
        let (shard, key) = self.locate(user);
        let mut shard = lock_write(shard);
        let sequence = self.sequence.fetch_add(1, Ordering::AcqRel) + 1;
        match shard.get_mut(&key) {
            Some(slot) => *slot = Slot::tombstone(sequence),
            None => {
                // A reader of this user may be on its way: the tombstone must exist even so
                // (it may exceed the capacity by the readers in flight; the next pass replaces it).
                self.len.fetch_add(1, Ordering::Relaxed);
                shard.insert(key, Slot::tombstone(sequence));
            }
        }
    }

    /// Forgets everyone and marks the cache trusted or not.
    pub fn reset(&self, healthy: bool) {
        let cleared = self.sequence.fetch_add(1, Ordering::AcqRel) + 1;
        self.cleared.store(cleared, Ordering::Release);
        for shard in self.shards.iter() {
            let mut shard = lock_write(shard);
            self.len.fetch_sub(shard.len(), Ordering::Relaxed);
            shard.clear();
            shard.shrink_to_fit();
        }
        self.healthy.store(healthy, Ordering::Release);
        if healthy {
            self.refill.notify_one();
        }
    }

    /// Makes room for `users` in all, so a fill does not grow the tables step by step (each step
    /// leaves the old table's memory behind for a while).
    pub fn reserve(&self, users: usize) {
        let users = users.min(self.capacity);
        let per_shard = users / SHARDS + users / SHARDS / 16 + 1;
        for shard in self.shards.iter() {
            let mut shard = lock_write(shard);
            let more = per_shard.saturating_sub(shard.len());
            shard.reserve(more);
        }
    }

    /// How many users (and tombstones) are held.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads one user from the store into the cache (a miss) and returns what was read.
pub async fn load(
    cache: &EntitlementCache,
    pool: &sqlx::AnyPool,
    user: &crate::domain::UserId,
    now: DateTime<Utc>,
) -> Result<Snapshot, sqlx::Error> {
    let sequence = cache.sequence();
    let found = crate::db::entitlements::find_for_check(pool, user).await?;
    let snapshot = Snapshot {
        known: found.is_some(),
        complimentary_until: found.as_ref().and_then(|(c, _)| *c),
        entitlement: found.and_then(|(_, e)| e),
        loaded_at: now,
    };
    // Unknown ids are not kept: anyone can ask about a million made-up ones, and each would take a
    // slot for good. Asking again costs one indexed read (the answer is a 404).
    if snapshot.known {
        cache.put(user.as_str(), &snapshot, sequence);
    }
    Ok(snapshot)
}

/// Reads every user into the cache, in chunks (short read transactions), up to its capacity.
/// Returns how many users were read.
pub async fn fill(cache: &EntitlementCache, pool: &sqlx::AnyPool) -> Result<usize, sqlx::Error> {
    const CHUNK: i64 = 1_000;
    let mut after = String::new();
    let mut read = 0;
    if cache.enabled() {
        cache.reserve(crate::db::users::count(pool).await?);
    }
    while cache.enabled() && read < cache.capacity {
        let sequence = cache.sequence();
        let now = Utc::now();
        let rows = crate::db::entitlements::all_for_check(pool, &after, CHUNK).await?;
        let Some((last, _, _)) = rows.last() else {
            break;
        };
        after = last.clone();
        read += rows.len();
        let full = rows.len() as i64 == CHUNK;
        for (user, complimentary, entitlement) in rows {
            let snapshot = Snapshot {
                known: true,
                complimentary_until: complimentary,
                entitlement,
                loaded_at: now,
            };
            cache.put(&user, &snapshot, sequence);
        }
        if !full {
            break;
        }
        // Let requests run between chunks.
        tokio::task::yield_now().await;
    }
    Ok(read)
}

/// Fills the cache now, again every half TTL (so entries are renewed before they expire), and
/// whenever it was cleared and is trusted again (the PostgreSQL listener reconnected).
pub fn spawn_filler(
    tasks: &crate::tasks::Supervisor,
    cache: Arc<EntitlementCache>,
    pool: sqlx::AnyPool,
) {
    if cache.capacity == 0 {
        return;
    }
    let every = cache.refill_every;
    tasks.spawn("cache-fill", move || {
        let (cache, pool) = (cache.clone(), pool.clone());
        async move {
            loop {
                let started = std::time::Instant::now();
                match fill(&cache, &pool).await {
                    Ok(n) => tracing::debug!(
                        users = n,
                        ms = started.elapsed().as_millis() as u64,
                        "entitlement cache filled"
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "entitlement cache fill failed; will try again")
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = cache.refill.notified() => {}
                }
            }
        }
    });
}

/// Listens for entitlement changes on PostgreSQL and evicts; reconnects (clearing the cache and
/// bypassing it meanwhile) when the connection breaks.
pub fn spawn_listener(tasks: &crate::tasks::Supervisor, cache: Arc<EntitlementCache>, url: String) {
    tasks.spawn("cache-listener", move || {
        let (cache, url) = (cache.clone(), url.clone());
        async move {
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
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(at: DateTime<Utc>) -> Snapshot {
        Snapshot {
            known: true,
            entitlement: Some(Entitlement {
                status: EntitlementStatus::PastDue,
                stripe_status: StripeStatus::PastDue,
                pause_active: true,
                plan: Some(Plan::Weekly),
                // Not kept by the cache; `updated_at` reads as the load time.
                stripe_subscription_id: None,
                current_period_end: Some(from_unix(at.timestamp() + 60)),
                cancel_at_period_end: false,
                past_due_since: Some(from_unix(at.timestamp() - 60)),
                action_required: true,
                updated_at: from_unix(at.timestamp()),
            }),
            complimentary_until: None,
            loaded_at: from_unix(at.timestamp()),
        }
    }

    #[test]
    fn entries_round_trip_and_expire() {
        let cache = EntitlementCache::new(10, std::time::Duration::from_secs(30), true);
        let now = Utc::now();
        cache.put("u", &snap(now), cache.sequence());
        assert_eq!(cache.get("u", now), Some(snap(now)));
        assert!(
            cache
                .get("u", now + chrono::Duration::seconds(31))
                .is_none(),
            "expired"
        );
    }

    #[test]
    fn an_eviction_wins_over_a_read_that_started_before_it() {
        let cache = EntitlementCache::new(10, std::time::Duration::from_secs(30), true);
        let now = Utc::now();
        // A reader takes the sequence and reads; a write evicts meanwhile: the read is not stored.
        let reader = cache.sequence();
        cache.evict("u");
        cache.put("u", &snap(now), reader);
        assert!(cache.get("u", now).is_none());
        // The same for a user who was cached before.
        cache.put("v", &snap(now), cache.sequence());
        let reader = cache.sequence();
        cache.evict("v");
        cache.put("v", &snap(now), reader);
        assert!(cache.get("v", now).is_none());
        // A read that started after the eviction is stored; evicting another user does not matter.
        let reader = cache.sequence();
        cache.evict("other");
        cache.put("u", &snap(now), reader);
        assert!(cache.get("u", now).is_some());
        // An older read does not replace a newer one.
        cache.put(
            "u",
            &snap(now - chrono::Duration::seconds(5)),
            cache.sequence(),
        );
        assert_eq!(cache.get("u", now), Some(snap(now)));
    }

    #[test]
    fn an_untrusted_cache_answers_nothing_and_capacity_is_bounded() {
        let cache = EntitlementCache::new(2, std::time::Duration::from_secs(30), false);
        let now = Utc::now();
        cache.put("a", &snap(now), cache.sequence());
        assert!(cache.get("a", now).is_none());
        cache.reset(true);
        for user in ["a", "b", "c"] {
            cache.put(user, &snap(now), cache.sequence());
        }
        assert_eq!(cache.len(), 2);
        assert!(cache.get("c", now).is_none());
        cache.reset(true);
        assert!(cache.is_empty());
        // A read taken before a reset is not stored after it.
        let reader = cache.sequence();
        cache.reset(true);
        cache.put("a", &snap(now), reader);
        assert!(cache.get("a", now).is_none());
    }
}
