//! Billing journeys as an integration drives Stripe (the simulator's API over HTTP, as Stripe's
//! clients call it), checking Stripe's side and msr-billing's entitlement at each step.

use msr_stripe_sim::TestCard;
use serde_json::Value;

use crate::helpers::{StripeApp, json};

/// A call to the simulator's Stripe API with form parameters, as Stripe's libraries make it.
async fn stripe(
    app: &StripeApp,
    method: reqwest::Method,
    path: &str,
    form: &[(&str, &str)],
) -> (u16, Value) {
    let response = reqwest::Client::new()
        .request(method, format!("{}v1/{path}", app.stripe.base_url))
        .bearer_auth("sk_test_journeys")
        .form(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn period_end(sub: &Value) -> i64 {
    sub["items"]["data"][0]["current_period_end"]
        .as_i64()
        .unwrap()
}

fn valid_until(body: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(body["valid_until"].as_str().unwrap())
        .unwrap()
        .timestamp()
}

fn price(interval: &str) -> String {
    msr_stripe_sim::PlanSeed::defaults()
        .into_iter()
        .find(|p| p.interval == interval)
        .unwrap()
        .price_id
}

#[tokio::test]
async fn a_monthly_renewal_succeeds_and_the_owner_stays_active_into_the_next_period() {
    let app = StripeApp::spawn().await;
    let sub = app.subscribed("j-renew", "monthly", TestCard::Visa).await;
    let first_end = period_end(&app.sim().subscription(&sub).unwrap());
    app.sim().advance_to_next_renewal(&sub).await.unwrap();
    app.settle().await;
    let truth = app.sim().subscription(&sub).unwrap();
    assert_eq!(truth["status"], "active");
    let (code, body) = app.entitled("j-renew").await;
    assert_eq!(
        (code, body["status"].as_str()),
        (200, Some("active")),
        "{body}"
    );
    assert!(period_end(&truth) > first_end);
    assert_eq!(
        valid_until(&body),
        period_end(&truth),
        "valid_until follows the renewed period"
    );
}

#[tokio::test]
async fn a_card_that_starts_failing_ends_in_past_due_then_canceled() {
    let app = StripeApp::spawn().await;
    let sub = app.subscribed("j-fail", "weekly", TestCard::Visa).await;
    let customer = app.sim().subscription(&sub).unwrap()["customer"]
        .as_str()
        .unwrap()
        .to_owned();
    app.sim()
        .set_card(&customer, TestCard::ChargeCustomerFail)
        .await
        .unwrap();
    app.sim().advance_to_next_renewal(&sub).await.unwrap();
    app.settle().await;
    assert_eq!(app.sim().subscription(&sub).unwrap()["status"], "past_due");
    let (code, body) = app.entitled("j-fail").await;
    assert_eq!(
        (code, body["status"].as_str()),
        (402, Some("past_due")),
        "{body}"
    );
    // Retries after 1, 3 and 5 days all fail; then Stripe cancels.
    app.sim().advance_clock(10 * 86_400).await;
    app.settle().await;
    assert_eq!(app.sim().subscription(&sub).unwrap()["status"], "canceled");
    let (code, body) = app.entitled("j-fail").await;
    assert_eq!(
        (code, body["status"].as_str(), body["reason"].as_str()),
        (402, Some("canceled"), Some("canceled")),
        "{body}"
    );
}

#[tokio::test]
async fn an_upgrade_with_always_invoice_charges_the_difference_and_a_downgrade_leaves_credit() {
    let app = StripeApp::spawn().await;
    let sub = app.subscribed("j-switch", "weekly", TestCard::Visa).await;
    let truth = app.sim().subscription(&sub).unwrap();
    let item = truth["items"]["data"][0]["id"].as_str().unwrap().to_owned();
    let customer = truth["customer"].as_str().unwrap().to_owned();
    app.sim().advance_clock(2 * 86_400).await;
    let monthly = price("month");
    let (code, upgraded) = stripe(
        &app,
        reqwest::Method::POST,
        &format!("subscriptions/{sub}"),
        &[
            ("items[0][id]", &item),
            ("items[0][price]", &monthly),
            ("proration_behavior", "always_invoice"),
        ],
    )
    .await;
    assert_eq!(code, 200, "{upgraded}");
    app.settle().await;
    let (_, invoices) = stripe(
        &app,
        reqwest::Method::GET,
        &format!("invoices?subscription={sub}&limit=1"),
        &[],
    )
    .await;
    let latest = &invoices["data"][0];
    assert_eq!(latest["status"], "paid", "{latest}");
    assert!(
        latest["amount_paid"].as_i64().unwrap() > 0,
        "the upgrade was charged: {latest}"
    );
    assert!(
        latest["amount_paid"].as_i64().unwrap() < 7900,
        "only the difference, not a whole month: {latest}"
    );
    let (code, body) = app.entitled("j-switch").await;
    assert_eq!(
        (code, body["plan"].as_str()),
        (200, Some("monthly")),
        "{body}"
    );

    let weekly = price("week");
    let (code, _) = stripe(
        &app,
        reqwest::Method::POST,
        &format!("subscriptions/{sub}"),
        &[
            ("items[0][id]", &item),
            ("items[0][price]", &weekly),
            ("proration_behavior", "always_invoice"),
        ],
    )
    .await;
    assert_eq!(code, 200);
    app.settle().await;
    let (_, cus) = stripe(
        &app,
        reqwest::Method::GET,
        &format!("customers/{customer}"),
        &[],
    )
    .await;
    assert!(
        cus["balance"].as_i64().unwrap() < 0,
        "the downgrade left a credit: {cus}"
    );
    let (code, body) = app.entitled("j-switch").await;
    assert_eq!(
        (code, body["plan"].as_str()),
        (200, Some("weekly")),
        "{body}"
    );
}

#[tokio::test]
async fn a_declined_card_is_refused_at_attach_and_grants_nothing() {
    let app = StripeApp::spawn().await;
    app.create_user("j-decline", "j-decline@example.com").await;
    let started = json(app.checkout("j-decline", "monthly").await).await;
    let customer = app
        .sim()
        .object(started["session_id"].as_str().unwrap())
        .unwrap()["customer"]
        .as_str()
        .unwrap()
        .to_owned();
    let (code, error) = stripe(
        &app,
        reqwest::Method::POST,
        "payment_methods/pm_card_chargeDeclined/attach",
        &[("customer", &customer)],
    )
    .await;
    assert_eq!(code, 402, "{error}");
    assert_eq!(error["error"]["code"], "card_declined");
    assert!(
        app.sim()
            .pay_checkout(started["session_id"].as_str().unwrap(), TestCard::Declined)
            .await
            .is_err()
    );
    app.settle().await;
    let (code, body) = app.entitled("j-decline").await;
    assert_eq!(
        (code, body["status"].as_str()),
        (402, Some("none")),
        "{body}"
    );
}

#[tokio::test]
async fn a_3ds_card_leaves_the_subscription_incomplete_until_it_expires_and_never_grants_access() {
    let app = StripeApp::spawn().await;
    let sub = app
        .subscribed("j-3ds", "monthly", TestCard::AuthenticationRequired)
        .await;
    assert_eq!(
        app.sim().subscription(&sub).unwrap()["status"],
        "incomplete"
    );
    assert_eq!(app.entitled("j-3ds").await.0, 402);
    app.sim().advance_clock(23 * 3600 + 60).await;
    app.settle().await;
    assert_eq!(
        app.sim().subscription(&sub).unwrap()["status"],
        "incomplete_expired"
    );
    let (code, body) = app.entitled("j-3ds").await;
    assert_eq!(code, 402, "{body}");
    let status = json(app.dev_status("j-3ds").await).await;
    assert_eq!(status["entitlement"]["stripe_status"], "incomplete_expired");
    // An expired attempt does not block a new checkout.
    assert_eq!(
        app.checkout("j-3ds", "monthly").await.status().as_u16(),
        200
    );
}

#[tokio::test]
async fn a_trial_converts_to_active_when_it_ends_with_a_card() {
    let app = StripeApp::spawn_with(&[("MSR_TRIAL_DAYS", "14")]).await;
    let sub = app.subscribed("j-trial", "monthly", TestCard::Visa).await;
    assert_eq!(app.entitled("j-trial").await.1["reason"], "trialing");
    app.sim().end_trial_now(&sub).await.unwrap();
    app.sim().advance_clock(2 * 3600).await;
    app.settle().await;
    assert_eq!(app.sim().subscription(&sub).unwrap()["status"], "active");
    let (code, body) = app.entitled("j-trial").await;
    assert_eq!(
        (code, body["reason"].as_str()),
        (200, Some("active")),
        "{body}"
    );
}

#[tokio::test]
async fn a_trial_that_ends_with_a_failing_card_stops_access() {
    let app = StripeApp::spawn_with(&[("MSR_TRIAL_DAYS", "7")]).await;
    let sub = app.subscribed("j-trial-2", "weekly", TestCard::Visa).await;
    let customer = app.sim().subscription(&sub).unwrap()["customer"]
        .as_str()
        .unwrap()
        .to_owned();
    app.sim()
        .set_card(&customer, TestCard::ChargeCustomerFail)
        .await
        .unwrap();
    app.sim().end_trial_now(&sub).await.unwrap();
    app.sim().advance_clock(2 * 3600).await;
    app.settle().await;
    let truth = app.sim().subscription(&sub).unwrap()["status"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(truth, "active");
    let (code, body) = app.entitled("j-trial-2").await;
    assert_eq!(code, 402, "Stripe says {truth}: {body}");
}
