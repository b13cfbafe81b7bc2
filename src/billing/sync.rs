//! Catching up with Stripe: missed events from the Events API, and a full subscription sync that
//! repairs every difference and reports it.

use chrono::Utc;
use serde_json::Value;
use sqlx::AnyConnection;

use crate::billing::Billing;
use crate::billing::feed::Cause;
use crate::billing::write::{self, Incoming};
use crate::billing::{apply, ingest};
use crate::db;
use crate::domain::ordering::Evidence;
use crate::domain::{SubscriptionSnapshot, UserId};
use crate::error::AppError;
use crate::stripe::objects;

/// What an Events API pass found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CatchUp {
    /// Events listed by Stripe.
    pub seen: usize,
    /// Of those, events we did not have.
    pub recorded: usize,
}

/// How far back a catch-up reads before the newest event we have (deliveries arrive out of order).
const OVERLAP_SECS: i64 = 15 * 60;

/// Reads Stripe's Events API from just before the newest event we have and feeds any we lack
/// through the same path as the webhook (dedupe makes this safe to run at any time).
pub async fn catch_up_events(state: &Billing) -> Result<CatchUp, AppError> {
    let api = state.stripe()?;
    let newest = db::events::newest_created(&state.db.pool).await?;
    let since = newest.map_or(Utc::now().timestamp() - 24 * 3600, |n| n - OVERLAP_SECS);
    let mut report = CatchUp::default();
    let mut cursor: Option<String> = None;
    let mut fresh = Vec::new();
    loop {
        let (page, has_more) = api.list_events(since, cursor.as_deref()).await?;
        cursor = last_id(&page);
        for event in &page {
            report.seen += 1;
            let body = serde_json::to_vec(event).map_err(|e| AppError::Internal(e.to_string()))?;
            let recorded = ingest::record(state, &body, "events_api").await?;
            if recorded.new {
                report.recorded += 1;
                fresh.push(recorded.id);
            }
        }
        if !has_more || cursor.is_none() {
            break;
        }
    }
    // The list is newest first; apply oldest first (order does not matter for correctness, only for work).
    for id in fresh.iter().rev() {
        apply::process(state, id, false).await?;
    }
    Ok(report)
}

/// One repaired difference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    /// The user.
    pub user_id: String,
    /// Entitlement status and reason before.
    pub before: String,
    /// And after.
    pub after: String,
}

/// Fetches every subscription of the given users (or of every user with a customer), writes what
/// Stripe has, and reports who was wrong.
pub async fn sync_subscriptions(
    state: &Billing,
    only: Option<&UserId>,
) -> Result<(usize, Vec<Drift>), AppError> {
    state.stripe()?;
    let users: Vec<(String, String)> = match only {
        Some(u) => {
            let user = db::users::find(&state.db.pool, u)
                .await?
                .ok_or_else(|| AppError::UnknownUser(u.to_string()))?;
            user.stripe_customer_id
                .map(|c| vec![(user.id.to_string(), c.to_string())])
                .unwrap_or_default()
        }
        None => db::users::with_customers(&state.db.pool).await?,
    };
    let mut drifts = Vec::new();
    for (user_id, customer) in &users {
        let user = UserId::parse(user_id).map_err(|e| AppError::Internal(e.to_string()))?;
        let before = describe(state, &user).await?;
        let fetched = fetch_subscriptions(state, customer).await?;
        let mut tx = state.db.begin_write().await?;
        let written = write_fetched_in(state, &mut tx, &fetched, &user, Cause::Sync).await?;
        tx.commit().await?;
        written.evict(state);
        let after = describe(state, &user).await?;
        if before != after {
            drifts.push(Drift {
                user_id: user_id.clone(),
                before,
                after,
            });
        }
    }
    Ok((users.len(), drifts))
}

/// The id of a list page's last object: the cursor of the next page.
fn last_id(page: &[Value]) -> Option<String> {
    page.last()
        .and_then(|o| o.get("id"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Every subscription Stripe has for `customer` (all pages), as snapshots.
pub(crate) async fn fetch_subscriptions(
    state: &Billing,
    customer: &str,
) -> Result<Vec<SubscriptionSnapshot>, AppError> {
    let api = state.stripe()?;
    let mut snapshots = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let (page, has_more) = api
            .list_subscriptions(Some(customer), cursor.as_deref())
            .await?;
        cursor = last_id(&page);
        for sub in &page {
            snapshots.push(objects::subscription(sub).map_err(|e| {
                AppError::Internal(format!("fetched subscription unreadable: {e}"))
            })?);
        }
        if !has_more || cursor.is_none() {
            break;
        }
    }
    Ok(snapshots)
}

/// Writes subscriptions of `user` just fetched from Stripe, in one transaction the caller commits
/// (and then calls [`write::Written::evict`]): fresh, so they always win, and the stored
/// watermarks stay where they are.
pub(crate) async fn write_fetched_in(
    state: &Billing,
    tx: &mut AnyConnection,
    fetched: &[SubscriptionSnapshot],
    user: &UserId,
    cause: Cause<'_>,
) -> Result<write::Written, AppError> {
    let items: Vec<Incoming<'_>> = fetched
        .iter()
        .map(|snapshot| Incoming {
            snapshot,
            evidence: Evidence::Fetched,
            event_id: None,
            at: 0,
            user_hint: Some(user.as_str()),
            action_required: None,
            cause,
        })
        .collect();
    write::write(state, tx, &items).await
}

async fn describe(state: &Billing, user: &UserId) -> Result<String, AppError> {
    let e = db::entitlements::find(&state.db.pool, user).await?;
    let decision = state.policy.decide(e.as_ref(), Utc::now());
    Ok(match e {
        Some(e) => format!(
            "{} ({}{}{}, period end {})",
            e.status.as_str(),
            decision.reason.as_str(),
            if e.pause_active { ", paused" } else { "" },
            if e.cancel_at_period_end {
                ", cancels at period end"
            } else {
                ""
            },
            e.current_period_end
                .map_or("-".into(), crate::domain::time::rfc3339)
        ),
        None => "none".into(),
    })
}
