//! The Stripe API, driven by the real async-stripe client: if a shape were wrong,
//! deserialization here would fail.

use std::collections::HashMap;

use futures::TryStreamExt;
use msr_stripe_sim::{Fault, TestCard};
use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn customers_can_be_created_read_updated_and_listed_by_email() {
    use stripe_core::customer::*;
    let h = spawn().await;
    let c = client(&h);
    let created = CreateCustomer::new()
        .email("ann@example.com")
        .name("Ann Driver")
        .metadata(HashMap::from([("user_id".to_string(), "u1".to_string())]))
        .send(&c)
        .await
        .unwrap();
    assert!(created.id.as_str().starts_with("cus_"));
    assert_eq!(created.metadata.as_ref().unwrap()["user_id"], "u1");
    assert!(!created.livemode);

    let got = RetrieveCustomer::new(created.id.clone())
        .send(&c)
        .await
        .unwrap();
    let RetrieveCustomerReturned::Customer(got) = got else {
        panic!("deleted?")
    };
    assert_eq!(got.email.as_deref(), Some("ann@example.com"));

    let updated = UpdateCustomer::new(created.id.clone())
        .name("Ann D.")
        .send(&c)
        .await
        .unwrap();
    assert_eq!(updated.name.as_deref(), Some("Ann D."));

    CreateCustomer::new()
        .email("bob@example.com")
        .send(&c)
        .await
        .unwrap();
    let listed = ListCustomer::new()
        .email("ann@example.com")
        .send(&c)
        .await
        .unwrap();
    assert_eq!(listed.data.len(), 1);
    assert_eq!(listed.data[0].id, created.id);
    assert_eq!(listed.url, "/v1/customers");

    let types = h.sim.event_types();
    assert_eq!(
        types,
        ["customer.created", "customer.updated", "customer.created"]
    );
}

#[tokio::test]
async fn customer_lists_paginate_newest_first() {
    use stripe_core::customer::*;
    let h = spawn().await;
    let c = client(&h);
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            CreateCustomer::new()
                .email(format!("p{i}@x.io"))
                .send(&c)
                .await
                .unwrap()
                .id,
        );
    }
    let page = ListCustomer::new().limit(2).send(&c).await.unwrap();
    assert!(page.has_more);
    assert_eq!(page.data[0].id, ids[4]);
    let all: Vec<_> = ListCustomer::new()
        .limit(2)
        .paginate()
        .stream(&c)
        .try_collect()
        .await
        .unwrap();
    let got: Vec<_> = all.iter().map(|c| c.id.clone()).collect();
    ids.reverse();
    assert_eq!(got, ids);
    let before = ListCustomer::new()
        .ending_before(ids[2].as_str())
        .limit(10)
        .send(&c)
        .await
        .unwrap();
    assert_eq!(
        before.data.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
        ids[..2].to_vec()
    );
}

#[tokio::test]
async fn seeded_prices_and_products_are_found_by_id_and_lookup_key() {
    use stripe_product::price::*;
    let h = spawn().await;
    let c = client(&h);
    let weekly = RetrievePrice::new("price_msr_weekly")
        .send(&c)
        .await
        .unwrap();
    assert_eq!(weekly.unit_amount, Some(2500));
    assert_eq!(weekly.lookup_key.as_deref(), Some("msr_weekly"));
    let rec = weekly.recurring.unwrap();
    assert_eq!(rec.interval.as_str(), "week");

    let monthly = ListPrice::new()
        .lookup_keys(vec!["msr_monthly".to_string()])
        .active(true)
        .send(&c)
        .await
        .unwrap();
    assert_eq!(monthly.data.len(), 1);
    assert_eq!(monthly.data[0].unit_amount, Some(7900));

    let product_id = monthly.data[0].product.id().clone();
    let product = stripe_product::product::RetrieveProduct::new(product_id)
        .send(&c)
        .await
        .unwrap();
    assert_eq!(product.name, "My Smart Road monthly");

    let by_product = ListPrice::new()
        .product("prod_msr_weekly")
        .send(&c)
        .await
        .unwrap();
    assert_eq!(by_product.data.len(), 1);
}

