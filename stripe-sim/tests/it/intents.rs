//! PaymentIntents, their charges and SetupIntents used directly through the API: the
//! status machine, declines, manual capture, cancel, 3-D Secure on the hosted page, lists
//! and the 400s. async-stripe where its types cover the call, plain form posts to see 402
//! bodies and to press the hosted page's buttons.

use futures::TryStreamExt;
use msr_stripe_sim::SimHandle;
use serde_json::Value;
use stripe_core::charge::{ListCharge, RetrieveCharge};
use stripe_core::payment_intent::{
    CancelPaymentIntent, CapturePaymentIntent, ConfirmPaymentIntent, CreatePaymentIntent,
    ListPaymentIntent, RetrievePaymentIntent,
};
use stripe_core::setup_intent::{CreateSetupIntent, ListSetupIntent};
use stripe_shared::{
    ChargeStatus, PaymentIntentCaptureMethod, PaymentIntentStatus, SetupIntentStatus,
};
use stripe_types::{Currency, Expandable};

use crate::helpers::*;

pub(crate) async fn customer(h: &SimHandle) -> String {
    let (status, cus) = v1_post(h, "customers", &[("email", "payer@example.com")]).await;
    assert_eq!(status, 200, "{cus}");
    cus["id"].as_str().unwrap().to_string()
}

/// The `payment_intent.*`, `setup_intent.*`, `charge.*` and `payment_method.*` event types.
pub(crate) fn intent_events(h: &SimHandle) -> Vec<String> {
    h.sim
        .event_types()
        .into_iter()
        .filter(|t| {
            [
                "payment_intent.",
                "setup_intent.",
                "charge.",
                "payment_method.",
            ]
            .iter()
            .any(|p| t.starts_with(p))
        })
        .collect()
}

pub(crate) fn s(v: &Value) -> &str {
    v.as_str().unwrap()
}

