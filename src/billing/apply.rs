//! Applying Stripe events to the store, never trusting their order.
//!
//! Each kind of event becomes evidence about a subscription ([`crate::domain::ordering`]): a
//! subscription event's payload at its `created`; anything else about a subscription (a Checkout
//! Session, an invoice, a payload we cannot read) is answered by fetching the subscription from
//! Stripe. Either way the snapshot goes through the one write path, [`write::write`], which decides
//! it by the ordering rule and writes the subscription, the entitlement and the event's outcome in
//! one transaction; a tie with the stored watermark comes back as "re-fetch", and the fetched
//! subscription goes through the same path.

use chrono::Utc;
use sqlx::AnyConnection;

use crate::billing::feed::Cause;
use crate::billing::write::{self, Incoming, Outcome};
use crate::billing::{Billing, support};
use crate::db;
use crate::db::events::EventState;
use crate::domain::ordering::Evidence;
use crate::domain::{SubscriptionSnapshot, UserId};
use crate::error::AppError;
use crate::stripe::StripeCallError;
use crate::stripe::objects::{self, CheckoutInfo, EventEnvelope};
use crate::telemetry::Counters;

/// How long one instance holds an event while applying it.
pub(crate) const LEASE: chrono::Duration = chrono::Duration::seconds(60);

/// Where a write comes from: the event it applies (none for the success page and the sync
/// command), and the support action that asked for it, if any, whose audit row is written in the
/// transaction that records the outcome.
#[derive(Clone, Copy, Default)]
pub(crate) struct Source<'a> {
    event: Option<&'a EventEnvelope>,
    audit: Option<&'a support::Audit>,
}

impl<'a> Source<'a> {
    fn event_id(&self) -> Option<&'a str> {
        self.event.map(|e| e.id.as_str())
    }

    /// What the change log names as the cause: the support action, else the event, else a sync
    /// from Stripe (the return page).
    fn cause(&self) -> Cause<'a> {
        match (self.audit, self.event) {
            (Some(audit), _) => Cause::Support(audit.id()),
            (None, Some(event)) => Cause::StripeEvent(event.id.as_str()),
            (None, None) => Cause::Sync,
        }
    }

    /// Writes what must be committed with the outcome (a support action's audit row), inside the
    /// outcome's transaction.
    async fn seal(
        &self,
        state: &Billing,
        tx: &mut AnyConnection,
        outcome: EventState,
        user: Option<&UserId>,
    ) -> Result<(), AppError> {
        match self.audit {
            Some(audit) => audit.write_in(state, tx, outcome.as_str(), user).await,
            None => Ok(()),
        }
    }
}

/// Claims, applies and records one stored event. `None` when another worker holds it or it is not
/// waiting (already applied). With `replay`, dead and unmatched events are taken too.
pub async fn process(
    state: &Billing,
    event_id: &str,
    replay: bool,
) -> Result<Option<EventState>, AppError> {
    process_as(state, event_id, replay, None).await
}

/// [`process`] on behalf of a support action, audited in the transaction of the outcome.
pub(crate) async fn process_as(
    state: &Billing,
    event_id: &str,
    replay: bool,
    audit: Option<&support::Audit>,
) -> Result<Option<EventState>, AppError> {
    let now = Utc::now();
    if !db::events::claim(&state.db.pool, event_id, now, LEASE, replay).await? {
        return Ok(None);
    }
    claimed(state, event_id, audit).await
}

/// Applies and records one stored event whose lease this instance holds already.
pub async fn process_claimed(
    state: &Billing,
    event_id: &str,
) -> Result<Option<EventState>, AppError> {
    claimed(state, event_id, None).await
}

