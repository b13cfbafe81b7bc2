//! Drill 3: Stripe failing — answering 500, or hanging past `MSR_STRIPE_TIMEOUT` — for the
//! subscription re-fetches that applying events needs, and for creating customers and Checkout
//! Sessions. Events wait (recorded, failed, retried with back-off) and are applied once Stripe is
//! back; checkout answers 502 and a retry makes no second customer or session.

use std::time::Duration;

use msr_stripe_sim::Fault;

use crate::harness::*;

/// How Stripe fails in a drill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// 500 `api_error` at once.
    Errors,
    /// No answer for 4 s, past the service's 2 s timeout.
    Hangs,
}

fn arm(failure: Failure, path: &str, count: u32) -> Fault {
    match failure {
        Failure::Errors => Fault::ApiErrors {
            count,
            path_prefix: Some(path.into()),
        },
        Failure::Hangs => Fault::ApiHang {
            count,
            path_prefix: Some(path.into()),
            delay_ms: 4000,
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_answering_500_to_refetches_leaves_events_failed_until_it_recovers() {
    refetches_fail_then_recover(Failure::Errors).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_hanging_on_refetches_leaves_events_failed_until_it_recovers() {
    refetches_fail_then_recover(Failure::Hangs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_answers_502_while_stripe_answers_500_and_a_retry_makes_no_duplicate() {
    checkout_fails_then_succeeds(Failure::Errors).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_answers_502_while_stripe_hangs_and_a_retry_makes_no_duplicate() {
    checkout_fails_then_succeeds(Failure::Hangs).await;
}

async fn start_service(db: &FaultDb, stripe: &msr_stripe_sim::SimHandle) -> Service {
    let config = ServiceConfig::new(db, stripe).with("MSR_STRIPE_TIMEOUT", "2s");
    let service = Service::start(&config).await;
    deliver_to(&stripe.sim, &[service.port]);
    service
}

async fn refetches_fail_then_recover(failure: Failure) {
    let db = FaultDb::sqlite();
    let stripe = simulator().await;
    let sim = &stripe.sim;
    let service = start_service(&db, &stripe).await;
    let owners = subscribed_owners(&service, sim, "refetch", 3).await;
    // A checkout started while Stripe is healthy, paid while its re-fetches fail: the owner's
    // `checkout.session.completed` and `invoice.*` events all need the subscription from Stripe.
    // (Only with 500s: with hangs each of its six re-fetches costs the 2 s timeout twice, and the
    // drill would take a minute.)
    let late_session = if failure == Failure::Errors {
        Some(start_checkout(&service, "refetch-late", "monthly").await)
    } else {
        None
    };
    settle(sim, Duration::from_secs(20)).await;
    let pool = db.pool().await;
    assert!(drain(&pool, Duration::from_secs(10)).await.is_empty());

    fault(sim, arm(failure, "/v1/subscriptions", 10_000)).await;
    let late_sub = match &late_session {
        Some(session) => Some(pay(sim, session).await),
        None => None,
    };
    // Two changes in one second: the second event's `created` equals the first's, so applying it
    // re-fetches the subscription (delivered one after the other, so no race is involved).
    sim.advance_clock(1).await;
    for (_, sub) in &owners {
        sim.cancel_at_period_end(sub, true).await.expect("cancel");
        sim.pause_collection(sub, Some("void"))
            .await
            .expect("pause");
    }
    settle(sim, Duration::from_secs(60)).await;
    let answered: Vec<_> = sim
        .deliveries()
        .into_iter()
        .filter(|d| d.status != Some(200))
        .collect();
    assert!(
        answered.is_empty(),
        "every event is acknowledged once recorded, whatever Stripe does: {answered:?}"
    );

    // Stripe is down: the events that need it are recorded and waiting, with the error.
    let failed: Vec<(String, EventRow)> = waiting(&pool).await;
    let expected = owners.len() + if late_sub.is_some() { 5 } else { 0 };
    assert!(
        failed.len() >= expected,
        "at least {expected} events waiting for Stripe: {failed:?}"
    );
    for (id, row) in &failed {
        assert_eq!(row.state, "failed", "{id}: {row:?}");
        assert!(row.attempts >= 1, "{id}: {row:?}");
        assert!(
            row.last_error
                .as_deref()
                .is_some_and(|e| e.contains("Stripe")),
            "{id}: the error says Stripe failed: {row:?}"
        );
    }
    assert!(
        !store_vs_truth(&pool, sim).await.is_empty(),
        "the store cannot be right while the re-fetches fail"
    );
    // The worker tries again (one back-off cut short) and fails again; nothing is lost or dead.
    make_retries_due(&pool).await;
    let retried = wait_for(Duration::from_secs(20), || {
        let pool = &pool;
        async move { waiting(pool).await.iter().all(|(_, r)| r.attempts >= 2) }
    })
    .await;
    assert!(retried, "the worker retried: {:?}", waiting(&pool).await);
    assert!(
        waiting(&pool)
            .await
            .iter()
            .all(|(_, r)| r.state == "failed")
    );

    // Stripe is back.
    sim.clear_faults().await;
    let left = drain(&pool, Duration::from_secs(30)).await;
    assert!(
        left.is_empty(),
        "events still waiting after Stripe recovered: {left:?}"
    );
    let rows = event_rows(&pool).await;
    assert_all_done(&rows, &emitted(sim), "every event");
    let wrong = store_vs_truth(&pool, sim).await;
    assert!(
        wrong.is_empty(),
        "the store differs from Stripe: {wrong:#?}"
    );
    if let Some(sub) = late_sub {
        let status = service.status_of("refetch-late").await;
        assert_eq!(
            status["entitlement"]["stripe_subscription_id"],
            sub.as_str()
        );
        assert_eq!(status["entitled"], true, "{status}");
    }
}

async fn checkout_fails_then_succeeds(failure: Failure) {
    let db = FaultDb::sqlite();
    let stripe = simulator().await;
    let sim = &stripe.sim;
    let service = start_service(&db, &stripe).await;

    // Creating the customer fails once; creating the session fails twice.
    for (user, path, failures) in [
        ("cust-fails", "/v1/customers", 1),
        ("session-fails", "/v1/checkout/sessions", 2),
    ] {
        service.create_user(user).await;
        fault(sim, arm(failure, path, failures)).await;
        let mut answers = Vec::new();
        let session = loop {
            let (status, body) = service.checkout(user, "monthly").await;
            answers.push(status);
            if status == 200 {
                break body["session_id"].as_str().expect("session id").to_owned();
            }
            assert_eq!(status, 502, "{user}: {body}");
            assert_eq!(body["error"]["code"], "stripe_error", "{body}");
            assert!(
                answers.len() <= 5,
                "{user}: checkout never recovered: {answers:?}"
            );
        };
        assert!(
            answers.starts_with(&[502]),
            "{user}: the first checkout failed: {answers:?}"
        );
        eprintln!("{failure:?} on {path}: checkout answered {answers:?}");
        assert_eq!(
            customers_with_email(sim, &email_of(user)),
            1,
            "{user}: one customer after {answers:?}"
        );
        // Asking again hands back the same open session; paying it subscribes the owner once.
        let (status, again) = service.checkout(user, "monthly").await;
        assert_eq!(
            (status, again["session_id"].as_str()),
            (200, Some(session.as_str()))
        );
        let sub = pay(sim, &session).await;
        settle(sim, Duration::from_secs(30)).await;
        let status = service.status_of(user).await;
        assert_eq!(status["entitled"], true, "{status}");
        assert_eq!(
            status["entitlement"]["stripe_subscription_id"],
            sub.as_str()
        );
        assert_eq!(customers_with_email(sim, &email_of(user)), 1);
    }
    let subs = sim.state_summary()["subscriptions"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(subs, 2, "one subscription per owner");
}

/// Polls `check` every 200 ms until it holds; `false` at the deadline.
async fn wait_for<F, Fut>(within: Duration, check: F) -> bool
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// An owner presses "subscribe" twice while Stripe takes 6 s to create their customer (within
/// the service's 10 s timeout): the second request waits on the first's Idempotency-Key, gives up,
/// and the owner tries once more. Stripe must end with one customer for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_checkouts_while_stripe_is_slow_make_one_customer() {
    let db = FaultDb::sqlite();
    let stripe = simulator().await;
    let sim = &stripe.sim;
    let service = Service::start(&ServiceConfig::new(&db, &stripe)).await;
    deliver_to(sim, &[service.port]);
    service.create_user("twice").await;
    fault(
        sim,
        Fault::ApiHang {
            count: 1,
            path_prefix: Some("/v1/customers".into()),
            delay_ms: 6000,
        },
    )
    .await;
    let base = service.base.clone();
    let first = tokio::spawn(async move {
        client()
            .post(format!("{base}/billing/checkout"))
            .header("X-User-Id", "twice")
            .json(&serde_json::json!({ "plan": "monthly" }))
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (second, body) = service.checkout("twice", "monthly").await;
    let (third, _) = service.checkout("twice", "monthly").await;
    let first = first.await.expect("task").expect("first checkout answered");
    let customers = customers_with_email(sim, &email_of("twice"));
    eprintln!(
        "slow customer creation: checkouts answered {first}, {second} ({body}), {third}; {customers} customers"
    );
    assert_eq!(customers, 1, "one customer for one owner");
}

/// The simulator's fidelity, which the drills above rely on: Stripe finishes a request whose
/// client went away, so a retry under the same Idempotency-Key gets the saved answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_finishes_a_request_whose_client_went_away() {
    let stripe = simulator().await;
    let sim = &stripe.sim;
    fault(
        sim,
        Fault::ApiHang {
            count: 1,
            path_prefix: Some("/v1/customers".into()),
            delay_ms: 1000,
        },
    )
    .await;
    let create = |timeout: Duration| {
        client()
            .post(format!("{}v1/customers", stripe.base_url))
            .basic_auth("sk_test_x", Some(""))
            .header("Idempotency-Key", "drill-gone-client")
            .form(&[("email", "gone@example.com")])
            .timeout(timeout)
            .send()
    };
    assert!(
        create(Duration::from_millis(200)).await.is_err(),
        "the first client gives up"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let retry = create(Duration::from_secs(5))
        .await
        .expect("retry answered");
    let status = retry.status().as_u16();
    let replayed = retry.headers().contains_key("idempotent-replayed");
    assert_eq!(
        (
            status,
            replayed,
            customers_with_email(sim, "gone@example.com")
        ),
        (200, true, 1),
        "the retry gets the first request's saved answer"
    );
}
