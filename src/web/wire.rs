//! JSON shapes sent on the wire, in one place so every route writes a user or an entitlement alike.
//! Each is a typed struct, so the OpenAPI document (`/openapi.json`) is generated from the same code.

use serde::Serialize;
use utoipa::ToSchema;

use chrono::{DateTime, Utc};

use crate::billing::entitlement::EntitlementAnswer;
use crate::billing::feed;
use crate::db::users::User;

pub use crate::domain::time::rfc3339 as time;

/// A user.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserBody {
    /// The platform's user id.
    #[schema(example = "42")]
    pub id: String,
    /// Lower-cased e-mail address.
    #[schema(example = "ed@example.com")]
    pub email: String,
    /// Stripe's customer, once the user started a checkout.
    pub stripe_customer_id: Option<String>,
    /// RFC 3339.
    pub created_at: String,
}

/// A user on the wire.
pub fn user(u: &User) -> UserBody {
    UserBody {
        id: u.id.to_string(),
        email: u.email.to_string(),
        stripe_customer_id: u.stripe_customer_id.as_ref().map(ToString::to_string),
        created_at: time(u.created_at),
    }
}

/// The answer of `GET /billing/entitlement` (200 when entitled, 402 when not).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EntitlementBody {
    /// Who was asked about.
    pub user_id: String,
    /// May the user use paid features now.
    pub entitled: bool,
    /// `trialing`, `active`, `past_due`, `canceled`, or `none` (never subscribed).
    #[schema(example = "active")]
    pub status: String,
    /// `weekly` or `monthly`.
    pub plan: Option<String>,
    /// The rule that decided: `active`, `trialing`, `past_due_grace`, `paused`, `past_due`,
    /// `canceled`, `no_subscription`, `complimentary`.
    #[schema(example = "active")]
    pub reason: String,
    /// Until when the answer holds if nothing changes (RFC 3339); null when not entitled.
    pub valid_until: Option<String>,
    /// Access paused (`pause_collection`, or Stripe's `paused`).
    pub pause_active: bool,
    /// When the data behind the answer was known current (RFC 3339).
    pub as_of: String,
}

/// The entitlement answer on the wire.
pub fn entitlement_answer(a: &EntitlementAnswer) -> EntitlementBody {
    answer_as_of(feed::Answer::of(a), a.as_of)
}

/// An answer's fields (as the check computes them, or as the change log kept them), as of a time.
pub fn answer_as_of(a: feed::Answer, as_of: DateTime<Utc>) -> EntitlementBody {
    EntitlementBody {
        user_id: a.user_id,
        entitled: a.entitled,
        status: a.status,
        plan: a.plan,
        reason: a.reason,
        valid_until: a.valid_until,
        pause_active: a.pause_active,
        as_of: time(as_of),
    }
}

/// What caused an entitlement change.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CauseBody {
    /// `stripe_event` (a Stripe event applied), `support` (a support action), `sync` (Stripe's
    /// state read by the sync command or the return page), `expiry` (time passed the answer's
    /// `valid_until`).
    #[serde(rename = "type")]
    #[schema(example = "stripe_event")]
    pub kind: String,
    /// `evt_…`, for `stripe_event`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The audit row's id, for `support` (the admin user page lists it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_id: Option<String>,
}

/// One change of an owner's entitlement answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChangeBody {
    /// Its place in the log: increasing, without gaps a consumer could miss.
    pub seq: i64,
    /// Whose.
    pub user_id: String,
    /// When the answer changed (RFC 3339).
    pub changed_at: String,
    /// Why.
    pub cause: CauseBody,
    /// The answer as it became: the body of `GET /billing/entitlement`, `as_of` = `changed_at`.
    pub entitlement: EntitlementBody,
}

/// A change on the wire.
pub fn change(c: feed::Change) -> ChangeBody {
    ChangeBody {
        seq: c.seq,
        changed_at: time(c.changed_at),
        cause: CauseBody {
            kind: c.cause.kind,
            event_id: c.cause.event_id,
            audit_id: c.cause.audit_id,
        },
        entitlement: answer_as_of(c.answer, c.changed_at),
        user_id: c.user_id,
    }
}

/// `GET /billing/entitlements/changes`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChangesBody {
    /// Oldest first.
    pub changes: Vec<ChangeBody>,
    /// Ask `after` this next.
    pub next: i64,
    /// More changes wait after `next`.
    pub has_more: bool,
}

/// `GET /billing/entitlements`: every owner's answer now, a page at a time.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SnapshotBody {
    /// By user id.
    pub entitlements: Vec<EntitlementBody>,
    /// Ask `after_user` this for the next page (null on the last).
    pub next_after_user: Option<String>,
    /// More pages follow.
    pub has_more: bool,
    /// The change log's seq when the page was read: read the changes after it from then on.
    pub seq: i64,
}

/// The stored entitlement as `/dev/status` shows it; a user who never subscribed reads as `none`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StoredEntitlementBody {
    /// Our status, or `none`.
    pub status: String,
    /// Stripe's raw status.
    pub stripe_status: Option<String>,
    /// Access paused.
    pub pause_active: bool,
    /// `sub_…`.
    pub stripe_subscription_id: Option<String>,
    /// `weekly` or `monthly`.
    pub plan: Option<String>,
    /// RFC 3339.
    pub current_period_end: Option<String>,
    /// Ends at the period end.
    pub cancel_at_period_end: bool,
    /// A renewal waits for 3-D Secure.
    pub action_required: bool,
    /// RFC 3339.
    pub updated_at: Option<String>,
}

/// The stored entitlement on the wire.
pub fn stored_entitlement(a: &EntitlementAnswer) -> StoredEntitlementBody {
    let e = a.entitlement.as_ref();
    StoredEntitlementBody {
        status: a.status().to_owned(),
        stripe_status: e.map(|e| e.stripe_status.as_str().to_owned()),
        pause_active: e.is_some_and(|e| e.pause_active),
        stripe_subscription_id: e
            .and_then(|e| e.stripe_subscription_id.as_ref())
            .map(ToString::to_string),
        plan: e.and_then(|e| e.plan).map(|p| p.to_string()),
        current_period_end: e.and_then(|e| e.current_period_end).map(time),
        cancel_at_period_end: e.is_some_and(|e| e.cancel_at_period_end),
        action_required: e.is_some_and(|e| e.action_required),
        updated_at: e.map(|e| time(e.updated_at)),
    }
}

/// `GET /dev/status`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DevStatusBody {
    /// The user.
    pub user: UserBody,
    /// What is stored.
    pub entitlement: StoredEntitlementBody,
    /// The policy's decision.
    pub entitled: bool,
    /// The rule that decided.
    pub reason: String,
    /// Until when (RFC 3339), null when not entitled.
    pub valid_until: Option<String>,
    /// RFC 3339.
    pub as_of: String,
}

/// `POST /billing/checkout` (API).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CheckoutStartedBody {
    /// Stripe Checkout's hosted page.
    pub url: String,
    /// `cs_…`.
    pub session_id: String,
}

/// `POST /billing/portal` (API).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PortalBody {
    /// Stripe's customer portal.
    pub url: String,
}

/// Every API error.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable code (`unknown_user`, `invalid_plan`, …).
    #[schema(example = "unknown_user")]
    pub code: String,
    /// For a person.
    pub message: String,
}
