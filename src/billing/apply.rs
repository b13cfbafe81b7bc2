//! Applying Stripe events to the store, never trusting their order.
//!
//! - A subscription event's object is applied only if the event is newer (`created`) than the last
//!   one applied to that subscription; an older one is recorded as skipped.
//! - Equal timestamps (Stripe's clock has one-second steps) and events whose object is not the
//!   subscription (checkout sessions, invoices) re-fetch the subscription from Stripe and write that.
//! - Every write of a subscription, the entitlement derived from it and the event's outcome happen in
//!   one transaction, with the subscription's row locked (PostgreSQL) or the database's single writer
//!   held (SQLite `BEGIN IMMEDIATE`).

use chrono::Utc;
use sqlx::AnyConnection;

use crate::db;
use crate::db::events::EventState;
use crate::db::subscriptions::StoredSubscription;
use crate::domain::{StripeStatus, SubscriptionSnapshot, UserId};
use crate::error::AppError;
use crate::state::{AppState, Counters};
use crate::stripe::StripeCallError;
use crate::stripe::objects::{self, CheckoutInfo, EventEnvelope};

/// How long one instance holds an event while applying it.
pub(crate) const LEASE_SECS: i64 = 60;

/// Claims, applies and records one stored event. `None` when another worker holds it or it is not
/// waiting (already applied). With `replay`, dead and unmatched events are taken too.
pub async fn process(
    state: &AppState,
    event_id: &str,
    replay: bool,
) -> Result<Option<EventState>, AppError> {
    let now = Utc::now().timestamp();
    if !db::events::claim(&state.db.pool, event_id, now, LEASE_SECS, replay).await? {
        return Ok(None);
    }
    process_claimed(state, event_id).await
}

/// Applies and records one stored event whose lease this instance holds already.
pub async fn process_claimed(
    state: &AppState,
    event_id: &str,
) -> Result<Option<EventState>, AppError> {
    let now = Utc::now().timestamp();
    let Some(stored) = db::events::find(&state.db.pool, event_id).await? else {
        return Ok(None);
    };
    let result = match objects::parse_event(stored.payload.as_bytes()) {
        Ok(event) => {
            let span =
                tracing::info_span!("event", stripe.event_id = %event.id, kind = %event.kind);
            tracing::Instrument::instrument(apply_event(state, &event), span).await
        }
        Err(e) => {
            tracing::warn!(event = event_id, error = %e, "recorded event cannot be read; ignored");
            finish_alone(state, event_id, EventState::Ignored, None, None).await
        }
    };
    match result {
        Ok(outcome) => {
            count_applied(state, &stored.kind, outcome);
            Ok(Some(outcome))
        }
        Err(e) => {
            let detail = describe(&e);
            let max_attempts = i64::from(state.settings.event_max_attempts);
            let outcome = match db::events::fail(
                &state.db.pool,
                event_id,
                &detail,
                now,
                max_attempts,
            )
            .await
            {
                Ok(outcome) => outcome,
                Err(db_error) => {
                    // The database is gone too: keep trying to record the failure (which also frees
                    // the event's lease) so the event is retried soon after the database returns,
                    // not only when the lease runs out.
                    record_failure_later(state.clone(), event_id.to_owned(), detail, max_attempts);
                    return Err(db_error.into());
                }
            };
            tracing::warn!(event = event_id, error = %detail, state = outcome.as_str(), "event not applied; will retry");
            metrics::counter!("msr_webhook_events_total", "type" => stored.kind.clone(), "outcome" => outcome.as_str())
                .increment(1);
            Ok(Some(outcome))
        }
    }
}

fn count_applied(state: &AppState, kind: &str, outcome: EventState) {
    Counters::bump(&state.counters.events_processed);
    metrics::counter!("msr_webhook_events_total", "type" => kind.to_owned(), "outcome" => outcome.as_str())
        .increment(1);
}