#[tokio::test]
async fn checkout_session_is_created_paid_and_retrieved_with_expanded_subscription() {
    use stripe_checkout::checkout_session::*;
    let h = spawn().await;
    let c = client(&h);
    let cus = stripe_core::customer::CreateCustomer::new()
        .email("c@x.io")
        .send(&c)
        .await
        .unwrap();
    let mut item = CreateCheckoutSessionLineItems::new();
    item.price = Some("price_msr_monthly".into());
    item.quantity = Some(1);
    let mut sd = CreateCheckoutSessionSubscriptionData::new();
    sd.metadata = Some(HashMap::from([("user_id".to_string(), "u42".to_string())]));
    let cs = CreateCheckoutSession::new()
        .mode(stripe_shared::CheckoutSessionMode::Subscription)
        .customer(cus.id.as_str())
        .client_reference_id("u42")
        .metadata(HashMap::from([("user_id".to_string(), "u42".to_string())]))
        .line_items(vec![item])
        .subscription_data(sd)
        .success_url("http://app.test/ok?session={CHECKOUT_SESSION_ID}")
        .cancel_url("http://app.test/cancel")
        .send(&c)
        .await
        .unwrap();
    assert!(cs.id.as_str().starts_with("cs_test_"));
    let url = cs.url.clone().unwrap();
    assert_eq!(url, format!("{}c/pay/{}", h.base_url, cs.id));
    assert_eq!(cs.status.as_ref().unwrap().as_str(), "open");
    assert!(cs.expires_at > cs.created + 23 * 3600);

    let out = h
        .sim
        .pay_checkout(cs.id.as_str(), TestCard::Visa)
        .await
        .unwrap();
    let msr_stripe_sim::CheckoutOutcome::Completed {
        redirect,
        subscription,
        ..
    } = out
    else {
        panic!()
    };
    assert_eq!(
        redirect.unwrap(),
        format!("http://app.test/ok?session={}", cs.id)
    );

    let got = RetrieveCheckoutSession::new(cs.id.clone())
        .expand(vec!["subscription".to_string(), "customer".to_string()])
        .send(&c)
        .await
        .unwrap();
    assert_eq!(got.status.unwrap().as_str(), "complete");
    assert_eq!(got.payment_status.as_str(), "paid");
    assert_eq!(got.client_reference_id.as_deref(), Some("u42"));
    let sub = got
        .subscription
        .and_then(|e| e.into_object())
        .expect("subscription expanded");
    assert_eq!(sub.id.as_str(), subscription);
    assert_eq!(sub.status.as_str(), "active");
    assert_eq!(sub.metadata["user_id"], "u42");
    assert_eq!(sub.items.data[0].price.id.as_str(), "price_msr_monthly");
    assert!(
        sub.items.data[0].current_period_end > sub.items.data[0].current_period_start + 27 * 86_400
    );
    assert!(got.customer.as_ref().is_some_and(|c| c.is_object()));
}

#[tokio::test]
async fn portal_session_points_at_the_hosted_portal() {
    use stripe_billing::billing_portal_session::*;
    let h = spawn().await;
    let c = client(&h);
    let cus = stripe_core::customer::CreateCustomer::new()
        .send(&c)
        .await
        .unwrap();
    let ps = CreateBillingPortalSession::new()
        .customer(cus.id.as_str())
        .return_url("http://app.test/account")
        .send(&c)
        .await
        .unwrap();
    assert!(ps.id.as_str().starts_with("bps_"));
    assert_eq!(ps.url, format!("{}p/session/{}", h.base_url, ps.id));
    assert_eq!(ps.return_url.as_deref(), Some("http://app.test/account"));
}

