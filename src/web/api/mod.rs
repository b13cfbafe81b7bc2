//! The internal JSON API other platform services call with `X-User-Id`.

pub mod billing;
pub mod entitlement;
pub mod feed;

use axum::Router;

use crate::web::AppState;

/// Every internal API route.
pub fn router() -> Router<AppState> {
    billing::router()
}