/// A claimed subscription event whose payload carries a readable subscription.
#[derive(Debug)]
pub struct BatchItem {
    /// The event.
    pub event: EventEnvelope,
    /// Its subscription, as the payload has it.
    pub snapshot: SubscriptionSnapshot,
}

impl BatchItem {
    /// The item for a subscription event with a readable subscription; `None` for anything else.
    pub fn of(event: EventEnvelope) -> Result<BatchItem, EventEnvelope> {
        if !event.kind.starts_with("customer.subscription.") {
            return Err(event);
        }
        match objects::subscription(&event.object) {
            Ok(snapshot) => Ok(BatchItem { event, snapshot }),
            Err(_) => Err(event),
        }
    }
}

/// Applies claimed subscription events in one write transaction with a fixed number of statements
/// (the webhook pipeline's fast path): who owns each customer, the stored subscriptions (locked),
/// then every write as one multi-row statement per table. Each event is decided as
/// [`process_claimed`] would (applied if newer than the subscription's watermark, else skipped), in
/// the order given, later events of a subscription seeing the earlier ones. Per item: its outcome,
/// or `None` for one the single-event way must take after this commit (a customer not linked to
/// a user yet, or a same-second event that needs a re-fetch). On an error nothing was written; the
/// caller applies every event the single-event way.
pub async fn apply_batch(
    state: &AppState,
    items: &[BatchItem],
) -> Result<Vec<Option<EventState>>, AppError> {
    use std::collections::{BTreeSet, HashMap};

    let now = Utc::now().timestamp();
    let mut tx = state.db.begin_write().await?;
    let customers: BTreeSet<&str> = items.iter().map(|i| i.snapshot.customer.as_str()).collect();
    let customers: Vec<&str> = customers.into_iter().collect();
    let owners: HashMap<String, String> =
        db::users::ids_by_customers(&mut *tx, state.db.backend, &customers)
            .await?
            .into_iter()
            .map(|(user, customer)| (customer, user))
            .collect();
    let ids: BTreeSet<&str> = items.iter().map(|i| i.snapshot.id.as_str()).collect();
    let ids: Vec<&str> = ids.into_iter().collect();
    let mut current: HashMap<String, StoredSubscription> =
        db::subscriptions::find_many_for_update(&mut tx, state.db.backend, &ids)
            .await?
            .into_iter()
            .map(|s| (s.id.clone(), s))
            .collect();
    let mut outcomes = Vec::with_capacity(items.len());
    let mut finished: Vec<(usize, EventState, &str)> = Vec::new();
    let mut written: BTreeSet<&str> = BTreeSet::new();
    let mut close_for: BTreeSet<&str> = BTreeSet::new();
    for (index, item) in items.iter().enumerate() {
        let Some(user) = owners.get(item.snapshot.customer.as_str()) else {
            outcomes.push(None);
            continue;
        };
        let user_id = UserId::parse(user)
            .map_err(|e| AppError::Internal(format!("stored user id unreadable: {e}")))?;
        let created = item.event.created;
        let previous = current.get(item.snapshot.id.as_str());
        match previous.map(|p| p.watermark) {
            Some(w) if w == created => {
                outcomes.push(None);
                continue;
            }
            Some(w) if w > created => {
                outcomes.push(Some(EventState::Skipped));
                finished.push((index, EventState::Skipped, user.as_str()));
                continue;
            }
            _ => {}
        }
        let row = stored_row(
            state,
            &item.snapshot,
            previous,
            &user_id,
            created,
            None,
            created,
            now,
        );
        if row.stripe_status.blocks_new_checkout() {
            close_for.insert(user.as_str());
        }
        current.insert(row.id.clone(), row);
        written.insert(item.snapshot.id.as_str());
        outcomes.push(Some(EventState::Applied));
        finished.push((index, EventState::Applied, user.as_str()));
    }
    let rows: Vec<&StoredSubscription> = written.iter().filter_map(|id| current.get(*id)).collect();
    let stored = db::subscriptions::upsert_many_if_newer(&mut *tx, state.db.backend, &rows).await?;
    if stored.len() != rows.len() {
        return Err(AppError::Internal(
            "a subscription changed while its batch was applied".into(),
        ));
    }
    let users: BTreeSet<&str> = rows.iter().map(|r| r.user_id.as_str()).collect();
    let users: Vec<&str> = users.into_iter().collect();
    let all = db::subscriptions::for_users(&mut *tx, state.db.backend, &users).await?;
    let entitlements: Vec<(&str, crate::domain::Entitlement)> = all
        .chunk_by(|a, b| a.user_id == b.user_id)
        .filter_map(|subs| {
            let entitlement = db::subscriptions::derive_entitlement(subs, now)?;
            Some((subs[0].user_id.as_str(), entitlement))
        })
        .collect();
    let pairs: Vec<(&str, &crate::domain::Entitlement)> =
        entitlements.iter().map(|(u, e)| (*u, e)).collect();
    db::entitlements::upsert_many(&mut *tx, state.db.backend, &pairs).await?;
    db::entitlements::notify_many(&mut tx, state.db.backend, &users).await?;
    let close_for: Vec<&str> = close_for.into_iter().collect();
    db::checkout::close_all_for_users(&mut tx, &close_for).await?;
    let done: Vec<db::events::Finished<'_>> = finished
        .iter()
        .map(|(index, outcome, user)| {
            let item = &items[*index];
            (
                item.event.id.as_str(),
                *outcome,
                Some(*user),
                Some(item.snapshot.customer.as_str()),
            )
        })
        .collect();
    db::events::finish_many(&mut *tx, state.db.backend, &done, now).await?;
    tx.commit().await?;
    // After the commit, so no reader can cache what was there before it.
    for user in &users {
        state.cache.evict(user);
    }
    for (item, outcome) in items.iter().zip(&outcomes) {
        if let Some(outcome) = outcome {
            count_applied(state, &item.event.kind, *outcome);
            Counters::bump(&state.counters.events_batched);
            // A batch runs outside any one event's span: name the event on the line itself.
            tracing::info!(
                stripe.event_id = %item.event.id,
                subscription = %item.snapshot.id,
                status = item.snapshot.status.as_str(),
                outcome = outcome.as_str(),
                "subscription synced"
            );
        }
    }
    Ok(outcomes)
}

