//! Support's actions on an owner, each audited: the audit row says who did what, and the owner's
//! entitlement before and after ("active (active, until …)").
//!
//! Complimentary access and ending sessions write their change and its audit row in one
//! transaction, so no change is ever left without its audit. Resync and replay change the store
//! through the one write path (`write.rs`, a transaction per subscription) and then write their
//! audit row with what the entitlement became; a crash between the two leaves a change made by
//! Stripe's own data, which the owner's event timeline shows.

use chrono::{DateTime, Utc};
use sqlx::AnyConnection;

use crate::billing::Billing;
use crate::billing::{apply, entitlement, sync};
use crate::db;
use crate::domain::UserId;
use crate::error::AppError;

/// How the audit log shows an entitlement decision.
fn shown(answer: &entitlement::EntitlementAnswer) -> String {
    format!(
        "{} ({}{})",
        answer.status(),
        answer.decision.reason.as_str(),
        answer
            .decision
            .valid_until
            .map(|t| format!(", until {}", crate::domain::time::rfc3339(t)))
            .unwrap_or_default()
    )
}

/// The owner's entitlement as the audit log shows it, read inside `tx`.
async fn described_in(
    state: &Billing,
    tx: &mut AnyConnection,
    user: &UserId,
) -> Result<String, AppError> {
    let now = Utc::now();
    let (complimentary, stored) = db::entitlements::find_for_check(&mut *tx, user)
        .await?
        .ok_or_else(|| AppError::UnknownUser(user.to_string()))?;
    let decision = state
        .policy
        .decide_with_grant(stored.as_ref(), complimentary, now);
    Ok(shown(&entitlement::EntitlementAnswer {
        user_id: user.clone(),
        entitlement: stored,
        decision,
        as_of: now,
    }))
}

/// The owner's entitlement as the audit log shows it, from the store.
async fn described(state: &Billing, user: &UserId) -> Result<String, AppError> {
    Ok(shown(&entitlement::check_stored(state, user).await?))
}

/// Runs `change` in a write transaction and writes its audit row in the same one; then tells
/// every instance that the owner's entitlement may have changed.
async fn audited<F>(
    state: &Billing,
    admin: &UserId,
    user: &UserId,
    action: &str,
    change: F,
) -> Result<(), AppError>
where
    F: for<'t> AsyncFnOnce(&'t mut AnyConnection) -> Result<(), AppError>,
{
    let mut tx = state.db.begin_write().await?;
    let before = described_in(state, &mut tx, user).await?;
    change(&mut tx).await?;
    let after = described_in(state, &mut tx, user).await?;
    let now = Utc::now().timestamp();
    db::admin::audit(
        &mut *tx,
        user.as_str(),
        admin.as_str(),
        action,
        &before,
        &after,
        now,
    )
    .await?;
    db::entitlements::notify_changed(&mut tx, state.db.backend, user.as_str()).await?;
    tx.commit().await?;
    state.cache.evict(user.as_str());
    tracing::info!(admin = %admin, user.id = %user, action, "admin action");
    Ok(())
}

/// Grants complimentary access until `until`, saying why.
pub async fn grant_complimentary(
    state: &Billing,
    admin: &UserId,
    user: &UserId,
    until: DateTime<Utc>,
    note: &str,
) -> Result<(), AppError> {
    let action = format!("grant complimentary access: {note}");
    audited(state, admin, user, &action, async |tx| {
        db::users::set_complimentary(&mut *tx, user, Some(until), Some(note)).await?;
        Ok(())
    })
    .await
}

/// Ends complimentary access.
pub async fn revoke_complimentary(
    state: &Billing,
    admin: &UserId,
    user: &UserId,
) -> Result<(), AppError> {
    audited(
        state,
        admin,
        user,
        "revoke complimentary access",
        async |tx| {
            db::users::set_complimentary(&mut *tx, user, None, None).await?;
            Ok(())
        },
    )
    .await
}

/// Ends every browser session of the owner: each is refused at its next request.
pub async fn end_sessions(state: &Billing, admin: &UserId, user: &UserId) -> Result<(), AppError> {
    audited(state, admin, user, "end all browser sessions", async |tx| {
        if db::users::end_sessions(&mut *tx, user).await? {
            Ok(())
        } else {
            Err(AppError::UnknownUser(user.to_string()))
        }
    })
    .await
}

async fn audit_after(
    state: &Billing,
    admin: &UserId,
    user: &UserId,
    action: &str,
    before: &str,
) -> Result<(), AppError> {
    let after = described(state, user).await?;
    db::admin::audit(
        &state.db.pool,
        user.as_str(),
        admin.as_str(),
        action,
        before,
        &after,
        Utc::now().timestamp(),
    )
    .await?;
    tracing::info!(admin = %admin, user.id = %user, action, "admin action");
    Ok(())
}

/// Fetches the owner's subscriptions from Stripe and writes what Stripe has.
pub async fn resync(state: &Billing, admin: &UserId, user: &UserId) -> Result<(), AppError> {
    let before = described(state, user).await?;
    sync::sync_subscriptions(state, Some(user)).await?;
    audit_after(state, admin, user, "resync from Stripe", &before).await
}

/// What a replay did, for the page it returns to.
#[derive(Debug)]
pub struct Replayed {
    /// The owner it was audited on, when it concerns one.
    pub user: Option<UserId>,
}

/// Applies a stored event again (a failed, dead or unmatched one; an applied one is left alone),
/// audited on the owner it concerns when there is one.
pub async fn replay(state: &Billing, admin: &UserId, event_id: &str) -> Result<Replayed, AppError> {
    let event = db::events::find(&state.db.pool, event_id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no event {event_id:?}")))?;
    // Whose entitlement the replay may change: the event's user, or its customer's.
    let named = match event.user_id.as_deref().and_then(|u| UserId::parse(u).ok()) {
        Some(user) => Some(user),
        None => match event.customer_id.as_deref() {
            Some(customer) => db::users::find_by_customer(&state.db.pool, customer)
                .await?
                .map(|u| u.id),
            None => None,
        },
    };
    let before = match &named {
        Some(u) if db::users::find(&state.db.pool, u).await?.is_some() => {
            Some(described(state, u).await?)
        }
        _ => None,
    };
    let outcome = apply::process(state, event_id, true).await?;
    let result = outcome.map_or("not replayed (already applied or in progress)", |o| {
        o.as_str()
    });
    let matched = db::events::find(&state.db.pool, event_id)
        .await?
        .and_then(|e| e.user_id)
        .and_then(|u| UserId::parse(&u).ok());
    let user = match matched.or(named) {
        Some(user) if db::users::find(&state.db.pool, &user).await?.is_some() => Some(user),
        _ => None,
    };
    let action = format!("replay event {} ({}) → {result}", event.id, event.kind);
    match &user {
        Some(user) => {
            // A user matched only by the replay had no entitlement of this event's before it.
            let before = before.unwrap_or_else(|| "— (not matched before the replay)".into());
            audit_after(state, admin, user, &action, &before).await?;
        }
        None => {
            tracing::info!(admin = %admin, event = %event.id, result, "admin replayed an event");
        }
    }
    Ok(Replayed { user })
}
