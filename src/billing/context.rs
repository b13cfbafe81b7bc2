//! The billing context: everything the use cases need (the database, Stripe, the cache, the
//! webhook pipeline, the background loops, the configuration), behind one pointer. The web layer
//! holds it inside its own state; the commands use it alone.

use std::sync::Arc;

use crate::billing::refetch::Refetcher;
use crate::config::Settings;
use crate::db::Db;
use crate::domain::{Plan, Policy};
use crate::error::AppError;
use crate::stripe::StripeApi;
use crate::telemetry::Counters;

/// The billing context: one pointer, so every clone costs one reference count (the profile of the
/// entitlement check showed cloning and dropping the parts at a fifth of its CPU time).
#[derive(Debug, Clone)]
pub struct Billing(Arc<Parts>);

impl Billing {
    /// Wraps the parts.
    pub fn new(parts: Parts) -> Self {
        Billing(Arc::new(parts))
    }
}

impl std::ops::Deref for Billing {
    type Target = Parts;
    fn deref(&self) -> &Parts {
        &self.0
    }
}

/// What the use cases reach, behind [`Billing`].
#[derive(Debug)]
pub struct Parts {
    /// The database.
    pub db: Db,
    /// The checked configuration.
    pub settings: Arc<Settings>,
    /// The entitlement policy built from the configuration.
    pub policy: Policy,
    /// Stripe, when configured (or simulated).
    pub stripe: Option<StripeApi>,
    /// The plans' price ids.
    pub prices: Prices,
    /// Coalesces re-fetches of one subscription.
    pub refetch: Arc<Refetcher>,
    /// Counters operators watch.
    pub counters: Arc<Counters>,
    /// The plans' prices as shown on the plan page.
    pub price_cache: Arc<crate::billing::plans::PriceCache>,
    /// Entitlements in memory, evicted on every change.
    pub cache: Arc<crate::billing::cache::EntitlementCache>,
    /// The webhook's record and apply stages.
    pub pipeline: Arc<crate::billing::pipeline::Pipeline>,
    /// Wakes the background worker (a customer was linked and its unmatched events are due).
    pub wake: Arc<tokio::sync::Notify>,
    /// Every background loop, supervised.
    pub tasks: crate::tasks::Supervisor,
    /// The change log's tail, fanned out to stream subscribers.
    pub feed: Arc<crate::billing::feed::Tail>,
}

impl Parts {
    /// The Stripe client, or 503 when none is configured.
    pub fn stripe(&self) -> Result<&StripeApi, AppError> {
        self.stripe.as_ref().ok_or(AppError::StripeNotConfigured)
    }
}

/// The price ids of the two plans.
#[derive(Debug, Clone, Default)]
pub struct Prices {
    /// `STRIPE_PRICE_WEEKLY`.
    pub weekly: Option<String>,
    /// `STRIPE_PRICE_MONTHLY`.
    pub monthly: Option<String>,
}

impl Prices {
    /// The price of a plan.
    pub fn of(&self, plan: Plan) -> Option<&str> {
        match plan {
            Plan::Weekly => self.weekly.as_deref(),
            Plan::Monthly => self.monthly.as_deref(),
        }
    }

    /// The plan a price belongs to: by configured id, else by the price's interval.
    pub fn plan_of(&self, price_id: Option<&str>, interval: Option<&str>) -> Option<Plan> {
        match price_id {
            Some(p) if self.weekly.as_deref() == Some(p) => Some(Plan::Weekly),
            Some(p) if self.monthly.as_deref() == Some(p) => Some(Plan::Monthly),
            _ => match interval {
                Some("week") => Some(Plan::Weekly),
                Some("month") => Some(Plan::Monthly),
                _ => None,
            },
        }
    }
}
