//! The browser journeys: a headless, phone-sized Chromium (390×844) walks the pages of the real
//! application the way owners, support and developers do, and checks what they would see.
//!
//! Each journey starts its own app in this process (demo mode: the Stripe simulator is embedded
//! under `/_stripe/`, payments are simulated), on its own SQLite file, with its own ChromeDriver
//! and browser profile; at most two browsers run at once.
//!
//! Run: `cargo test -p msr-billing --test browser`. Needs `/usr/bin/chromium` and
//! `/usr/bin/chromedriver` (Debian's `chromium` and `chromium-driver`; elsewhere point
//! `MSR_TEST_CHROMIUM` and `MSR_TEST_CHROMEDRIVER` at them); without them every journey prints
//! `SKIPPED browser journeys: …` and passes, unless `MSR_TEST_REQUIRE_ALL=1`.
//! Screenshots of every page visited land in `target/screenshots/<journey>-<nn>-<step>.png`
//! (a journey that fails also leaves `<journey>-<nn>-FAILED.png`).

mod flows;
mod harness;

mod admin;
mod devtools;
mod owner;