/// Presses a button of the hosted authentication page: (status, Location or page text).
pub(crate) async fn press(url: &str, action: &str) -> (u16, String) {
    let resp = http()
        .post(url)
        .form(&[("action", action)])
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

#[tokio::test]
async fn a_visa_payment_intent_succeeds_with_a_captured_charge_and_events_in_order() {
    let h = spawn().await;
    let c = client(&h);
    let cus = customer(&h).await;
    let pi = CreatePaymentIntent::new(2000, Currency::USD)
        .customer(cus.as_str())
        .payment_method("pm_card_visa")
        .confirm(true)
        .description("one order")
        .send(&c)
        .await
        .unwrap();
    assert_eq!(pi.status, PaymentIntentStatus::Succeeded);
    assert_eq!(pi.amount_received, 2000);
    let Some(Expandable::Id(pm)) = &pi.payment_method else {
        panic!("payment method: {:?}", pi.payment_method)
    };
    assert!(pm.as_str().starts_with("pm_") && pm.as_str() != "pm_card_visa");
    let Some(Expandable::Id(charge)) = pi.latest_charge.clone() else {
        panic!("no charge")
    };
    let ch = RetrieveCharge::new(charge.clone()).send(&c).await.unwrap();
    assert!(ch.paid && ch.captured);
    assert_eq!(ch.status, ChargeStatus::Succeeded);
    assert_eq!(ch.amount, 2000);
    assert_eq!(ch.payment_method.as_deref(), Some(pm.as_str()));
    let Some(Expandable::Id(txn)) = &ch.balance_transaction else {
        panic!("balance transaction: {:?}", ch.balance_transaction)
    };
    assert!(txn.as_str().starts_with("txn_"));

    assert_eq!(
        intent_events(&h),
        [
            "payment_intent.created",
            "charge.succeeded",
            "payment_intent.succeeded"
        ]
    );
    // Every new event's object deserializes with async-stripe's types.
    for e in h.sim.events() {
        let obj = e["data"]["object"].clone();
        match s(&obj["object"]) {
            "payment_intent" => {
                drop(serde_json::from_value::<stripe_shared::PaymentIntent>(obj).unwrap())
            }
            "charge" => drop(serde_json::from_value::<stripe_shared::Charge>(obj).unwrap()),
            _ => {}
        }
    }
    let again = RetrievePaymentIntent::new(pi.id.clone())
        .send(&c)
        .await
        .unwrap();
    assert_eq!(again.status, PaymentIntentStatus::Succeeded);
    let (_, expanded) = v1_get(
        &h,
        &format!("payment_intents/{}", pi.id),
        &[("expand[]", "latest_charge")],
    )
    .await;
    assert_eq!(expanded["latest_charge"]["object"], "charge");
}

#[tokio::test]
async fn a_declined_card_leaves_last_payment_error_and_a_visa_retry_succeeds() {
    let h = spawn().await;
    let c = client(&h);
    let cus = customer(&h).await;
    let (status, pi) = v1_post(
        &h,
        "payment_intents",
        &[("amount", "1200"), ("currency", "usd"), ("customer", &cus)],
    )
    .await;
    assert_eq!(status, 200, "{pi}");
    assert_eq!(pi["status"], "requires_payment_method");
    let path = format!("payment_intents/{}", s(&pi["id"]));
    let (_, pi) = v1_post(&h, &path, &[("payment_method", "pm_card_chargeDeclined")]).await;
    assert_eq!(pi["status"], "requires_confirmation");

    let (status, err) = v1_post(&h, &format!("{path}/confirm"), &[]).await;
    assert_eq!(status, 402, "{err}");
    assert_eq!(err["error"]["type"], "card_error");
    assert_eq!(err["error"]["code"], "card_declined");
    assert_eq!(
        err["error"]["payment_intent"]["status"],
        "requires_payment_method"
    );
    let (_, pi) = v1_get(&h, &path, &[]).await;
    let lpe = &pi["last_payment_error"];
    assert_eq!(lpe["type"], "card_error");
    assert_eq!(lpe["code"], "card_declined");
    assert_eq!(lpe["decline_code"], "generic_decline");
    assert!(s(&lpe["payment_method"]["id"]).starts_with("pm_"));
    let (_, ch) = v1_get(&h, &format!("charges/{}", s(&pi["latest_charge"])), &[]).await;
    assert_eq!(ch["status"], "failed");
    assert_eq!(ch["failure_code"], "card_declined");
    assert_eq!(ch["paid"], false);

    let retried = ConfirmPaymentIntent::new(s(&pi["id"]))
        .payment_method("pm_card_visa")
        .send(&c)
        .await
        .unwrap();
    assert_eq!(retried.status, PaymentIntentStatus::Succeeded);
    assert!(retried.last_payment_error.is_none());
    let charges = ListCharge::new()
        .payment_intent(s(&pi["id"]))
        .send(&c)
        .await
        .unwrap();
    assert_eq!(charges.data.len(), 2);
    assert_eq!(
        charges.data[0].status,
        ChargeStatus::Succeeded,
        "newest first"
    );
    assert_eq!(
        intent_events(&h),
        [
            "payment_intent.created",
            "charge.failed",
            "payment_intent.payment_failed",
            "charge.succeeded",
            "payment_intent.succeeded"
        ]
    );
}

#[tokio::test]
async fn manual_capture_authorizes_first_and_captures_later() {
    let h = spawn().await;
    let c = client(&h);
    let pi = CreatePaymentIntent::new(3000, Currency::USD)
        .payment_method("pm_card_visa")
        .capture_method(PaymentIntentCaptureMethod::Manual)
        .confirm(true)
        .send(&c)
        .await
        .unwrap();
    assert_eq!(pi.status, PaymentIntentStatus::RequiresCapture);
    assert_eq!(pi.amount_capturable, 3000);
    let Some(Expandable::Id(charge)) = pi.latest_charge.clone() else {
        panic!("no charge")
    };
    let ch = RetrieveCharge::new(charge.clone()).send(&c).await.unwrap();
    assert!(ch.paid && !ch.captured);

    let done = CapturePaymentIntent::new(pi.id.clone())
        .amount_to_capture(2500)
        .send(&c)
        .await
        .unwrap();
    assert_eq!(done.status, PaymentIntentStatus::Succeeded);
    assert_eq!(done.amount_received, 2500);
    let ch = RetrieveCharge::new(charge).send(&c).await.unwrap();
    assert!(ch.captured);
    assert_eq!(ch.amount_captured, 2500);
    assert_eq!(
        intent_events(&h),
        [
            "payment_intent.created",
            "charge.succeeded",
            "payment_intent.amount_capturable_updated",
            "charge.captured",
            "payment_intent.succeeded"
        ]
    );
    let (status, err) = v1_post(&h, &format!("payment_intents/{}/capture", pi.id), &[]).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["code"], "payment_intent_unexpected_state");
}