fn record_failure_later(state: AppState, event_id: String, detail: String, max_attempts: i64) {
    tokio::spawn(async move {
        for _ in 0..600 {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            let now = Utc::now().timestamp();
            if db::events::fail(&state.db.pool, &event_id, &detail, now, max_attempts)
                .await
                .is_ok()
            {
                state.wake.notify_one();
                return;
            }
        }
    });
}

/// An error's full story for the event's `last_error` (no secrets are ever in these).
fn describe(e: &AppError) -> String {
    let text = match e {
        AppError::DatabaseUnavailable(inner) => format!("database unavailable: {inner}"),
        AppError::Internal(detail) => detail.clone(),
        other => other.to_string(),
    };
    text.chars().take(500).collect()
}

async fn finish_alone(
    state: &AppState,
    id: &str,
    outcome: EventState,
    user: Option<&str>,
    customer: Option<&str>,
) -> Result<EventState, AppError> {
    db::events::finish(
        &state.db.pool,
        id,
        outcome,
        user,
        customer,
        Utc::now().timestamp(),
    )
    .await?;
    Ok(outcome)
}

async fn apply_event(state: &AppState, event: &EventEnvelope) -> Result<EventState, AppError> {
    let kind = event.kind.as_str();
    if kind.starts_with("customer.subscription.") {
        apply_subscription_event(state, event).await
    } else if matches!(
        kind,
        "checkout.session.completed" | "checkout.session.async_payment_succeeded"
    ) {
        let info = objects::checkout_session(&event.object).map_err(AppError::Internal)?;
        apply_checkout_session(state, &info, Some(event), event.created).await
    } else if kind == "checkout.session.expired" {
        expire_checkout_session(state, event).await
    } else if kind.starts_with("invoice.") {
        let Some(subscription) = objects::invoice_subscription(&event.object) else {
            return finish_alone(state, &event.id, EventState::Ignored, None, None).await;
        };
        let action_required = match kind {
            "invoice.payment_action_required" => Some(true),
            "invoice.paid" | "invoice.payment_succeeded" => Some(false),
            _ => None,
        };
        refetch_and_write(
            state,
            &subscription,
            Some(event),
            event.created,
            None,
            action_required,
        )
        .await
    } else if matches!(kind, "customer.created" | "customer.updated") {
        link_from_customer_object(state, event).await
    } else {
        finish_alone(state, &event.id, EventState::Ignored, None, None).await
    }
}

