//! Entitlements: seeded plan features, a customer's active entitlements and the
//! `entitlements.active_entitlement_summary.updated` event through subscription starts,
//! plan switches, cancellation, product feature changes and test clocks, driven over HTTP
//! by async-stripe (`stripe_misc`, `stripe_product`) and plain form posts. The feature and
//! product-feature endpoints themselves are in `features.rs`.

use std::collections::HashMap;
use std::time::Duration;

use futures::TryStreamExt;
use msr_stripe_sim::{PlanSeed, SimConfig, SimHandle};
use serde_json::Value;
use stripe_misc::entitlements_active_entitlement::{
    ListEntitlementsActiveEntitlement, RetrieveEntitlementsActiveEntitlement,
};
use stripe_misc::entitlements_feature::{CreateEntitlementsFeature, ListEntitlementsFeature};
use stripe_product::product_feature::ListProductProductFeature;

use crate::helpers::*;

const SUMMARY: &str = "entitlements.active_entitlement_summary.updated";
const WEEKLY: [&str; 2] = ["fleet_tracking", "trip_log"];
const MONTHLY: [&str; 4] = ["fleet_tracking", "trip_log", "ai_dispatch", "fuel_reports"];

async fn spawn_plans(plans: Vec<PlanSeed>) -> (SimHandle, Receiver) {
    let h = spawn_with(SimConfig { plans, ..config() }).await;
    let r = Receiver::start().await;
    h.sim.set_webhook_endpoints(vec![r.endpoint()]);
    (h, r)
}

/// A customer with `pm_card_visa` and a subscription on `price` made with `POST /v1/subscriptions`.
async fn subscribe(h: &SimHandle, price: &str) -> (String, String) {
    let (_, cus) = v1_post(h, "customers", &[("payment_method", "pm_card_visa")]).await;
    let cus = cus["id"].as_str().unwrap().to_string();
    let (status, sub) = v1_post(
        h,
        "subscriptions",
        &[("customer", &cus), ("items[0][price]", price)],
    )
    .await;
    assert_eq!(status, 200, "{sub}");
    assert_eq!(sub["status"], "active");
    (cus, sub["id"].as_str().unwrap().to_string())
}

/// The summary events of `customer`, oldest first.
fn summaries(h: &SimHandle, customer: &str) -> Vec<Value> {
    h.sim
        .events()
        .into_iter()
        .filter(|e| e["type"] == SUMMARY && e["data"]["object"]["customer"] == customer)
        .collect()
}

fn lookup_keys(summary: &Value) -> Vec<String> {
    let mut keys: Vec<String> = summary["data"]["object"]["entitlements"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["lookup_key"].as_str().unwrap().to_string())
        .collect();
    keys.sort();
    keys
}

fn sorted(keys: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = keys.iter().map(|k| (*k).to_string()).collect();
    v.sort();
    v
}

async fn settle(h: &SimHandle) {
    assert!(h.sim.wait_for_deliveries(Duration::from_secs(5)).await);
}

#[tokio::test]
async fn seeded_demo_plans_carry_their_features() {
    let h = spawn_with(SimConfig {
        plans: PlanSeed::demo(),
        ..config()
    })
    .await;
    let c = client(&h);
    let features = ListEntitlementsFeature::new().send(&c).await.unwrap();
    let mut keys: Vec<String> = features.data.iter().map(|f| f.lookup_key.clone()).collect();
    keys.sort();
    assert_eq!(keys, sorted(&MONTHLY), "each feature is created once");
    let fleet = features
        .data
        .iter()
        .find(|f| f.lookup_key == "fleet_tracking")
        .unwrap();
    assert_eq!(fleet.name, "Fleet tracking");
    for (product, expected) in [
        ("prod_msr_weekly", &WEEKLY[..]),
        ("prod_msr_monthly", &MONTHLY[..]),
    ] {
        let attached = ListProductProductFeature::new(product)
            .send(&c)
            .await
            .unwrap();
        let mut keys: Vec<String> = attached
            .data
            .iter()
            .map(|pf| pf.entitlement_feature.lookup_key.clone())
            .collect();
        keys.sort();
        assert_eq!(keys, sorted(expected), "{product}");
    }
    assert!(h.sim.events().is_empty(), "seeding emits nothing");
}

