//! What the service knows of a subscription: the plan, the status on our side, the raw Stripe status.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::InvalidValue;

/// The two plans an owner can buy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Plan {
    /// Billed every week.
    Weekly,
    /// Billed every month.
    Monthly,
}

impl Plan {
    /// The wire name (`weekly` / `monthly`).
    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Weekly => "weekly",
            Plan::Monthly => "monthly",
        }
    }
}

impl FromStr for Plan {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "weekly" => Ok(Plan::Weekly),
            "monthly" => Ok(Plan::Monthly),
            other => Err(InvalidValue(format!(
                "plan must be \"weekly\" or \"monthly\", got {other:?}"
            ))),
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The entitlement status stored for a user, the seed's four values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntitlementStatus {
    /// In a free trial.
    Trialing,
    /// Paid and current.
    Active,
    /// A payment failed (Stripe's past_due, unpaid, incomplete, incomplete_expired, paused).
    PastDue,
    /// The subscription ended.
    Canceled,
}

impl EntitlementStatus {
    /// Every status, in the order dashboards list them.
    pub const ALL: [EntitlementStatus; 4] =
        [Self::Active, Self::Trialing, Self::PastDue, Self::Canceled];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trialing => "trialing",
            Self::Active => "active",
            Self::PastDue => "past_due",
            Self::Canceled => "canceled",
        }
    }
}

impl FromStr for EntitlementStatus {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "trialing" => Ok(Self::Trialing),
            "active" => Ok(Self::Active),
            "past_due" => Ok(Self::PastDue),
            "canceled" => Ok(Self::Canceled),
            other => Err(InvalidValue(format!(
                "unknown entitlement status {other:?}"
            ))),
        }
    }
}

/// A subscription status as Stripe reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StripeStatus {
    /// `incomplete`: the first payment failed or waits for authentication.
    Incomplete,
    /// `incomplete_expired`: the first payment never came (23 h).
    IncompleteExpired,
    /// `trialing`.
    Trialing,
    /// `active`.
    Active,
    /// `past_due`: a renewal failed and Stripe is retrying.
    PastDue,
    /// `canceled`.
    Canceled,
    /// `unpaid`: retries ran out and the account keeps the subscription open.
    Unpaid,
    /// `paused`: a trial ended without a payment method.
    Paused,
}

impl StripeStatus {
    /// Stripe's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Incomplete => "incomplete",
            Self::IncompleteExpired => "incomplete_expired",
            Self::Trialing => "trialing",
            Self::Active => "active",
            Self::PastDue => "past_due",
            Self::Canceled => "canceled",
            Self::Unpaid => "unpaid",
            Self::Paused => "paused",
        }
    }

    /// The seed's mapping onto our four statuses, plus whether it pauses access by itself
    /// (Stripe's `paused` is a trial that ended without a payment method).
    pub fn to_entitlement(self) -> (EntitlementStatus, bool) {
        match self {
            Self::Trialing => (EntitlementStatus::Trialing, false),
            Self::Active => (EntitlementStatus::Active, false),
            Self::PastDue | Self::Unpaid | Self::Incomplete | Self::IncompleteExpired => {
                (EntitlementStatus::PastDue, false)
            }
            Self::Paused => (EntitlementStatus::PastDue, true),
            Self::Canceled => (EntitlementStatus::Canceled, false),
        }
    }

    /// Whether a subscription in this status blocks a new checkout (the owner must use the portal).
    pub fn blocks_new_checkout(self) -> bool {
        !matches!(self, Self::Canceled | Self::IncompleteExpired)
    }
}

impl FromStr for StripeStatus {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "incomplete" => Self::Incomplete,
            "incomplete_expired" => Self::IncompleteExpired,
            "trialing" => Self::Trialing,
            "active" => Self::Active,
            "past_due" => Self::PastDue,
            "canceled" => Self::Canceled,
            "unpaid" => Self::Unpaid,
            "paused" => Self::Paused,
            other => {
                return Err(InvalidValue(format!(
                    "unknown Stripe subscription status {other:?}"
                )));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripe_statuses_map_as_the_seed_did() {
        use EntitlementStatus as E;
        let table = [
            ("trialing", E::Trialing, false),
            ("active", E::Active, false),
            ("past_due", E::PastDue, false),
            ("unpaid", E::PastDue, false),
            ("incomplete", E::PastDue, false),
            ("incomplete_expired", E::PastDue, false),
            ("paused", E::PastDue, true),
            ("canceled", E::Canceled, false),
        ];
        for (raw, status, paused) in table {
            let parsed: StripeStatus = raw.parse().unwrap();
            assert_eq!(parsed.as_str(), raw);
            assert_eq!(parsed.to_entitlement(), (status, paused), "{raw}");
        }
        assert!("active ".parse::<StripeStatus>().is_err());
    }

    #[test]
    fn plans_and_statuses_round_trip_their_names() {
        for p in [Plan::Weekly, Plan::Monthly] {
            assert_eq!(p.as_str().parse::<Plan>(), Ok(p));
        }
        for s in EntitlementStatus::ALL {
            assert_eq!(s.as_str().parse::<EntitlementStatus>(), Ok(s));
        }
        assert!("yearly".parse::<Plan>().is_err());
    }
}

/// What Stripe says about one subscription at one moment, read from a webhook payload or a fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionSnapshot {
    /// `sub_…`.
    pub id: super::SubscriptionId,
    /// `cus_…`.
    pub customer: super::StripeCustomerId,
    /// Stripe's status.
    pub status: StripeStatus,
    /// The first item's price id.
    pub price_id: Option<String>,
    /// The first item's price interval (`week`, `month`), to recognise plans priced elsewhere.
    pub interval: Option<String>,
    /// The latest item period end (the subscription's own field on older payloads).
    pub current_period_end: Option<chrono::DateTime<chrono::Utc>>,
    /// Ends at the period end.
    pub cancel_at_period_end: bool,
    /// `pause_collection` is set.
    pub pause_collection: bool,
    /// When Stripe created the subscription.
    pub created: chrono::DateTime<chrono::Utc>,
    /// `metadata.user_id`, as we put it on the subscription at checkout.
    pub metadata_user_id: Option<String>,
}

/// A subscription as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSubscription {
    /// `sub_…`.
    pub id: String,
    /// Whose it is.
    pub user_id: String,
    /// `cus_…`.
    pub customer_id: String,
    /// Stripe's status.
    pub stripe_status: StripeStatus,
    /// The first item's price.
    pub price_id: Option<String>,
    /// The plan, when recognised.
    pub plan: Option<Plan>,
    /// When the current period ends.
    pub current_period_end: Option<chrono::DateTime<chrono::Utc>>,
    /// Ends at the period end.
    pub cancel_at_period_end: bool,
    /// `pause_collection` set.
    pub pause_collection: bool,
    /// When the renewal failed, while past due.
    pub past_due_since: Option<chrono::DateTime<chrono::Utc>>,
    /// A payment waits for 3-D Secure.
    pub action_required: bool,
    /// When Stripe created the subscription.
    pub created: chrono::DateTime<chrono::Utc>,
    /// Stripe's `created` of the newest event applied, in Stripe's own unit (whole unix seconds):
    /// the ordering key [`crate::domain::ordering`] compares with events' `created`.
    pub watermark: i64,
    /// When we last wrote it.
    pub updated_at: chrono::DateTime<chrono::Utc>,
}
