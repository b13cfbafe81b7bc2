//! "May this user use paid features now?" — the question every other service asks.

use chrono::{DateTime, Utc};

use crate::billing::Billing;
use crate::billing::cache;
use crate::db;
use crate::domain::{Decision, Entitlement, UserId};
use crate::error::AppError;

/// The policy's answer together with what it was computed from.
#[derive(Debug, Clone)]
pub struct EntitlementAnswer {
    /// Who was asked about.
    pub user_id: UserId,
    /// The stored entitlement, `None` when the user never subscribed.
    pub entitlement: Option<Entitlement>,
    /// The decision.
    pub decision: Decision,
    /// When the data behind the answer was last known to be current.
    pub as_of: DateTime<Utc>,
}

impl EntitlementAnswer {
    /// The wire status: our four statuses, or `none` for a user who never subscribed.
    pub fn status(&self) -> &'static str {
        self.entitlement
            .as_ref()
            .map_or("none", |e| e.status.as_str())
    }
}

/// Looks the user up (in the cache, else the store) and applies the policy. Unknown users are an
/// error (404 on the API).
pub async fn check(state: &Billing, user_id: &UserId) -> Result<EntitlementAnswer, AppError> {
    let now = Utc::now();
    let snapshot = match state.cache.get(user_id.as_str(), now) {
        Some(s) => s,
        None => cache::load(&state.cache, &state.db.pool, user_id, now).await?,
    };
    answer(state, user_id, snapshot, now)
}

fn answer(
    state: &Billing,
    user_id: &UserId,
    snapshot: cache::Snapshot,
    now: DateTime<Utc>,
) -> Result<EntitlementAnswer, AppError> {
    if !snapshot.known {
        return Err(AppError::UnknownUser(user_id.to_string()));
    }
    let decision = state.policy.decide_with_grant(
        snapshot.entitlement.as_ref(),
        snapshot.complimentary_until,
        now,
    );
    crate::telemetry::static_counter(
        "msr_entitlement_decisions_total",
        "reason",
        decision.reason.as_str(),
    )
    .increment(1);
    Ok(EntitlementAnswer {
        user_id: user_id.clone(),
        entitlement: snapshot.entitlement,
        decision,
        as_of: snapshot.loaded_at,
    })
}

/// Every user's answer now, by id, after `after` (`""`: from the first), at most `limit`; and
/// whether more follow. Read from the store in one statement (the cache's fill query).
pub async fn page(
    state: &Billing,
    after: &str,
    limit: i64,
) -> Result<(Vec<EntitlementAnswer>, bool), AppError> {
    let now = Utc::now();
    let mut rows = db::entitlements::all_for_check(&state.db.pool, after, limit + 1).await?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit.max(0) as usize);
    let answers = rows
        .into_iter()
        .map(|(user, complimentary, entitlement)| {
            let user_id = UserId::parse(&user)
                .map_err(|e| AppError::Internal(format!("stored user id unreadable: {e}")))?;
            let decision = state
                .policy
                .decide_with_grant(entitlement.as_ref(), complimentary, now);
            Ok(EntitlementAnswer {
                user_id,
                entitlement,
                decision,
                as_of: now,
            })
        })
        .collect::<Result<_, AppError>>()?;
    Ok((answers, has_more))
}

/// Like [`check`], but read from the store (not the cache) with everything it keeps, the
/// subscription id and the row's `updated_at` included: for the developer views that show them.
pub async fn check_stored(
    state: &Billing,
    user_id: &UserId,
) -> Result<EntitlementAnswer, AppError> {
    let now = Utc::now();
    let snapshot = cache::load(&state.cache, &state.db.pool, user_id, now).await?;
    answer(state, user_id, snapshot, now)
}

/// The user and the answer, read from the store in one round trip: what `/dev/status` shows.
pub async fn user_and_stored(
    state: &Billing,
    user_id: &UserId,
) -> Result<(db::users::User, EntitlementAnswer), AppError> {
    let now = Utc::now();
    let (user, entitlement) = db::entitlements::find_with_user(&state.db.pool, user_id)
        .await?
        .ok_or_else(|| AppError::UnknownUser(user_id.to_string()))?;
    let snapshot = cache::Snapshot {
        known: true,
        complimentary_until: user.complimentary_until,
        entitlement,
        loaded_at: now,
    };
    Ok((user, answer(state, user_id, snapshot, now)?))
}

/// A user's entitlement (or existence, or complimentary access) changed outside a transaction:
/// tell every instance and forget it here.
pub async fn changed(state: &Billing, user: &UserId) -> Result<(), AppError> {
    let mut conn = state.db.pool.acquire().await?;
    db::entitlements::notify_changed(&mut conn, state.db.backend, user.as_str()).await?;
    state.cache.evict(user.as_str());
    Ok(())
}
