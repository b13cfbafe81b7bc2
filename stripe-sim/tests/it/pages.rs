//! Hosted pages through plain HTTP form posts, as a browser without JavaScript would.

use serde_json::Value;

use crate::helpers::*;

async fn open_session(h: &msr_stripe_sim::SimHandle, name: &str) -> (String, String) {
    let r: Value = http()
        .post(format!("{}v1/customers", h.base_url))
        .bearer_auth("sk_test_x")
        .form(&[("email", "p@x.io"), ("name", name)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cus = r["id"].as_str().unwrap().to_string();
    let cs: Value = http()
        .post(format!("{}v1/checkout/sessions", h.base_url))
        .bearer_auth("sk_test_x")
        .form(&[
            ("mode", "subscription"),
            ("customer", cus.as_str()),
            ("line_items[0][price]", "price_msr_weekly"),
            ("line_items[0][quantity]", "1"),
            (
                "success_url",
                "http://app.test/done?cs={CHECKOUT_SESSION_ID}",
            ),
            ("cancel_url", "http://app.test/cancel"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (cus, cs["url"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn checkout_page_pay_creates_the_subscription_and_redirects_to_success() {
    let h = spawn().await;
    let (cus, url) = open_session(&h, "Pat").await;
    let page = http().get(&url).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Simulated Stripe — no real payment"));
    assert!(page.contains("My Smart Road weekly"));
    assert!(page.contains("$25.00 / week"));
    assert!(page.contains(">Pay<") && page.contains(">Decline<"));
    assert!(page.contains("href=\"http://app.test/cancel\""));

    let resp = http()
        .post(&url)
        .form(&[("card", "visa"), ("action", "pay")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let id = url.rsplit('/').next().unwrap();
    assert_eq!(
        resp.headers()["location"],
        format!("http://app.test/done?cs={id}").as_str()
    );
    let summary = h.sim.state_summary();
    let subs = summary["subscriptions"].as_array().unwrap();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0]["customer"], cus.as_str());
    assert_eq!(subs[0]["status"], "active");
    assert_eq!(
        h.sim.event_types().last().unwrap(),
        "checkout.session.completed"
    );
    let done = http().get(&url).send().await.unwrap().text().await.unwrap();
    assert!(done.contains("complete"));
}

#[tokio::test]
async fn decline_shows_a_card_error_and_creates_nothing() {
    let h = spawn().await;
    let (_, url) = open_session(&h, "Dee").await;
    let resp = http()
        .post(&url)
        .form(&[("card", "visa"), ("action", "decline")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 402);
    assert!(resp.text().await.unwrap().contains("card_declined"));
    let resp = http()
        .post(&url)
        .form(&[("card", "declined"), ("action", "pay")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 402);
    assert!(
        h.sim.state_summary()["subscriptions"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Still payable afterwards.
    let ok = http()
        .post(&url)
        .form(&[("card", "visa"), ("action", "pay")])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 303);
}

#[tokio::test]
async fn authentication_required_card_leaves_an_incomplete_subscription_that_expires() {
    let h = spawn().await;
    let (_, url) = open_session(&h, "Ali").await;
    let resp = http()
        .post(&url)
        .form(&[("card", "authentication_required"), ("action", "pay")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 402);
    let sub = h.sim.state_summary()["subscriptions"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(h.sim.subscription(&sub).unwrap()["status"], "incomplete");
    assert!(
        h.sim
            .event_types()
            .contains(&"invoice.payment_action_required".to_string())
    );
    h.sim.advance_clock(23 * 3600).await;
    assert_eq!(
        h.sim.subscription(&sub).unwrap()["status"],
        "incomplete_expired"
    );
}

#[tokio::test]
async fn rendered_customer_data_is_escaped() {
    let h = spawn().await;
    let (cus, _) = open_session(&h, "<script>alert(1)</script>").await;
    let ps: Value = http()
        .post(format!("{}v1/billing_portal/sessions", h.base_url))
        .bearer_auth("sk_test_x")
        .form(&[
            ("customer", cus.as_str()),
            ("return_url", "javascript:alert(1)"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let page = http()
        .get(ps["url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("<script>alert"));
    assert!(page.contains("&lt;script&gt;"));
    assert!(
        !page.contains("javascript:"),
        "unsafe return URLs are not linked"
    );
}

#[tokio::test]
async fn portal_buttons_cancel_pause_switch_and_update_the_card() {
    let h = spawn().await;
    let (cus, sub) = paid_subscription(&h).await;
    let ps: Value = http()
        .post(format!("{}v1/billing_portal/sessions", h.base_url))
        .bearer_auth("sk_test_x")
        .form(&[
            ("customer", cus.as_str()),
            ("return_url", "http://app.test/account"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = ps["url"].as_str().unwrap().to_string();
    let page = http().get(&url).send().await.unwrap().text().await.unwrap();
    for label in [
        "Cancel plan",
        "Cancel at period end",
        "Pause",
        "Switch plan",
        "Update card",
        "Return",
        "Simulated Stripe",
    ] {
        assert!(page.contains(label), "portal shows {label}");
    }
    let act = |action: &'static str| {
        http()
            .post(&url)
            .form(&[("subscription", sub.as_str()), ("action", action)])
            .send()
    };
    let r = act("cancel_at_period_end").await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        h.sim.subscription(&sub).unwrap()["cancel_at_period_end"],
        true
    );
    act("undo_cancel").await.unwrap();
    assert_eq!(
        h.sim.subscription(&sub).unwrap()["cancel_at_period_end"],
        false
    );
    act("pause").await.unwrap();
    assert_eq!(
        h.sim.subscription(&sub).unwrap()["pause_collection"]["behavior"],
        "void"
    );
    act("unpause").await.unwrap();
    assert!(h.sim.subscription(&sub).unwrap()["pause_collection"].is_null());
    act("switch_plan").await.unwrap();
    assert_eq!(
        h.sim.subscription(&sub).unwrap()["items"]["data"][0]["price"]["id"],
        "price_msr_monthly"
    );
    let r = http()
        .post(&url)
        .form(&[("card", "charge_customer_fail"), ("action", "update_card")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        h.sim.state_summary()["customers"][0]["card"],
        "charge_customer_fail"
    );
    act("cancel_now").await.unwrap();
    assert_eq!(h.sim.subscription(&sub).unwrap()["status"], "canceled");
    let after = http().get(&url).send().await.unwrap().text().await.unwrap();
    assert!(after.contains("canceled"));
}
