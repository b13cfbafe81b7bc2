//! The integration suite: the real application over HTTP on a real database.
//! SQLite by default; `MSR_TEST_BACKEND=postgres MSR_TEST_POSTGRES_URL=postgres://…` runs it on PostgreSQL.

mod helpers;

mod admin;
mod billing;
mod commands;
mod coverage;
mod dev_routes;
mod edges;
mod entitlement;
mod feed;
mod feed_out;
mod journeys;
mod layers;
mod openapi;
mod ordering;
mod pages;
mod process;
mod resilience;
mod safety;
mod secrets;
mod service;
mod supervised;
mod webhook;
