//! Checkout, portal and the owner's journeys, against the Stripe simulator over real HTTP.

use msr_stripe_sim::{Fault, TestCard};
use reqwest::Method;

use crate::helpers::{StripeApp, assert_error, json};

#[tokio::test]
async fn an_owner_checks_out_pays_and_is_entitled() {
    let app = StripeApp::spawn().await;
    app.create_user("o1", "o1@example.com").await;
    let response = app.checkout("o1", "monthly").await;
    assert_eq!(response.status().as_u16(), 200);
    let started = json(response).await;
    let session_id = started["session_id"].as_str().unwrap();
    assert!(session_id.starts_with("cs_"));
    assert!(started["url"].as_str().unwrap().contains(session_id));

    // What Stripe was asked for: the user's customer, the monthly price, the user id everywhere.
    let session = app.sim().object(session_id).unwrap();
    assert_eq!(session["mode"], "subscription");
    assert_eq!(session["client_reference_id"], "o1");
    assert_eq!(session["metadata"]["user_id"], "o1");
    let customer = session["customer"].as_str().unwrap().to_owned();
    let status = json(app.dev_status("o1").await).await;
    assert_eq!(
        status["user"]["stripe_customer_id"],
        customer.as_str(),
        "customer stored before checkout"
    );
    let (code, _) = app.entitled("o1").await;
    assert_eq!(code, 402, "not entitled before paying");

    app.sim()
        .pay_checkout(session_id, TestCard::Visa)
        .await
        .unwrap();
    app.settle().await;
    let (code, body) = app.entitled("o1").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "active");
    assert_eq!(body["plan"], "monthly");
    assert_eq!(body["reason"], "active");
    let sub_id = app.sim().object(session_id).unwrap()["subscription"]
        .as_str()
        .unwrap()
        .to_owned();
    let sub = app.sim().subscription(&sub_id).unwrap();
    assert_eq!(
        sub["metadata"]["user_id"], "o1",
        "the user id is on the subscription too"
    );
    let period_end = sub["items"]["data"][0]["current_period_end"]
        .as_i64()
        .unwrap();
    let valid_until =
        chrono::DateTime::parse_from_rfc3339(body["valid_until"].as_str().unwrap()).unwrap();
    assert_eq!(valid_until.timestamp(), period_end);
    let status = json(app.dev_status("o1").await).await;
    assert_eq!(
        status["entitlement"]["stripe_subscription_id"],
        sub_id.as_str()
    );
}

#[tokio::test]
async fn checkout_refuses_bad_requests_with_clear_errors() {
    let app = StripeApp::spawn().await;
    app.create_user("c1", "c1@example.com").await;
    assert_error(app.checkout("ghost", "monthly").await, 404, "unknown_user").await;
    assert_error(app.checkout("c1", "yearly").await, 422, "invalid_plan").await;
    let anonymous = app
        .request(Method::POST, "/billing/checkout")
        .json(&serde_json::json!({"plan": "weekly"}))
        .send()
        .await
        .unwrap();
    assert_error(anonymous, 401, "unauthorized").await;
    let broken = app
        .request(Method::POST, "/billing/checkout")
        .header("X-User-Id", "c1")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_error(broken, 400, "bad_request").await;
}

#[tokio::test]
async fn a_subscriber_gets_409_pointing_to_the_portal_not_a_second_subscription() {
    let app = StripeApp::spawn().await;
    app.subscribed("s1", "weekly", TestCard::Visa).await;
    let body = assert_error(
        app.checkout("s1", "monthly").await,
        409,
        "subscription_exists",
    )
    .await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("portal")
    );
    let subs = app.sim().state_summary();
    assert_eq!(
        subs["subscriptions"].as_array().map(Vec::len),
        Some(1),
        "{subs}"
    );
}

