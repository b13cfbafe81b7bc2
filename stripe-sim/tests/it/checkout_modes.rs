//! Checkout in payment and setup mode, the validation of every mode, and expiry (by the
//! clock and by request): async-stripe where its types cover the call, plain form posts to
//! the API and the hosted page otherwise.

use msr_stripe_sim::SimHandle;
use serde_json::Value;
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionLineItemsPriceData,
    ProductData, RetrieveCheckoutSession,
};
use stripe_product::price::{CreatePrice, CreatePriceProductData};
use stripe_shared::{CheckoutSession, CheckoutSessionMode};

use crate::helpers::*;

const HOUR: i64 = 3600;

fn count(h: &SimHandle, kind: &str) -> usize {
    h.sim.event_types().iter().filter(|t| *t == kind).count()
}

async fn customer(h: &SimHandle, clock: Option<&str>) -> String {
    let mut form = vec![("email", "buyer@example.com")];
    if let Some(c) = clock {
        form.push(("test_clock", c));
    }
    let (status, cus) = v1_post(h, "customers", &form).await;
    assert_eq!(status, 200, "{cus}");
    cus["id"].as_str().unwrap().to_string()
}

/// Posts the hosted page's form: (status, Location header or page text).
async fn press_pay(url: &str, card: &str) -> (u16, String) {
    let resp = http()
        .post(url)
        .form(&[("card", card), ("action", "pay")])
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string());
    let text = resp.text().await.unwrap();
    (status, location.unwrap_or(text))
}

async fn session(h: &SimHandle, id: &str) -> Value {
    let (status, cs) = v1_get(h, &format!("checkout/sessions/{id}"), &[]).await;
    assert_eq!(status, 200, "{cs}");
    cs
}

/// An open payment-mode session for one inline 12.00 usd item, as a plain post.
async fn payment_session(h: &SimHandle, extra: &[(&str, &str)]) -> Value {
    let mut form = vec![
        ("mode", "payment"),
        ("line_items[0][price_data][currency]", "usd"),
        ("line_items[0][price_data][unit_amount]", "1200"),
        (
            "line_items[0][price_data][product_data][name]",
            "Road atlas",
        ),
        ("line_items[0][quantity]", "1"),
        (
            "success_url",
            "http://app.test/paid?cs={CHECKOUT_SESSION_ID}",
        ),
    ];
    form.extend_from_slice(extra);
    let (status, cs) = v1_post(h, "checkout/sessions", &form).await;
    assert_eq!(status, 200, "{cs}");
    cs
}