/// Stripe expired a Checkout Session: the next checkout for that plan must not hand it back.
async fn expire_checkout_session(
    state: &AppState,
    event: &EventEnvelope,
) -> Result<EventState, AppError> {
    let Some(id) = event.object.get("id").and_then(|v| v.as_str()) else {
        return finish_alone(state, &event.id, EventState::Ignored, None, None).await;
    };
    let mut tx = state.db.begin_write().await?;
    let owner = db::checkout::expire(&mut tx, id).await?;
    tx.commit().await?;
    let outcome = if owner.is_some() {
        EventState::Applied
    } else {
        EventState::Ignored
    };
    finish_alone(state, &event.id, outcome, owner.as_deref(), None).await
}

async fn apply_subscription_event(
    state: &AppState,
    event: &EventEnvelope,
) -> Result<EventState, AppError> {
    let snapshot = match objects::subscription(&event.object) {
        Ok(s) => s,
        Err(e) => {
            // A payload we cannot read (API drift): ask Stripe for the subscription instead.
            let Some(id) = event
                .object
                .get("id")
                .and_then(|v| v.as_str())
                .filter(|id| id.starts_with("sub_"))
            else {
                tracing::warn!(error = %e, "subscription event without a readable subscription; ignored");
                return finish_alone(state, &event.id, EventState::Ignored, None, None).await;
            };
            return refetch_and_write(state, id, Some(event), event.created, None, None).await;
        }
    };
    let stored = stored_watermark(state, snapshot.id.as_str()).await?;
    match stored {
        Some(w) if w > event.created => {
            finish_alone(
                state,
                &event.id,
                EventState::Skipped,
                None,
                Some(snapshot.customer.as_str()),
            )
            .await
        }
        Some(w) if w == event.created => {
            refetch_and_write(
                state,
                snapshot.id.as_str(),
                Some(event),
                event.created,
                None,
                None,
            )
            .await
        }
        _ => {
            write_snapshot(
                state,
                &snapshot,
                Some(event),
                event.created,
                false,
                None,
                None,
            )
            .await
        }
    }
}

async fn stored_watermark(state: &AppState, id: &str) -> Result<Option<i64>, AppError> {
    Ok(db::subscriptions::watermark(&state.db.pool, id).await?)
}

/// Re-fetches the subscription (coalesced, rate-limited) and writes what Stripe has now.
async fn refetch_and_write(
    state: &AppState,
    subscription_id: &str,
    event: Option<&EventEnvelope>,
    watermark: i64,
    user_hint: Option<&str>,
    action_required: Option<bool>,
) -> Result<EventState, AppError> {
    let api = state.stripe()?;
    let fetched = match state
        .refetch
        .fetch(api, &state.counters, subscription_id)
        .await
    {
        Ok(f) => f,
        Err(StripeCallError::Api { status: 404, .. }) => {
            tracing::warn!(
                subscription = subscription_id,
                "Stripe does not know this subscription; event ignored"
            );
            return match event {
                Some(e) => finish_alone(state, &e.id, EventState::Ignored, None, None).await,
                None => Ok(EventState::Ignored),
            };
        }
        Err(e) => return Err(e.into()),
    };
    let snapshot = objects::subscription(&fetched.value)
        .map_err(|e| AppError::Internal(format!("fetched subscription unreadable: {e}")))?;
    // `fetched` holds the coalescing gate until the write is committed.
    let outcome = write_snapshot(
        state,
        &snapshot,
        event,
        watermark,
        true,
        user_hint,
        action_required,
    )
    .await;
    drop(fetched);
    outcome
}

