//! Subscription schedules on test clocks: a weekly subscription moved to monthly at its
//! period end, the end of the last phase (release, or cancel), release and cancel through
//! the API, and the abort when the subscription is canceled outside its schedule.

use msr_stripe_sim::SimHandle;
use serde_json::Value;
use stripe_billing::subscription::RetrieveSubscription;
use stripe_billing::subscription_schedule::{
    CancelSubscriptionSchedule, CreateSubscriptionSchedule, ListSubscriptionSchedule,
    ReleaseSubscriptionSchedule, RetrieveSubscriptionSchedule,
};
use stripe_shared::SubscriptionSchedule;

use crate::helpers::*;

/// 2027-01-15 00:00 UTC.
const T0: i64 = 1_799_971_200;
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

async fn clock(h: &SimHandle) -> String {
    let (status, c) = v1_post(
        h,
        "test_helpers/test_clocks",
        &[("frozen_time", T0.to_string().as_str())],
    )
    .await;
    assert_eq!(status, 200, "{c}");
    c["id"].as_str().unwrap().to_string()
}

async fn advance(h: &SimHandle, clock: &str, to: i64) {
    let (status, body) = v1_post(
        h,
        &format!("test_helpers/test_clocks/{clock}/advance"),
        &[("frozen_time", to.to_string().as_str())],
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// A customer on the clock with a good default card.
async fn customer(h: &SimHandle, clock: &str) -> String {
    let (status, c) = v1_post(
        h,
        "customers",
        &[
            ("email", "sched@example.com"),
            ("test_clock", clock),
            ("payment_method", "pm_card_visa"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{c}");
    c["id"].as_str().unwrap().to_string()
}

/// An active weekly subscription of a new customer on the clock (period T0 .. T0 + 7 days).
async fn weekly(h: &SimHandle, clock: &str) -> String {
    let cus = customer(h, clock).await;
    let (status, sub) = v1_post(
        h,
        "subscriptions",
        &[
            ("customer", cus.as_str()),
            ("items[0][price]", "price_msr_weekly"),
        ],
    )
    .await;
    assert_eq!((status, sub["status"].as_str()), (200, Some("active")));
    sub["id"].as_str().unwrap().to_string()
}

async fn from_subscription(h: &SimHandle, sub: &str) -> SubscriptionSchedule {
    CreateSubscriptionSchedule::new()
        .from_subscription(sub)
        .send(&client(h))
        .await
        .unwrap()
}

async fn schedule(h: &SimHandle, id: &str) -> SubscriptionSchedule {
    RetrieveSubscriptionSchedule::new(id)
        .send(&client(h))
        .await
        .unwrap()
}

async fn subscription(h: &SimHandle, id: &str) -> Value {
    v1_get(h, &format!("subscriptions/{id}"), &[]).await.1
}

fn count(h: &SimHandle, kind: &str) -> usize {
    h.sim.event_types().iter().filter(|t| *t == kind).count()
}

#[tokio::test]
async fn a_weekly_subscription_moves_to_monthly_at_its_period_end_then_the_schedule_releases() {
    let h = spawn().await;
    let clock = clock(&h).await;
    let sub = weekly(&h, &clock).await;
    let sched = from_subscription(&h, &sub).await;
    let id = sched.id.to_string();
    assert!(id.starts_with("sub_sched_"));
    assert_eq!(sched.status.as_str(), "active");
    assert_eq!(sched.end_behavior.as_str(), "release");
    assert_eq!(sched.phases.len(), 1);
    assert_eq!(
        (sched.phases[0].start_date, sched.phases[0].end_date),
        (T0, T0 + 7 * DAY)
    );
    let current = sched.current_phase.unwrap();
    assert_eq!((current.start_date, current.end_date), (T0, T0 + 7 * DAY));
    let typed = RetrieveSubscription::new(sub.as_str())
        .send(&client(&h))
        .await
        .unwrap();
    assert_eq!(typed.schedule.unwrap().id().as_str(), id);
    assert_eq!(count(&h, "subscription_schedule.created"), 1);

    // Keep the current weekly phase until the period ends, then one month of monthly.
    let end = (T0 + 7 * DAY).to_string();
    let (status, updated) = v1_post(
        &h,
        &format!("subscription_schedules/{id}"),
        &[
            ("phases[0][items][0][price]", "price_msr_weekly"),
            ("phases[0][start_date]", T0.to_string().as_str()),
            ("phases[0][end_date]", end.as_str()),
            ("phases[1][items][0][price]", "price_msr_monthly"),
            ("phases[1][iterations]", "1"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    let monthly_end = updated["phases"][1]["end_date"].as_i64().unwrap();
    assert_eq!(updated["phases"][1]["start_date"], T0 + 7 * DAY);
    assert_eq!(
        monthly_end,
        T0 + 38 * DAY,
        "2027-01-22 + one calendar month"
    );
    assert_eq!(count(&h, "subscription_schedule.updated"), 1);
    assert_eq!(
        subscription(&h, &sub).await["items"]["data"][0]["price"]["id"],
        "price_msr_weekly"
    );

    advance(&h, &clock, T0 + 7 * DAY - HOUR).await;
    assert_eq!(
        subscription(&h, &sub).await["items"]["data"][0]["price"]["id"],
        "price_msr_weekly"
    );
    advance(&h, &clock, T0 + 7 * DAY + 2 * HOUR).await;
    let s = subscription(&h, &sub).await;
    let item = &s["items"]["data"][0];
    assert_eq!(item["price"]["id"], "price_msr_monthly");
    assert_eq!(item["current_period_start"], T0 + 7 * DAY);
    assert_eq!(item["current_period_end"], monthly_end);
    assert_eq!(s["status"], "active");
    let (_, invoice) = v1_get(
        &h,
        &format!("invoices/{}", s["latest_invoice"].as_str().unwrap()),
        &[],
    )
    .await;
    assert_eq!(
        (invoice["amount_paid"].as_i64(), invoice["status"].as_str()),
        (Some(7900), Some("paid"))
    );
    assert_eq!(
        count(&h, "invoiceitem.created"),
        0,
        "a switch at the period end prorates nothing"
    );
    let switch = h
        .sim
        .events()
        .into_iter()
        .find(|e| {
            e["type"] == "customer.subscription.updated"
                && e["data"]["previous_attributes"]["items"]["data"][0]["price"]["id"]
                    == "price_msr_weekly"
        })
        .expect("the plan switch is announced");
    assert_eq!(
        switch["data"]["object"]["items"]["data"][0]["price"]["id"],
        "price_msr_monthly"
    );
    let moved = schedule(&h, &id).await;
    assert_eq!(moved.current_phase.unwrap().start_date, T0 + 7 * DAY);

    // The last phase ends: released, and the subscription goes on by itself.
    advance(&h, &clock, monthly_end + 2 * HOUR).await;
    let done = schedule(&h, &id).await;
    assert_eq!(done.status.as_str(), "released");
    assert_eq!(done.released_subscription.as_deref(), Some(sub.as_str()));
    assert!(done.subscription.is_none() && done.current_phase.is_none());
    let s = subscription(&h, &sub).await;
    assert_eq!(
        (s["status"].as_str(), &s["schedule"]),
        (Some("active"), &Value::Null)
    );
    assert_eq!(s["items"]["data"][0]["current_period_start"], monthly_end);
    let types = h.sim.event_types();
    assert_eq!(count(&h, "subscription_schedule.expiring"), 1);
    assert_eq!(count(&h, "subscription_schedule.released"), 1);
    let at = |t: &str| types.iter().position(|x| x == t).unwrap();
    assert!(at("subscription_schedule.expiring") < at("subscription_schedule.released"));
    for e in h.sim.events().iter().filter(|e| {
        e["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("subscription_schedule."))
    }) {
        serde_json::from_value::<SubscriptionSchedule>(e["data"]["object"].clone()).unwrap();
    }
}

#[tokio::test]
async fn release_and_cancel_through_the_api_leave_or_end_the_subscription() {
    let h = spawn().await;
    let c = client(&h);
    let clock = clock(&h).await;
    let kept = weekly(&h, &clock).await;
    let ended = weekly(&h, &clock).await;

    let first = from_subscription(&h, &kept).await;
    let released = ReleaseSubscriptionSchedule::new(first.id.clone())
        .send(&c)
        .await
        .unwrap();
    assert_eq!(released.status.as_str(), "released");
    assert_eq!(
        released.released_subscription.as_deref(),
        Some(kept.as_str())
    );
    assert!(released.released_at.is_some() && released.subscription.is_none());
    let s = subscription(&h, &kept).await;
    assert_eq!(
        (s["status"].as_str(), &s["schedule"]),
        (Some("active"), &Value::Null)
    );
    let (status, again) = v1_post(
        &h,
        &format!("subscription_schedules/{}/release", first.id),
        &[],
    )
    .await;
    assert_eq!(status, 400, "{again}");

    let second = from_subscription(&h, &ended).await;
    let canceled = CancelSubscriptionSchedule::new(second.id.clone())
        .send(&c)
        .await
        .unwrap();
    assert_eq!(canceled.status.as_str(), "canceled");
    assert!(canceled.canceled_at.is_some());
    assert_eq!(subscription(&h, &ended).await["status"], "canceled");
    let (status, _) = v1_post(
        &h,
        &format!("subscription_schedules/{}/cancel", second.id),
        &[],
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = v1_post(
        &h,
        &format!("subscription_schedules/{}", second.id),
        &[("end_behavior", "cancel")],
    )
    .await;
    assert_eq!(status, 400, "a canceled schedule cannot be updated");

    assert_eq!(count(&h, "subscription_schedule.released"), 1);
    assert_eq!(count(&h, "subscription_schedule.canceled"), 1);
    assert_eq!(count(&h, "subscription_schedule.aborted"), 0);
    assert_eq!(count(&h, "customer.subscription.deleted"), 1);
    let (_, kept_sub) = v1_get(&h, &format!("subscriptions/{kept}"), &[]).await;
    let all = ListSubscriptionSchedule::new()
        .customer(kept_sub["customer"].as_str().unwrap())
        .send(&c)
        .await
        .unwrap();
    assert_eq!(all.data.len(), 1);
    assert_eq!(all.data[0].id, first.id);
}

#[tokio::test]
async fn a_future_schedule_with_end_behavior_cancel_starts_then_cancels_at_its_end() {
    let h = spawn().await;
    let clock = clock(&h).await;
    let cus = customer(&h, &clock).await;
    let start = (T0 + DAY).to_string();
    let (status, created) = v1_post(
        &h,
        "subscription_schedules",
        &[
            ("customer", cus.as_str()),
            ("start_date", start.as_str()),
            ("end_behavior", "cancel"),
            ("phases[0][items][0][price]", "price_msr_weekly"),
            ("phases[0][iterations]", "2"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["status"], "not_started");
    assert_eq!(created["subscription"], Value::Null);
    assert_eq!(created["phases"][0]["end_date"], T0 + 15 * DAY);

    advance(&h, &clock, T0 + DAY).await;
    let started = schedule(&h, &id).await;
    assert_eq!(started.status.as_str(), "active");
    let sub = started.subscription.unwrap().id().to_string();
    let s = subscription(&h, &sub).await;
    assert_eq!(
        (s["status"].as_str(), s["schedule"].as_str()),
        (Some("active"), Some(id.as_str()))
    );
    let created_event = h
        .sim
        .events()
        .into_iter()
        .find(|e| e["type"] == "customer.subscription.created")
        .unwrap();
    assert_eq!(created_event["data"]["object"]["schedule"], id.as_str());

    advance(&h, &clock, T0 + 8 * DAY + HOUR).await;
    assert_eq!(subscription(&h, &sub).await["status"], "active");
    advance(&h, &clock, T0 + 15 * DAY + 2 * HOUR).await;
    let s = subscription(&h, &sub).await;
    assert_eq!(s["status"], "canceled");
    assert_eq!(s["ended_at"], T0 + 15 * DAY);
    let done = schedule(&h, &id).await;
    assert_eq!(done.status.as_str(), "completed");
    assert_eq!(done.completed_at, Some(T0 + 15 * DAY));
    let (_, invoices) = v1_get(&h, "invoices", &[("subscription", sub.as_str())]).await;
    assert_eq!(
        invoices["data"].as_array().unwrap().len(),
        2,
        "no renewal after the end"
    );
    assert_eq!(count(&h, "subscription_schedule.completed"), 1);
    assert_eq!(count(&h, "subscription_schedule.aborted"), 0);
    assert_eq!(
        count(&h, "subscription_schedule.expiring"),
        0,
        "only releasing schedules expire"
    );
}

#[tokio::test]
async fn canceling_the_subscription_directly_aborts_its_schedule() {
    let h = spawn().await;
    let clock = clock(&h).await;
    let sub = weekly(&h, &clock).await;
    let sched = from_subscription(&h, &sub).await;
    let (status, _) = v1_delete(&h, &format!("subscriptions/{sub}")).await;
    assert_eq!(status, 200);
    let aborted = schedule(&h, sched.id.as_str()).await;
    assert_eq!(aborted.status.as_str(), "canceled");
    assert!(aborted.canceled_at.is_some());
    assert_eq!(count(&h, "subscription_schedule.aborted"), 1);
    assert_eq!(count(&h, "subscription_schedule.canceled"), 0);
    let types = h.sim.event_types();
    let at = |t: &str| types.iter().position(|x| x == t).unwrap();
    assert!(at("customer.subscription.deleted") < at("subscription_schedule.aborted"));
}

#[tokio::test]
async fn invalid_schedules_are_refused_with_the_parameter_named() {
    let h = spawn().await;
    let clock = clock(&h).await;
    let sub = weekly(&h, &clock).await;
    let cus = subscription(&h, &sub).await["customer"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, one_time) = v1_post(
        &h,
        "prices",
        &[
            ("currency", "usd"),
            ("unit_amount", "300"),
            ("product_data[name]", "Map"),
        ],
    )
    .await;
    let one_time = one_time["id"].as_str().unwrap().to_string();
    let past = (T0 - DAY).to_string();
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![
                ("from_subscription", sub.as_str()),
                ("phases[0][items][0][price]", "price_msr_monthly"),
            ],
            "phases",
        ),
        (
            vec![("phases[0][items][0][price]", "price_msr_monthly")],
            "customer",
        ),
        (vec![("customer", cus.as_str())], "phases"),
        (
            vec![
                ("customer", cus.as_str()),
                ("phases[0][items][0][price]", one_time.as_str()),
            ],
            "phases[0][items][0][price]",
        ),
        (
            vec![
                ("customer", cus.as_str()),
                ("phases[0][items][0][price]", "price_msr_weekly"),
                ("phases[1][items][0][price]", "price_msr_monthly"),
            ],
            "phases[0][end_date]",
        ),
        (
            vec![
                ("customer", cus.as_str()),
                ("start_date", past.as_str()),
                ("phases[0][items][0][price]", "price_msr_weekly"),
            ],
            "start_date",
        ),
        (
            vec![
                ("customer", cus.as_str()),
                ("end_behavior", "renew"),
                ("phases[0][items][0][price]", "price_msr_weekly"),
            ],
            "end_behavior",
        ),
    ];
    for (form, param) in cases {
        let (status, body) = v1_post(&h, "subscription_schedules", &form).await;
        assert_eq!(status, 400, "{form:?}: {body}");
        assert_eq!(body["error"]["param"], param, "{form:?}: {body}");
    }
    let sched = from_subscription(&h, &sub).await;
    let (status, body) = v1_post(
        &h,
        "subscription_schedules",
        &[("from_subscription", sub.as_str())],
    )
    .await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("from_subscription"))
    );
    let (status, body) = v1_post(
        &h,
        &format!("subscription_schedules/{}", sched.id),
        &[
            ("phases[0][items][0][price]", "price_msr_weekly"),
            ("phases[0][start_date]", (T0 + HOUR).to_string().as_str()),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("phases[0][start_date]"))
    );
    let (status, _) = v1_get(&h, "subscription_schedules/sub_sched_nope", &[]).await;
    assert_eq!(status, 404);
    assert_eq!(count(&h, "subscription_schedule.created"), 1);
}
