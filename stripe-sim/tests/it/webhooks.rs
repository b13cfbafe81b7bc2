//! Webhook delivery: signatures, order, retries, lifecycle sequences and faults, checked
//! by a receiver that verifies `Stripe-Signature` the way the service must.

use std::time::Duration;

use msr_stripe_sim::{Fault, SimHandle, TestCard};

use crate::helpers::*;

async fn setup() -> (SimHandle, Receiver) {
    let h = spawn().await;
    let r = Receiver::start().await;
    h.sim.set_webhook_endpoints(vec![r.endpoint()]);
    (h, r)
}

async fn settle(h: &SimHandle) {
    assert!(
        h.sim.wait_for_deliveries(Duration::from_secs(5)).await,
        "deliveries did not finish"
    );
}

#[tokio::test]
async fn checkout_events_arrive_signed_and_in_emission_order() {
    let (h, r) = setup().await;
    let (_, sub) = paid_subscription(&h).await;
    settle(&h).await;
    let got = r.all();
    assert!(got.iter().all(|x| x.valid), "every signature verifies");
    assert_eq!(
        r.valid_types(),
        [
            "customer.created",
            "customer.subscription.created",
            "invoice.created",
            "invoice.finalized",
            "invoice.paid",
            "invoice.payment_succeeded",
            "customer.subscription.updated",
            "checkout.session.completed"
        ]
    );
    let completed = &got.last().unwrap().event;
    assert_eq!(completed["data"]["object"]["subscription"], sub.as_str());
    assert_eq!(completed["data"]["object"]["status"], "complete");
    assert_eq!(completed["data"]["object"]["payment_status"], "paid");
    assert_eq!(completed["api_version"], "2026-09-30.endive");
    // Stored events report delivered webhooks.
    let ev = h.sim.events().last().cloned().unwrap();
    assert_eq!(ev["pending_webhooks"], 0);
}