/// Who an event's customer belongs to.
enum Match {
    User(UserId),
    /// Nobody yet: keep the event until the customer gets linked.
    Nobody,
}

/// Finds the user by customer; failing that, a `metadata.user_id` naming a known user without a
/// customer links that customer to that user (and requeues the customer's unmatched events).
async fn resolve_user(
    state: &AppState,
    conn: &mut AnyConnection,
    customer: &str,
    hint: Option<&str>,
) -> Result<Match, AppError> {
    if let Some(user) = db::users::find_by_customer(&mut *conn, customer).await? {
        return Ok(Match::User(user.id));
    }
    let Some(hint) = hint.and_then(|h| UserId::parse(h).ok()) else {
        return Ok(Match::Nobody);
    };
    let Some(user) = db::users::find(&mut *conn, &hint).await? else {
        return Ok(Match::Nobody);
    };
    if db::users::link_customer(&mut *conn, &user.id, customer).await? {
        db::events::requeue_unmatched(&mut *conn, customer).await?;
        tracing::info!(user.id = %user.id, customer, "customer linked to user");
        return Ok(Match::User(user.id));
    }
    Counters::bump(&state.counters.match_conflicts);
    metrics::counter!("msr_match_conflicts_total").increment(1);
    tracing::warn!(
        user.id = %user.id,
        customer,
        linked = ?user.stripe_customer_id,
        "event names a user already linked to another customer; kept as unmatched"
    );
    Ok(Match::Nobody)
}

/// Writes a subscription snapshot taken at `watermark` (the event's `created`), derives the user's
/// entitlement and records the event's outcome, in one transaction. A `fresh` snapshot (just fetched
/// from Stripe) is written whatever the stored watermark; one from a payload only if it is newer.
async fn write_snapshot(
    state: &AppState,
    snapshot: &SubscriptionSnapshot,
    event: Option<&EventEnvelope>,
    watermark: i64,
    fresh: bool,
    user_hint: Option<&str>,
    action_required: Option<bool>,
) -> Result<EventState, AppError> {
    let mut tx = state.db.begin_write().await?;
    let written = write_snapshot_in(
        state,
        &mut tx,
        snapshot,
        event,
        watermark,
        fresh,
        user_hint,
        action_required,
    )
    .await?;
    match written {
        Written::Done(outcome, user) => {
            tx.commit().await?;
            // After the commit, so no reader can cache what was there before it.
            if let Some(user) = user {
                state.cache.evict(user.as_str());
            }
            Ok(outcome)
        }
        Written::Refetch => {
            drop(tx);
            let subscription = snapshot.id.to_string();
            Box::pin(refetch_and_write(
                state,
                &subscription,
                event,
                watermark,
                user_hint,
                action_required,
            ))
            .await
        }
    }
}

/// What [`write_snapshot_in`] did inside its caller's transaction.
enum Written {
    /// The event's outcome; the user whose entitlement may have changed (evict after commit).
    Done(EventState, Option<UserId>),
    /// Another event of the same second was applied: nothing written, re-fetch from Stripe.
    Refetch,
}

