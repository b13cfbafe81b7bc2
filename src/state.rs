//! What every handler can reach.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::billing::refetch::Refetcher;
use crate::config::Settings;
use crate::db::Db;
use crate::domain::{Plan, Policy};
use crate::error::AppError;
use crate::stripe::StripeApi;

/// Shared application state: one pointer, so every extractor and layer that takes it costs one
/// reference count, not one per part (the profile of the entitlement check showed cloning and
/// dropping the parts at a fifth of its CPU time).
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// Wraps the parts.
    pub fn new(shared: Shared) -> Self {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What every handler can reach, behind [`AppState`].
#[derive(Debug)]
pub struct Shared {
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
    /// The built-in Stripe simulator, in demo mode (served under `/_stripe/`).
    pub sim: Option<msr_stripe_sim::Simulator>,
    /// The plans' prices as shown on the plan page.
    pub price_cache: Arc<crate::billing::plans::PriceCache>,
    /// Entitlements in memory, evicted on every change.
    pub cache: Arc<crate::billing::cache::EntitlementCache>,
    /// The webhook's record and apply stages.
    pub pipeline: Arc<crate::billing::pipeline::Pipeline>,
    /// Per-user limits on the calls that reach Stripe for one owner, and return-poll counts.
    pub limits: Arc<crate::web::limits::UserLimits>,
    /// The admin dashboard's counts.
    pub admin_counts: Arc<crate::web::admin::CountsCache>,
    /// Browser sessions, stored in the same database.
    pub sessions: SessionStore,
    /// Wakes the background worker (a customer was linked and its unmatched events are due).
    pub wake: Arc<tokio::sync::Notify>,
    /// Every background loop, supervised.
    pub tasks: crate::tasks::Supervisor,
}

impl Shared {
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

/// Counters of things operators should see (exported as metrics later).
#[derive(Debug, Default)]
pub struct Counters {
    /// Webhooks refused for their signature.
    pub signature_failures: AtomicU64,
    /// Events naming a user already linked to another customer.
    pub match_conflicts: AtomicU64,
    /// Events recorded.
    pub events_recorded: AtomicU64,
    /// Duplicate deliveries.
    pub events_duplicate: AtomicU64,
    /// Events this instance finished processing (whatever the outcome).
    pub events_processed: AtomicU64,
    /// Events the webhook pipeline applied in a batch (its fast path).
    pub events_batched: AtomicU64,
    /// Subscription re-fetches sent to Stripe.
    pub refetches: AtomicU64,
}

impl Counters {
    /// Adds one.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The session store on the service's database (tower-sessions needs a concrete sqlx pool).
#[derive(Debug, Clone)]
pub enum SessionStore {
    /// SQLite.
    Sqlite(tower_sessions_sqlx_store::SqliteStore),
    /// PostgreSQL.
    Postgres(tower_sessions_sqlx_store::PostgresStore),
}
