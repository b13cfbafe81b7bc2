//! Breaking things on purpose: the database during a webhook, event order, two instances.

use msr_stripe_sim::{Fault, TestCard};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde_json::Value;

use crate::helpers::{
    StripeApp, TestDb, WEBHOOK_SECRET, json, now, postgres_url, sign, skip, suite_on_postgres,
};

/// Holds the database's write lock (SQLite) or the events table's lock (PostgreSQL) until dropped.
enum Blocker {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Blocker {
    async fn block(url: &str) -> Blocker {
        use sqlx::{Connection, Executor};
        if url.starts_with("sqlite") {
            let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
            c.execute("BEGIN EXCLUSIVE").await.unwrap();
            Blocker::Sqlite(c)
        } else {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            c.execute("BEGIN").await.unwrap();
            c.execute("LOCK TABLE stripe_events IN ACCESS EXCLUSIVE MODE")
                .await
                .unwrap();
            Blocker::Postgres(c)
        }
    }

    async fn release(self) {
        use sqlx::Executor;
        match self {
            Blocker::Sqlite(mut c) => drop(c.execute("ROLLBACK").await),
            Blocker::Postgres(mut c) => drop(c.execute("ROLLBACK").await),
        }
    }
}

#[tokio::test]
async fn a_webhook_that_cannot_be_recorded_gets_503_and_the_retry_is_applied() {
    let app = StripeApp::spawn_with(&[("MSR_REQUEST_TIMEOUT", "1s")]).await;
    let sub = app.subscribed("dbd", "monthly", TestCard::Visa).await;
    let blocker = Blocker::block(&app.db.url).await;
    app.sim().cancel_at_period_end(&sub, true).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !app.sim().deliveries().iter().any(|d| d.status == Some(503)) {
        assert!(
            std::time::Instant::now() < deadline,
            "no 503 seen: {:?}",
            app.sim().deliveries().last()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    blocker.release().await;
    app.settle().await;
    let status = json(app.dev_status("dbd").await).await;
    let states: Vec<(String, String, String)> =
        sqlx::query_as("SELECT id, type, state FROM stripe_events ORDER BY created")
            .fetch_all(&app.state.db.pool)
            .await
            .unwrap();
    assert_eq!(
        status["entitlement"]["cancel_at_period_end"],
        true,
        "the retried delivery was applied: {:?} {states:?}",
        app.sim().deliveries()
    );
}

/// Captures a whole journey's events without delivering them.
async fn journey_events(app: &StripeApp, user: &str) -> (String, Vec<Value>) {
    app.sim().set_fault(Fault::PauseDeliveries).await;
    let before = app.sim().events().len();
    app.create_user(user, &format!("{user}@example.com")).await;
    let started = json(app.checkout(user, "monthly").await).await;
    let session = started["session_id"].as_str().unwrap().to_owned();
    app.sim()
        .pay_checkout(&session, TestCard::Visa)
        .await
        .unwrap();
    let sub = app.sim().object(&session).unwrap()["subscription"]
        .as_str()
        .unwrap()
        .to_owned();
    app.sim().fail_next_renewal(&sub).unwrap();
    app.sim().advance_to_next_renewal(&sub).await.unwrap();
    let customer = app.sim().subscription(&sub).unwrap()["customer"]
        .as_str()
        .unwrap()
        .to_owned();
    app.sim().set_card(&customer, TestCard::Visa).await.unwrap();
    app.sim().cancel_at_period_end(&sub, true).await.unwrap();
    app.sim()
        .pause_collection(&sub, Some("void"))
        .await
        .unwrap();
    let events = app.sim().events()[before..].to_vec();
    (sub, events)
}

/// Delivers the events in the given order to a fresh instance and returns its view of the subscription.
async fn deliver_to_fresh_app(app: &StripeApp, user: &str, events: &[&Value]) -> Value {
    let fresh = crate::helpers::TestApp::spawn_with(&[
        ("STRIPE_API_KEY", "sk_test_simulator"),
        ("STRIPE_API_BASE", &app.stripe.base_url),
        ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ("MSR_EVENTS_POLL_INTERVAL", "0"),
    ])
    .await;
    fresh
        .create_user(user, &format!("{user}@example.com"))
        .await;
    for event in events {
        let body = event.to_string();
        let response = fresh
            .request(reqwest::Method::POST, "/billing/webhook")
            .header("Stripe-Signature", sign(WEBHOOK_SECRET, now(), &body))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
    }
    json(fresh.dev_status(user).await).await["entitlement"].clone()
}

fn assert_matches_truth(seen: &Value, truth: &Value, order: &str) {
    assert_eq!(seen["stripe_status"], truth["status"], "{order}");
    assert_eq!(
        seen["cancel_at_period_end"], truth["cancel_at_period_end"],
        "{order}"
    );
    assert_eq!(
        seen["pause_active"],
        Value::Bool(!truth["pause_collection"].is_null()),
        "{order}"
    );
    let end = truth["items"]["data"][0]["current_period_end"]
        .as_i64()
        .unwrap();
    let seen_end =
        chrono::DateTime::parse_from_rfc3339(seen["current_period_end"].as_str().unwrap())
            .unwrap()
            .timestamp();
    assert_eq!(seen_end, end, "{order}");
}

#[tokio::test]
async fn a_whole_journey_in_random_orders_ends_in_stripes_state() {
    let app = StripeApp::spawn().await;
    let (sub, events) = journey_events(&app, "perm").await;
    assert!(events.len() >= 15, "a long journey: {}", events.len());
    let truth = app.sim().subscription(&sub).unwrap();
    let runs = if suite_on_postgres() { 4 } else { 12 };
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5EED);
    for run in 0..runs {
        let mut order: Vec<&Value> = events.iter().collect();
        order.shuffle(&mut rng);
        let seen = deliver_to_fresh_app(&app, "perm", &order).await;
        let kinds: Vec<&str> = order.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_matches_truth(&seen, &truth, &format!("permutation {run}: {kinds:?}"));
    }
}

#[tokio::test]
async fn every_adjacent_pair_of_a_journey_reversed_ends_in_stripes_state() {
    let app = StripeApp::spawn().await;
    let (sub, events) = journey_events(&app, "pair").await;
    let truth = app.sim().subscription(&sub).unwrap();
    let step = if suite_on_postgres() { 4 } else { 1 };
    for i in (0..events.len() - 1).step_by(step) {
        let mut order: Vec<&Value> = events.iter().collect();
        order.swap(i, i + 1);
        let seen = deliver_to_fresh_app(&app, "pair", &order).await;
        assert_matches_truth(&seen, &truth, &format!("pair {i} reversed"));
    }
}

#[tokio::test]
async fn two_instances_on_one_postgresql_apply_each_event_exactly_once() {
    let Some(server) = postgres_url() else {
        skip(
            "two instances on one PostgreSQL",
            "MSR_TEST_POSTGRES_URL is not set",
        );
        return;
    };
    let db = TestDb::fresh_postgres(&server).await;
    let app = StripeApp::spawn_on(db, &[]).await;
    let other = app.second_instance().await;
    app.sim()
        .set_fault(Fault::ConcurrentCopies { copies: 4 })
        .await;
    app.create_user("two", "two@example.com").await;
    let started = json(app.checkout("two", "monthly").await).await;
    let session = started["session_id"].as_str().unwrap();
    app.sim()
        .pay_checkout(session, TestCard::Visa)
        .await
        .unwrap();
    let sub = app.sim().object(session).unwrap()["subscription"]
        .as_str()
        .unwrap()
        .to_owned();
    app.sim().cancel_at_period_end(&sub, true).await.unwrap();
    app.settle().await;
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM stripe_events")
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    let processed = app
        .state
        .counters
        .events_processed
        .load(std::sync::atomic::Ordering::Relaxed)
        + other
            .state
            .counters
            .events_processed
            .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        processed as i64, rows,
        "each recorded event processed once across both instances"
    );
    let waiting: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM stripe_events WHERE state IN ('pending', 'failed')",
    )
    .fetch_one(&app.state.db.pool)
    .await
    .unwrap();
    assert_eq!(waiting, 0);
    let truth = app.sim().subscription(&sub).unwrap();
    let seen = json(other.dev_status("two").await).await["entitlement"].clone();
    assert_eq!(seen["stripe_status"], truth["status"]);
    assert_eq!(seen["cancel_at_period_end"], true);
}