/// The body of [`write_snapshot`], inside the caller's write transaction (which the caller
/// commits, then evicts the user).
#[allow(clippy::too_many_arguments)]
async fn write_snapshot_in(
    state: &AppState,
    tx: &mut AnyConnection,
    snapshot: &SubscriptionSnapshot,
    event: Option<&EventEnvelope>,
    watermark: i64,
    fresh: bool,
    user_hint: Option<&str>,
    action_required: Option<bool>,
) -> Result<Written, AppError> {
    let now = Utc::now().timestamp();
    let customer = snapshot.customer.as_str();
    let hint = user_hint.or(snapshot.metadata_user_id.as_deref());
    let user = match resolve_user(state, &mut *tx, customer, hint).await? {
        Match::User(u) => u,
        Match::Nobody => {
            if let Some(e) = event {
                db::events::finish(
                    &mut *tx,
                    &e.id,
                    EventState::Unmatched,
                    None,
                    Some(customer),
                    now,
                )
                .await?;
            }
            tracing::info!(
                customer,
                "no user for this customer yet; event kept as unmatched"
            );
            return Ok(Written::Done(EventState::Unmatched, None));
        }
    };
    let previous =
        db::subscriptions::find_for_update(&mut *tx, state.db.backend, snapshot.id.as_str())
            .await?;
    // Another event of the same second was applied since we looked (outside this transaction):
    // neither payload can be trusted over the other, so ask Stripe, as for equal timestamps.
    if !fresh && previous.as_ref().is_some_and(|p| p.watermark == watermark) {
        return Ok(Written::Refetch);
    }
    let stale = previous
        .as_ref()
        .is_some_and(|p| !fresh && p.watermark > watermark);
    let outcome = if stale {
        EventState::Skipped
    } else {
        let row = stored_row(
            state,
            snapshot,
            previous.as_ref(),
            &user,
            watermark,
            action_required,
            event.map_or(now, |e| e.created),
            now,
        );
        if db::subscriptions::upsert_if_newer(&mut *tx, &row, true).await? {
            db::subscriptions::refresh_entitlement(&mut *tx, &user, now).await?;
            db::entitlements::notify_changed(&mut *tx, state.db.backend, user.as_str()).await?;
            // A live subscription closes the user's open Checkout Sessions (an ended one leaves them).
            if row.stripe_status.blocks_new_checkout() {
                db::checkout::close_all_for_user(&mut *tx, user.as_str()).await?;
            }
            EventState::Applied
        } else {
            EventState::Skipped
        }
    };
    if let Some(e) = event {
        db::events::finish(
            &mut *tx,
            &e.id,
            outcome,
            Some(user.as_str()),
            Some(customer),
            now,
        )
        .await?;
    }
    tracing::info!(
        user.id = %user,
        subscription = %snapshot.id,
        status = snapshot.status.as_str(),
        outcome = outcome.as_str(),
        "subscription synced"
    );
    Ok(Written::Done(outcome, Some(user)))
}

#[allow(clippy::too_many_arguments)]
fn stored_row(
    state: &AppState,
    s: &SubscriptionSnapshot,
    previous: Option<&StoredSubscription>,
    user: &UserId,
    watermark: i64,
    action_required: Option<bool>,
    failed_at: i64,
    now: i64,
) -> StoredSubscription {
    let past_due_since = (s.status == StripeStatus::PastDue).then(|| {
        previous
            .filter(|p| p.stripe_status == StripeStatus::PastDue)
            .and_then(|p| p.past_due_since)
            .unwrap_or(failed_at)
    });
    let still_unpaid = matches!(
        s.status,
        StripeStatus::PastDue | StripeStatus::Incomplete | StripeStatus::Unpaid
    );
    let action_required = still_unpaid
        && action_required.unwrap_or_else(|| previous.is_some_and(|p| p.action_required));
    StoredSubscription {
        id: s.id.to_string(),
        user_id: user.to_string(),
        customer_id: s.customer.to_string(),
        stripe_status: s.status,
        price_id: s.price_id.clone(),
        plan: state
            .prices
            .plan_of(s.price_id.as_deref(), s.interval.as_deref()),
        current_period_end: s.current_period_end.map(|t| t.timestamp()),
        cancel_at_period_end: s.cancel_at_period_end,
        pause_collection: s.pause_collection,
        past_due_since,
        action_required,
        created: s.created.timestamp(),
        watermark: previous.map_or(watermark, |p| p.watermark.max(watermark)),
        updated_at: now,
    }
}

