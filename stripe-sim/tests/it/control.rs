//! The `/_sim` control API over HTTP (what other processes and dev pages use).

use serde_json::{Value, json};

use crate::helpers::*;

async fn post(h: &msr_stripe_sim::SimHandle, path: &str, body: Value) -> (u16, Value) {
    let r = http()
        .post(format!("{}{}", h.base_url, path))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn clock_advances_by_seconds_and_to_the_next_renewal() {
    let h = spawn().await;
    let (_, sub) = paid_subscription(&h).await;
    let before = h.sim.now();
    let (s, v) = post(&h, "_sim/clock/advance", json!({"seconds": 3600})).await;
    assert_eq!(s, 200);
    assert!(v["now"].as_i64().unwrap() >= before + 3600);
    let (s, v) = post(
        &h,
        "_sim/clock/advance",
        json!({"to": "next_renewal", "subscription": sub}),
    )
    .await;
    assert_eq!(s, 200);
    let types: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "invoice.created",
            "customer.subscription.updated",
            "invoice.finalized",
            "invoice.paid",
            "invoice.payment_succeeded"
        ]
    );
    let state: Value = http()
        .get(format!("{}_sim/state", h.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["subscriptions"][0]["status"], "active");
}

#[tokio::test]
async fn control_routes_fail_renewals_set_cards_pay_checkouts_and_set_faults() {
    let h = spawn().await;
    let (cus, sub) = paid_subscription(&h).await;
    let (s, _) = post(
        &h,
        &format!("_sim/subscriptions/{sub}/fail_next_renewal"),
        json!({}),
    )
    .await;
    assert_eq!(s, 200);
    post(
        &h,
        "_sim/clock/advance",
        json!({"to": "next_renewal", "subscription": sub}),
    )
    .await;
    assert_eq!(h.sim.subscription(&sub).unwrap()["status"], "past_due");
    let (s, v) = post(
        &h,
        &format!("_sim/customers/{cus}/card"),
        json!({"card": "visa"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        h.sim.subscription(&sub).unwrap()["status"],
        "active",
        "new card pays at once"
    );

    let (s, _) = post(
        &h,
        &format!("_sim/subscriptions/{sub}/pause"),
        json!({"behavior": "keep_as_draft"}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        h.sim.subscription(&sub).unwrap()["pause_collection"]["behavior"],
        "keep_as_draft"
    );
    let (s, _) = post(&h, &format!("_sim/subscriptions/{sub}/cancel"), json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(h.sim.subscription(&sub).unwrap()["status"], "canceled");

    let (s, v) = post(
        &h,
        "_sim/faults",
        json!([{"kind": "api_errors", "count": 2}, {"kind": "rate_limit", "on": true}]),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["api_errors"][0]["remaining"], 2);
    assert_eq!(v["rate_limit"], true);
    let cleared: Value = http()
        .delete(format!("{}_sim/faults", h.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cleared["rate_limit"], false);
    let (s, _) = post(&h, "_sim/faults", json!({"kind": "nonsense"})).await;
    assert_eq!(s, 400);

    // Pay a checkout created over the API.
    let cs: Value = http()
        .post(format!("{}v1/checkout/sessions", h.base_url))
        .bearer_auth("sk_test_x")
        .form(&[
            ("mode", "subscription"),
            ("customer_email", "new@x.io"),
            ("line_items[0][price]", "price_msr_monthly"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (s, v) = post(
        &h,
        &format!("_sim/checkout/{}/pay", cs["id"].as_str().unwrap()),
        json!({"card": "visa"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "complete");
    let types = h.sim.event_types();
    assert!(
        types.contains(&"customer.created".to_string()),
        "customer_email creates a customer"
    );
}