#[tokio::test]
async fn a_paid_checkout_grants_the_plan_features_and_a_plan_switch_changes_them() {
    use stripe_billing::subscription::*;
    let (h, r) = spawn_plans(PlanSeed::demo()).await;
    let c = client(&h);
    let (cus, sub) = paid_subscription(&h).await;

    // One summary, right after the update that made the subscription active.
    let events = h.sim.events();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let at = types.iter().position(|t| *t == SUMMARY).unwrap();
    assert_eq!(types.iter().filter(|t| **t == SUMMARY).count(), 1);
    assert_eq!(types[at - 1], "customer.subscription.updated");
    assert_eq!(events[at - 1]["data"]["object"]["status"], "active");
    assert!(events[at]["created"].as_i64() >= events[at - 1]["created"].as_i64());
    let summary = &events[at]["data"]["object"];
    assert_eq!(summary["object"], "entitlements.active_entitlement_summary");
    assert_eq!(summary["customer"], cus.as_str());
    assert_eq!(summary["livemode"], false);
    assert_eq!(summary["entitlements"]["has_more"], false);
    assert_eq!(
        summary["entitlements"]["url"],
        format!("/v1/entitlements/active_entitlements?customer={cus}")
    );
    assert_eq!(lookup_keys(&events[at]), sorted(&WEEKLY));
    // The real client's types accept the event and its object.
    let parsed: stripe_misc::EntitlementsActiveEntitlementSummary =
        serde_json::from_value(summary.clone()).unwrap();
    assert_eq!(parsed.entitlements.data.len(), 2);
    drop(serde_json::from_value::<stripe_shared::Event>(events[at].clone()).unwrap());

    // The API agrees, and `expand[]=data.feature` inlines the features.
    let listed = ListEntitlementsActiveEntitlement::new(cus.as_str())
        .expand(vec!["data.feature".to_string()])
        .send(&c)
        .await
        .unwrap();
    assert_eq!(listed.data.len(), 2);
    let first = &listed.data[0];
    assert!(first.id.as_str().starts_with("ent_"));
    let feature = first.feature.as_object().expect("expanded");
    assert_eq!(feature.lookup_key, first.lookup_key);
    let got = RetrieveEntitlementsActiveEntitlement::new(first.id.clone())
        .send(&c)
        .await
        .unwrap();
    assert_eq!(got.feature.id(), &feature.id);
    let kept: HashMap<String, String> = listed
        .data
        .iter()
        .map(|e| (e.lookup_key.clone(), e.id.to_string()))
        .collect();

    // Weekly → monthly: two more features; the two kept keep their ids.
    let item = RetrieveSubscription::new(sub.as_str())
        .send(&c)
        .await
        .unwrap()
        .items
        .data[0]
        .id
        .to_string();
    let mut switch = UpdateSubscriptionItems::new();
    switch.id = Some(item);
    switch.price = Some("price_msr_monthly".into());
    UpdateSubscription::new(sub.as_str())
        .items(vec![switch])
        .proration_behavior(UpdateSubscriptionProrationBehavior::None)
        .send(&c)
        .await
        .unwrap();
    let all = summaries(&h, &cus);
    assert_eq!(all.len(), 2);
    assert_eq!(lookup_keys(&all[1]), sorted(&MONTHLY));
    let now: Vec<Value> = all[1]["data"]["object"]["entitlements"]["data"]
        .as_array()
        .unwrap()
        .clone();
    for (key, id) in &kept {
        assert!(
            now.iter()
                .any(|e| e["lookup_key"] == key.as_str() && e["id"] == id.as_str()),
            "{key} keeps {id}"
        );
    }

    settle(&h).await;
    let got = r.all();
    assert!(got.iter().all(|x| x.valid), "every delivery is signed");
    let delivered: Vec<Received> = got.into_iter().filter(|x| x.kind() == SUMMARY).collect();
    assert_eq!(delivered.len(), 2);
    assert_eq!(
        delivered[1].event["data"]["object"]["customer"],
        cus.as_str()
    );
}

