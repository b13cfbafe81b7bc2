//! Support's actions on an owner, each audited: the audit row says who did what, and the owner's
//! entitlement before and after ("active (active, until …)").
//!
//! Every action writes its change and its audit row in one transaction, so no change is ever left
//! without its audit: complimentary access and ending sessions directly; a resync fetches from
//! Stripe first and then writes what it found through the one write path inside the audited
//! transaction; a replay hands its [`Audit`] down the event's own path, which writes it in the
//! transaction that records the event's outcome.

use chrono::{DateTime, Utc};
use sqlx::AnyConnection;

use crate::billing::Billing;
use crate::billing::feed::{self, Cause};
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

/// The owner's entitlement as the audit log shows it, from the store (before a change whose
/// transaction is opened further down, by the event's own path).
async fn described(state: &Billing, user: &UserId) -> Result<String, AppError> {
    Ok(shown(&entitlement::check_stored(state, user).await?))
}

/// Runs `change` in a write transaction and writes its audit row in the same one; then tells
/// every instance that the owner's entitlement may have changed.
async fn audited<F>(
    state: &Billing,
    (admin, audit_id): (&UserId, &str),
    user: &UserId,
    action: &str,
    change: F,
) -> Result<(), AppError>
where
    F: for<'t> AsyncFnOnce(&'t mut AnyConnection) -> Result<(), AppError>,
{
    let audit_id = audit_id.to_owned();
    let mut tx = state.db.begin_write().await?;
    let before = described_in(state, &mut tx, user).await?;
    change(&mut tx).await?;
    // Support's own changes (complimentary access) are logged here; a resync's go through the
    // one write path, under the same cause, and are not logged twice (the answer is unchanged).
    feed::record(
        state,
        &mut tx,
        &[(user.as_str(), Cause::Support(&audit_id))],
        Utc::now(),
    )
    .await?;
    audit_row(state, &mut tx, &audit_id, admin, user, action, &before).await?;
    db::entitlements::notify_changed(&mut tx, state.db.backend, user.as_str()).await?;
    tx.commit().await?;
    state.cache.evict(user.as_str());
    state.feed.wake();
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
    let id = db::admin::new_audit_id(Utc::now());
    audited(state, (admin, &id), user, &action, async |tx| {
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
    let id = db::admin::new_audit_id(Utc::now());
    audited(
        state,
        (admin, &id),
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
    let id = db::admin::new_audit_id(Utc::now());
    audited(
        state,
        (admin, &id),
        user,
        "end all browser sessions",
        async |tx| {
            if db::users::end_sessions(&mut *tx, user).await? {
                Ok(())
            } else {
                Err(AppError::UnknownUser(user.to_string()))
            }
        },
    )
    .await
}

/// Writes the audit row of `action` on `user` inside `tx`: `before`, and the entitlement as it is
/// now in `tx`, after the change.
#[allow(clippy::too_many_arguments)]
async fn audit_row(
    state: &Billing,
    tx: &mut AnyConnection,
    id: &str,
    admin: &UserId,
    user: &UserId,
    action: &str,
    before: &str,
) -> Result<(), AppError> {
    let after = described_in(state, tx, user).await?;
    let at = Utc::now();
    db::admin::audit(
        &mut *tx,
        id,
        user.as_str(),
        admin.as_str(),
        action,
        before,
        &after,
        at,
    )
    .await?;
    Ok(())
}

/// A support action's audit row, written by the one write path in the transaction of the change
/// the action causes (see [`apply::process_as`]).
pub(crate) struct Audit {
    /// The audit row's id, made up front so the change log can name it as the cause.
    id: String,
    admin: UserId,
    /// The action, without its result ("replay event evt_… (kind)").
    action: String,
    /// The owner it concerns, as known before the change.
    named: Option<UserId>,
    /// Their entitlement before the change, as the audit log shows it.
    before: Option<String>,
    /// Set once the row is written: on whom (`None`: no known owner, only logged).
    written: std::sync::Mutex<Option<Option<UserId>>>,
}

impl Audit {
    /// The audit row's id.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// Writes the audit row inside `tx`, on `user` (whom the change was matched to) or else the
    /// owner named before it; `result` ends the action's text.
    pub(crate) async fn write_in(
        &self,
        state: &Billing,
        tx: &mut AnyConnection,
        result: &str,
        user: Option<&UserId>,
    ) -> Result<(), AppError> {
        let user = match user.or(self.named.as_ref()) {
            Some(u) if db::users::find(&mut *tx, u).await?.is_some() => Some(u.clone()),
            _ => None,
        };
        if let Some(user) = &user {
            let before = match &self.before {
                Some(before) if self.named.as_ref() == Some(user) => before.clone(),
                // A user matched only by the change had no entitlement of this action's before it.
                _ => "— (not matched before the replay)".into(),
            };
            let action = format!("{} → {result}", self.action);
            audit_row(state, tx, &self.id, &self.admin, user, &action, &before).await?;
        }
        *self.written.lock().unwrap_or_else(|e| e.into_inner()) = Some(user);
        Ok(())
    }

    fn written(&self) -> Option<Option<UserId>> {
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

/// Fetches the owner's subscriptions from Stripe and writes what Stripe has, with its audit row.
pub async fn resync(state: &Billing, admin: &UserId, user: &UserId) -> Result<(), AppError> {
    let customer = db::users::find(&state.db.pool, user)
        .await?
        .ok_or_else(|| AppError::UnknownUser(user.to_string()))?
        .stripe_customer_id;
    let fetched = match customer {
        Some(customer) => sync::fetch_subscriptions(state, customer.as_str()).await?,
        None => {
            state.stripe()?;
            Vec::new()
        }
    };
    let mut written = None;
    let id = db::admin::new_audit_id(Utc::now());
    audited(
        state,
        (admin, &id),
        user,
        "resync from Stripe",
        async |tx| {
            let cause = Cause::Support(&id);
            written = Some(sync::write_fetched_in(state, tx, &fetched, user, cause).await?);
            Ok(())
        },
    )
    .await?;
    if let Some(written) = written {
        written.evict(state);
    }
    Ok(())
}

/// What a replay did, for the page it returns to.
#[derive(Debug)]
pub struct Replayed {
    /// The owner it was audited on, when it concerns one.
    pub user: Option<UserId>,
}

/// Applies a stored event again (a failed, dead or unmatched one; an applied one is left alone),
/// audited on the owner it concerns when there is one, in the transaction of the event's outcome.
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
    let audit = Audit {
        id: db::admin::new_audit_id(Utc::now()),
        admin: admin.clone(),
        action: format!("replay event {} ({})", event.id, event.kind),
        named,
        before,
        written: std::sync::Mutex::new(None),
    };
    let outcome = apply::process_as(state, event_id, true, Some(&audit)).await?;
    let user = match audit.written() {
        Some(user) => user,
        None => {
            // Nothing was committed with the audit row: the event was not taken (applied already,
            // or in progress) or it failed again. No change was made; audit that on its own.
            let result = outcome.map_or("not replayed (already applied or in progress)", |o| {
                o.as_str()
            });
            let mut tx = state.db.begin_write().await?;
            audit.write_in(state, &mut tx, result, None).await?;
            tx.commit().await?;
            audit.written().flatten()
        }
    };
    match &user {
        Some(user) => {
            tracing::info!(admin = %admin, user.id = %user, event = %event.id, "admin replayed an event")
        }
        None => tracing::info!(admin = %admin, event = %event.id, "admin replayed an event"),
    }
    Ok(Replayed { user })
}