/// Applies a completed Checkout Session: links its customer to the user it names, then fetches and
/// writes its subscription. Used by the webhook and by the success-page sync (`event` = `None`).
pub async fn apply_checkout_session(
    state: &AppState,
    info: &CheckoutInfo,
    event: Option<&EventEnvelope>,
    watermark: i64,
) -> Result<EventState, AppError> {
    let now = Utc::now().timestamp();
    let recorded_owner = db::checkout::owner(&state.db.pool, &info.id).await?;
    let (Some(customer), Some(user_raw)) = (
        info.customer.as_deref(),
        info.user_id(recorded_owner.as_deref()),
    ) else {
        return match event {
            Some(e) => {
                finish_alone(
                    state,
                    &e.id,
                    EventState::Ignored,
                    None,
                    info.customer.as_deref(),
                )
                .await
            }
            None => Ok(EventState::Ignored),
        };
    };
    let mut tx = state.db.begin_write().await?;
    let matched = resolve_user(state, &mut tx, customer, Some(user_raw)).await?;
    let user = match matched {
        Match::User(u) if u.as_str() == user_raw => u,
        _ => {
            if let Some(e) = event {
                db::events::finish(
                    &mut *tx,
                    &e.id,
                    EventState::Unmatched,
                    None,
                    Some(customer),
                    now,
                )
                .await?;
            }
            tx.commit().await?;
            return Ok(EventState::Unmatched);
        }
    };
    db::checkout::close_all_for_user(&mut tx, user.as_str()).await?;
    tx.commit().await?;
    match info.subscription_id.as_deref() {
        Some(sub) => {
            refetch_and_write(state, sub, event, watermark, Some(user.as_str()), None).await
        }
        None => match event {
            Some(e) => {
                finish_alone(
                    state,
                    &e.id,
                    EventState::Applied,
                    Some(user.as_str()),
                    Some(customer),
                )
                .await
            }
            None => Ok(EventState::Applied),
        },
    }
}

async fn link_from_customer_object(
    state: &AppState,
    event: &EventEnvelope,
) -> Result<EventState, AppError> {
    let customer = objects::customer_of(&event.kind, &event.object);
    let hint = objects::object_user_id(&event.object);
    let (Some(customer), Some(_)) = (customer.as_deref(), hint.as_deref()) else {
        return finish_alone(
            state,
            &event.id,
            EventState::Ignored,
            None,
            customer.as_deref(),
        )
        .await;
    };
    let now = Utc::now().timestamp();
    let mut tx = state.db.begin_write().await?;
    let outcome = match resolve_user(state, &mut tx, customer, hint.as_deref()).await? {
        Match::User(u) => {
            db::events::finish(
                &mut *tx,
                &event.id,
                EventState::Applied,
                Some(u.as_str()),
                Some(customer),
                now,
            )
            .await?;
            EventState::Applied
        }
        Match::Nobody => {
            db::events::finish(
                &mut *tx,
                &event.id,
                EventState::Ignored,
                None,
                Some(customer),
                now,
            )
            .await?;
            EventState::Ignored
        }
    };
    tx.commit().await?;
    Ok(outcome)
}

/// Writes a subscription just fetched from Stripe (the sync command): fresh, so it always wins.
pub async fn write_fetched(
    state: &AppState,
    subscription: &serde_json::Value,
    user_hint: Option<&str>,
) -> Result<EventState, AppError> {
    let snapshot = objects::subscription(subscription)
        .map_err(|e| AppError::Internal(format!("fetched subscription unreadable: {e}")))?;
    let watermark = stored_watermark(state, snapshot.id.as_str())
        .await?
        .unwrap_or(0);
    write_snapshot(state, &snapshot, None, watermark, true, user_hint, None).await
}
