//! What every handler can reach: the billing context and the web's own parts.

use std::sync::Arc;

use crate::billing::Billing;

/// Shared application state: one pointer (see [`Billing`]). Field access reaches the billing
/// context's parts through it (`state.db`, `state.cache`), and `&AppState` passes as `&Billing`.
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

/// The web's state, behind [`AppState`].
#[derive(Debug)]
pub struct Shared {
    /// The billing context.
    pub billing: Billing,
    /// The built-in Stripe simulator, in demo mode (served under `/_stripe/`).
    pub sim: Option<msr_stripe_sim::Simulator>,
    /// Per-user limits on the calls that reach Stripe for one owner, and return-poll counts.
    pub limits: Arc<crate::web::limits::UserLimits>,
    /// The admin dashboard's counts.
    pub admin_counts: Arc<crate::web::admin::CountsCache>,
    /// Browser sessions, stored in the same database.
    pub sessions: SessionStore,
}

impl std::ops::Deref for Shared {
    type Target = Billing;
    fn deref(&self) -> &Billing {
        &self.billing
    }
}

pub use crate::db::sessions::SessionStore;
