//! Test-card shortcuts (`pm_card_visa`, …) wherever Stripe takes a payment method: each use
//! makes a new `pm_…` card attached to the customer. The Stripe CLI's fixture for
//! `customer.subscription.created` is the journey that needs all of it.

use serde_json::Value;

use crate::helpers::*;

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

async fn payment_method(h: &msr_stripe_sim::SimHandle, pm: &str) -> Value {
    let (status, v) = v1_get(h, &format!("payment_methods/{pm}"), &[]).await;
    assert_eq!(status, 200, "{v}");
    v
}

#[tokio::test]
async fn the_stripe_cli_subscription_created_fixture_runs_as_on_stripe() {
    let h = spawn().await;
    let (status, cus) = v1_post(
        &h,
        "customers",
        &[
            ("payment_method", "pm_card_visa"),
            ("invoice_settings[default_payment_method]", "pm_card_visa"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{cus}");
    let default = cus["invoice_settings"]["default_payment_method"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(default.starts_with("pm_") && default != "pm_card_visa");
    assert_eq!(payment_method(&h, &default).await["customer"], cus["id"]);
    let (_, cards) = v1_get(&h, &format!("customers/{}/payment_methods", id(&cus)), &[]).await;
    assert_eq!(
        cards["data"].as_array().unwrap().len(),
        1,
        "one card, not two"
    );

    let (status, product) = v1_post(&h, "products", &[("name", "myproduct")]).await;
    assert_eq!(status, 200, "{product}");
    let (status, price) = v1_post(
        &h,
        "prices",
        &[
            ("product", &id(&product)),
            ("unit_amount", "1500"),
            ("currency", "usd"),
            ("recurring[interval]", "month"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{price}");
    let (status, sub) = v1_post(
        &h,
        "subscriptions",
        &[("customer", &id(&cus)), ("items[0][price]", &id(&price))],
    )
    .await;
    assert_eq!(status, 200, "{sub}");
    assert_eq!(sub["status"], "active");
    assert!(
        h.sim
            .event_types()
            .contains(&"customer.subscription.created".into())
    );
    // Invoices keep paying without PaymentIntent objects or their events.
    assert!(
        h.sim
            .event_types()
            .iter()
            .all(|t| !t.starts_with("payment_intent.") && !t.starts_with("charge."))
    );
}

#[tokio::test]
async fn a_shortcut_as_default_payment_method_attaches_a_new_card_each_time() {
    let h = spawn().await;
    let (_, cus) = v1_post(&h, "customers", &[("email", "s@example.com")]).await;
    let cus = id(&cus);

    let (status, updated) = v1_post(
        &h,
        &format!("customers/{cus}"),
        &[("invoice_settings[default_payment_method]", "pm_card_visa")],
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    let first = updated["invoice_settings"]["default_payment_method"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(payment_method(&h, &first).await["customer"], cus.as_str());

    let (status, sub) = v1_post(
        &h,
        "subscriptions",
        &[
            ("customer", &cus),
            ("items[0][price]", "price_msr_weekly"),
            ("default_payment_method", "pm_card_mastercard"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{sub}");
    let on_sub = sub["default_payment_method"].as_str().unwrap().to_string();
    assert!(on_sub.starts_with("pm_") && on_sub != first && on_sub != "pm_card_mastercard");
    let card = payment_method(&h, &on_sub).await;
    assert_eq!(card["customer"], cus.as_str());
    assert_eq!(card["card"]["brand"], "mastercard");

    let (status, sub) = v1_post(
        &h,
        &format!("subscriptions/{}", id(&sub)),
        &[("default_payment_method", "pm_card_visa")],
    )
    .await;
    assert_eq!(status, 200, "{sub}");
    let again = sub["default_payment_method"].as_str().unwrap();
    assert!(again.starts_with("pm_") && again != first && again != on_sub);

    // A shortcut of a card that cannot be attached is refused, and nothing is created.
    let (status, err) = v1_post(
        &h,
        "subscriptions",
        &[
            ("customer", &cus),
            ("items[0][price]", "price_msr_weekly"),
            ("default_payment_method", "pm_card_chargeDeclined"),
        ],
    )
    .await;
    assert_eq!(status, 402, "{err}");
    assert_eq!(err["error"]["code"], "card_declined");
    let customers_before = h
        .sim
        .event_types()
        .iter()
        .filter(|t| *t == "customer.created")
        .count();
    let (status, err) = v1_post(
        &h,
        "customers",
        &[(
            "invoice_settings[default_payment_method]",
            "pm_card_chargeDeclined",
        )],
    )
    .await;
    assert_eq!(status, 402, "{err}");
    let customers_after = h
        .sim
        .event_types()
        .iter()
        .filter(|t| *t == "customer.created")
        .count();
    assert_eq!(customers_before, customers_after, "no customer made");
}