#[tokio::test]
async fn concurrent_checkouts_for_one_user_yield_one_customer_and_one_session() {
    let app = StripeApp::spawn().await;
    app.create_user("cc", "cc@example.com").await;
    let calls = (0..8).map(|_| app.checkout("cc", "monthly"));
    let results = futures::future::join_all(calls).await;
    let mut sessions = std::collections::BTreeSet::new();
    for r in results {
        assert_eq!(r.status().as_u16(), 200);
        sessions.insert(json(r).await["session_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let summary = app.sim().state_summary();
    assert_eq!(
        summary["customers"].as_array().map(Vec::len),
        Some(1),
        "{summary}"
    );
}

#[tokio::test]
async fn stripe_failing_during_checkout_is_a_502_and_the_retry_makes_no_second_customer() {
    let app = StripeApp::spawn().await;
    app.create_user("f1", "f1@example.com").await;
    app.sim()
        .set_fault(Fault::ApiErrors {
            count: 1,
            path_prefix: Some("/v1/checkout/sessions".into()),
        })
        .await;
    let failed = app.checkout("f1", "monthly").await;
    assert_error(failed, 502, "stripe_error").await;
    let retry = app.checkout("f1", "monthly").await;
    assert_eq!(
        retry.status().as_u16(),
        200,
        "the retry uses a fresh Idempotency-Key"
    );
    app.sim()
        .set_fault(Fault::ApiErrors {
            count: 1,
            path_prefix: Some("/v1/customers".into()),
        })
        .await;
    app.create_user("f2", "f2@example.com").await;
    assert_error(app.checkout("f2", "weekly").await, 502, "stripe_error").await;
    assert_eq!(app.checkout("f2", "weekly").await.status().as_u16(), 200);
    let summary = app.sim().state_summary();
    assert_eq!(
        summary["customers"].as_array().map(Vec::len),
        Some(2),
        "one customer each: {summary}"
    );
}

#[tokio::test]
async fn stripe_hanging_during_checkout_is_a_502_not_a_hang() {
    let app = StripeApp::spawn_with(&[("MSR_STRIPE_TIMEOUT", "1s")]).await;
    app.create_user("h1", "h1@example.com").await;
    app.sim()
        .set_fault(Fault::ApiHang {
            count: 1,
            path_prefix: Some("/v1/customers".into()),
            delay_ms: 4000,
        })
        .await;
    let started = std::time::Instant::now();
    assert_error(app.checkout("h1", "monthly").await, 502, "stripe_error").await;
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
}

#[tokio::test]
async fn the_portal_needs_a_customer_and_then_returns_a_url() {
    let app = StripeApp::spawn().await;
    app.create_user("p1", "p1@example.com").await;
    let none = app
        .request(Method::POST, "/billing/portal")
        .header("X-User-Id", "p1")
        .send()
        .await
        .unwrap();
    assert_error(none, 409, "no_customer").await;
    app.subscribed("p2", "monthly", TestCard::Visa).await;
    let ok = app
        .request(Method::POST, "/billing/portal")
        .header("X-User-Id", "p2")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    let url = json(ok).await["url"].as_str().unwrap().to_owned();
    // The portal session is the owner's own customer's, and comes back to the configured page.
    let id = url.rsplit('/').next().unwrap();
    let portal = app
        .sim()
        .object(id)
        .expect("a portal session in the simulator");
    let customer = json(app.dev_status("p2").await).await["user"]["stripe_customer_id"].clone();
    assert_eq!(portal["customer"], customer, "{portal}");
    assert_eq!(
        portal["return_url"],
        app.state.settings.billing_portal_return_url.as_str(),
        "{portal}"
    );
}

#[tokio::test]
async fn a_failed_renewal_makes_the_owner_past_due_and_a_fixed_card_makes_them_active() {
    let app = StripeApp::spawn().await;
    let sub = app.subscribed("r1", "monthly", TestCard::Visa).await;
    let customer = app.sim().subscription(&sub).unwrap()["customer"]
        .as_str()
        .unwrap()
        .to_owned();
    app.sim().fail_next_renewal(&sub).unwrap();
    app.sim()
        .advance_to_next_renewal(&sub)
        .await
        .expect("renews");
    app.settle().await;
    let (code, body) = app.entitled("r1").await;
    assert_eq!(
        (code, body["status"].as_str(), body["reason"].as_str()),
        (402, Some("past_due"), Some("past_due")),
        "{body}"
    );
    app.sim().set_card(&customer, TestCard::Visa).await.unwrap();
    app.sim().advance_clock(86_400 + 60).await;
    app.settle().await;
    let (code, body) = app.entitled("r1").await;
    assert_eq!(
        (code, body["status"].as_str()),
        (200, Some("active")),
        "{body}"
    );
}

#[tokio::test]
async fn cancel_at_period_end_keeps_access_until_the_end_then_ends_it() {
    let app = StripeApp::spawn().await;
    let sub = app.subscribed("e1", "weekly", TestCard::Visa).await;
    app.sim().cancel_at_period_end(&sub, true).await.unwrap();
    app.settle().await;
    let (code, body) = app.entitled("e1").await;
    assert_eq!(code, 200, "{body}");
    let status = json(app.dev_status("e1").await).await;
    assert_eq!(status["entitlement"]["cancel_at_period_end"], true);
    let end = app.sim().subscription(&sub).unwrap()["items"]["data"][0]["current_period_end"]
        .as_i64()
        .unwrap();
    app.sim().advance_clock_to(end + 10).await;
    app.settle().await;
    let (code, body) = app.entitled("e1").await;
    assert_eq!(
        (code, body["status"].as_str(), body["reason"].as_str()),
        (402, Some("canceled"), Some("canceled")),
        "{body}"
    );
}

#[tokio::test]
async fn pause_collection_stops_access_and_clearing_it_restores_access() {
    let app = StripeApp::spawn().await;
    let sub = app.subscribed("z1", "monthly", TestCard::Visa).await;
    app.sim()
        .pause_collection(&sub, Some("void"))
        .await
        .unwrap();
    app.settle().await;
    let (code, body) = app.entitled("z1").await;
    assert_eq!(
        (
            code,
            body["reason"].as_str(),
            body["pause_active"].as_bool()
        ),
        (402, Some("paused"), Some(true)),
        "{body}"
    );
    app.sim().pause_collection(&sub, None).await.unwrap();
    app.settle().await;
    let (code, body) = app.entitled("z1").await;
    assert_eq!(
        (code, body["reason"].as_str()),
        (200, Some("active")),
        "{body}"
    );
}

#[tokio::test]
async fn canceling_now_ends_access_and_a_new_checkout_is_allowed_again() {
    let app = StripeApp::spawn().await;
    let sub = app.subscribed("x1", "monthly", TestCard::Visa).await;
    app.sim().cancel_subscription(&sub).await.unwrap();
    app.settle().await;
    assert_eq!(app.entitled("x1").await.0, 402);
    let again = app.checkout("x1", "weekly").await;
    assert_eq!(
        again.status().as_u16(),
        200,
        "a canceled subscription does not block a new one"
    );
}

#[tokio::test]
async fn a_3ds_card_never_grants_access() {
    let app = StripeApp::spawn().await;
    app.subscribed("t1", "monthly", TestCard::AuthenticationRequired)
        .await;
    let (code, body) = app.entitled("t1").await;
    assert_eq!(code, 402, "{body}");
    assert_eq!(body["status"], "past_due");
    let status = json(app.dev_status("t1").await).await;
    assert_eq!(status["entitlement"]["stripe_status"], "incomplete");
    assert_eq!(
        status["entitlement"]["action_required"], true,
        "invoice.payment_action_required marks it"
    );
}

#[tokio::test]
async fn returning_before_the_webhook_syncs_the_session_at_once() {
    let app = StripeApp::spawn().await;
    app.create_user("b1", "b1@example.com").await;
    let started = json(app.checkout("b1", "monthly").await).await;
    let session = started["session_id"].as_str().unwrap();
    app.sim().set_fault(Fault::PauseDeliveries).await;
    app.sim()
        .pay_checkout(session, TestCard::Visa)
        .await
        .unwrap();
    assert_eq!(app.entitled("b1").await.0, 402, "no webhook has arrived");
    let synced = app
        .request(Method::POST, "/billing/checkout/sync")
        .header("X-User-Id", "b1")
        .query(&[("session_id", session)])
        .send()
        .await
        .unwrap();
    assert_eq!(synced.status().as_u16(), 200);
    assert_eq!(json(synced).await["status"], "active");
    assert_eq!(app.entitled("b1").await.0, 200);
    // Another user cannot sync someone else's session.
    app.create_user("b2", "b2@example.com").await;
    let foreign = app
        .request(Method::POST, "/billing/checkout/sync")
        .header("X-User-Id", "b2")
        .query(&[("session_id", session)])
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status().as_u16(), 404);
    app.sim().flush_deliveries();
    app.settle().await;
    assert_eq!(
        app.entitled("b1").await.0,
        200,
        "the late webhooks change nothing"
    );
}

#[tokio::test]
async fn missed_webhooks_are_caught_up_from_the_events_api() {
    let app = StripeApp::spawn().await;
    app.create_user("m1", "m1@example.com").await;
    let started = json(app.checkout("m1", "weekly").await).await;
    app.sim().set_fault(Fault::PauseDeliveries).await;
    app.sim()
        .pay_checkout(started["session_id"].as_str().unwrap(), TestCard::Visa)
        .await
        .unwrap();
    assert_eq!(app.entitled("m1").await.0, 402);
    let report = msr_billing::billing::sync::catch_up_events(&app.state)
        .await
        .unwrap();
    assert!(report.recorded >= 5, "{report:?}");
    assert_eq!(app.entitled("m1").await.0, 200);
    let again = msr_billing::billing::sync::catch_up_events(&app.state)
        .await
        .unwrap();
    assert_eq!(again.recorded, 0, "a second pass finds nothing new");
}

#[tokio::test]
async fn the_sync_command_repairs_drift_and_reports_it() {
    let app = StripeApp::spawn().await;
    let sub = app.subscribed("d1", "monthly", TestCard::Visa).await;
    app.sim().set_fault(Fault::PauseDeliveries).await;
    app.sim().cancel_subscription(&sub).await.unwrap();
    assert_eq!(
        app.entitled("d1").await.0,
        200,
        "the store has not heard of the cancel"
    );
    let (checked, drifts) = msr_billing::billing::sync::sync_subscriptions(&app.state, None)
        .await
        .unwrap();
    assert_eq!(checked, 1);
    assert_eq!(drifts.len(), 1, "{drifts:?}");
    assert!(
        drifts[0].before.starts_with("active") && drifts[0].after.starts_with("canceled"),
        "{drifts:?}"
    );
    assert_eq!(app.entitled("d1").await.0, 402);
}

#[tokio::test]
async fn a_plan_switch_in_stripe_changes_the_plan_on_the_wire() {
    let app = StripeApp::spawn().await;
    let sub = app.subscribed("sw", "monthly", TestCard::Visa).await;
    let item = app.sim().subscription(&sub).unwrap()["items"]["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let weekly = msr_stripe_sim::PlanSeed::defaults()
        .into_iter()
        .find(|p| p.interval == "week")
        .unwrap()
        .price_id;
    let switched = reqwest::Client::new()
        .post(format!("{}v1/subscriptions/{sub}", app.stripe.base_url))
        .bearer_auth("sk_test_switch")
        .form(&[
            ("items[0][id]", item.as_str()),
            ("items[0][price]", weekly.as_str()),
            ("proration_behavior", "none"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(switched.status().as_u16(), 200);
    app.settle().await;
    let (code, body) = app.entitled("sw").await;
    assert_eq!(
        (code, body["plan"].as_str()),
        (200, Some("weekly")),
        "{body}"
    );
}

#[tokio::test]
async fn a_trial_is_given_once_to_an_owner_who_never_subscribed() {
    let app = StripeApp::spawn_with(&[("MSR_TRIAL_DAYS", "7")]).await;
    let sub = app.subscribed("tr", "weekly", TestCard::Visa).await;
    let (code, body) = app.entitled("tr").await;
    assert_eq!(
        (code, body["status"].as_str(), body["reason"].as_str()),
        (200, Some("trialing"), Some("trialing")),
        "{body}"
    );
    let trial_end = app.sim().subscription(&sub).unwrap()["trial_end"]
        .as_i64()
        .unwrap();
    assert!((trial_end - app.sim().now() - 7 * 86_400).abs() < 60);
    let valid_until = chrono::DateTime::parse_from_rfc3339(body["valid_until"].as_str().unwrap())
        .unwrap()
        .timestamp();
    assert_eq!(valid_until, trial_end);
    // After canceling, a new checkout carries no trial.
    app.sim().cancel_subscription(&sub).await.unwrap();
    app.settle().await;
    let again = json(app.checkout("tr", "weekly").await).await;
    let session = app
        .sim()
        .object(again["session_id"].as_str().unwrap())
        .unwrap();
    assert!(
        session["subscription_data"]["trial_period_days"].is_null()
            || session.get("subscription_data").is_none(),
        "{session}"
    );
    app.sim()
        .pay_checkout(again["session_id"].as_str().unwrap(), TestCard::Visa)
        .await
        .unwrap();
    app.settle().await;
    assert_eq!(app.entitled("tr").await.1["status"], "active");
}
