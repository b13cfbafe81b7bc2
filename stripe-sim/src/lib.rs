//! Stripe simulator (being written).