#[tokio::test]
async fn an_open_payment_intent_cancels_and_a_final_one_does_not() {
    let h = spawn().await;
    let c = client(&h);
    let pi = CreatePaymentIntent::new(900, Currency::EUR)
        .send(&c)
        .await
        .unwrap();
    let canceled = CancelPaymentIntent::new(pi.id.clone())
        .cancellation_reason(
            stripe_core::payment_intent::CancelPaymentIntentCancellationReason::RequestedByCustomer,
        )
        .send(&c)
        .await
        .unwrap();
    assert_eq!(canceled.status, PaymentIntentStatus::Canceled);
    assert!(canceled.canceled_at.is_some());
    let (_, v) = v1_get(&h, &format!("payment_intents/{}", pi.id), &[]).await;
    assert_eq!(v["cancellation_reason"], "requested_by_customer");
    for action in ["cancel", "confirm"] {
        let (status, err) = v1_post(
            &h,
            &format!("payment_intents/{}/{action}", pi.id),
            &[("payment_method", "pm_card_visa")],
        )
        .await;
        assert_eq!(status, 400, "{action}: {err}");
        assert_eq!(err["error"]["code"], "payment_intent_unexpected_state");
    }
    assert_eq!(
        intent_events(&h),
        ["payment_intent.created", "payment_intent.canceled"]
    );
}

