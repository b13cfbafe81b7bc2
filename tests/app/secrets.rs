//! No configured secret ever reaches a log line: a full journey with every secret set, then a grep
//! of everything this test run logged.

use msr_stripe_sim::TestCard;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{StripeApp, WEBHOOK_SECRET, captured_logs, now, sign};

#[tokio::test]
async fn no_configured_secret_appears_in_the_logs_of_a_full_run() {
    let internal = "internal-secret-a8f3c1d2e4-5b6c7d8e9f0a1b";
    let auth = "auth-secret-77b1e9c0aa-0f1e2d3c4b5a69788";
    let app = StripeApp::spawn_with(&[
        ("MSR_INTERNAL_API_KEY", internal),
        ("MSR_AUTH_SECRET", auth),
        ("MSR_ADMIN_USER_IDS", "sec-journey-admin"),
    ])
    .await;
    // The whole journey: a user, checkout, payment, webhooks, the entitlement, a bad signature,
    // a sign-in hand-off, a page, an admin page, metrics.
    app.create_user("sec-journey", "sec@example.com").await;
    let started = app
        .request(Method::POST, "/billing/checkout")
        .header("X-User-Id", "sec-journey")
        .bearer_auth(internal)
        .json(&json!({"plan": "monthly"}))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status().as_u16(), 200);
    let session = crate::helpers::json(started).await["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.sim()
        .pay_checkout(&session, TestCard::Visa)
        .await
        .unwrap();
    app.settle().await;
    let session_sub = app.sim().object(&session).expect("session")["subscription"]
        .as_str()
        .expect("a subscription")
        .to_owned();
    let entitled = app
        .request(Method::GET, "/billing/entitlement")
        .header("X-User-Id", "sec-journey")
        .bearer_auth(internal)
        .send()
        .await
        .unwrap();
    assert_eq!(entitled.status().as_u16(), 200);
    let wrong_key = app
        .request(Method::GET, "/billing/entitlement")
        .header("X-User-Id", "sec-journey")
        .bearer_auth("not-the-key")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_key.status().as_u16(), 401);
    let body = json!({"id": "evt_sec", "type": "ping", "created": now(), "data": {"object": {}}})
        .to_string();
    assert_eq!(
        app.post_webhook(&body, Some(sign("whsec_wrong", now(), &body)))
            .await
            .status()
            .as_u16(),
        400
    );
    assert_eq!(
        app.post_webhook(&body, Some(sign(WEBHOOK_SECRET, now(), &body)))
            .await
            .status()
            .as_u16(),
        200
    );
    let token = msr_billing::auth::sign(
        &json!({"sub": "sec-journey-admin", "email": "a@example.com", "exp": now() + 60, "jti": "sec-1"}),
        auth.as_bytes(),
    );
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()
        .unwrap();
    let signed_in = browser
        .get(format!("{}/auth/handoff", app.address))
        .query(&[("token", &token)])
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status().as_u16(), 200);
    let admin = browser
        .get(format!("{}/admin/users/sec-journey", app.address))
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status().as_u16(), 200);
    let replayed = browser
        .get(format!("{}/auth/handoff", app.address))
        .query(&[("token", &token)])
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status().as_u16(), 401);
    app.request(Method::GET, "/metrics")
        .bearer_auth(internal)
        .send()
        .await
        .unwrap();

    // The log store is the whole test run's: look only at this test's lines for what it did.
    let logs = captured_logs();
    let own = |needle: &str| {
        logs.lines()
            .any(|l| l.contains(needle) && l.contains("user_id=sec-journey"))
    };
    assert!(
        own("/billing/entitlement"),
        "request lines carry the user id: {}",
        logs.lines()
            .filter(|l| l.contains("/billing/entitlement"))
            .take(3)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        logs.lines()
            .any(|l| l.contains("subscription synced") && l.contains(&session_sub)),
        "the journey's subscription was logged"
    );
    assert!(
        logs.lines()
            .any(|l| l.contains("signed in by hand-off") && l.contains("sec-journey-admin")),
        "the journey's hand-off was logged"
    );
    for secret in [
        internal,
        auth,
        WEBHOOK_SECRET,
        "sk_test_simulator",
        token.as_str(),
        "not-the-key",
    ] {
        assert!(
            !logs.contains(secret),
            "a secret reached the logs: {secret}"
        );
    }
}