#[tokio::test]
async fn canceling_empties_the_set_and_says_so() {
    let (h, r) = spawn_plans(PlanSeed::demo()).await;
    let (cus, sub) = subscribe(&h, "price_msr_monthly").await;
    let (_, before) = v1_get(
        &h,
        "entitlements/active_entitlements",
        &[("customer", &cus)],
    )
    .await;
    assert_eq!(before["data"].as_array().unwrap().len(), 4);
    let ent = before["data"][0]["id"].as_str().unwrap().to_string();

    let (status, _) = v1_delete(&h, &format!("subscriptions/{sub}")).await;
    assert_eq!(status, 200);
    let events = h.sim.events();
    let last = events.last().unwrap();
    assert_eq!(last["type"], SUMMARY);
    assert_eq!(
        events[events.len() - 2]["type"],
        "customer.subscription.deleted"
    );
    assert_eq!(
        last["data"]["object"]["entitlements"]["data"],
        serde_json::json!([])
    );
    assert_eq!(last["data"]["object"]["entitlements"]["has_more"], false);

    let (_, after) = v1_get(
        &h,
        "entitlements/active_entitlements",
        &[("customer", &cus)],
    )
    .await;
    assert_eq!(after["data"], serde_json::json!([]));
    let (status, _) = v1_get(&h, &format!("entitlements/active_entitlements/{ent}"), &[]).await;
    assert_eq!(status, 404, "a lost entitlement is gone");
    // The summary is also in `GET /v1/events`.
    let (_, listed) = v1_get(&h, "events", &[("type", SUMMARY)]).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);

    settle(&h).await;
    let delivered: Vec<Received> = r
        .all()
        .into_iter()
        .filter(|x| x.kind() == SUMMARY)
        .collect();
    assert_eq!(delivered.len(), 2);
    assert!(delivered.iter().all(|x| x.valid));
}

