//! Plain types and rules, no I/O: ids, plans, statuses and the entitlement policy.

mod entitlement;
mod ids;
pub mod ordering;
mod subscription;
pub mod time;

pub use entitlement::{Decision, Entitlement, Policy, Reason, derive as derive_entitlement};
pub use ids::{Email, InvalidValue, StripeCustomerId, SubscriptionId, UserId};
pub use subscription::{
    EntitlementStatus, Plan, StoredSubscription, StripeStatus, SubscriptionSnapshot,
};
