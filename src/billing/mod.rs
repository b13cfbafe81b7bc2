//! Use cases, written once and called from the API, the pages and the commands.

pub mod apply;
pub mod cache;
pub mod checkout;
pub mod context;
pub mod entitlement;
pub mod feed;
pub mod ingest;
pub mod outbound;
pub mod pipeline;
pub mod plans;
pub mod refetch;
pub mod support;
pub mod sync;
pub mod users;
pub mod worker;
pub mod write;

pub use context::{Billing, Parts, Prices};
