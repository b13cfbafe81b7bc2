//! The adapter to Stripe: the API client, webhook signatures, and tolerant reading of Stripe's JSON.

pub mod api;
pub mod objects;
pub mod signature;

pub use api::{StripeApi, StripeCallError};
