//! The one write path: for any order in which a subscription's events arrive, applying them one by
//! one (the webhook's single-event path) and as one batch (the pipeline's fast path) end in the
//! same stored subscription and entitlement, and that is what the newest event said.

use msr_billing::billing::apply::{self, BatchItem};
use msr_billing::db;
use msr_billing::db::events::{EventState, NewEvent};
use msr_billing::domain::UserId;
use msr_billing::stripe::objects;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::json;

use crate::helpers::{TestApp, now};

/// One subscription's life as Stripe reports it, oldest first: (status, cancel at period end).
const LIFE: [(&str, bool); 5] = [
    ("trialing", false),
    ("active", false),
    ("past_due", false),
    ("active", true),
    ("canceled", false),
];

/// The events of subscription `sub` of customer `customer`, the i-th `created` at `t0 + 10 i`.
fn events(case: usize, path: &str, customer: &str, sub: &str, t0: i64) -> Vec<(String, String)> {
    LIFE.iter()
        .enumerate()
        .map(|(i, (status, cancel))| {
            let id = format!("evt_ord_{case}_{path}_{i}");
            let created = t0 + 10 * i as i64;
            let body = json!({"id": id, "object": "event", "type": "customer.subscription.updated",
                "created": created, "livemode": false, "data": {"object": {
                    "id": sub, "object": "subscription", "customer": customer, "status": status,
                    "created": t0, "cancel_at_period_end": cancel,
                    "items": {"data": [{"current_period_end": created + 86_400,
                        "price": {"id": "price_monthly_test", "recurring": {"interval": "month"}}}]}}}})
            .to_string();
            (id, body)
        })
        .collect()
}

async fn owner(app: &TestApp, user: &str, customer: &str) {
    app.create_user(user, &format!("{user}@example.com")).await;
    let id = UserId::parse(user).unwrap();
    assert!(
        db::users::link_customer(&app.state.db.pool, &id, customer)
            .await
            .unwrap()
    );
}

async fn record(app: &TestApp, id: &str, body: &str) {
    let event = objects::parse_event(body.as_bytes()).unwrap();
    db::events::record(
        &app.state.db.pool,
        &NewEvent {
            id,
            kind: &event.kind,
            created: event.created,
            livemode: false,
            source: "webhook",
            payload: body,
            customer_id: None,
            subscription_id: None,
            user_hint: None,
            state: EventState::Pending,
        },
        chrono::Utc::now(),
    )
    .await
    .unwrap();
}

/// What is stored for a user, without what names the copy (ids) or when it was written.
async fn outcome(app: &TestApp, user: &str) -> String {
    let subs = db::subscriptions::for_user(&app.state.db.pool, user)
        .await
        .unwrap();
    assert_eq!(subs.len(), 1, "{user}");
    let s = &subs[0];
    let entitlement = db::entitlements::find(&app.state.db.pool, &UserId::parse(user).unwrap())
        .await
        .unwrap()
        .expect("an entitlement");
    format!(
        "{} {} cancel={} end={:?} watermark={} past_due_since={:?} | {} {:?} paused={} end={:?}",
        s.stripe_status.as_str(),
        s.plan.map_or("-", |p| p.as_str()),
        s.cancel_at_period_end,
        s.current_period_end,
        s.watermark,
        s.past_due_since,
        entitlement.status.as_str(),
        entitlement.plan,
        entitlement.pause_active,
        entitlement.current_period_end.map(|t| t.timestamp()),
    )
}

async fn one_case(app: &TestApp, case: usize, order: &[usize]) -> Result<(), TestCaseError> {
    let t0 = now() - 1_000;
    let (single_user, batch_user) = (format!("ord-s-{case}"), format!("ord-b-{case}"));
    let (single_cus, batch_cus) = (format!("cus_ord_s_{case}"), format!("cus_ord_b_{case}"));
    owner(app, &single_user, &single_cus).await;
    owner(app, &batch_user, &batch_cus).await;
    let single = events(case, "s", &single_cus, &format!("sub_ord_s_{case}"), t0);
    let batch = events(case, "b", &batch_cus, &format!("sub_ord_b_{case}"), t0);

    for &i in order {
        let (id, body) = &single[i];
        record(app, id, body).await;
        let applied = apply::process(&app.state, id, false).await.unwrap();
        let expected = if order.iter().take_while(|&&j| j != i).any(|&j| j > i) {
            EventState::Skipped
        } else {
            EventState::Applied
        };
        prop_assert_eq!(applied, Some(expected), "event {} after {:?}", i, order);
    }
    let items: Vec<BatchItem> = order
        .iter()
        .map(|&i| {
            let event = objects::parse_event(batch[i].1.as_bytes()).unwrap();
            BatchItem::of(event).unwrap()
        })
        .collect();
    let outcomes = apply::apply_batch(&app.state, &items).await.unwrap();
    prop_assert!(outcomes.iter().all(Option::is_some), "{:?}", outcomes);

    let (one_by_one, at_once) = (
        outcome(app, &single_user).await,
        outcome(app, &batch_user).await,
    );
    prop_assert_eq!(&one_by_one, &at_once, "order {:?}", order);
    prop_assert!(
        one_by_one.starts_with("canceled"),
        "the newest event wins: {}",
        one_by_one
    );
    let newest = format!("watermark={}", t0 + 40);
    prop_assert!(one_by_one.contains(&newest), "{}", one_by_one);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_order_of_a_subscriptions_events_ends_in_the_same_row_one_by_one_and_as_a_batch() {
    let app = TestApp::spawn().await;
    let handle = tokio::runtime::Handle::current();
    let mut runner = TestRunner::new(Config {
        cases: 24,
        ..Config::default()
    });
    let case = std::sync::atomic::AtomicUsize::new(0);
    let strategy = Just((0..LIFE.len()).collect::<Vec<usize>>()).prop_shuffle();
    tokio::task::block_in_place(|| {
        runner
            .run(&strategy, |order| {
                let n = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                handle.block_on(one_case(&app, n, &order))
            })
            .unwrap();
    });
}
