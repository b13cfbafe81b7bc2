//! Fault drills: the real `msr-billing` binary, broken on purpose while it works.
//!
//! Each drill starts the service as a process of its own (so it can be killed with `kill -9` or
//! stopped with SIGTERM), keeps the Stripe simulator in the test's process (so Stripe outlives the
//! service and retries its webhooks as Stripe does), breaks one thing, and then checks that nothing
//! was lost: every event the service acknowledged is recorded once and applied, and the store ends
//! equal to Stripe's truth.
//!
//! `cargo test -p msr-billing --test faults`; PostgreSQL drills need `MSR_TEST_POSTGRES_URL`
//! (a server URL; each drill creates and drops a database `msr_fault_<random>`) and say `SKIPPED`
//! without it, unless `MSR_TEST_REQUIRE_ALL=1`. Drills that found a bug in the service are
//! `#[ignore = "bug: …"]` (the reason says where); `-- --include-ignored` runs them too.
//!
//! Two waits are cut short by the drills, and only these: an event's retry back-off
//! (`next_attempt_at`), and the 60 s lease a killed or cut-off apply leaves on an event
//! (`locked_until`, only leases taken before the fault ended).
//!
//! `crash` (kill -9 mid-stream), `database` (SQLite read-only or locked, PostgreSQL killed and
//! closed), `stripe` (500s and hangs), `instances` (two processes on one PostgreSQL), `shutdown`
//! (SIGTERM under load); `harness` holds what they share.

mod harness;

mod crash;
mod database;
mod instances;
mod shutdown;
mod stripe;