#[tokio::test]
async fn subscriptions_are_listed_updated_paused_switched_and_canceled() {
    use stripe_billing::subscription::*;
    let h = spawn().await;
    let c = client(&h);
    let (cus, sub) = paid_subscription(&h).await;

    let got = RetrieveSubscription::new(sub.as_str())
        .send(&c)
        .await
        .unwrap();
    assert_eq!(got.status.as_str(), "active");
    assert!(got.latest_invoice.as_ref().is_some_and(|e| !e.is_object()));

    let listed = ListSubscription::new()
        .customer(cus.as_str())
        .send(&c)
        .await
        .unwrap();
    assert_eq!(listed.data.len(), 1);
    let filtered = ListSubscription::new()
        .price("price_msr_monthly")
        .send(&c)
        .await
        .unwrap();
    assert!(filtered.data.is_empty());

    let upd = UpdateSubscription::new(sub.as_str())
        .cancel_at_period_end(true)
        .send(&c)
        .await
        .unwrap();
    assert!(upd.cancel_at_period_end);
    assert_eq!(upd.cancel_at, Some(upd.items.data[0].current_period_end));
    assert_eq!(upd.status.as_str(), "active");

    let paused = UpdateSubscription::new(sub.as_str())
        .pause_collection(UpdateSubscriptionPauseCollection::new(
            UpdateSubscriptionPauseCollectionBehavior::Void,
        ))
        .send(&c)
        .await
        .unwrap();
    assert_eq!(paused.pause_collection.unwrap().behavior.as_str(), "void");
    assert_eq!(paused.status.as_str(), "active");

    let mut item = UpdateSubscriptionItems::new();
    item.id = Some(got.items.data[0].id.to_string());
    item.price = Some("price_msr_monthly".into());
    let switched = UpdateSubscription::new(sub.as_str())
        .items(vec![item])
        .proration_behavior(UpdateSubscriptionProrationBehavior::None)
        .send(&c)
        .await
        .unwrap();
    assert_eq!(
        switched.items.data[0].price.id.as_str(),
        "price_msr_monthly"
    );
    // A new interval restarts the period and bills at once; the switch itself is the
    // `customer.subscription.updated` whose previous items had the old price.
    let events = h.sim.events();
    let switch = events
        .iter()
        .rev()
        .find(|e| {
            e["type"] == "customer.subscription.updated"
                && e["data"]["previous_attributes"]["items"].is_object()
        })
        .unwrap();
    assert_eq!(
        switch["data"]["previous_attributes"]["items"]["data"][0]["price"]["id"],
        "price_msr_weekly"
    );

    let canceled = CancelSubscription::new(sub.as_str())
        .send(&c)
        .await
        .unwrap();
    assert_eq!(canceled.status.as_str(), "canceled");
    assert!(canceled.ended_at.is_some());
    let default_list = ListSubscription::new()
        .customer(cus.as_str())
        .send(&c)
        .await
        .unwrap();
    assert!(
        default_list.data.is_empty(),
        "canceled subscriptions are hidden by default"
    );
    let all = ListSubscription::new()
        .customer(cus.as_str())
        .status(ListSubscriptionStatus::All)
        .send(&c)
        .await
        .unwrap();
    assert_eq!(all.data.len(), 1);
    assert_eq!(
        h.sim.event_types().last().unwrap(),
        "customer.subscription.deleted"
    );
}

#[tokio::test]
async fn ending_a_trial_with_trial_end_now_bills_the_first_period() {
    use stripe_billing::subscription::*;
    let h = spawn_with(msr_stripe_sim::SimConfig {
        renewal_finalize_delay: 0,
        ..config()
    })
    .await;
    let c = client(&h);
    let (_, sub) = paid_subscription_with(&h, Some(7)).await;
    let got = RetrieveSubscription::new(sub.as_str())
        .send(&c)
        .await
        .unwrap();
    assert_eq!(got.status.as_str(), "trialing");
    assert!(got.trial_end.unwrap() >= got.trial_start.unwrap() + 7 * 86_400);
    let after = UpdateSubscription::new(sub.as_str())
        .trial_end(UpdateSubscriptionTrialEnd::Now)
        .send(&c)
        .await
        .unwrap();
    assert_eq!(after.status.as_str(), "active");
    let types = h.sim.event_types();
    assert!(types.ends_with(&[
        "invoice.finalized".to_string(),
        "invoice.paid".to_string(),
        "invoice.payment_succeeded".to_string()
    ]));
}