#[tokio::test]
async fn more_than_ten_entitlements_are_paged_and_the_summary_has_more() {
    let mut plans = PlanSeed::defaults();
    plans[0].features = (1..=12).map(|n| format!("feature_{n:02}")).collect();
    let (h, _r) = spawn_plans(plans).await;
    let c = client(&h);
    let (cus, _) = subscribe(&h, "price_msr_weekly").await;

    let summary = summaries(&h, &cus).pop().unwrap();
    let embedded = &summary["data"]["object"]["entitlements"];
    assert_eq!(embedded["data"].as_array().unwrap().len(), 10);
    assert_eq!(embedded["has_more"], true);

    // The summary holds the first page; `limit` + `starting_after` reach the rest.
    let (_, page) = v1_get(
        &h,
        "entitlements/active_entitlements",
        &[("customer", &cus)],
    )
    .await;
    assert_eq!(page["data"], embedded["data"]);
    assert_eq!(page["url"], "/v1/entitlements/active_entitlements");
    let mut seen: Vec<String> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut q = vec![("customer", cus.as_str()), ("limit", "5")];
        if let Some(a) = &after {
            q.push(("starting_after", a.as_str()));
        }
        let (status, page) = v1_get(&h, "entitlements/active_entitlements", &q).await;
        assert_eq!(status, 200);
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 5);
        seen.extend(data.iter().map(|e| e["id"].as_str().unwrap().to_string()));
        if page["has_more"] == false {
            break;
        }
        after = seen.last().cloned();
    }
    assert_eq!(seen.len(), 12);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 12);
    let streamed: Vec<_> = ListEntitlementsActiveEntitlement::new(cus.as_str())
        .limit(4)
        .paginate()
        .stream(&c)
        .try_collect()
        .await
        .unwrap();
    let streamed: Vec<String> = streamed.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(streamed, seen, "async-stripe pages the same way");

    let (status, err) = v1_get(&h, "entitlements/active_entitlements", &[]).await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["param"], "customer");
    let (status, _) = v1_get(
        &h,
        "entitlements/active_entitlements",
        &[("customer", &cus), ("limit", "101")],
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_feature_added_to_or_removed_from_a_product_reaches_its_subscribers() {
    let (h, _r) = spawn_plans(PlanSeed::demo()).await;
    let (weekly, _) = subscribe(&h, "price_msr_weekly").await;
    let (monthly, _) = subscribe(&h, "price_msr_monthly").await;
    let (_, feature) = v1_post(
        &h,
        "entitlements/features",
        &[("name", "Night mode"), ("lookup_key", "night_mode")],
    )
    .await;
    let feature = feature["id"].as_str().unwrap().to_string();
    assert_eq!(
        summaries(&h, &weekly).len(),
        1,
        "creating a feature changes nobody"
    );

    let (_, attached) = v1_post(
        &h,
        "products/prod_msr_weekly/features",
        &[("entitlement_feature", &feature)],
    )
    .await;
    let got = summaries(&h, &weekly);
    assert_eq!(got.len(), 2);
    assert_eq!(
        lookup_keys(&got[1]),
        sorted(&["fleet_tracking", "trip_log", "night_mode"])
    );
    assert_eq!(
        summaries(&h, &monthly).len(),
        1,
        "other products' customers are untouched"
    );

    // A feature already on the product cannot be attached again.
    let (_, trip_log) = v1_get(&h, "entitlements/features", &[("lookup_key", "trip_log")]).await;
    let trip_log = trip_log["data"][0]["id"].as_str().unwrap().to_string();
    let (status, _) = v1_post(
        &h,
        "products/prod_msr_weekly/features",
        &[("entitlement_feature", &trip_log)],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        summaries(&h, &weekly).len(),
        2,
        "a refused attach changes nothing"
    );

    let (status, _) = v1_delete(
        &h,
        &format!(
            "products/prod_msr_weekly/features/{}",
            attached["id"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(status, 200);
    let got = summaries(&h, &weekly);
    assert_eq!(got.len(), 3);
    assert_eq!(lookup_keys(&got[2]), sorted(&WEEKLY));
}

#[tokio::test]
async fn test_clock_transitions_send_the_summary_at_clock_time() {
    const T0: i64 = 1_799_971_200;
    const DAY: i64 = 86_400;
    let (h, _r) = spawn_plans(PlanSeed::demo()).await;
    let (_, clock) = v1_post(
        &h,
        "test_helpers/test_clocks",
        &[("frozen_time", &T0.to_string())],
    )
    .await;
    let clock = clock["id"].as_str().unwrap().to_string();
    let (_, cus) = v1_post(&h, "customers", &[("test_clock", &clock)]).await;
    let cus = cus["id"].as_str().unwrap().to_string();
    // A trial without a card that cancels when it ends.
    let (status, sub) = v1_post(
        &h,
        "subscriptions",
        &[
            ("customer", &cus),
            ("items[0][price]", "price_msr_weekly"),
            ("trial_period_days", "3"),
            (
                "trial_settings[end_behavior][missing_payment_method]",
                "cancel",
            ),
        ],
    )
    .await;
    assert_eq!(status, 200, "{sub}");
    assert_eq!(sub["status"], "trialing");
    let got = summaries(&h, &cus);
    assert_eq!(got.len(), 1, "trialing grants the features");
    assert_eq!(got[0]["created"], T0);
    assert_eq!(lookup_keys(&got[0]), sorted(&WEEKLY));

    let (status, _) = v1_post(
        &h,
        &format!("test_helpers/test_clocks/{clock}/advance"),
        &[("frozen_time", &(T0 + 4 * DAY).to_string())],
    )
    .await;
    assert_eq!(status, 200);
    let got = summaries(&h, &cus);
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[1]["created"],
        T0 + 3 * DAY,
        "at the trial end, on the clock"
    );
    assert_eq!(
        got[1]["data"]["object"]["entitlements"]["data"],
        serde_json::json!([])
    );
}

#[tokio::test]
async fn without_features_no_summary_event_is_ever_sent() {
    let (h, r) = spawn_plans(PlanSeed::defaults()).await;
    let c = client(&h);
    // A feature on no product changes nobody's set either.
    CreateEntitlementsFeature::new("unused", "Unused")
        .send(&c)
        .await
        .unwrap();
    let (cus, sub) = paid_subscription(&h).await;
    h.sim.advance_to_next_renewal(&sub).await.unwrap();
    let item = h.sim.subscription(&sub).unwrap()["items"]["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = v1_post(
        &h,
        &format!("subscriptions/{sub}"),
        &[
            ("items[0][id]", &item),
            ("items[0][price]", "price_msr_monthly"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    h.sim.cancel_subscription(&sub).await.unwrap();
    settle(&h).await;

    assert!(
        h.sim
            .event_types()
            .iter()
            .all(|t| !t.starts_with("entitlements.")),
        "{:?}",
        h.sim.event_types()
    );
    assert!(
        r.valid_types()
            .iter()
            .all(|t| !t.starts_with("entitlements."))
    );
    let (_, listed) = v1_get(
        &h,
        "entitlements/active_entitlements",
        &[("customer", &cus)],
    )
    .await;
    assert_eq!(listed["data"], serde_json::json!([]));
}
