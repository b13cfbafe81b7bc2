//! JSON shapes sent on the wire, in one place so every route writes a user or an entitlement alike.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::billing::entitlement::EntitlementAnswer;
use crate::db::users::User;

/// RFC 3339 in UTC, to the second.
pub fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn opt_time(t: Option<DateTime<Utc>>) -> Value {
    t.map_or(Value::Null, |t| Value::String(time(t)))
}

/// A user.
pub fn user(u: &User) -> Value {
    json!({
        "id": u.id,
        "email": u.email,
        "stripe_customer_id": u.stripe_customer_id,
        "created_at": time(u.created_at),
    })
}

/// The answer of `GET /billing/entitlement`.
pub fn entitlement_answer(a: &EntitlementAnswer) -> Value {
    json!({
        "user_id": a.user_id,
        "entitled": a.decision.entitled,
        "status": a.status(),
        "plan": a.entitlement.as_ref().and_then(|e| e.plan),
        "reason": a.decision.reason.as_str(),
        "valid_until": opt_time(a.decision.valid_until),
        "pause_active": a.entitlement.as_ref().is_some_and(|e| e.pause_active),
        "as_of": time(a.as_of),
    })
}

/// The stored entitlement as `/dev/status` shows it; a user who never subscribed reads as status `none`.
pub fn stored_entitlement(a: &EntitlementAnswer) -> Value {
    let e = a.entitlement.as_ref();
    json!({
        "status": a.status(),
        "stripe_status": e.map(|e| e.stripe_status.as_str()),
        "pause_active": e.is_some_and(|e| e.pause_active),
        "stripe_subscription_id": e.and_then(|e| e.stripe_subscription_id.clone()),
        "plan": e.and_then(|e| e.plan),
        "current_period_end": opt_time(e.and_then(|e| e.current_period_end)),
        "cancel_at_period_end": e.is_some_and(|e| e.cancel_at_period_end),
        "action_required": e.is_some_and(|e| e.action_required),
        "updated_at": opt_time(e.map(|e| e.updated_at)),
    })
}