#[tokio::test]
async fn every_emitted_event_deserializes_and_lists_paginate() {
    use stripe_core::event::*;
    let h = spawn().await;
    let c = client(&h);
    let (_, sub) = paid_subscription(&h).await;
    h.sim.advance_to_next_renewal(&sub).await.unwrap();
    h.sim.fail_next_renewal(&sub).unwrap();
    h.sim.advance_to_next_renewal(&sub).await.unwrap();

    let emitted = h.sim.events();
    let all: Vec<stripe_shared::Event> = ListEvent::new()
        .limit(3)
        .paginate()
        .stream(&c)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), emitted.len());
    let newest_first: Vec<String> = emitted
        .iter()
        .rev()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        all.iter().map(|e| e.id.to_string()).collect::<Vec<_>>(),
        newest_first
    );

    // Every object inside the events has a shape async-stripe accepts.
    for e in &emitted {
        let obj = e["data"]["object"].clone();
        match obj["object"].as_str().unwrap() {
            "subscription" => {
                drop(serde_json::from_value::<stripe_shared::Subscription>(obj).unwrap())
            }
            "invoice" => drop(serde_json::from_value::<stripe_shared::Invoice>(obj).unwrap()),
            "customer" => drop(serde_json::from_value::<stripe_shared::Customer>(obj).unwrap()),
            "checkout.session" => {
                drop(serde_json::from_value::<stripe_shared::CheckoutSession>(obj).unwrap())
            }
            other => panic!("unexpected object {other}"),
        }
        assert_eq!(e["api_version"], msr_stripe_sim::API_VERSION);
    }

    let failed = ListEvent::new()
        .type_("invoice.payment_failed")
        .send(&c)
        .await
        .unwrap();
    assert_eq!(failed.data.len(), 1);
    let subs = ListEvent::new()
        .types(vec![
            "customer.subscription.updated".to_string(),
            "customer.subscription.created".to_string(),
        ])
        .send(&c)
        .await
        .unwrap();
    assert!(
        subs.data
            .iter()
            .all(|e| e.type_.as_str().starts_with("customer.subscription."))
    );
    let wildcard = ListEvent::new()
        .type_("invoice.*")
        .limit(100)
        .send(&c)
        .await
        .unwrap();
    assert!(
        wildcard
            .data
            .iter()
            .all(|e| e.type_.as_str().starts_with("invoice."))
    );

    let newest = emitted.last().unwrap()["created"].as_i64().unwrap();
    let recent: Value = http()
        .get(format!(
            "{}v1/events?created[gte]={newest}&limit=100",
            h.base_url
        ))
        .bearer_auth("sk_test_x")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let recent = recent["data"].as_array().unwrap();
    assert!(
        !recent.is_empty()
            && recent
                .iter()
                .all(|e| e["created"].as_i64().unwrap() >= newest)
    );

    let one = RetrieveEvent::new(all[0].id.clone())
        .send(&c)
        .await
        .unwrap();
    assert_eq!(one.id, all[0].id);
}

#[tokio::test]
async fn unknown_ids_are_404_resource_missing() {
    let h = spawn().await;
    let c = client(&h);
    let err = stripe_core::customer::RetrieveCustomer::new("cus_nope")
        .send(&c)
        .await
        .unwrap_err();
    let stripe::StripeError::Stripe(e, status) = err else {
        panic!("{err:?}")
    };
    assert_eq!(status, 404);
    assert_eq!(e.code.unwrap().as_str(), "resource_missing");
    let raw: Value = http()
        .get(format!("{}v1/subscriptions/sub_nope", h.base_url))
        .bearer_auth("sk_test_x")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(raw["error"]["type"], "invalid_request_error");
    assert_eq!(raw["error"]["param"], "id");
}