#[tokio::test]
async fn a_payment_mode_session_is_paid_on_the_hosted_page_without_a_subscription() {
    let h = spawn().await;
    let c = client(&h);
    let cus = customer(&h, None).await;
    let one_time = CreatePrice::new(stripe_types::Currency::USD)
        .unit_amount(500)
        .product_data(CreatePriceProductData::new("Sticker"))
        .send(&c)
        .await
        .unwrap();
    let mut stickers = CreateCheckoutSessionLineItems::new();
    stickers.price = Some(one_time.id.to_string());
    stickers.quantity = Some(3);
    let mut atlas = CreateCheckoutSessionLineItems::new();
    let mut data = CreateCheckoutSessionLineItemsPriceData::new(stripe_types::Currency::USD);
    data.unit_amount = Some(1200);
    data.product_data = Some(ProductData::new("Road atlas"));
    atlas.price_data = Some(data);
    atlas.quantity = Some(1);
    let cs = CreateCheckoutSession::new()
        .mode(CheckoutSessionMode::Payment)
        .customer(cus.as_str())
        .line_items(vec![stickers, atlas])
        .success_url("http://app.test/paid?cs={CHECKOUT_SESSION_ID}")
        .send(&c)
        .await
        .unwrap();
    assert_eq!(cs.mode, CheckoutSessionMode::Payment);
    assert_eq!(cs.amount_total, Some(3 * 500 + 1200));
    assert_eq!(cs.payment_status.as_str(), "unpaid");
    assert!(cs.payment_intent.is_none());

    let page = http()
        .get(cs.url.clone().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Road atlas") && page.contains("Total due today: $27.00"));
    let (status, location) = press_pay(&cs.url.clone().unwrap(), "visa").await;
    assert_eq!(status, 303);
    assert_eq!(location, format!("http://app.test/paid?cs={}", cs.id));

    let done = RetrieveCheckoutSession::new(cs.id.clone())
        .send(&c)
        .await
        .unwrap();
    assert_eq!(done.status.unwrap().as_str(), "complete");
    assert_eq!(done.payment_status.as_str(), "paid");
    assert!(
        done.payment_intent
            .unwrap()
            .id()
            .as_str()
            .starts_with("pi_")
    );
    assert!(done.subscription.is_none() && done.url.is_none());
    assert_eq!(count(&h, "checkout.session.completed"), 1);
    assert!(
        h.sim
            .event_types()
            .iter()
            .all(|t| !t.starts_with("customer.subscription.") && !t.starts_with("invoice.")),
        "{:?}",
        h.sim.event_types()
    );
    let completed = h
        .sim
        .events()
        .into_iter()
        .find(|e| e["type"] == "checkout.session.completed")
        .unwrap();
    let obj: CheckoutSession = serde_json::from_value(completed["data"]["object"].clone()).unwrap();
    assert_eq!(obj.payment_status.as_str(), "paid");
}

#[tokio::test]
async fn a_declining_card_in_payment_mode_shows_the_error_and_leaves_the_session_open() {
    let h = spawn().await;
    let cs = payment_session(&h, &[("customer_email", "guest@example.com")]).await;
    let url = cs["url"].as_str().unwrap();
    for card in ["declined", "charge_customer_fail"] {
        let (status, page) = press_pay(url, card).await;
        assert_eq!(status, 402, "{card}");
        assert!(page.contains("card_declined"), "{page}");
    }
    let (status, page) = press_pay(url, "authentication_required").await;
    assert_eq!(status, 402);
    assert!(page.contains("authentication_required"), "{page}");
    let id = cs["id"].as_str().unwrap();
    assert_eq!(session(&h, id).await["status"], "open");
    assert_eq!(count(&h, "checkout.session.completed"), 0);

    // Another card still pays; a guest payment creates no customer (`if_required`).
    let (status, _) = press_pay(url, "visa").await;
    assert_eq!(status, 303);
    let done = session(&h, id).await;
    assert_eq!(done["payment_status"], "paid");
    assert_eq!(done["customer"], Value::Null);
    assert_eq!(done["customer_details"]["email"], "guest@example.com");
    assert_eq!(count(&h, "customer.created"), 0);
}

#[tokio::test]
async fn setup_mode_saves_the_card_as_the_customers_default_payment_method() {
    let h = spawn().await;
    let c = client(&h);
    let cus = customer(&h, None).await;
    let cs = CreateCheckoutSession::new()
        .mode(CheckoutSessionMode::Setup)
        .currency(stripe_types::Currency::USD)
        .customer(cus.as_str())
        .success_url("http://app.test/saved")
        .send(&c)
        .await
        .unwrap();
    assert_eq!(cs.mode, CheckoutSessionMode::Setup);
    assert_eq!(cs.amount_total, Some(0));
    let (status, page) = press_pay(&cs.url.clone().unwrap(), "declined").await;
    assert_eq!(status, 402);
    assert!(page.contains("card_declined"));

    let (status, location) = press_pay(&cs.url.clone().unwrap(), "visa").await;
    assert_eq!((status, location.as_str()), (303, "http://app.test/saved"));
    let done = RetrieveCheckoutSession::new(cs.id.clone())
        .send(&c)
        .await
        .unwrap();
    assert_eq!(done.status.unwrap().as_str(), "complete");
    assert_eq!(done.payment_status.as_str(), "no_payment_required");
    assert!(
        done.setup_intent
            .unwrap()
            .id()
            .as_str()
            .starts_with("seti_")
    );
    assert!(done.payment_intent.is_none() && done.subscription.is_none());

    let (_, customer) = v1_get(&h, &format!("customers/{cus}"), &[]).await;
    let pm = customer["invoice_settings"]["default_payment_method"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, cards) = v1_get(&h, &format!("customers/{cus}/payment_methods"), &[]).await;
    assert_eq!(cards["data"][0]["id"], pm.as_str());
    assert_eq!(cards["data"][0]["customer"], cus.as_str());
    let types = h.sim.event_types();
    let at = |t: &str| types.iter().position(|x| x == t).unwrap();
    assert!(at("payment_method.attached") < at("customer.updated"));
    assert!(at("customer.updated") < at("checkout.session.completed"));

    // The saved card pays: a subscription created through the API is active at once.
    let (status, sub) = v1_post(
        &h,
        "subscriptions",
        &[
            ("customer", cus.as_str()),
            ("items[0][price]", "price_msr_weekly"),
        ],
    )
    .await;
    assert_eq!((status, sub["status"].as_str()), (200, Some("active")));
}

#[tokio::test]
async fn invalid_sessions_are_refused_with_the_parameter_named() {
    let h = spawn().await;
    let now = h.sim.now();
    let soon = (now + 60).to_string();
    let late = (now + 25 * HOUR).to_string();
    let weekly: &[(&str, &str)] = &[
        ("line_items[0][price]", "price_msr_weekly"),
        ("line_items[0][quantity]", "1"),
    ];
    let inline: &[(&str, &str)] = &[
        ("line_items[0][price_data][currency]", "usd"),
        ("line_items[0][price_data][unit_amount]", "100"),
        ("line_items[0][price_data][product_data][name]", "Pin"),
    ];
    let one_time = {
        let (_, p) = v1_post(
            &h,
            "prices",
            &[
                ("currency", "usd"),
                ("unit_amount", "300"),
                ("product_data[name]", "Map"),
            ],
        )
        .await;
        p["id"].as_str().unwrap().to_string()
    };
    let events_before = h.sim.events().len();
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            [&[("mode", "payment")][..], weekly].concat(),
            "line_items[0][price]",
        ),
        (
            [
                &[
                    ("mode", "payment"),
                    ("line_items[0][price_data][recurring][interval]", "month"),
                ][..],
                inline,
            ]
            .concat(),
            "line_items[0][price_data]",
        ),
        (vec![("mode", "payment")], "line_items"),
        (
            vec![
                ("mode", "payment"),
                ("line_items[0][price_data][currency]", "usd"),
                ("line_items[0][price_data][product_data][name]", "Pin"),
            ],
            "line_items[0][price_data][unit_amount]",
        ),
        (
            vec![
                ("mode", "subscription"),
                ("line_items[0][price]", one_time.as_str()),
            ],
            "line_items[0][price]",
        ),
        (vec![("mode", "setup")], "currency"),
        (
            [&[("mode", "setup"), ("currency", "usd")][..], weekly].concat(),
            "line_items",
        ),
        (vec![("mode", "donation")], "mode"),
        (
            [
                &[("mode", "payment"), ("expires_at", soon.as_str())][..],
                inline,
            ]
            .concat(),
            "expires_at",
        ),
        (
            [
                &[("mode", "subscription"), ("expires_at", late.as_str())][..],
                weekly,
            ]
            .concat(),
            "expires_at",
        ),
    ];
    for (form, param) in cases {
        let (status, body) = v1_post(&h, "checkout/sessions", &form).await;
        assert_eq!(status, 400, "{form:?}: {body}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["param"], param, "{form:?}: {body}");
    }
    assert_eq!(h.sim.events().len(), events_before, "refusals emit nothing");

    // Within the window `expires_at` is kept.
    let at = (now + 2 * HOUR).to_string();
    let cs = payment_session(&h, &[("expires_at", at.as_str())]).await;
    assert_eq!(cs["expires_at"], now + 2 * HOUR);
}