#[tokio::test]
async fn failed_deliveries_are_retried_with_backoff_and_logged() {
    let (h, r) = setup().await;
    r.fail_next.store(2, std::sync::atomic::Ordering::SeqCst);
    let c = client(&h);
    stripe_core::customer::CreateCustomer::new()
        .send(&c)
        .await
        .unwrap();
    settle(&h).await;
    let log = h.sim.deliveries();
    let statuses: Vec<(u32, Option<u16>)> = log.iter().map(|d| (d.attempt, d.status)).collect();
    assert_eq!(statuses, [(1, Some(500)), (2, Some(500)), (3, Some(200))]);
    let json: serde_json::Value = http()
        .get(format!("{}_sim/deliveries", h.base_url))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(json.as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn renewal_success_then_failure_past_due_and_recovery_by_card_update() {
    let (h, r) = setup().await;
    let (cus, sub) = paid_subscription(&h).await;
    settle(&h).await;
    r.clear();
    h.sim.advance_to_next_renewal(&sub).await.unwrap();
    settle(&h).await;
    assert_eq!(
        r.valid_types(),
        [
            "invoice.created",
            "customer.subscription.updated",
            "invoice.finalized",
            "invoice.paid",
            "invoice.payment_succeeded"
        ]
    );
    let upd = &r.all()[1].event;
    assert!(upd["data"]["previous_attributes"]["items"]["data"][0]["current_period_end"].is_i64());

    r.clear();
    h.sim
        .set_card(&cus, TestCard::ChargeCustomerFail)
        .await
        .unwrap();
    h.sim.advance_to_next_renewal(&sub).await.unwrap();
    settle(&h).await;
    let types = r.valid_types();
    assert!(types.ends_with(&[
        "invoice.finalized".to_string(),
        "invoice.payment_failed".to_string(),
        "customer.subscription.updated".to_string()
    ]));
    assert_eq!(h.sim.subscription(&sub).unwrap()["status"], "past_due");
    let failed = r
        .all()
        .into_iter()
        .find(|x| x.kind() == "invoice.payment_failed")
        .unwrap();
    assert!(failed.event["data"]["object"]["next_payment_attempt"].is_i64());
    assert_eq!(
        failed.event["data"]["object"]["parent"]["subscription_details"]["subscription"],
        sub.as_str()
    );

    // A day later the retry fails again; then the card is fixed and the invoice is paid at once.
    h.sim.advance_clock(86_400).await;
    assert_eq!(h.sim.subscription(&sub).unwrap()["status"], "past_due");
    r.clear();
    h.sim.set_card(&cus, TestCard::Visa).await.unwrap();
    settle(&h).await;
    assert_eq!(h.sim.subscription(&sub).unwrap()["status"], "active");
    let types = r.valid_types();
    assert!(types.contains(&"invoice.paid".to_string()));
    assert_eq!(types.last().unwrap(), "customer.subscription.updated");
}

#[tokio::test]
async fn exhausted_retries_cancel_the_subscription() {
    let (h, r) = setup().await;
    let (_, sub) = paid_subscription(&h).await;
    h.sim.fail_next_renewal(&sub).unwrap();
    let cus = h.sim.subscription(&sub).unwrap()["customer"]
        .as_str()
        .unwrap()
        .to_string();
    h.sim
        .set_card(&cus, TestCard::ChargeCustomerFail)
        .await
        .unwrap();
    h.sim.advance_to_next_renewal(&sub).await.unwrap();
    h.sim.advance_clock(6 * 86_400).await;
    settle(&h).await;
    assert_eq!(h.sim.subscription(&sub).unwrap()["status"], "canceled");
    let types = r.valid_types();
    assert_eq!(
        types
            .iter()
            .filter(|t| *t == "invoice.payment_failed")
            .count(),
        4
    );
    assert_eq!(types.last().unwrap(), "customer.subscription.deleted");
}

#[tokio::test]
async fn cancel_at_period_end_deletes_at_the_period_end() {
    let (h, r) = setup().await;
    let (_, sub) = paid_subscription(&h).await;
    h.sim.cancel_at_period_end(&sub, true).await.unwrap();
    h.sim.advance_clock(6 * 86_400).await;
    assert_eq!(h.sim.subscription(&sub).unwrap()["status"], "active");
    h.sim.advance_clock(86_400).await;
    settle(&h).await;
    assert_eq!(h.sim.subscription(&sub).unwrap()["status"], "canceled");
    let types = r.valid_types();
    assert_eq!(types.last().unwrap(), "customer.subscription.deleted");
    assert!(
        !types.iter().skip(8).any(|t| t == "invoice.created"),
        "no renewal invoice"
    );
}

#[tokio::test]
async fn pause_collection_updates_and_a_paused_trial_resumes() {
    let (h, r) = setup().await;
    let (_, sub) = paid_subscription(&h).await;
    settle(&h).await;
    r.clear();
    h.sim
        .pause_collection(&sub, Some("mark_uncollectible"))
        .await
        .unwrap();
    settle(&h).await;
    assert_eq!(r.valid_types(), ["customer.subscription.updated"]);
    let ev = &r.all()[0].event;
    assert_eq!(ev["data"]["object"]["status"], "active");
    assert!(ev["data"]["previous_attributes"]["pause_collection"].is_null());

    // Trial without a card and missing_payment_method=pause → paused → resumed.
    let cs: serde_json::Value = http()
        .post(format!("{}v1/checkout/sessions", h.base_url))
        .bearer_auth("sk_test_x")
        .form(&[
            ("mode", "subscription"),
            ("customer_email", "t@x.io"),
            ("line_items[0][price]", "price_msr_weekly"),
            ("payment_method_collection", "if_required"),
            ("subscription_data[trial_period_days]", "7"),
            (
                "subscription_data[trial_settings][end_behavior][missing_payment_method]",
                "pause",
            ),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let out = h
        .sim
        .pay_checkout_without_card(cs["id"].as_str().unwrap())
        .await
        .unwrap();
    let msr_stripe_sim::CheckoutOutcome::Completed {
        subscription: trial,
        ..
    } = out
    else {
        panic!()
    };
    assert_eq!(h.sim.subscription(&trial).unwrap()["status"], "trialing");
    h.sim.end_trial_now(&trial).await.unwrap();
    assert_eq!(h.sim.subscription(&trial).unwrap()["status"], "paused");
    let cus = h.sim.subscription(&trial).unwrap()["customer"]
        .as_str()
        .unwrap()
        .to_string();
    h.sim.set_card(&cus, TestCard::Visa).await.unwrap();
    h.sim.resume(&trial).await.unwrap();
    settle(&h).await;
    assert_eq!(h.sim.subscription(&trial).unwrap()["status"], "active");
    let types = r.valid_types();
    assert!(types.contains(&"customer.subscription.paused".to_string()));
    assert!(types.contains(&"customer.subscription.resumed".to_string()));
}

#[tokio::test]
async fn duplicate_and_concurrent_copy_faults_repeat_events() {
    let (h, r) = setup().await;
    let c = client(&h);
    h.sim.set_fault(Fault::DuplicateDeliveries).await;
    stripe_core::customer::CreateCustomer::new()
        .send(&c)
        .await
        .unwrap();
    settle(&h).await;
    let ids: Vec<String> = r.all().iter().map(Received::id).collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], ids[1]);
    h.sim.clear_faults().await;
    r.clear();
    h.sim.set_fault(Fault::ConcurrentCopies { copies: 3 }).await;
    stripe_core::customer::CreateCustomer::new()
        .send(&c)
        .await
        .unwrap();
    settle(&h).await;
    assert_eq!(r.all().len(), 3);
}

#[tokio::test]
async fn reverse_fault_reorders_only_the_next_batch() {
    let (h, r) = setup().await;
    let cs: serde_json::Value = http()
        .post(format!("{}v1/checkout/sessions", h.base_url))
        .bearer_auth("sk_test_x")
        .form(&[
            ("mode", "subscription"),
            ("customer_email", "r@x.io"),
            ("line_items[0][price]", "price_msr_weekly"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    h.sim.set_fault(Fault::ReverseNextBatch).await;
    h.sim
        .pay_checkout(cs["id"].as_str().unwrap(), TestCard::Visa)
        .await
        .unwrap();
    settle(&h).await;
    let types = r.valid_types();
    assert_eq!(types.first().unwrap(), "checkout.session.completed");
    assert_eq!(types.last().unwrap(), "customer.created");
    // One-shot: the next batch is in order again.
    r.clear();
    stripe_core::customer::CreateCustomer::new()
        .send(&client(&h))
        .await
        .unwrap();
    settle(&h).await;
    assert_eq!(r.valid_types(), ["customer.created"]);
}

#[tokio::test]
async fn bad_signature_faults_are_rejected_by_a_verifying_receiver() {
    for fault in [Fault::StaleSignature, Fault::TamperBody, Fault::WrongSecret] {
        let (h, r) = setup().await;
        h.sim.set_fault(fault.clone()).await;
        stripe_core::customer::CreateCustomer::new()
            .send(&client(&h))
            .await
            .unwrap();
        settle(&h).await;
        let got = r.all();
        assert_eq!(got.len(), 5, "{fault:?}: retried up to the limit");
        assert!(
            got.iter().all(|x| !x.valid),
            "{fault:?}: receiver must reject"
        );
    }
}

#[tokio::test]
async fn paused_deliveries_wait_for_flush_and_delay_holds_them_back() {
    let (h, r) = setup().await;
    let c = client(&h);
    h.sim.set_fault(Fault::PauseDeliveries).await;
    stripe_core::customer::CreateCustomer::new()
        .send(&c)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(r.all().is_empty());
    h.sim.flush_deliveries();
    settle(&h).await;
    assert_eq!(r.all().len(), 1);

    h.sim
        .set_fault(Fault::DelayDeliveries { delay_ms: 300 })
        .await;
    stripe_core::customer::CreateCustomer::new()
        .send(&c)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(r.all().len(), 1, "still held back");
    settle(&h).await;
    assert_eq!(r.all().len(), 2);
}

#[tokio::test]
async fn redeliver_sends_a_stored_event_again() {
    let (h, r) = setup().await;
    stripe_core::customer::CreateCustomer::new()
        .send(&client(&h))
        .await
        .unwrap();
    settle(&h).await;
    let id = r.all()[0].id();
    let resp = http()
        .post(format!("{}_sim/events/{id}/redeliver", h.base_url))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    settle(&h).await;
    let got = r.all();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].id(), id);
    assert!(!h.sim.redeliver("evt_unknown").await);
}

#[tokio::test]
async fn a_redirect_from_a_webhook_endpoint_is_a_failed_delivery_and_is_not_followed() {
    let (h, r) = setup().await;
    // A loopback endpoint (all the control API accepts) that sends everything on to `r`.
    let target = r.url.clone();
    let app = axum::Router::new().route(
        "/hop",
        axum::routing::post(move || {
            let target = target.clone();
            async move {
                (
                    axum::http::StatusCode::TEMPORARY_REDIRECT,
                    [("location", target)],
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hop = format!("http://{}/hop", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    h.sim
        .set_webhook_endpoints(vec![msr_stripe_sim::WebhookEndpoint {
            url: hop,
            secret: SECRET.into(),
        }]);
    stripe_core::customer::CreateCustomer::new()
        .send(&client(&h))
        .await
        .unwrap();
    settle(&h).await;
    let log = h.sim.deliveries();
    assert!(!log.is_empty());
    assert!(log.iter().all(|d| d.status == Some(307)), "{log:?}");
    assert!(r.all().is_empty(), "the redirect was not followed");
}

#[tokio::test]
async fn a_supervised_delivery_run_that_is_stopped_hands_its_queue_and_its_event_to_the_next() {
    let (h, r) = setup().await;
    let first = tokio::spawn(h.sim.run_delivery());
    h.sim
        .set_fault(Fault::DelayDeliveries { delay_ms: 300 })
        .await;
    let c = client(&h);
    let customer = stripe_core::customer::CreateCustomer::new()
        .send(&c)
        .await
        .unwrap();
    // The run is waiting out the delay on `customer.created` when it is stopped.
    tokio::time::sleep(Duration::from_millis(100)).await;
    first.abort();
    let _ = first.await;
    h.sim.clear_faults().await;
    stripe_core::customer::UpdateCustomer::new(customer.id.as_str())
        .name("Trucks Ltd")
        .send(&c)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(r.all().is_empty(), "nothing is delivered while no run is");
    assert!(
        !h.sim.wait_for_deliveries(Duration::ZERO).await,
        "the cut-off event and the new one are pending"
    );
    let second = tokio::spawn(h.sim.run_delivery());
    settle(&h).await;
    assert_eq!(
        r.valid_types(),
        ["customer.created", "customer.updated"],
        "the interrupted event first, then the queue, nothing lost"
    );
    second.abort();
}