#[tokio::test]
async fn requests_without_a_test_key_are_refused() {
    let h = spawn().await;
    let url = format!("{}v1/customers", h.base_url);
    let none = http().get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let body: Value = none.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let live = http()
        .get(&url)
        .bearer_auth("sk_live_abc")
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 401);
    let ok = http()
        .get(&url)
        .bearer_auth("sk_test_abc")
        .header("Stripe-Version", "2026-09-30.endive")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn bad_parameters_are_400_with_the_param_named() {
    let h = spawn().await;
    let r = http()
        .post(format!("{}v1/checkout/sessions", h.base_url))
        .bearer_auth("sk_test_x")
        .form(&[("mode", "subscription")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["param"], "line_items");
    let r = http()
        .get(format!("{}v1/customers?limit=500", h.base_url))
        .bearer_auth("sk_test_x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn idempotency_keys_replay_byte_for_byte_and_reject_other_params() {
    let h = spawn().await;
    let url = format!("{}v1/customers", h.base_url);
    let post = |email: &'static str| {
        http()
            .post(&url)
            .bearer_auth("sk_test_x")
            .header("Idempotency-Key", "k1")
            .form(&[("email", email)])
            .send()
    };
    let first = post("a@x.io").await.unwrap();
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first_body = first.bytes().await.unwrap();
    let again = post("a@x.io").await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.bytes().await.unwrap(), first_body);
    assert_eq!(
        h.sim.event_types(),
        ["customer.created"],
        "the replay created nothing"
    );
    let other = post("b@x.io").await.unwrap();
    assert_eq!(other.status(), 400);
    let body: Value = other.json().await.unwrap();
    assert_eq!(body["error"]["type"], "idempotency_error");
}

#[tokio::test]
async fn injected_500s_hit_only_their_prefix_and_are_replayed_under_the_same_key() {
    let h = spawn().await;
    h.sim
        .set_fault(Fault::ApiErrors {
            count: 1,
            path_prefix: Some("/v1/checkout/sessions".into()),
        })
        .await;
    let c = client(&h);
    // Other paths are unaffected.
    stripe_core::customer::CreateCustomer::new()
        .send(&c)
        .await
        .unwrap();
    let url = format!("{}v1/checkout/sessions", h.base_url);
    let form = [
        ("mode", "subscription"),
        ("line_items[0][price]", "price_msr_weekly"),
        ("line_items[0][quantity]", "1"),
    ];
    let send = || {
        http()
            .post(&url)
            .bearer_auth("sk_test_x")
            .header("Idempotency-Key", "k-500")
            .form(&form)
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), 500);
    let body: Value = first.json().await.unwrap();
    assert_eq!(body["error"]["type"], "api_error");
    let replay = send().await.unwrap();
    assert_eq!(
        replay.status(),
        500,
        "Stripe replays even a 500 under the same key"
    );
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let fresh = http()
        .post(&url)
        .bearer_auth("sk_test_x")
        .header("Idempotency-Key", "k-new")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 200);
}

#[tokio::test]
async fn hang_fault_delays_the_answer() {
    let h = spawn().await;
    h.sim
        .set_fault(Fault::ApiHang {
            count: 1,
            path_prefix: None,
            delay_ms: 300,
        })
        .await;
    let c = client(&h);
    let t = std::time::Instant::now();
    stripe_product::price::RetrievePrice::new("price_msr_weekly")
        .send(&c)
        .await
        .unwrap();
    assert!(t.elapsed() >= std::time::Duration::from_millis(300));
    let t = std::time::Instant::now();
    stripe_product::price::RetrievePrice::new("price_msr_weekly")
        .send(&c)
        .await
        .unwrap();
    assert!(t.elapsed() < std::time::Duration::from_millis(300));
}

#[tokio::test]
async fn rate_limit_answers_429_over_25_requests_per_second() {
    let h = spawn().await;
    h.sim.set_fault(Fault::RateLimit { on: true }).await;
    let url = format!("{}v1/prices/price_msr_weekly", h.base_url);
    let mut statuses = Vec::new();
    for _ in 0..30 {
        statuses.push(
            http()
                .get(&url)
                .bearer_auth("sk_test_x")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert!(statuses.iter().filter(|s| **s == 200).count() <= 25);
    assert!(statuses.contains(&429));
    h.sim.set_fault(Fault::RateLimit { on: false }).await;
    let r = http()
        .get(&url)
        .bearer_auth("sk_test_x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