#[tokio::test]
async fn a_cached_answer_says_when_it_was_read_and_a_change_evicts_it() {
    let app = StripeApp::spawn().await;
    crate::helpers::cache_trusted(&app).await;
    app.create_user("cache-1", "cache-1@example.com").await;
    // Two reads a second apart carry the same as_of: the second was served from the cache. (The
    // fill that follows the cache becoming trusted may replace the entry in between once: try again.)
    let mut tries = 0;
    let first = loop {
        let first = app.entitled("cache-1").await.1;
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let second = app.entitled("cache-1").await.1;
        if second["as_of"] == first["as_of"] {
            break first;
        }
        tries += 1;
        assert!(
            tries < 5,
            "never served from the cache: as_of {} then {}",
            first["as_of"],
            second["as_of"]
        );
    };
    let started = json(app.checkout("cache-1", "weekly").await).await;
    app.sim()
        .pay_checkout(started["session_id"].as_str().unwrap(), TestCard::Visa)
        .await
        .unwrap();
    app.settle().await;
    let third = app.entitled("cache-1").await;
    assert_eq!(third.0, 200, "the change evicted the cached 402");
    assert_ne!(third.1["as_of"], first["as_of"]);
}

#[tokio::test]
async fn another_instance_on_postgresql_sees_a_change_within_a_second() {
    let Some(server) = postgres_url() else {
        skip(
            "cache invalidation across instances",
            "MSR_TEST_POSTGRES_URL is not set",
        );
        return;
    };
    let db = TestDb::fresh_postgres(&server).await;
    let a = StripeApp::spawn_on(db, &[]).await;
    let b = a.second_instance().await;
    // Only instance A hears from Stripe.
    a.sim()
        .set_webhook_endpoints(vec![msr_stripe_sim::WebhookEndpoint {
            url: format!("{}/billing/webhook", a.address),
            secret: WEBHOOK_SECRET.into(),
        }]);
    a.create_user("inst", "inst@example.com").await;
    // B's listener connects in the background; wait until B caches (two equal as_of answers).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let x = json(b.entitlement("inst").await).await["as_of"].clone();
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let y = json(b.entitlement("inst").await).await["as_of"].clone();
        if x == y {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "instance B never cached"
        );
    }
    let started = json(a.checkout("inst", "monthly").await).await;
    a.sim()
        .pay_checkout(started["session_id"].as_str().unwrap(), TestCard::Visa)
        .await
        .unwrap();
    a.settle().await;
    let changed_at = std::time::Instant::now();
    loop {
        if b.entitlement("inst").await.status().as_u16() == 200 {
            break;
        }
        assert!(
            changed_at.elapsed() < std::time::Duration::from_secs(1),
            "B still answers from a stale cache"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