async fn claimed(
    state: &Billing,
    event_id: &str,
    audit: Option<&support::Audit>,
) -> Result<Option<EventState>, AppError> {
    let now = Utc::now();
    let Some(stored) = db::events::find(&state.db.pool, event_id).await? else {
        return Ok(None);
    };
    let result = match objects::parse_event(stored.payload.as_bytes()) {
        Ok(event) => {
            let span =
                tracing::info_span!("event", stripe.event_id = %event.id, kind = %event.kind);
            let source = Source {
                event: Some(&event),
                audit,
            };
            tracing::Instrument::instrument(apply_event(state, &event, source), span).await
        }
        Err(e) => {
            tracing::warn!(event = event_id, error = %e, "recorded event cannot be read; ignored");
            finish_unread(state, event_id, audit).await
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

fn count_applied(state: &Billing, kind: &str, outcome: EventState) {
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

/// Applies claimed subscription events in one write transaction (the webhook pipeline's fast
/// path), through the one write path ([`write::write`]). Per item: its outcome, or `None` for one
/// the single-event way must take after this commit (a same-second event that needs a re-fetch).
/// On an error nothing was written; the caller applies every event the single-event way.
pub async fn apply_batch(
    state: &Billing,
    items: &[BatchItem],
) -> Result<Vec<Option<EventState>>, AppError> {
    let incoming: Vec<Incoming<'_>> = items
        .iter()
        .map(|item| Incoming {
            snapshot: &item.snapshot,
            evidence: Evidence::Payload {
                created: item.event.created,
            },
            event_id: Some(item.event.id.as_str()),
            at: item.event.created,
            user_hint: None,
            action_required: None,
            cause: Cause::StripeEvent(item.event.id.as_str()),
        })
        .collect();
    let mut tx = state.db.begin_write().await?;
    let written = write::write(state, &mut tx, &incoming).await?;
    tx.commit().await?;
    written.evict(state);
    let mut outcomes = Vec::with_capacity(items.len());
    for (item, outcome) in items.iter().zip(&written.outcomes) {
        match outcome {
            Outcome::Done { state: done, .. } => {
                count_applied(state, &item.event.kind, *done);
                Counters::bump(&state.counters.events_batched);
                // A batch runs outside any one event's span: name the event on the line itself.
                tracing::info!(
                    stripe.event_id = %item.event.id,
                    subscription = %item.snapshot.id,
                    status = item.snapshot.status.as_str(),
                    outcome = done.as_str(),
                    "subscription synced"
                );
                outcomes.push(Some(*done));
            }
            Outcome::Refetch => outcomes.push(None),
        }
    }
    Ok(outcomes)
}

fn record_failure_later(state: Billing, event_id: String, detail: String, max_attempts: i64) {
    tokio::spawn(async move {
        for _ in 0..600 {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            if db::events::fail(&state.db.pool, &event_id, &detail, Utc::now(), max_attempts)
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

/// Records the outcome of an event that wrote nothing else (none when there is no event), with
/// what its source must commit with it.
async fn finish(
    state: &Billing,
    source: Source<'_>,
    outcome: EventState,
    user: Option<&UserId>,
    customer: Option<&str>,
) -> Result<EventState, AppError> {
    let Some(id) = source.event_id() else {
        return Ok(outcome);
    };
    let mut tx = state.db.begin_write().await?;
    finish_in(&mut tx, id, outcome, user, customer).await?;
    source.seal(state, &mut tx, outcome, user).await?;
    tx.commit().await?;
    Ok(outcome)
}

async fn finish_in(
    tx: &mut AnyConnection,
    id: &str,
    outcome: EventState,
    user: Option<&UserId>,
    customer: Option<&str>,
) -> Result<(), AppError> {
    let user = user.map(UserId::as_str);
    db::events::finish(&mut *tx, id, outcome, user, customer, Utc::now()).await?;
    Ok(())
}

/// A stored event whose payload cannot be read is ignored.
async fn finish_unread(
    state: &Billing,
    id: &str,
    audit: Option<&support::Audit>,
) -> Result<EventState, AppError> {
    let outcome = EventState::Ignored;
    let mut tx = state.db.begin_write().await?;
    finish_in(&mut tx, id, outcome, None, None).await?;
    let source = Source { event: None, audit };
    source.seal(state, &mut tx, outcome, None).await?;
    tx.commit().await?;
    Ok(outcome)
}

async fn apply_event(
    state: &Billing,
    event: &EventEnvelope,
    source: Source<'_>,
) -> Result<EventState, AppError> {
    let kind = event.kind.as_str();
    let ignored = EventState::Ignored;
    if kind.starts_with("customer.subscription.") {
        apply_subscription_event(state, event, source).await
    } else if matches!(
        kind,
        "checkout.session.completed" | "checkout.session.async_payment_succeeded"
    ) {
        let info = objects::checkout_session(&event.object).map_err(AppError::Internal)?;
        checkout_session(state, &info, source, event.created).await
    } else if kind == "checkout.session.expired" {
        expire_checkout_session(state, event, source).await
    } else if kind.starts_with("invoice.") {
        let Some(subscription) = objects::invoice_subscription(&event.object) else {
            return finish(state, source, ignored, None, None).await;
        };
        let action_required = match kind {
            "invoice.payment_action_required" => Some(true),
            "invoice.paid" | "invoice.payment_succeeded" => Some(false),
            _ => None,
        };
        refetch_and_write(
            state,
            &subscription,
            source,
            event.created,
            None,
            action_required,
        )
        .await
    } else if matches!(kind, "customer.created" | "customer.updated") {
        link_from_customer_object(state, event, source).await
    } else {
        finish(state, source, ignored, None, None).await
    }
}

/// Stripe expired a Checkout Session: the next checkout for that plan must not hand it back.
async fn expire_checkout_session(
    state: &Billing,
    event: &EventEnvelope,
    source: Source<'_>,
) -> Result<EventState, AppError> {
    let Some(id) = event.object.get("id").and_then(|v| v.as_str()) else {
        return finish(state, source, EventState::Ignored, None, None).await;
    };
    let mut tx = state.db.begin_write().await?;
    let owner = db::checkout::expire(&mut tx, id)
        .await?
        .and_then(|u| UserId::parse(&u).ok());
    let outcome = if owner.is_some() {
        EventState::Applied
    } else {
        EventState::Ignored
    };
    finish_in(&mut tx, &event.id, outcome, owner.as_ref(), None).await?;
    source.seal(state, &mut tx, outcome, owner.as_ref()).await?;
    tx.commit().await?;
    Ok(outcome)
}

async fn apply_subscription_event(
    state: &Billing,
    event: &EventEnvelope,
    source: Source<'_>,
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
                return finish(state, source, EventState::Ignored, None, None).await;
            };
            return refetch_and_write(state, id, source, event.created, None, None).await;
        }
    };
    write_snapshot(
        state,
        &snapshot,
        source,
        Evidence::Payload {
            created: event.created,
        },
        event.created,
        None,
        None,
    )
    .await
}

/// Re-fetches the subscription (coalesced, rate-limited) and writes what Stripe has now.
async fn refetch_and_write(
    state: &Billing,
    subscription_id: &str,
    source: Source<'_>,
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
            return finish(state, source, EventState::Ignored, None, None).await;
        }
        Err(e) => return Err(e.into()),
    };
    let snapshot = objects::subscription(&fetched.value)
        .map_err(|e| AppError::Internal(format!("fetched subscription unreadable: {e}")))?;
    // `fetched` holds the coalescing gate until the write is committed.
    let outcome = write_snapshot(
        state,
        &snapshot,
        source,
        Evidence::Fetched,
        watermark,
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
    state: &Billing,
    conn: &mut AnyConnection,
    customer: &str,
    hint: Option<&str>,
) -> Result<Match, AppError> {
    if let Some(user) = db::users::find_by_customer(&mut *conn, customer).await? {
        return Ok(Match::User(user.id));
    }
    Ok(match link_by_hint(state, conn, customer, hint).await? {
        Some(user) => Match::User(user),
        None => Match::Nobody,
    })
}

/// Links a customer nobody owns to the known user `hint` names, when that user has no customer
/// yet (and requeues the customer's unmatched events). `None`: nobody, or a conflict (counted).
pub(crate) async fn link_by_hint(
    state: &Billing,
    conn: &mut AnyConnection,
    customer: &str,
    hint: Option<&str>,
) -> Result<Option<UserId>, AppError> {
    let Some(hint) = hint.and_then(|h| UserId::parse(h).ok()) else {
        return Ok(None);
    };
    let Some(user) = db::users::find(&mut *conn, &hint).await? else {
        return Ok(None);
    };
    if db::users::link_customer(&mut *conn, &user.id, customer).await? {
        db::events::requeue_unmatched(&mut *conn, customer).await?;
        tracing::info!(user.id = %user.id, customer, "customer linked to user");
        return Ok(Some(user.id));
    }
    Counters::bump(&state.counters.match_conflicts);
    metrics::counter!("msr_match_conflicts_total").increment(1);
    tracing::warn!(
        user.id = %user.id,
        customer,
        linked = ?user.stripe_customer_id,
        "event names a user already linked to another customer; kept as unmatched"
    );
    Ok(None)
}

/// Decides and writes one subscription snapshot (the batch of one of [`write::write`]) in its own
/// transaction; a tie with what is stored re-fetches the subscription from Stripe and writes that.
#[allow(clippy::too_many_arguments)]
async fn write_snapshot(
    state: &Billing,
    snapshot: &SubscriptionSnapshot,
    source: Source<'_>,
    evidence: Evidence,
    at: i64,
    user_hint: Option<&str>,
    action_required: Option<bool>,
) -> Result<EventState, AppError> {
    let item = Incoming {
        snapshot,
        evidence,
        event_id: source.event_id(),
        at,
        user_hint,
        action_required,
        cause: source.cause(),
    };
    let mut tx = state.db.begin_write().await?;
    let written = write::write(state, &mut tx, &[item]).await?;
    match written.outcomes.first() {
        Some(Outcome::Done {
            state: outcome,
            user,
        }) => {
            let outcome = *outcome;
            source.seal(state, &mut tx, outcome, user.as_ref()).await?;
            tx.commit().await?;
            written.evict(state);
            match user {
                Some(user) => tracing::info!(
                    user.id = %user,
                    subscription = %snapshot.id,
                    status = snapshot.status.as_str(),
                    outcome = outcome.as_str(),
                    "subscription synced"
                ),
                None => tracing::info!(
                    customer = %snapshot.customer,
                    "no user for this customer yet; event kept as unmatched"
                ),
            }
            Ok(outcome)
        }
        Some(Outcome::Refetch) => {
            // Nothing was written: release the writer before asking Stripe.
            drop(tx);
            let subscription = snapshot.id.to_string();
            Box::pin(refetch_and_write(
                state,
                &subscription,
                source,
                at,
                user_hint,
                action_required,
            ))
            .await
        }
        None => Err(AppError::Internal(
            "a write of one snapshot answered nothing".into(),
        )),
    }
}

/// Applies a completed Checkout Session: links its customer to the user it names, then fetches and
/// writes its subscription. The success-page sync (no event).
pub async fn apply_checkout_session(
    state: &Billing,
    info: &CheckoutInfo,
    watermark: i64,
) -> Result<EventState, AppError> {
    checkout_session(state, info, Source::default(), watermark).await
}

async fn checkout_session(
    state: &Billing,
    info: &CheckoutInfo,
    source: Source<'_>,
    watermark: i64,
) -> Result<EventState, AppError> {
    let recorded_owner = db::checkout::owner(&state.db.pool, &info.id).await?;
    let (Some(customer), Some(user_raw)) = (
        info.customer.as_deref(),
        info.user_id(recorded_owner.as_deref()),
    ) else {
        let customer = info.customer.as_deref();
        return finish(state, source, EventState::Ignored, None, customer).await;
    };
    let mut tx = state.db.begin_write().await?;
    let matched = resolve_user(state, &mut tx, customer, Some(user_raw)).await?;
    let user = match matched {
        Match::User(u) if u.as_str() == user_raw => u,
        _ => {
            let outcome = EventState::Unmatched;
            if let Some(id) = source.event_id() {
                finish_in(&mut tx, id, outcome, None, Some(customer)).await?;
                source.seal(state, &mut tx, outcome, None).await?;
            }
            tx.commit().await?;
            return Ok(outcome);
        }
    };
    db::checkout::close_all_for_user(&mut tx, user.as_str()).await?;
    tx.commit().await?;
    match info.subscription_id.as_deref() {
        Some(sub) => {
            refetch_and_write(state, sub, source, watermark, Some(user.as_str()), None).await
        }
        None => {
            finish(
                state,
                source,
                EventState::Applied,
                Some(&user),
                Some(customer),
            )
            .await
        }
    }
}

async fn link_from_customer_object(
    state: &Billing,
    event: &EventEnvelope,
    source: Source<'_>,
) -> Result<EventState, AppError> {
    let customer = objects::customer_of(&event.kind, &event.object);
    let hint = objects::object_user_id(&event.object);
    let (Some(customer), Some(_)) = (customer.as_deref(), hint.as_deref()) else {
        let customer = customer.as_deref();
        return finish(state, source, EventState::Ignored, None, customer).await;
    };
    let mut tx = state.db.begin_write().await?;
    let (outcome, user) = match resolve_user(state, &mut tx, customer, hint.as_deref()).await? {
        Match::User(u) => (EventState::Applied, Some(u)),
        Match::Nobody => (EventState::Ignored, None),
    };
    finish_in(&mut tx, &event.id, outcome, user.as_ref(), Some(customer)).await?;
    source.seal(state, &mut tx, outcome, user.as_ref()).await?;
    tx.commit().await?;
    Ok(outcome)
}
