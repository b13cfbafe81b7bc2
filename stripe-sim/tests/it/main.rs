//! Integration tests: the simulator on port 0, driven over real HTTP by the real
//! async-stripe client, plain form posts and a webhook receiver that verifies signatures.

mod api;
mod billing;
mod control;
mod entitlements;
mod features;
mod helpers;
mod pages;
mod standalone;
mod webhooks;
