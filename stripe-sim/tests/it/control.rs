//! The `/_sim` control API over HTTP (what other processes and dev pages use): behind
//! the API key, secrets never shown, webhook endpoints loopback-only.

use msr_stripe_sim::{SimConfig, SimHandle, WebhookEndpoint};
use serde_json::{Value, json};

use crate::helpers::*;

async fn post(h: &SimHandle, path: &str, body: Value) -> (u16, Value) {
    let r = http()
        .post(format!("{}{}", h.base_url, path))
        .bearer_auth(API_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(h: &SimHandle, path: &str, key: &str) -> (u16, String) {
    let r = http()
        .get(format!("{}{}", h.base_url, path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
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
        .bearer_auth(API_KEY)
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
        .bearer_auth(API_KEY)
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

#[tokio::test]
async fn control_routes_without_a_valid_test_key_are_refused_with_stripes_401() {
    let h = spawn().await;
    let (cus, sub) = paid_subscription(&h).await;
    let before = h.sim.event_types().len();
    let c = http();
    let url = |p: &str| format!("{}{p}", h.base_url);
    let attempts = [
        c.get(url("_sim/webhook_endpoints")),
        c.post(url("_sim/webhook_endpoints"))
            .json(&json!({"url": "http://127.0.0.1:9/x", "secret": "whsec_mine"})),
        c.post(url("_sim/checkout/cs_test_any/pay"))
            .json(&json!({"card": "visa"})),
        c.post(url("_sim/faults"))
            .json(&json!({"kind": "rate_limit", "on": true})),
        c.delete(url("_sim/faults")),
        c.get(url("_sim/state")),
        c.get(url("_sim/events")),
        c.get(url("_sim/deliveries")),
        c.post(url("_sim/clock/advance"))
            .json(&json!({"seconds": 86_400})),
        c.post(url(&format!("_sim/subscriptions/{sub}/cancel"))),
        c.post(url(&format!("_sim/customers/{cus}/card")))
            .json(&json!({"card": "declined"})),
    ];
    for req in attempts {
        for auth in [None, Some("sk_live_abc"), Some("pk_test_abc")] {
            let req = req.try_clone().unwrap();
            let req = match auth {
                Some(k) => req.bearer_auth(k),
                None => req,
            };
            let r = req.send().await.unwrap();
            let what = format!("{} with {auth:?}", r.url());
            assert_eq!(r.status(), 401, "{what}");
            assert!(r.headers().contains_key("request-id"), "{what}");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"]["type"], "invalid_request_error", "{what}");
            assert!(body["error"]["message"].is_string(), "{what}");
        }
    }
    assert!(h.sim.webhook_endpoints().is_empty());
    assert!(!h.sim.faults().rate_limit);
    assert_eq!(h.sim.subscription(&sub).unwrap()["status"], "active");
    assert_eq!(h.sim.event_types().len(), before, "nothing happened");
}

#[tokio::test]
async fn listing_webhook_endpoints_shows_their_urls_but_never_their_secrets() {
    let h = spawn().await;
    let r = Receiver::start().await;
    h.sim.set_webhook_endpoints(vec![r.endpoint()]);
    let (s, body) = get(&h, "_sim/webhook_endpoints", API_KEY).await;
    assert_eq!(s, 200);
    assert!(!body.contains(SECRET), "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v, json!([{"url": r.url}]));
    for path in ["_sim/state", "_sim/deliveries", "_sim/events"] {
        let (s, body) = get(&h, path, API_KEY).await;
        assert_eq!(s, 200, "{path}");
        assert!(!body.contains(SECRET), "{path}: {body}");
    }

    let (s, v) = post(
        &h,
        "_sim/webhook_endpoints",
        json!({"url": "http://127.0.0.1:9/x", "secret": "whsec_set_over_http"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v, json!([{"url": "http://127.0.0.1:9/x"}]));
    assert!(!v.to_string().contains("whsec_"), "{v}");
}

#[tokio::test]
async fn webhook_endpoints_set_over_http_must_be_on_a_loopback_host() {
    let h = spawn().await;
    let r = Receiver::start().await;
    h.sim.set_webhook_endpoints(vec![r.endpoint()]);
    for url in [
        "https://evil.example/hook",
        "http://127.0.0.1.evil.example/x",
        "http://127.0.0.1@evil.example/x",
        "http://10.0.0.1/x",
        "ftp://127.0.0.1/x",
    ] {
        let (s, v) = post(
            &h,
            "_sim/webhook_endpoints",
            json!([
                {"url": "http://127.0.0.1:9/ok", "secret": "whsec_a"},
                {"url": url, "secret": "whsec_b"}
            ]),
        )
        .await;
        assert_eq!(s, 400, "{url}: {v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{url}");
        assert_eq!(v["error"]["param"], "url", "{url}");
        assert_eq!(h.sim.webhook_endpoints(), vec![r.endpoint()], "{url}");
    }
    let (_, v) = post(
        &h,
        "_sim/webhook_endpoints",
        json!({"url": "https://evil.example/hook", "secret": "whsec_b"}),
    )
    .await;
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("evil.example"), "{message}");
    assert!(message.contains("only loopback hosts"), "{message}");

    for url in [
        "http://127.0.0.1:9/x",
        "http://localhost:9/x",
        "http://[::1]:9/x",
    ] {
        let (s, v) = post(
            &h,
            "_sim/webhook_endpoints",
            json!({"url": url, "secret": "whsec_c"}),
        )
        .await;
        assert_eq!(s, 200, "{url}: {v}");
        assert_eq!(
            h.sim.webhook_endpoints(),
            vec![WebhookEndpoint {
                url: url.into(),
                secret: "whsec_c".into()
            }]
        );
    }
}

#[tokio::test]
async fn a_configured_api_key_is_the_only_key_v1_and_the_control_api_accept() {
    let key = "sk_test_only_this_one_0123456789";
    let h = spawn_with(SimConfig {
        api_key: Some(key.into()),
        ..config()
    })
    .await;
    for path in ["v1/customers", "_sim/state", "_sim/webhook_endpoints"] {
        for wrong in [
            API_KEY,
            "sk_test_only_this_one_012345678",
            "sk_test_only_this_one_01234567890",
            "rk_test_only_this_one_0123456789",
        ] {
            let (s, body) = get(&h, path, wrong).await;
            assert_eq!(s, 401, "{path} with {wrong}: {body}");
            assert!(!body.contains(key), "the right key is not echoed: {body}");
        }
        let (s, body) = get(&h, path, key).await;
        assert_eq!(s, 200, "{path}: {body}");
        // Stripe's other form: HTTP basic with the key as user.
        let basic = http()
            .get(format!("{}{path}", h.base_url))
            .basic_auth(key, None::<&str>)
            .send()
            .await
            .unwrap();
        assert_eq!(basic.status(), 200, "{path} with basic auth");
    }
    // The async-stripe client with the right key works; with another test key it is refused.
    let good = stripe::ClientBuilder::new(key)
        .url(h.base_url.clone())
        .build()
        .unwrap();
    stripe_core::customer::CreateCustomer::new()
        .send(&good)
        .await
        .unwrap();
    assert!(
        stripe_core::customer::CreateCustomer::new()
            .send(&client(&h))
            .await
            .is_err()
    );
    let (s, _) = post(&h, "_sim/faults", json!({"kind": "rate_limit", "on": true})).await;
    assert_eq!(s, 401);
    assert!(!h.sim.faults().rate_limit);
}