#[tokio::test]
async fn open_sessions_expire_by_the_clock_with_one_expired_event_each() {
    let h = spawn().await;
    let now = h.sim.now();
    let at = (now + 30 * 60 + 5).to_string();
    let short = payment_session(&h, &[("expires_at", at.as_str())]).await;
    let default = payment_session(&h, &[]).await;
    assert_eq!(
        default["expires_at"],
        default["created"].as_i64().unwrap() + 24 * HOUR
    );
    // A session of a customer on a test clock follows that clock, not the simulator's.
    let (_, clock) = v1_post(
        &h,
        "test_helpers/test_clocks",
        &[("frozen_time", now.to_string().as_str())],
    )
    .await;
    let clock = clock["id"].as_str().unwrap().to_string();
    let cus = customer(&h, Some(&clock)).await;
    let (status, on_clock) = v1_post(
        &h,
        "checkout/sessions",
        &[
            ("mode", "setup"),
            ("currency", "usd"),
            ("customer", cus.as_str()),
        ],
    )
    .await;
    assert_eq!(status, 200, "{on_clock}");
    let id = |v: &Value| v["id"].as_str().unwrap().to_string();

    h.sim.advance_clock(31 * 60).await;
    assert_eq!(session(&h, &id(&short)).await["status"], "expired");
    assert_eq!(session(&h, &id(&default)).await["status"], "open");
    assert_eq!(count(&h, "checkout.session.expired"), 1);

    h.sim.advance_clock(24 * HOUR).await;
    assert_eq!(session(&h, &id(&default)).await["status"], "expired");
    assert_eq!(session(&h, &id(&on_clock)).await["status"], "open");
    assert_eq!(count(&h, "checkout.session.expired"), 2);
    let expired = session(&h, &id(&short)).await;
    assert_eq!(expired["url"], Value::Null);
    let (status, _) = press_pay(&format!("{}c/pay/{}", h.base_url, id(&short)), "visa").await;
    assert_eq!(status, 400, "an expired session cannot be paid");

    let target = (now + 25 * HOUR).to_string();
    let (status, _) = v1_post(
        &h,
        &format!("test_helpers/test_clocks/{clock}/advance"),
        &[("frozen_time", target.as_str())],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(session(&h, &id(&on_clock)).await["status"], "expired");
    h.sim.advance_clock(48 * HOUR).await;
    let expired: Vec<Value> = h
        .sim
        .events()
        .into_iter()
        .filter(|e| e["type"] == "checkout.session.expired")
        .collect();
    assert_eq!(expired.len(), 3, "each session expires once");
    for e in expired {
        let obj: CheckoutSession = serde_json::from_value(e["data"]["object"].clone()).unwrap();
        assert_eq!(obj.status.unwrap().as_str(), "expired");
    }
}

#[tokio::test]
async fn expire_ends_an_open_session_in_every_mode() {
    let h = spawn().await;
    let cus = customer(&h, None).await;
    let forms: Vec<Vec<(&str, &str)>> = vec![
        vec![
            ("mode", "subscription"),
            ("customer", cus.as_str()),
            ("line_items[0][price]", "price_msr_weekly"),
        ],
        vec![
            ("mode", "payment"),
            ("line_items[0][price_data][currency]", "usd"),
            ("line_items[0][price_data][unit_amount]", "900"),
            ("line_items[0][price_data][product_data][name]", "Pass"),
        ],
        vec![
            ("mode", "setup"),
            ("currency", "usd"),
            ("customer", cus.as_str()),
        ],
    ];
    for form in forms {
        let (status, cs) = v1_post(&h, "checkout/sessions", &form).await;
        assert_eq!(status, 200, "{cs}");
        let id = cs["id"].as_str().unwrap();
        let (status, expired) = v1_post(&h, &format!("checkout/sessions/{id}/expire"), &[]).await;
        assert_eq!(status, 200, "{expired}");
        assert_eq!(expired["status"], "expired");
        assert_eq!(expired["mode"], form[0].1);
        assert_eq!(expired["url"], Value::Null);
        let (again, _) = v1_post(&h, &format!("checkout/sessions/{id}/expire"), &[]).await;
        assert_eq!(again, 400, "only open sessions can be expired");
        let (paid, _) = press_pay(cs["url"].as_str().unwrap(), "visa").await;
        assert_eq!(paid, 400, "an expired session cannot be paid");
    }
    assert_eq!(count(&h, "checkout.session.expired"), 3);
    assert!(
        h.sim
            .event_types()
            .iter()
            .all(|t| t != "checkout.session.completed")
    );
}
