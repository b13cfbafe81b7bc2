//! Integration tests: the simulator on port 0, driven over real HTTP by the real
//! async-stripe client, plain form posts and a webhook receiver that verifies signatures.

mod api;
mod billing;
mod checkout_modes;
mod control;
mod entitlements;
mod features;
mod helpers;
mod intents;
mod pages;
mod schedules;
mod setup_intents;
mod shortcuts;
mod standalone;
mod webhooks;
