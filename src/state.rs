//! What every handler can reach.

use std::sync::Arc;

use crate::config::Settings;
use crate::db::Db;
use crate::domain::Policy;

/// Shared, cheaply cloned application state.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The database.
    pub db: Db,
    /// The checked configuration.
    pub settings: Arc<Settings>,
    /// The entitlement policy built from the configuration.
    pub policy: Policy,
}
