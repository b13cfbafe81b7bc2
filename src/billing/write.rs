//! The one write path of subscription changes: whatever brought them (a webhook, a batch of them, a
//! re-fetch, the success page, the sync command), snapshots are decided by the ordering rule
//! ([`crate::domain::ordering`]) and written here, inside the caller's write transaction:
//! the subscriptions, the entitlements derived from them, the PostgreSQL notification, the
//! Checkout Sessions a live subscription closes and the events' outcomes. A single event is the
//! batch of one. The statements are a fixed number per call, plus two for each customer not
//! linked to a user yet.
//!
//! This is the place later work extends (an invoice row): it logs each entitlement change in the
//! change log ([`feed::record`], same transaction) and returns the changes it made.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::Utc;
use sqlx::AnyConnection;

use crate::billing::Billing;
use crate::billing::feed::{self, Cause};
use crate::db;
use crate::db::events::EventState;
use crate::db::subscriptions::StoredSubscription;
use crate::domain::ordering::{self, Evidence, Ordering};
use crate::domain::time::from_unix;
use crate::domain::{Entitlement, StripeStatus, SubscriptionSnapshot, UserId};
use crate::error::AppError;

/// One snapshot to write, and what it came with.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// The subscription.
    pub snapshot: &'a SubscriptionSnapshot,
    /// How we know it (a payload at a time, or fetched just now).
    pub evidence: Evidence,
    /// The event it answers, if any: its outcome is recorded here.
    pub event_id: Option<&'a str>,
    /// The time the snapshot stands for: the event's `created`, or the stored watermark for a
    /// fetch with no event. The stored watermark never moves back.
    pub at: i64,
    /// A user to link the customer to when nobody has it yet (a Checkout Session's user).
    pub user_hint: Option<&'a str>,
    /// What an invoice event said of 3-D Secure: `Some(true)` waiting, `Some(false)` paid.
    pub action_required: Option<bool>,
    /// What the change log names as the cause of the entitlement change this may make.
    pub cause: Cause<'a>,
}

/// What happened to one incoming snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Written (`Applied`), or not (`Skipped`, `Unmatched`); the event's outcome is recorded.
    Done {
        /// The event's outcome.
        state: EventState,
        /// The user it was matched to.
        user: Option<UserId>,
    },
    /// Nothing written: the caller must fetch the subscription from Stripe and write that.
    Refetch,
}

/// An owner's entitlement as it was before and after the write (only when it changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntitlementChange {
    /// Whose.
    pub user: UserId,
    /// What was stored (`None`: the user had no entitlement row).
    pub before: Option<Entitlement>,
    /// What is stored now.
    pub after: Entitlement,
}

/// What [`write`] did.
#[derive(Debug, Default)]
pub struct Written {
    /// Per incoming snapshot, in order.
    pub outcomes: Vec<Outcome>,
    /// The entitlements that changed, by user id.
    pub changes: Vec<EntitlementChange>,
    /// Every user whose entitlement was written: evict them once the transaction commits.
    pub touched: Vec<UserId>,
    /// How many changes were added to the change log.
    pub logged: usize,
}

