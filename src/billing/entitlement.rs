//! "May this user use paid features now?" — the question every other service asks.

use chrono::{DateTime, Utc};

use crate::db;
use crate::domain::{Decision, Entitlement, UserId};
use crate::error::AppError;
use crate::state::AppState;

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

/// Looks the user up and applies the policy. Unknown users are an error (404 on the API).
pub async fn check(state: &AppState, user_id: &UserId) -> Result<EntitlementAnswer, AppError> {
    let mut conn = state.db.pool.acquire().await?;
    let Some(user) = db::users::find(&mut *conn, user_id).await? else {
        return Err(AppError::UnknownUser(user_id.to_string()));
    };
    let entitlement = db::entitlements::find(&mut *conn, user_id).await?;
    let now = Utc::now();
    let decision =
        state
            .policy
            .decide_with_grant(entitlement.as_ref(), user.complimentary_until, now);
    metrics::counter!("msr_entitlement_decisions_total", "reason" => decision.reason.as_str())
        .increment(1);
    Ok(EntitlementAnswer {
        user_id: user_id.clone(),
        entitlement,
        decision,
        as_of: now,
    })
}
