//! SetupIntents used directly through the API: a card saved (attached to the customer), a
//! declined one (402 with the intent, `last_setup_error`), 3-D Secure completed and failed on
//! the hosted page, cancel. Shared helpers live in `intents.rs`.

use stripe_core::setup_intent::CreateSetupIntent;
use stripe_shared::SetupIntentStatus;
use stripe_types::Expandable;

use crate::helpers::*;
use crate::intents::{customer, intent_events, press, s};

#[tokio::test]
async fn setup_intents_save_a_card_refuse_a_declined_one_and_authenticate() {
    let h = spawn().await;
    let c = client(&h);
    let cus = customer(&h).await;
    let si = CreateSetupIntent::new()
        .customer(cus.as_str())
        .payment_method("pm_card_visa")
        .confirm(true)
        .send(&c)
        .await
        .unwrap();
    assert_eq!(si.status, SetupIntentStatus::Succeeded);
    assert_eq!(si.usage, "off_session");
    let Some(Expandable::Id(pm)) = &si.payment_method else {
        panic!("no payment method")
    };
    let (_, card) = v1_get(&h, &format!("payment_methods/{pm}"), &[]).await;
    assert_eq!(card["customer"], cus.as_str(), "attached on success");
    assert_eq!(
        intent_events(&h),
        [
            "setup_intent.created",
            "payment_method.attached",
            "setup_intent.succeeded"
        ]
    );

    let (status, err) = v1_post(
        &h,
        "setup_intents",
        &[
            ("customer", &cus),
            ("payment_method", "pm_card_chargeDeclined"),
            ("confirm", "true"),
        ],
    )
    .await;
    assert_eq!(status, 402, "{err}");
    let failed = &err["error"]["setup_intent"];
    assert_eq!(failed["status"], "requires_payment_method");
    assert_eq!(failed["last_setup_error"]["code"], "card_declined");
    assert_eq!(failed["last_setup_error"]["type"], "card_error");
    assert_eq!(
        intent_events(&h).last().unwrap(),
        "setup_intent.setup_failed"
    );

    // 3-D Secure: Complete attaches the card, Fail leaves the error.
    let mut urls = Vec::new();
    for _ in 0..2 {
        let (status, si) = v1_post(
            &h,
            "setup_intents",
            &[
                ("customer", &cus),
                ("payment_method", "pm_card_threeDSecure2Required"),
            ],
        )
        .await;
        assert_eq!(status, 200, "{si}");
        assert_eq!(si["status"], "requires_confirmation");
        let (_, si) = v1_post(&h, &format!("setup_intents/{}/confirm", s(&si["id"])), &[]).await;
        assert_eq!(si["status"], "requires_action");
        drop(serde_json::from_value::<stripe_shared::SetupIntent>(si.clone()).unwrap());
        urls.push((
            s(&si["id"]).to_string(),
            s(&si["next_action"]["redirect_to_url"]["url"]).to_string(),
        ));
    }
    let (status, _) = press(&urls[0].1, "complete").await;
    assert_eq!(status, 200);
    let (_, done) = v1_get(&h, &format!("setup_intents/{}", urls[0].0), &[]).await;
    assert_eq!(done["status"], "succeeded");
    let (_, card) = v1_get(
        &h,
        &format!("payment_methods/{}", s(&done["payment_method"])),
        &[],
    )
    .await;
    assert_eq!(card["customer"], cus.as_str());
    let (status, _) = press(&urls[1].1, "fail").await;
    assert_eq!(status, 200);
    let (_, failed) = v1_get(&h, &format!("setup_intents/{}", urls[1].0), &[]).await;
    assert_eq!(failed["status"], "requires_payment_method");
    assert_eq!(
        failed["last_setup_error"]["code"],
        "setup_intent_authentication_failure"
    );

    let (status, canceled) = v1_post(&h, &format!("setup_intents/{}/cancel", urls[1].0), &[]).await;
    assert_eq!(status, 200, "{canceled}");
    assert_eq!(canceled["status"], "canceled");
    let tail: Vec<String> = intent_events(&h).into_iter().rev().take(3).collect();
    assert_eq!(
        tail,
        [
            "setup_intent.canceled",
            "setup_intent.setup_failed",
            "setup_intent.succeeded"
        ]
    );
    for e in h.sim.events() {
        if e["data"]["object"]["object"] == "setup_intent" {
            drop(
                serde_json::from_value::<stripe_shared::SetupIntent>(e["data"]["object"].clone())
                    .unwrap(),
            );
        }
    }
}