#[tokio::test]
async fn a_3ds_payment_completes_on_the_hosted_page_and_returns_to_the_app() {
    let h = spawn().await;
    let (status, pi) = v1_post(
        &h,
        "payment_intents",
        &[
            ("amount", "2000"),
            ("currency", "usd"),
            ("payment_method", "pm_card_threeDSecure2Required"),
            ("confirm", "true"),
            ("return_url", "http://app.test/done"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{pi}");
    assert_eq!(pi["status"], "requires_action");
    let next = &pi["next_action"];
    assert_eq!(next["type"], "redirect_to_url");
    assert_eq!(
        next["redirect_to_url"]["return_url"],
        "http://app.test/done"
    );
    let url = s(&next["redirect_to_url"]["url"]).to_string();
    assert!(url.starts_with(&h.base_url.to_string()), "{url}");
    drop(serde_json::from_value::<stripe_shared::PaymentIntent>(pi.clone()).unwrap());

    let page = http().get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("$20.00") && html.contains(">Complete<") && html.contains(">Fail<"));

    let (status, location) = press(&url, "complete").await;
    assert_eq!(status, 303, "{location}");
    let id = s(&pi["id"]);
    assert!(location.starts_with(&format!("http://app.test/done?payment_intent={id}&")));
    assert!(
        location.ends_with("&redirect_status=succeeded"),
        "{location}"
    );
    let (_, pi) = v1_get(&h, &format!("payment_intents/{id}"), &[]).await;
    assert_eq!(pi["status"], "succeeded");
    assert!(pi["next_action"].is_null());
    assert_eq!(
        intent_events(&h),
        [
            "payment_intent.created",
            "payment_intent.requires_action",
            "charge.succeeded",
            "payment_intent.succeeded"
        ]
    );
    let (status, _) = press(&url, "complete").await;
    assert_eq!(status, 400, "nothing left to authenticate");
}

#[tokio::test]
async fn a_failed_3ds_authentication_returns_the_intent_to_requires_payment_method() {
    let h = spawn().await;
    let c = client(&h);
    let pi = CreatePaymentIntent::new(1500, Currency::USD)
        .payment_method("pm_card_authenticationRequired")
        .confirm(true)
        .send(&c)
        .await
        .unwrap();
    assert_eq!(pi.status, PaymentIntentStatus::RequiresAction);
    let next = pi.next_action.unwrap();
    let url = next.redirect_to_url.unwrap().url.unwrap();
    let (status, page) = press(&url, "fail").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Authentication failed."));
    let (_, v) = v1_get(&h, &format!("payment_intents/{}", pi.id), &[]).await;
    assert_eq!(v["status"], "requires_payment_method");
    assert_eq!(
        v["last_payment_error"]["code"],
        "payment_intent_authentication_failure"
    );
    assert!(v["payment_method"].is_null());
    assert_eq!(
        intent_events(&h).last().map(String::as_str),
        Some("payment_intent.payment_failed")
    );
}

#[tokio::test]
async fn intent_and_charge_lists_filter_by_customer_and_paginate() {
    let h = spawn().await;
    let c = client(&h);
    let (a, b) = (customer(&h).await, customer(&h).await);
    for (cus, amount) in [(&a, 100), (&a, 200), (&a, 300), (&b, 400)] {
        CreatePaymentIntent::new(amount, Currency::USD)
            .customer(cus.as_str())
            .payment_method("pm_card_visa")
            .confirm(true)
            .send(&c)
            .await
            .unwrap();
    }
    let page = ListPaymentIntent::new()
        .customer(a.as_str())
        .limit(2)
        .send(&c)
        .await
        .unwrap();
    assert!(page.has_more);
    assert_eq!(
        page.data.iter().map(|p| p.amount).collect::<Vec<_>>(),
        [300, 200]
    );
    let rest = ListPaymentIntent::new()
        .customer(a.as_str())
        .limit(2)
        .starting_after(page.data[1].id.as_str())
        .send(&c)
        .await
        .unwrap();
    assert!(!rest.has_more);
    assert_eq!(
        rest.data.iter().map(|p| p.amount).collect::<Vec<_>>(),
        [100]
    );
    let all: Vec<stripe_shared::PaymentIntent> = ListPaymentIntent::new()
        .limit(1)
        .paginate()
        .stream(&c)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 4);
    let charges = ListCharge::new()
        .customer(b.as_str())
        .send(&c)
        .await
        .unwrap();
    assert_eq!(
        charges.data.iter().map(|ch| ch.amount).collect::<Vec<_>>(),
        [400]
    );

    CreateSetupIntent::new()
        .customer(b.as_str())
        .send(&c)
        .await
        .unwrap();
    CreateSetupIntent::new().send(&c).await.unwrap();
    let sis = ListSetupIntent::new()
        .customer(b.as_str())
        .send(&c)
        .await
        .unwrap();
    assert_eq!(sis.data.len(), 1);
    assert_eq!(sis.data[0].status, SetupIntentStatus::RequiresPaymentMethod);
}

#[tokio::test]
async fn bad_intent_requests_are_400_with_the_param_named() {
    let h = spawn().await;
    for (form, param) in [
        (vec![("currency", "usd")], "amount"),
        (vec![("amount", "100")], "currency"),
        (vec![("amount", "0"), ("currency", "usd")], "amount"),
        (
            vec![
                ("amount", "100"),
                ("currency", "usd"),
                ("capture_method", "later"),
            ],
            "capture_method",
        ),
        (
            vec![
                ("amount", "100"),
                ("currency", "usd"),
                ("payment_method_types[]", "sepa_debit"),
            ],
            "payment_method_types",
        ),
        (
            vec![("amount", "100"), ("currency", "usd"), ("confirm", "true")],
            "payment_method",
        ),
    ] {
        let (status, err) = v1_post(&h, "payment_intents", &form).await;
        assert_eq!(status, 400, "{form:?}: {err}");
        assert_eq!(err["error"]["param"], param, "{form:?}: {err}");
    }
    let (status, err) = v1_post(
        &h,
        "payment_intents",
        &[
            ("amount", "100"),
            ("currency", "usd"),
            ("payment_method", "pm_nope"),
        ],
    )
    .await;
    assert_eq!(status, 404, "{err}");
    assert_eq!(err["error"]["param"], "payment_method");

    let (_, pi) = v1_post(
        &h,
        "payment_intents",
        &[("amount", "100"), ("currency", "usd")],
    )
    .await;
    let id = s(&pi["id"]);
    let (status, err) = v1_post(&h, &format!("payment_intents/{id}/confirm"), &[]).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["param"], "payment_method");
    let (status, err) = v1_post(&h, &format!("payment_intents/{id}/capture"), &[]).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["code"], "payment_intent_unexpected_state");

    let (_, si) = v1_post(&h, "setup_intents", &[]).await;
    let (status, err) = v1_post(&h, &format!("setup_intents/{}/confirm", s(&si["id"])), &[]).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["param"], "payment_method");
    let (status, err) = v1_post(&h, "setup_intents", &[("usage", "sometimes")]).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["param"], "usage");

    for path in [
        "payment_intents/pi_nope",
        "setup_intents/seti_nope",
        "charges/ch_nope",
    ] {
        let (status, err) = v1_get(&h, path, &[]).await;
        assert_eq!(status, 404, "{path}: {err}");
        assert_eq!(err["error"]["code"], "resource_missing");
    }
}