/// Decides and writes `items` inside `tx` (a write transaction: the caller commits it and then
/// evicts [`Written::touched`]). Items are decided in the order given, each seeing the ones before
/// it. On an error nothing may be committed.
pub async fn write(
    state: &Billing,
    tx: &mut AnyConnection,
    items: &[Incoming<'_>],
) -> Result<Written, AppError> {
    let at = Utc::now();
    let now = at.timestamp();
    let backend = state.db.backend;
    let owners = owners(state, tx, items).await?;

    let ids: BTreeSet<&str> = items.iter().map(|i| i.snapshot.id.as_str()).collect();
    let ids: Vec<&str> = ids.into_iter().collect();
    let mut current: HashMap<String, StoredSubscription> =
        db::subscriptions::find_many_for_update(tx, backend, &ids)
            .await?
            .into_iter()
            .map(|s| (s.id.clone(), s))
            .collect();

    let mut outcomes = Vec::with_capacity(items.len());
    let mut finished: Vec<db::events::Finished<'_>> = Vec::new();
    let mut written: BTreeSet<&str> = BTreeSet::new();
    let mut close_for: BTreeSet<&str> = BTreeSet::new();
    // Per owner, the cause the change log names: the last snapshot applied for them.
    let mut causes: BTreeMap<&str, Cause<'_>> = BTreeMap::new();
    for item in items {
        let customer = item.snapshot.customer.as_str();
        let Some(user) = owners.get(customer) else {
            outcomes.push(done(EventState::Unmatched, None));
            if let Some(id) = item.event_id {
                finished.push((id, EventState::Unmatched, None, Some(customer)));
            }
            continue;
        };
        let previous = current.get(item.snapshot.id.as_str());
        let decision = ordering::decide(previous.map(|p| p.watermark), item.evidence);
        let state_now = match decision {
            Ordering::Refetch(_) => {
                outcomes.push(Outcome::Refetch);
                continue;
            }
            Ordering::Skip(_) => EventState::Skipped,
            Ordering::Apply(_) => {
                let row = stored_row(state, item, previous, user, now);
                if row.stripe_status.blocks_new_checkout() {
                    close_for.insert(user.as_str());
                }
                current.insert(row.id.clone(), row);
                written.insert(item.snapshot.id.as_str());
                causes.insert(user.as_str(), item.cause);
                EventState::Applied
            }
        };
        outcomes.push(done(state_now, Some(user.clone())));
        if let Some(id) = item.event_id {
            finished.push((id, state_now, Some(user.as_str()), Some(customer)));
        }
    }

    let rows: Vec<&StoredSubscription> = written.iter().filter_map(|id| current.get(*id)).collect();
    let stored = db::subscriptions::upsert_many_if_newer(&mut *tx, backend, &rows).await?;
    if stored.len() != rows.len() {
        return Err(AppError::Internal(
            "a subscription changed while it was being written".into(),
        ));
    }
    let users: BTreeSet<&str> = rows.iter().map(|r| r.user_id.as_str()).collect();
    let users: Vec<&str> = users.into_iter().collect();
    let (changes, touched) = write_entitlements(state, tx, &users, now).await?;
    let causes: Vec<(&str, Cause<'_>)> = causes.into_iter().collect();
    let logged = feed::record(state, tx, &causes, at).await?;
    db::checkout::close_all_for_users(tx, &close_for.into_iter().collect::<Vec<_>>()).await?;
    db::events::finish_many(&mut *tx, backend, &finished, at).await?;
    Ok(Written {
        outcomes,
        changes,
        touched,
        logged,
    })
}

impl Written {
    /// Evicts every user written from the cache: after the commit, so no reader can cache what
    /// was there before it.
    /// Wakes the change log's tail too, when changes were logged.
    pub fn evict(&self, state: &Billing) {
        for user in &self.touched {
            state.cache.evict(user.as_str());
        }
        if self.logged > 0 {
            state.feed.wake();
        }
    }
}

fn done(state: EventState, user: Option<UserId>) -> Outcome {
    Outcome::Done { state, user }
}

/// Who owns each item's customer: the linked user, or the user a hint (the item's, else the
/// subscription's `metadata.user_id`) names, which links the customer to them. Customers nobody
/// owns are left out.
async fn owners(
    state: &Billing,
    tx: &mut AnyConnection,
    items: &[Incoming<'_>],
) -> Result<HashMap<String, UserId>, AppError> {
    let customers: BTreeSet<&str> = items.iter().map(|i| i.snapshot.customer.as_str()).collect();
    let customers: Vec<&str> = customers.into_iter().collect();
    let mut owners = HashMap::new();
    for (user, customer) in
        db::users::ids_by_customers(&mut *tx, state.db.backend, &customers).await?
    {
        owners.insert(customer, parse_user(&user)?);
    }
    for item in items {
        let customer = item.snapshot.customer.as_str();
        if owners.contains_key(customer) {
            continue;
        }
        let hint = item.user_hint.or(item.snapshot.metadata_user_id.as_deref());
        if let Some(user) = super::apply::link_by_hint(state, tx, customer, hint).await? {
            owners.insert(customer.to_owned(), user);
        }
    }
    Ok(owners)
}

/// Derives and stores the entitlements of `users` from all their subscriptions; returns the ones
/// that changed and every user written.
async fn write_entitlements(
    state: &Billing,
    tx: &mut AnyConnection,
    users: &[&str],
    now: i64,
) -> Result<(Vec<EntitlementChange>, Vec<UserId>), AppError> {
    let backend = state.db.backend;
    if users.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let before: BTreeMap<String, Entitlement> =
        db::entitlements::find_many(&mut *tx, backend, users)
            .await?
            .into_iter()
            .collect();
    let all = db::subscriptions::for_users(&mut *tx, backend, users).await?;
    let derived: Vec<(&str, Entitlement)> = all
        .chunk_by(|a, b| a.user_id == b.user_id)
        .filter_map(|subs| {
            let entitlement = crate::domain::derive_entitlement(subs, now)?;
            Some((subs[0].user_id.as_str(), entitlement))
        })
        .collect();
    let pairs: Vec<(&str, &Entitlement)> = derived.iter().map(|(u, e)| (*u, e)).collect();
    db::entitlements::upsert_many(&mut *tx, backend, &pairs).await?;
    db::entitlements::notify_many(tx, backend, users).await?;
    let mut changes = Vec::new();
    for (user, after) in derived {
        let before = before.get(user).cloned();
        let same = before.as_ref().is_some_and(|b| {
            Entitlement {
                updated_at: after.updated_at,
                ..b.clone()
            } == after
        });
        if !same {
            changes.push(EntitlementChange {
                user: parse_user(user)?,
                before,
                after,
            });
        }
    }
    let touched = users
        .iter()
        .map(|u| parse_user(u))
        .collect::<Result<_, _>>()?;
    Ok((changes, touched))
}

fn parse_user(raw: &str) -> Result<UserId, AppError> {
    UserId::parse(raw).map_err(|e| AppError::Internal(format!("stored user id unreadable: {e}")))
}

/// The row a snapshot becomes, carrying on what the snapshot does not say: since when it is past
/// due, whether a payment waits for 3-D Secure, and the watermark (which never moves back).
fn stored_row(
    state: &Billing,
    item: &Incoming<'_>,
    previous: Option<&StoredSubscription>,
    user: &UserId,
    now: i64,
) -> StoredSubscription {
    let s = item.snapshot;
    let failed_at = match item.evidence {
        Evidence::Payload { created } => created,
        _ if item.event_id.is_some() => item.at,
        _ => now,
    };
    let past_due_since = (s.status == StripeStatus::PastDue).then(|| {
        previous
            .filter(|p| p.stripe_status == StripeStatus::PastDue)
            .and_then(|p| p.past_due_since)
            .unwrap_or_else(|| from_unix(failed_at))
    });
    let still_unpaid = matches!(
        s.status,
        StripeStatus::PastDue | StripeStatus::Incomplete | StripeStatus::Unpaid
    );
    let action_required = still_unpaid
        && item
            .action_required
            .unwrap_or_else(|| previous.is_some_and(|p| p.action_required));
    StoredSubscription {
        id: s.id.to_string(),
        user_id: user.to_string(),
        customer_id: s.customer.to_string(),
        stripe_status: s.status,
        price_id: s.price_id.clone(),
        plan: state
            .prices
            .plan_of(s.price_id.as_deref(), s.interval.as_deref()),
        current_period_end: s.current_period_end,
        cancel_at_period_end: s.cancel_at_period_end,
        pause_collection: s.pause_collection,
        past_due_since,
        action_required,
        created: s.created,
        watermark: ordering::watermark_after(previous.map(|p| p.watermark), item.at),
        updated_at: from_unix(now),
    }
}
