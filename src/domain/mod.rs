//! Plain types and rules, no I/O: ids, plans, statuses and the entitlement policy.

mod entitlement;
mod ids;
mod subscription;

pub use entitlement::{Decision, Entitlement, Policy, Reason};
pub use ids::{Email, InvalidValue, StripeCustomerId, SubscriptionId, UserId};
pub use subscription::{EntitlementStatus, Plan, StripeStatus, SubscriptionSnapshot};
