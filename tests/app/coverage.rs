//! Billing behaviour no other module covers: the Checkout cancel page, every `/dev` simulator
//! control, 3-D Secure on a renewal, re-fetch coalescing, Stripe's 429 and 409, Checkout Session
//! expiry, Stripe missing or hanging, the timed Events API poll, the cache turned off, static
//! files, the past-due grace running out, and the `events` commands.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use msr_stripe_sim::{Fault, SimConfig, TestCard};
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{StripeApp, TestApp, TestDb, WEBHOOK_SECRET, assert_error, json, now, sign};
use crate::pages::browser;

const INTERNAL_KEY: &str = "coverage-internal-key-0123456789abcdef";

/// A browser signed in through the developer form (debug mode); the user is made if missing.
pub(crate) async fn signed_in(app: &TestApp, user: &str) -> Client {
    let client = browser();
    crate::safety::dev_sign_in(app, &client, user).await;
    client
}

pub(crate) use crate::safety::csrf;

/// What the store holds for a user (`GET /dev/status`).
async fn stored(app: &TestApp, user: &str) -> Value {
    let response = app.dev_status(user).await;
    assert_eq!(response.status(), StatusCode::OK);
    json(response).await
}

pub(crate) fn customer_of(app: &StripeApp, sub: &str) -> String {
    app.sim().subscription(sub).unwrap()["customer"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A signed event as Stripe sends it.
pub(crate) fn event(id: &str, kind: &str, created: i64, object: Value) -> String {
    json!({"id": id, "object": "event", "api_version": "2026-09-30.endive", "created": created,
        "livemode": false, "pending_webhooks": 1, "type": kind, "data": {"object": object}})
    .to_string()
}

/// An invoice of a subscription, as the webhook reads it (only the ids matter: it re-fetches).
pub(crate) fn invoice(id: &str, customer: &str, sub: &str) -> Value {
    json!({"id": id, "object": "invoice", "customer": customer,
        "parent": {"type": "subscription_details", "subscription_details": {"subscription": sub}}})
}

/// Waits (up to `within`) until `check` holds.
pub(crate) async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_checkout_cancel_page_says_nothing_was_charged_and_links_back_to_plans() {
    let app = TestApp::spawn().await;
    let owner = signed_in(&app, "cancel-1").await;
    // The page Checkout's cancel button leads to is this one.
    let started = json(app.checkout("cancel-1", "monthly").await).await;
    let sim = app.state.sim.clone().expect("demo mode");
    let session = sim.object(started["session_id"].as_str().unwrap()).unwrap();
    let cancel_url = session["cancel_url"].as_str().unwrap().to_owned();
    assert!(cancel_url.ends_with("/billing/cancel"), "{cancel_url}");
    let anonymous = browser();
    for (who, client) in [("signed in", &owner), ("signed out", &anonymous)] {
        let response = client
            .get(format!("{}/billing/cancel", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{who}");
        assert!(
            response.headers()[CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{who}"
        );
        let page = response.text().await.unwrap();
        assert!(page.contains("Nothing was charged"), "{who}: {page}");
        assert!(
            page.contains(r#"<a class="button" href="/">Back to plans</a>"#),
            "{who}: {page}"
        );
        assert_eq!(
            page.contains("Signed in as cancel-1"),
            who == "signed in",
            "{who}: {page}"
        );
    }
    assert_eq!(
        app.entitlement("cancel-1").await.status(),
        StatusCode::PAYMENT_REQUIRED,
        "leaving Checkout subscribes nobody"
    );
}

/// Presses one `/dev` simulator control as htmx does; returns the status fragment.
async fn press(app: &TestApp, dev: &Client, token: &str, action: &str) -> String {
    let response = dev
        .post(format!("{}/dev/sim/{action}", app.address))
        .header("HX-Request", "true")
        .form(&[("csrf_token", token)])
        .send()
        .await
        .unwrap();
    let status = response.status();
    let fragment = response.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{action}: {fragment}");
    fragment
}

/// The stored state once it satisfies `ok` (up to 20 s): a control answers after waiting up to
/// 5 s for its webhooks, which a busy machine may not meet.
async fn stored_once(app: &TestApp, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = stored(app, "dev-sim").await;
        if ok(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn stripe_status(s: &Value) -> &str {
    s["entitlement"]["stripe_status"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test]
async fn every_dev_simulator_control_drives_the_developers_own_subscription() {
    let app = TestApp::spawn_with(&[("MSR_TRIAL_DAYS", "7")]).await;
    let sim = app.state.sim.clone().expect("demo mode");
    let dev = signed_in(&app, "dev-sim").await;
    let token = csrf(&app, &dev).await;
    let started = dev
        .post(format!("{}/billing/checkout", app.address))
        .form(&[("plan", "weekly"), ("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), StatusCode::SEE_OTHER);
    let to = started.headers()[LOCATION].to_str().unwrap().to_owned();
    let session = to
        .split("/_stripe/c/pay/")
        .nth(1)
        .and_then(|rest| rest.split(['?', '/', '#']).next())
        .unwrap_or_else(|| panic!("the simulator's hosted Checkout: {to}"))
        .to_owned();
    sim.pay_checkout(&session, TestCard::Visa).await.unwrap();
    let s = stored_once(&app, "trialing after Checkout", |s| {
        stripe_status(s) == "trialing"
    })
    .await;
    let sub = s["entitlement"]["stripe_subscription_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let period_end = || {
        sim.subscription(&sub).unwrap()["items"]["data"][0]["current_period_end"]
            .as_i64()
            .unwrap()
    };
    let said = |fragment: &str, message: &str| {
        assert!(
            fragment.contains(message),
            "expected {message:?} in {fragment}"
        )
    };

    said(
        &press(&app, &dev, &token, "end_trial").await,
        "Trial ended.",
    );
    stored_once(&app, "active once the trial ended", |s| {
        stripe_status(s) == "active" && s["reason"] == "active"
    })
    .await;

    let before = period_end();
    said(
        &press(&app, &dev, &token, "advance_to_renewal").await,
        "Clock moved to the renewal at",
    );
    assert!(period_end() > before, "a new period in Stripe");
    let renewed = period_end();
    stored_once(&app, "the renewal paid, the new period stored", |s| {
        stripe_status(s) == "active"
            && s["entitlement"]["current_period_end"]
                .as_str()
                .is_some_and(|t| {
                    chrono::DateTime::parse_from_rfc3339(t).unwrap().timestamp() == renewed
                })
    })
    .await;

    said(
        &press(&app, &dev, &token, "fail_next_renewal").await,
        "The next renewal will fail.",
    );
    assert_eq!(sim.subscription(&sub).unwrap()["status"], "active");
    press(&app, &dev, &token, "advance_to_renewal").await;
    stored_once(&app, "past due after the forced failure", |s| {
        stripe_status(s) == "past_due" && s["reason"] == "past_due"
    })
    .await;

    said(
        &press(&app, &dev, &token, "card_ok").await,
        "A working card is on file.",
    );
    stored_once(&app, "the waiting invoice paid with the new card", |s| {
        stripe_status(s) == "active" && s["entitled"] == true
    })
    .await;

    said(
        &press(&app, &dev, &token, "card_fails").await,
        "The card now fails every charge.",
    );
    assert_eq!(sim.subscription(&sub).unwrap()["status"], "active");
    press(&app, &dev, &token, "advance_to_renewal").await;
    stored_once(&app, "past due with the failing card", |s| {
        stripe_status(s) == "past_due"
    })
    .await;
    press(&app, &dev, &token, "card_ok").await;
    stored_once(&app, "active again with a working card", |s| {
        stripe_status(s) == "active"
    })
    .await;

    said(
        &press(&app, &dev, &token, "pause").await,
        "Collection paused.",
    );
    stored_once(&app, "paused", |s| {
        s["entitlement"]["pause_active"] == true && s["reason"] == "paused"
    })
    .await;
    said(
        &press(&app, &dev, &token, "unpause").await,
        "Collection resumed.",
    );
    stored_once(&app, "resumed", |s| {
        s["entitlement"]["pause_active"] == false && s["reason"] == "active"
    })
    .await;

    said(
        &press(&app, &dev, &token, "cancel_at_period_end").await,
        "Set to cancel at the period end.",
    );
    stored_once(&app, "set to cancel, entitled until the period ends", |s| {
        s["entitlement"]["cancel_at_period_end"] == true && s["entitled"] == true
    })
    .await;

    // Redeliveries: event ids the service has, each answered as a duplicate; nothing changes.
    let dups = || app.state.counters.events_duplicate.load(Ordering::Relaxed);
    for action in ["resend_last", "out_of_order"] {
        let before = dups();
        said(&press(&app, &dev, &token, action).await, " sent again.");
        eventually(
            &format!("{action}: the event arrives again"),
            Duration::from_secs(20),
            || async { dups() > before },
        )
        .await;
        let s = stored(&app, "dev-sim").await;
        assert_eq!(
            (
                s["entitlement"]["cancel_at_period_end"].as_bool(),
                s["entitled"].as_bool()
            ),
            (Some(true), Some(true)),
            "{action} changed nothing: {s}"
        );
    }

    said(&press(&app, &dev, &token, "cancel").await, "Canceled now.");
    assert_eq!(sim.subscription(&sub).unwrap()["status"], "canceled");
    stored_once(&app, "canceled now", |s| {
        stripe_status(s) == "canceled" && s["entitled"] == false && s["reason"] == "canceled"
    })
    .await;
}

#[tokio::test]
async fn a_renewal_waiting_on_3d_secure_sets_action_required_and_paying_clears_it() {
    let app = StripeApp::spawn().await;
    let sub = app.subscribed("acr", "monthly", TestCard::Visa).await;
    let customer = customer_of(&app, &sub);
    app.sim()
        .set_card(&customer, TestCard::AuthenticationRequired)
        .await
        .unwrap();
    app.sim().advance_to_next_renewal(&sub).await.unwrap();
    app.settle().await;
    assert!(
        app.sim()
            .event_types()
            .iter()
            .any(|t| t == "invoice.payment_action_required"),
        "{:?}",
        app.sim().event_types()
    );
    let s = stored(&app, "acr").await;
    assert_eq!(
        (
            s["entitlement"]["stripe_status"].as_str(),
            s["entitlement"]["action_required"].as_bool()
        ),
        (Some("past_due"), Some(true)),
        "{s}"
    );
    assert_eq!(app.entitled("acr").await.0, 402);

    // The owner fixes it (a card that needs no authentication): the waiting invoice is paid.
    app.sim().set_card(&customer, TestCard::Visa).await.unwrap();
    app.settle().await;
    assert_eq!(app.sim().subscription(&sub).unwrap()["status"], "active");
    let s = stored(&app, "acr").await;
    assert_eq!(
        (
            s["entitlement"]["stripe_status"].as_str(),
            s["entitlement"]["action_required"].as_bool()
        ),
        (Some("active"), Some(false)),
        "{s}"
    );
    assert_eq!(app.entitled("acr").await.0, 200);
}

#[tokio::test]
async fn concurrent_events_needing_a_refetch_of_one_subscription_share_fetches() {
    const EVENTS: usize = 8;
    let app = StripeApp::spawn().await;
    let sub = app.subscribed("co", "monthly", TestCard::Visa).await;
    let customer = customer_of(&app, &sub);
    // Stripe changes and the store has not heard: what the re-fetches write must be Stripe's now.
    app.sim().set_fault(Fault::PauseDeliveries).await;
    app.sim().cancel_at_period_end(&sub, true).await.unwrap();
    assert_eq!(
        stored(&app, "co").await["entitlement"]["cancel_at_period_end"],
        false
    );
    // The first re-fetch hangs a moment, so the other events arrive while it is under way.
    app.sim()
        .set_fault(Fault::ApiHang {
            count: 1,
            path_prefix: Some(format!("/v1/subscriptions/{sub}")),
            delay_ms: 1500,
        })
        .await;
    let refetches = || app.state.counters.refetches.load(Ordering::Relaxed);
    let before = refetches();
    let bodies: Vec<String> = (0..EVENTS)
        .map(|i| {
            event(
                &format!("evt_co_{i}"),
                "invoice.paid",
                now(),
                invoice(&format!("in_co_{i}"), &customer, &sub),
            )
        })
        .collect();
    let posts = bodies.iter().map(|body| {
        let app = &app;
        async move {
            app.post_webhook(body, Some(sign(WEBHOOK_SECRET, now(), body)))
                .await
                .status()
                .as_u16()
        }
    });
    let codes = futures::future::join_all(posts).await;
    assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
    // Each delivery is answered once applied, or after 5 s (the apply goes on): wait for all.
    let app_ref = &app;
    eventually(
        "every event applied",
        Duration::from_secs(20),
        || async move {
            let applied: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM stripe_events WHERE id LIKE 'evt_co_%' AND state = 'applied'",
            )
            .fetch_one(&app_ref.state.db.pool)
            .await
            .unwrap();
            applied == EVENTS as i64
        },
    )
    .await;
    let made = refetches() - before;
    assert!(
        (1..EVENTS as u64).contains(&made),
        "{EVENTS} events, {made} subscription retrieves"
    );
    assert!(app.sim().faults().api_hangs.is_empty(), "the hang was used");
    let truth = app.sim().subscription(&sub).unwrap();
    let s = stored(&app, "co").await;
    assert_eq!(s["entitlement"]["stripe_status"], truth["status"], "{s}");
    assert_eq!(
        s["entitlement"]["cancel_at_period_end"], truth["cancel_at_period_end"],
        "{s}"
    );
    assert_eq!(s["entitlement"]["cancel_at_period_end"], true);
}

/// Stripe answers of `status` (429, 409) the service has seen in this process, by every app.
fn stripe_answers(status: &str) -> u64 {
    let text = msr_billing::web::ops::recorder()
        .map(|r| r.render())
        .unwrap_or_default();
    let kind = format!("kind=\"{status}\"");
    text.lines()
        .filter(|l| l.starts_with("msr_stripe_api_errors_total{") && l.contains(&kind))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test]
async fn stripe_rate_limiting_with_429_is_retried_and_checkout_still_succeeds() {
    let app = StripeApp::spawn().await;
    app.create_user("rl", "rl@example.com").await;
    app.sim().set_fault(Fault::RateLimit { on: true }).await;
    // Someone else on the account uses up Stripe's budget (25 a second)...
    let other = Client::new();
    let spend = || async {
        other
            .get(format!("{}v1/customers?limit=1", app.stripe.base_url))
            .bearer_auth("sk_test_neighbour")
            .send()
            .await
            .unwrap()
            .status()
    };
    let mut spent = 0;
    while spend().await != StatusCode::TOO_MANY_REQUESTS {
        spent += 1;
        assert!(spent < 200, "the rate limit never answered 429");
    }
    // ...and keeps at it until our checkout has been told 429 at least once.
    let refused_before = stripe_answers("429");
    let done = std::sync::atomic::AtomicBool::new(false);
    let checkout = async {
        let response = app.checkout("rl", "monthly").await;
        done.store(true, Ordering::Relaxed);
        response
    };
    let neighbour = async {
        while stripe_answers("429") == refused_before && !done.load(Ordering::Relaxed) {
            spend().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let (response, ()) = tokio::join!(checkout, neighbour);
    let status = response.status();
    let body = json(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["session_id"].as_str().unwrap().starts_with("cs_"));
    assert!(
        stripe_answers("429") > refused_before,
        "the checkout met a 429 on its way"
    );
    app.sim().set_fault(Fault::RateLimit { on: false }).await;
    let summary = app.sim().state_summary();
    assert_eq!(
        summary["customers"].as_array().map(Vec::len),
        Some(1),
        "{summary}"
    );
}

#[tokio::test]
async fn a_create_whose_idempotency_key_is_in_flight_gets_409_and_is_retried_until_stripe_answers()
{
    let app = StripeApp::spawn().await;
    app.create_user("ik", "ik@example.com").await;
    // The first checkout's customer create hangs inside Stripe, its Idempotency-Key in flight.
    app.sim()
        .set_fault(Fault::ApiHang {
            count: 1,
            path_prefix: Some("/v1/customers".into()),
            delay_ms: 1000,
        })
        .await;
    let first = app.checkout("ik", "monthly");
    let second = async {
        // Sent once the first is inside the hang: Stripe answers it 409 (same key, in flight).
        eventually(
            "the first create to hang",
            Duration::from_secs(10),
            || async { app.sim().faults().api_hangs.is_empty() },
        )
        .await;
        app.checkout("ik", "monthly").await
    };
    let (a, b) = tokio::join!(first, second);
    let (a_status, b_status) = (a.status(), b.status());
    let (a, b) = (json(a).await, json(b).await);
    assert_eq!(
        (a_status, b_status),
        (StatusCode::OK, StatusCode::OK),
        "{a} {b}"
    );
    assert_eq!(a["session_id"], b["session_id"], "one session for both");
    let summary = app.sim().state_summary();
    assert_eq!(
        summary["customers"].as_array().map(Vec::len),
        Some(1),
        "{summary}"
    );
}

#[tokio::test]
async fn after_stripe_expires_a_checkout_session_the_next_checkout_opens_a_new_one() {
    let app = StripeApp::spawn().await;
    app.create_user("ex", "ex@example.com").await;
    let first = json(app.checkout("ex", "monthly").await).await["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let expired = Client::new()
        .post(format!(
            "{}v1/checkout/sessions/{first}/expire",
            app.stripe.base_url
        ))
        .bearer_auth("sk_test_expire")
        .send()
        .await
        .unwrap();
    assert_eq!(expired.status(), StatusCode::OK);
    app.settle().await;
    assert_eq!(app.sim().object(&first).unwrap()["status"], "expired");
    let again = app.checkout("ex", "monthly").await;
    assert_eq!(again.status(), StatusCode::OK);
    let second = json(again).await["session_id"].as_str().unwrap().to_owned();
    assert_ne!(second, first, "not the expired session");
    assert_eq!(app.sim().object(&second).unwrap()["status"], "open");
}

#[tokio::test]
async fn without_stripe_and_without_debug_billing_calls_answer_503_stripe_not_configured() {
    let app = TestApp::spawn_with(&[
        ("MSR_DEBUG", "false"),
        ("MSR_INTERNAL_API_KEY", INTERNAL_KEY),
    ])
    .await;
    assert!(app.state.sim.is_none() && app.state.stripe.is_none());
    for path in ["/billing/checkout", "/billing/portal"] {
        let response = app
            .request(Method::POST, path)
            .header("X-User-Id", "ns-1")
            .bearer_auth(INTERNAL_KEY)
            .json(&json!({"plan": "monthly"}))
            .send()
            .await
            .unwrap();
        assert_error(response, 503, "stripe_not_configured").await;
    }
    // The entitlement check still answers from the store.
    let check = app
        .request(Method::GET, "/billing/entitlement")
        .header("X-User-Id", "ns-1")
        .bearer_auth(INTERNAL_KEY)
        .send()
        .await
        .unwrap();
    assert_error(check, 404, "unknown_user").await;
}

#[tokio::test]
async fn a_request_longer_than_the_request_timeout_is_503_timeout() {
    let app =
        StripeApp::spawn_with(&[("MSR_REQUEST_TIMEOUT", "1s"), ("MSR_STRIPE_TIMEOUT", "10s")])
            .await;
    app.create_user("to", "to@example.com").await;
    app.sim()
        .set_fault(Fault::ApiHang {
            count: 1,
            path_prefix: Some("/v1/customers".into()),
            delay_ms: 4000,
        })
        .await;
    let started = Instant::now();
    assert_error(app.checkout("to", "monthly").await, 503, "timeout").await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "answered at the request timeout, not when Stripe did: {:?}",
        started.elapsed()
    );
    // The abandoned create finishes inside Stripe; a try after that shares its key: one customer.
    let app_ref = &app;
    eventually(
        "Stripe to finish the create",
        Duration::from_secs(10),
        || async move {
            app_ref.sim().state_summary()["customers"]
                .as_array()
                .is_some_and(|c| !c.is_empty())
        },
    )
    .await;
    let again = app.checkout("to", "monthly").await;
    assert_eq!(again.status(), StatusCode::OK);
    let summary = app.sim().state_summary();
    assert_eq!(
        summary["customers"].as_array().map(Vec::len),
        Some(1),
        "{summary}"
    );
}

#[tokio::test]
async fn the_timed_events_poll_applies_missed_events_once_and_late_deliveries_change_nothing() {
    let app = StripeApp::spawn_with(&[("MSR_EVENTS_POLL_INTERVAL", "1s")]).await;
    app.create_user("poll", "poll@example.com").await;
    let started = json(app.checkout("poll", "weekly").await).await;
    app.settle().await;
    let stored_before = app.count_events().await;
    assert!(stored_before > 0, "the customer's events were delivered");
    app.sim().set_fault(Fault::PauseDeliveries).await;
    app.sim()
        .pay_checkout(started["session_id"].as_str().unwrap(), TestCard::Visa)
        .await
        .unwrap();
    let emitted = app.sim().events().len() as i64;
    assert!(emitted > stored_before);
    // Nothing delivered and nobody calls the catch-up: only the timed poll can apply them.
    let app_ref = &app;
    eventually(
        "the poll applied the missed events",
        Duration::from_secs(20),
        || async move {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM stripe_events WHERE state IN ('pending', 'failed')",
            )
            .fetch_one(&app_ref.state.db.pool)
            .await
            .unwrap();
            app_ref.count_events().await == emitted
                && waiting == 0
                && app_ref.entitled("poll").await.0 == 200
        },
    )
    .await;
    let counters = &app.state.counters;
    let processed = counters.events_processed.load(Ordering::Relaxed);
    let duplicates = counters.events_duplicate.load(Ordering::Relaxed);
    // The deliveries held back arrive after all: each is a duplicate, none is applied again.
    app.sim().flush_deliveries();
    app.settle().await;
    assert_eq!(app.count_events().await, emitted, "each event stored once");
    assert_eq!(
        counters.events_processed.load(Ordering::Relaxed),
        processed,
        "no event applied twice"
    );
    let late = (emitted - stored_before) as u64;
    assert!(
        counters.events_duplicate.load(Ordering::Relaxed) - duplicates >= late,
        "every late delivery was a duplicate"
    );
    assert_eq!(app.entitled("poll").await.1["status"], "active");
}

#[tokio::test]
async fn with_cache_capacity_zero_nothing_is_cached_and_a_change_shows_at_the_next_check() {
    let app = TestApp::spawn_with(&[("MSR_CACHE_CAPACITY", "0")]).await;
    app.create_user("nc", "nc@example.com").await;
    assert!(!app.state.cache.enabled());
    for _ in 0..3 {
        assert_eq!(
            app.entitlement("nc").await.status(),
            StatusCode::PAYMENT_REQUIRED
        );
    }
    let held = app.state.cache.len();
    // A write no instance tells the cache about (a hand edit: no eviction, no NOTIFY).
    sqlx::query("UPDATE users SET complimentary_until = $1 WHERE id = 'nc'")
        .bind(now() + 86_400)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    let (code, body) = {
        let r = app.entitlement("nc").await;
        (r.status(), json(r).await)
    };
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["reason"], "complimentary");
    assert_eq!(app.state.cache.len(), held, "checks add nothing");
}

#[tokio::test]
async fn with_cache_capacity_zero_writes_leave_nothing_in_the_cache() {
    let app = TestApp::spawn_with(&[("MSR_CACHE_CAPACITY", "0")]).await;
    for i in 0..20 {
        let id = format!("nc-{i}");
        app.create_user(&id, &format!("{id}@example.com")).await;
        assert_eq!(
            app.entitlement(&id).await.status(),
            StatusCode::PAYMENT_REQUIRED
        );
    }
    assert_eq!(app.state.cache.len(), 0, "an off cache holds nothing");
}

#[tokio::test]
async fn static_files_are_served_with_an_hour_of_caching_and_their_types() {
    let app = TestApp::spawn().await;
    let htmx = std::fs::read_dir(&app.state.settings.static_dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .find(|n| n.starts_with("htmx") && n.ends_with(".js"))
        .expect("htmx in static/");
    for (file, kind) in [
        ("app.css".to_owned(), "text/css"),
        (htmx, "text/javascript"),
    ] {
        let response = app.get(&format!("/static/{file}")).await;
        assert_eq!(response.status(), StatusCode::OK, "{file}");
        assert_eq!(
            response.headers()[CACHE_CONTROL],
            "public, max-age=3600",
            "{file}"
        );
        let served = response.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(served.starts_with(kind), "{file}: {served}");
        let on_disk =
            std::fs::read(std::path::Path::new(&app.state.settings.static_dir).join(&file))
                .unwrap();
        assert_eq!(response.bytes().await.unwrap(), on_disk, "{file}");
    }
    assert_eq!(
        app.get("/static/no-such-file.js").await.status(),
        StatusCode::NOT_FOUND
    );
}

/// The app with its own simulator, which charges renewals at the period end itself (no hour as a
/// draft), so a renewal forced now fails at the real time the grace is measured against.
async fn stripe_app_charging_at_period_end(vars: &[(&str, &str)]) -> StripeApp {
    let config = SimConfig {
        renewal_finalize_delay: 0,
        ..StripeApp::sim_config()
    };
    StripeApp::spawn_with_sim(TestDb::fresh().await, config, vars).await
}

#[tokio::test]
async fn a_failed_renewal_keeps_access_for_the_grace_then_ends_it_as_past_due() {
    const GRACE: i64 = 6;
    let app =
        stripe_app_charging_at_period_end(&[("MSR_TRIAL_DAYS", "7"), ("MSR_PAST_DUE_GRACE", "6s")])
            .await;
    let sub = app.subscribed("gr", "weekly", TestCard::Visa).await;
    let customer = customer_of(&app, &sub);
    app.sim()
        .set_card(&customer, TestCard::ChargeCustomerFail)
        .await
        .unwrap();
    // The trial ends now: the subscription renews and its first charge fails.
    app.sim().end_trial_now(&sub).await.unwrap();
    app.settle().await;
    assert_eq!(app.sim().subscription(&sub).unwrap()["status"], "past_due");
    let since: i64 = sqlx::query_scalar("SELECT past_due_since FROM subscriptions WHERE id = $1")
        .bind(&sub)
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    assert!((since - now()).abs() <= 5, "failed now: {since}");
    let grace_end = since + GRACE;
    let (code, body) = app.entitled("gr").await;
    assert_eq!(
        (code, body["status"].as_str(), body["reason"].as_str()),
        (200, Some("past_due"), Some("past_due_grace")),
        "{body}"
    );
    let valid_until = chrono::DateTime::parse_from_rfc3339(body["valid_until"].as_str().unwrap())
        .unwrap()
        .timestamp();
    assert_eq!(valid_until, grace_end, "{body}");
    // Nothing else happens; the grace runs out on its own.
    let app_ref = &app;
    eventually(
        "the grace to end",
        Duration::from_secs(GRACE as u64 + 10),
        || async move {
            let (code, body) = app_ref.entitled("gr").await;
            if code == 200 {
                assert_eq!(body["reason"], "past_due_grace", "{body}");
                return false;
            }
            assert!(
                now() >= grace_end,
                "access ended before the grace did: {body}"
            );
            assert_eq!(
                (code, body["status"].as_str(), body["reason"].as_str()),
                (402, Some("past_due"), Some("past_due")),
                "{body}"
            );
            true
        },
    )
    .await;
}

/// Runs the real binary against the app's database and simulator; (success, stdout).
async fn cli(app: &StripeApp, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_msr-billing"))
        .args(args)
        .env_clear()
        .env("DATABASE_URL", &app.db.url)
        .env("STRIPE_API_KEY", "sk_test_cli")
        .env("STRIPE_API_BASE", &app.stripe.base_url)
        .env("MSR_INTERNAL_API_KEY", INTERNAL_KEY)
        .output()
        .await
        .expect("binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn events_list_unmatched_shows_an_unmatched_event_and_replay_failed_applies_failed_ones() {
    // One attempt: a failure is dead-lettered at once, so the server's worker leaves it to replay.
    let app = StripeApp::spawn_with(&[("MSR_EVENT_MAX_ATTEMPTS", "1")]).await;
    let sub = app.subscribed("cli-2", "monthly", TestCard::Visa).await;
    let customer = customer_of(&app, &sub);
    let post = |body: String| {
        let app = &app;
        async move {
            let response = app
                .post_webhook(&body, Some(sign(WEBHOOK_SECRET, now(), &body)))
                .await;
            assert_eq!(response.status(), StatusCode::OK);
        }
    };
    let mut orphan = app.sim().subscription(&sub).unwrap();
    orphan["id"] = json!("sub_cli_orphan");
    orphan["customer"] = json!("cus_cli_nobody");
    orphan["metadata"] = json!({});
    post(event(
        "evt_cli_orphan",
        "customer.subscription.updated",
        now(),
        orphan,
    ))
    .await;
    assert_eq!(
        app.event_state("evt_cli_orphan").await.as_deref(),
        Some("unmatched")
    );
    app.sim()
        .set_fault(Fault::ApiErrors {
            count: 1000,
            path_prefix: Some("/v1/subscriptions".into()),
        })
        .await;
    for id in ["evt_cli_f1", "evt_cli_f2"] {
        post(event(
            id,
            "invoice.paid",
            now(),
            invoice(&format!("in_{id}"), &customer, &sub),
        ))
        .await;
        assert_eq!(app.event_state(id).await.as_deref(), Some("dead"), "{id}");
    }

    let (ok, listed) = cli(&app, &["events", "list", "--unmatched"]).await;
    assert!(ok, "{listed}");
    assert!(listed.starts_with("1 event(s)"), "{listed}");
    assert!(
        listed.contains("evt_cli_orphan")
            && listed.contains("customer.subscription.updated")
            && listed.contains("cus_cli_nobody"),
        "{listed}"
    );
    assert!(!listed.contains("evt_cli_f1"), "only unmatched: {listed}");

    app.sim().clear_faults().await;
    let (ok, replayed) = cli(&app, &["events", "replay", "--failed"]).await;
    assert!(ok, "{replayed}");
    for id in ["evt_cli_f1", "evt_cli_f2"] {
        assert!(replayed.contains(&format!("{id}: applied")), "{replayed}");
        assert_eq!(
            app.event_state(id).await.as_deref(),
            Some("applied"),
            "{id}"
        );
    }
    assert!(!replayed.contains("evt_cli_orphan"), "{replayed}");
    assert_eq!(
        app.event_state("evt_cli_orphan").await.as_deref(),
        Some("unmatched"),
        "replay --failed leaves unmatched events alone"
    );
    let (ok, left) = cli(&app, &["events", "list", "--failed"]).await;
    assert!(ok && left.starts_with("0 event(s)"), "{left}");
}
