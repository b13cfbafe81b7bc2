//! Drill 1: `kill -9` in the middle of a webhook stream, then a restart on the same database and
//! port. Stripe (the simulator, outside the killed process) retries what was not acknowledged.

use std::time::{Duration, Instant};

use msr_stripe_sim::Fault;

use crate::harness::*;

/// Owners who subscribe and then change their plans, so the stream is long and mixed.
const OWNERS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_mid_stream_loses_nothing_and_applies_each_event_once_on_sqlite() {
    crash_mid_stream(FaultDb::sqlite(), Spacing::SecondsApart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_mid_stream_loses_nothing_and_applies_each_event_once_on_postgresql() {
    let Some(server) = postgres_or_skip("crash during ingest on PostgreSQL") else {
        return;
    };
    crash_mid_stream(FaultDb::postgres(&server).await, Spacing::SecondsApart).await;
}

/// The same drill with each owner's two changes in one second: after the restart Stripe's retries
/// arrive together, and the second change of a subscription is lost (see the bug below).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_mid_stream_with_two_changes_a_second_ends_in_stripes_state() {
    crash_mid_stream(FaultDb::sqlite(), Spacing::SameSecond).await;
}

async fn crash_mid_stream(db: FaultDb, spacing: Spacing) {
    let stripe = simulator().await;
    let sim = &stripe.sim;
    let config = ServiceConfig::new(&db, &stripe);
    let mut first = Service::start(&config).await;
    deliver_to(sim, &[first.port]);

    // Hold every event back while twenty owners subscribe and change, then let the whole stream go
    // at once: the kill below lands in the middle of it, not between two quiet moments.
    fault(sim, Fault::PauseDeliveries).await;
    let owners = subscribed_owners(&first, sim, "crash", OWNERS).await;
    churn(sim, &owners, spacing).await;
    let stream = emitted(sim);
    assert!(stream.len() > 150, "a long stream: {}", stream.len());
    sim.flush_deliveries();

    let deadline = Instant::now() + Duration::from_secs(20);
    while acknowledged(sim).len() < stream.len() / 3 {
        assert!(Instant::now() < deadline, "the stream did not start");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    first.kill9().await;
    let killed_at = chrono::Utc::now().timestamp();
    let acked_before_kill = acknowledged(sim);
    assert!(
        acked_before_kill.len() < stream.len(),
        "the kill landed after the stream ended ({} of {})",
        acked_before_kill.len(),
        stream.len()
    );

    // Restart in a later second than the kill, so a lease the dead process left behind
    // (`locked_until` ≤ kill + 60) can be told from the new process's own (≥ restart + 60).
    while chrono::Utc::now().timestamp() <= killed_at {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = Service::start(&config).await;
    settle(sim, Duration::from_secs(40)).await;
    let pool = db.pool().await;

    // Events the dead process had claimed stay leased for 60 s (LEASE_SECS in src/billing/apply.rs)
    // before the worker may take them again; the drill lets that time pass at once.
    let orphaned = sqlx::query(
        "UPDATE stripe_events SET locked_until = NULL \
         WHERE state IN ('pending', 'failed') AND locked_until IS NOT NULL AND locked_until <= $1",
    )
    .bind(killed_at + 60)
    .execute(&pool)
    .await
    .expect("expire the dead process's leases")
    .rows_affected();
    let left = drain(&pool, Duration::from_secs(15)).await;
    assert!(
        left.is_empty(),
        "events still waiting after the restart: {left:?}"
    );

    let refused = sim
        .deliveries()
        .iter()
        .filter(|d| d.status.is_none())
        .count();
    eprintln!(
        "crash drill: {} events, {} acknowledged before the kill, {refused} deliveries refused while down, \
         {orphaned} leases left by the dead process",
        stream.len(),
        acked_before_kill.len()
    );
    assert!(
        refused > 0,
        "no delivery hit the dead service: the drill did not break anything"
    );

    let rows = event_rows(&pool).await;
    // Acknowledged before the kill: recorded, and applied by one of the two processes.
    let before: Vec<String> = acked_before_kill.iter().cloned().collect();
    assert_all_done(&rows, &before, "acknowledged before the kill");
    // Everything else: Stripe delivered it again, and it was applied.
    let acked_now = acknowledged(sim);
    let never_acked: Vec<&String> = stream
        .iter()
        .filter(|id| !acked_now.contains(*id))
        .collect();
    assert!(never_acked.is_empty(), "Stripe gave up on {never_acked:?}");
    assert_all_done(&rows, &stream, "the whole stream");
    // Recorded once: one row per Stripe event and nothing else.
    assert_eq!(rows.len(), stream.len(), "one row per event id");

    // Applied once: no event was synced by both processes (or twice by one).
    let synced = synced_per_event(&[first.log(), second.log()]);
    let twice: Vec<_> = synced.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "events applied more than once: {twice:?}");

    let wrong = store_vs_truth(&pool, sim).await;
    if !wrong.is_empty() {
        for (_, sub) in &owners {
            eprintln!("{}", story_of(&pool, sub).await);
        }
    }
    assert!(
        wrong.is_empty(),
        "the store differs from Stripe: {wrong:#?}"
    );
    assert_eq!(subscriptions(sim).len(), OWNERS);
}

/// The race the crash drill found, without a crash: two changes of one subscription made in the
/// same second (cancel at period end, then taken back) and delivered at the same moment, as
/// Stripe's retries after an outage are. Stripe's final word is "not cancelling".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_changes_in_one_second_delivered_together_end_in_stripes_state() {
    let db = FaultDb::sqlite();
    let stripe = simulator().await;
    let sim = &stripe.sim;
    let service = Service::start(&ServiceConfig::new(&db, &stripe)).await;
    deliver_to(sim, &[service.port]);
    let owners = subscribed_owners(&service, sim, "pair", 8).await;
    settle(sim, Duration::from_secs(20)).await;
    fault(sim, Fault::PauseDeliveries).await;
    sim.advance_clock(1).await;
    let mut pairs = Vec::new();
    for (_, sub) in &owners {
        let before = sim.events().len();
        sim.cancel_at_period_end(sub, true).await.expect("cancel");
        sim.cancel_at_period_end(sub, false)
            .await
            .expect("un-cancel");
        let events = sim.events()[before..].to_vec();
        assert_eq!(events.len(), 2, "one event per change");
        if events[0]["created"] == events[1]["created"] {
            pairs.push(events);
        }
    }
    assert!(!pairs.is_empty(), "no pair fell in one second");
    // Both events of each pair at once, straight to the webhook (Stripe delivers in parallel).
    let posts = pairs.iter().flat_map(|pair| {
        pair.iter().map(|event| {
            let body = event.to_string();
            let service = &service;
            async move {
                service
                    .post_signed(&body)
                    .await
                    .map(|r| r.status().as_u16())
            }
        })
    });
    for answer in futures::future::join_all(posts).await {
        assert_eq!(answer.ok(), Some(200));
    }
    let pool = db.pool().await;
    assert!(drain(&pool, Duration::from_secs(10)).await.is_empty());
    let wrong = store_vs_truth(&pool, sim).await;
    if !wrong.is_empty() {
        for (_, sub) in &owners {
            eprintln!("{}", story_of(&pool, sub).await);
        }
    }
    assert!(
        wrong.is_empty(),
        "{} pairs delivered together; the store differs from Stripe: {wrong:#?}",
        pairs.len()
    );
}

/// `kill -9` while the service waits for Stripe to create an owner's customer: Stripe finishes
/// creating it, the service never hears of it. After the restart the owner's next checkout must
/// find that customer (same Idempotency-Key), not make a second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_while_stripe_creates_the_customer_makes_no_second_customer() {
    let db = FaultDb::sqlite();
    let stripe = simulator().await;
    let sim = &stripe.sim;
    let config = ServiceConfig::new(&db, &stripe);
    let mut first = Service::start(&config).await;
    deliver_to(sim, &[first.port]);
    first.create_user("midcheckout").await;
    fault(
        sim,
        Fault::ApiHang {
            count: 1,
            path_prefix: Some("/v1/customers".into()),
            delay_ms: 1500,
        },
    )
    .await;
    let base = first.base.clone();
    let in_flight = tokio::spawn(async move {
        client()
            .post(format!("{base}/billing/checkout"))
            .header("X-User-Id", "midcheckout")
            .json(&serde_json::json!({ "plan": "weekly" }))
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.kill9().await;
    assert!(
        in_flight.await.expect("task").is_err(),
        "the checkout was cut off by the kill"
    );
    let second = Service::start(&config).await;
    // The first tries after the restart may be answered 502 (the simulator drops a request whose
    // client went away, leaving its Idempotency-Key "in progress"); the owner tries again.
    let mut answers = Vec::new();
    let body = loop {
        let (status, body) = second.checkout("midcheckout", "weekly").await;
        answers.push(status);
        if status == 200 {
            break body;
        }
        assert!(
            answers.len() < 4,
            "checkout after the restart: {answers:?} {body}"
        );
    };
    assert_eq!(
        customers_with_email(sim, &email_of("midcheckout")),
        1,
        "one customer after the kill and {answers:?}"
    );
    let session = body["session_id"].as_str().expect("session id");
    let sub = pay(sim, session).await;
    settle(sim, Duration::from_secs(20)).await;
    let status = second.status_of("midcheckout").await;
    assert_eq!(status["entitled"], true, "{status}");
    assert_eq!(
        status["entitlement"]["stripe_subscription_id"],
        sub.as_str()
    );
}
