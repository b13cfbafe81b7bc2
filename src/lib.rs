//! msr-billing: the billing service of My Smart Road.
//!
//! Read in this order: `config` → `startup` → `web` (router table) → `billing` (use cases) →
//! `domain` (types and the entitlement policy) → `db` (all SQL).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod auth;
pub mod billing;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod startup;
pub mod stripe;
pub mod tasks;
pub mod telemetry;
pub mod web;
