//! `POST /billing/webhook`: signatures, recording, ordering, duplicates and faults.

use msr_stripe_sim::{Fault, TestCard};
use serde_json::json;

use crate::helpers::{StripeApp, WEBHOOK_SECRET, json, now, sign};

fn event(id: &str, kind: &str, created: i64, object: serde_json::Value) -> String {
    json!({"id": id, "object": "event", "api_version": "2026-09-30.endive", "created": created, "livemode": false,
        "pending_webhooks": 1, "request": {"id": null, "idempotency_key": null}, "type": kind, "data": {"object": object}})
    .to_string()
}

#[tokio::test]
async fn each_bad_signature_is_refused_with_400_and_nothing_is_stored() {
    let app = StripeApp::spawn().await;
    let body = event(
        "evt_bad",
        "customer.created",
        now(),
        json!({"id": "cus_x", "object": "customer"}),
    );
    let t = now();
    let cases = [
        ("missing", None),
        ("malformed", Some("nonsense".to_owned())),
        ("stale", Some(sign(WEBHOOK_SECRET, t - 301, &body))),
        ("wrong secret", Some(sign("whsec_other", t, &body))),
        (
            "tampered",
            Some(sign(WEBHOOK_SECRET, t, &body.replace("cus_x", "cus_y"))),
        ),
    ];
    for (case, signature) in cases {
        let response = app.post_webhook(&body, signature).await;
        assert_eq!(response.status().as_u16(), 400, "{case}");
        let body = json(response).await;
        assert_eq!(body["error"]["code"], "invalid_signature", "{case}");
    }
    assert_eq!(app.count_events().await, 0);
    assert_eq!(
        app.state
            .counters
            .signature_failures
            .load(std::sync::atomic::Ordering::Relaxed),
        5
    );
}

#[tokio::test]
async fn the_simulators_bad_deliveries_are_refused_and_retried() {
    let app = StripeApp::spawn().await;
    app.create_user("sg", "sg@example.com").await;
    let started = json(app.checkout("sg", "monthly").await).await;
    app.settle().await;
    let before = app.count_events().await;
    for fault in [Fault::StaleSignature, Fault::TamperBody, Fault::WrongSecret] {
        app.sim().set_fault(fault).await;
    }
    app.sim().set_fault(Fault::PauseDeliveries).await;
    app.sim()
        .pay_checkout(started["session_id"].as_str().unwrap(), TestCard::Visa)
        .await
        .unwrap();
    app.sim().set_fault(Fault::StaleSignature).await;
    app.sim().flush_deliveries();
    app.settle().await;
    assert_eq!(
        app.count_events().await,
        before,
        "nothing stored from refused deliveries"
    );
    assert_eq!(app.entitled("sg").await.0, 402);
    let refused = app
        .sim()
        .deliveries()
        .iter()
        .filter(|d| d.status == Some(400))
        .count();
    assert!(refused > 0);
    assert!(
        app.sim()
            .deliveries()
            .iter()
            .any(|d| d.status == Some(400) && d.attempt > 1),
        "a refused delivery is tried again: {:?}",
        app.sim().deliveries()
    );
}

#[tokio::test]
async fn rotated_secrets_each_verify() {
    let app = StripeApp::spawn_with(&[("STRIPE_WEBHOOK_SECRET", "whsec_old, whsec_new")]).await;
    for (i, secret) in ["whsec_old", "whsec_new"].into_iter().enumerate() {
        let body = event(
            &format!("evt_rot{i}"),
            "some.unknown.type",
            now(),
            json!({}),
        );
        let response = app
            .post_webhook(&body, Some(sign(secret, now(), &body)))
            .await;
        assert_eq!(response.status().as_u16(), 200, "{secret}");
    }
    assert_eq!(app.count_events().await, 2);
}

#[tokio::test]
async fn unknown_types_and_unreadable_bodies_are_recorded_never_refused() {
    let app = StripeApp::spawn().await;
    let unknown = event(
        "evt_unknown",
        "radar.early_fraud_warning.created",
        now(),
        json!({"id": "issfr_1"}),
    );
    let response = app
        .post_webhook(&unknown, Some(sign(WEBHOOK_SECRET, now(), &unknown)))
        .await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        app.event_state("evt_unknown").await.as_deref(),
        Some("ignored")
    );
    let garbage = "{\"this is\": \"not an event\"}";
    let response = app
        .post_webhook(garbage, Some(sign(WEBHOOK_SECRET, now(), garbage)))
        .await;
    assert_eq!(
        response.status().as_u16(),
        200,
        "a validly signed body is never answered 400"
    );
    assert_eq!(app.count_events().await, 2);
    // A known type whose object no longer parses (API drift) is re-fetched instead.
    let sub = app.subscribed("dr", "monthly", TestCard::Visa).await;
    let drifted = event(
        "evt_drift",
        "customer.subscription.updated",
        now() + 100,
        json!({"id": sub, "object": "subscription", "status": {"new": "shape"}}),
    );
    let response = app
        .post_webhook(&drifted, Some(sign(WEBHOOK_SECRET, now(), &drifted)))
        .await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        app.event_state("evt_drift").await.as_deref(),
        Some("applied")
    );
}

#[tokio::test]
async fn a_duplicate_event_answers_200_and_changes_nothing() {
    let app = StripeApp::spawn().await;
    let body = event("evt_dup", "ping", now(), json!({}));
    let first = app
        .post_webhook(&body, Some(sign(WEBHOOK_SECRET, now(), &body)))
        .await;
    assert_eq!(first.status().as_u16(), 200);
    let second = app
        .post_webhook(&body, Some(sign(WEBHOOK_SECRET, now(), &body)))
        .await;
    assert_eq!(second.status().as_u16(), 200);
    assert_eq!(json(second).await["duplicate"], true);
    assert_eq!(app.count_events().await, 1);
}

#[tokio::test]
async fn bodies_over_one_mib_are_413() {
    let app = StripeApp::spawn().await;
    let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(1024 * 1024));
    let response = app
        .post_webhook(&body, Some(sign(WEBHOOK_SECRET, now(), &body)))
        .await;
    assert_eq!(response.status().as_u16(), 413);
    assert_eq!(app.count_events().await, 0);
}

#[tokio::test]
async fn an_event_of_the_other_mode_is_recorded_and_flagged_not_applied() {
    let app = StripeApp::spawn().await;
    let sub = app.subscribed("lm", "monthly", TestCard::Visa).await;
    let mut object = app.sim().subscription(&sub).unwrap();
    object["status"] = json!("canceled");
    let mut live: serde_json::Value = serde_json::from_str(&event(
        "evt_live",
        "customer.subscription.deleted",
        now() + 1000,
        object,
    ))
    .unwrap();
    live["livemode"] = json!(true);
    let body = live.to_string();
    let response = app
        .post_webhook(&body, Some(sign(WEBHOOK_SECRET, now(), &body)))
        .await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        app.event_state("evt_live").await.as_deref(),
        Some("livemode_mismatch")
    );
    assert_eq!(app.entitled("lm").await.0, 200, "not applied");
}

#[tokio::test]
async fn an_older_subscription_event_is_skipped_and_an_equal_one_refetches() {
    let app = StripeApp::spawn().await;
    let sub = app.subscribed("oo", "monthly", TestCard::Visa).await;
    let truth = app.sim().subscription(&sub).unwrap();
    let watermark: i64 = sqlx::query_scalar("SELECT watermark FROM subscriptions WHERE id = $1")
        .bind(&sub)
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    // Older than what was applied: a stale "canceled" must not win.
    let mut stale = truth.clone();
    stale["status"] = json!("canceled");
    let body = event(
        "evt_old",
        "customer.subscription.updated",
        watermark - 5,
        stale.clone(),
    );
    app.post_webhook(&body, Some(sign(WEBHOOK_SECRET, now(), &body)))
        .await;
    assert_eq!(app.event_state("evt_old").await.as_deref(), Some("skipped"));
    assert_eq!(app.entitled("oo").await.0, 200);
    // Same second as the last applied: its payload is not trusted; Stripe's truth (active) is fetched.
    let body = event(
        "evt_same",
        "customer.subscription.updated",
        watermark,
        stale,
    );
    app.post_webhook(&body, Some(sign(WEBHOOK_SECRET, now(), &body)))
        .await;
    assert_eq!(
        app.event_state("evt_same").await.as_deref(),
        Some("applied")
    );
    assert_eq!(
        app.entitled("oo").await.0,
        200,
        "re-fetched truth is active"
    );
}

#[tokio::test]
async fn every_event_delivered_twice_ends_in_stripes_state() {
    let app = StripeApp::spawn().await;
    app.sim().set_fault(Fault::DuplicateDeliveries).await;
    let sub = app.subscribed("d2", "monthly", TestCard::Visa).await;
    app.sim().cancel_at_period_end(&sub, true).await.unwrap();
    app.settle().await;
    let status = json(app.dev_status("d2").await).await;
    assert_eq!(status["entitlement"]["status"], "active");
    assert_eq!(status["entitlement"]["cancel_at_period_end"], true);
    let duplicates = app
        .state
        .counters
        .events_duplicate
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(duplicates >= 7, "{duplicates}");
}

#[tokio::test]
async fn a_journey_delivered_in_reverse_order_ends_in_stripes_state() {
    let app = StripeApp::spawn().await;
    app.sim().set_fault(Fault::ReverseNextBatch).await;
    let sub = app.subscribed("rv", "weekly", TestCard::Visa).await;
    assert_eq!(app.entitled("rv").await.0, 200);
    app.sim().set_fault(Fault::ReverseNextBatch).await;
    app.sim()
        .pause_collection(&sub, Some("keep_as_draft"))
        .await
        .unwrap();
    app.settle().await;
    assert_eq!(app.entitled("rv").await.1["reason"], "paused");
}

#[tokio::test]
async fn sixty_four_concurrent_deliveries_for_one_subscription_end_in_stripes_final_state() {
    let app = StripeApp::spawn().await;
    let sub = app.subscribed("cc64", "monthly", TestCard::Visa).await;
    app.sim()
        .set_fault(Fault::ConcurrentCopies { copies: 64 })
        .await;
    app.sim().cancel_at_period_end(&sub, true).await.unwrap();
    app.sim()
        .pause_collection(&sub, Some("void"))
        .await
        .unwrap();
    app.settle().await;
    let truth = app.sim().subscription(&sub).unwrap();
    let status = json(app.dev_status("cc64").await).await;
    assert_eq!(status["entitlement"]["stripe_status"], truth["status"]);
    assert_eq!(
        status["entitlement"]["cancel_at_period_end"],
        truth["cancel_at_period_end"]
    );
    assert_eq!(
        status["entitlement"]["pause_active"],
        !truth["pause_collection"].is_null()
    );
    assert_eq!(status["entitlement"]["pause_active"], true);
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM subscriptions")
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn events_for_an_unknown_customer_are_kept_and_applied_once_it_is_linked() {
    let app = StripeApp::spawn().await;
    // The owner pays before this service knows them (another instance created the session, say).
    app.create_user("late", "late@example.com").await;
    let started = json(app.checkout("late", "monthly").await).await;
    sqlx::query("UPDATE users SET stripe_customer_id = NULL WHERE id = 'late'")
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM users WHERE id = 'late'")
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    let session = started["session_id"].as_str().unwrap().to_owned();
    app.sim()
        .pay_checkout(&session, TestCard::Visa)
        .await
        .unwrap();
    app.settle().await;
    let unmatched: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM stripe_events WHERE state = 'unmatched'")
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
    assert!(unmatched >= 2, "{unmatched}");
    // The user appears: the events that named them are applied. The app's own worker is woken
    // too and may hold some of them meanwhile, so wait for the queue to drain.
    app.create_user("late", "late@example.com").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let left = loop {
        msr_billing::billing::worker::run_due(&app.state)
            .await
            .unwrap();
        let left: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM stripe_events WHERE state IN ('unmatched', 'pending', 'failed')",
        )
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
        if left == 0 || std::time::Instant::now() > deadline {
            break left;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(left, 0, "every unmatched event was applied after the link");
    assert_eq!(app.entitled("late").await.0, 200);
}

#[tokio::test]
async fn stripe_down_during_a_refetch_leaves_the_event_failed_and_the_worker_applies_it_later() {
    let app = StripeApp::spawn().await;
    let sub = app.subscribed("sd", "monthly", TestCard::Visa).await;
    app.sim()
        .set_fault(Fault::ApiErrors {
            count: 1000,
            path_prefix: Some("/v1/subscriptions".into()),
        })
        .await;
    let watermark: i64 = sqlx::query_scalar("SELECT watermark FROM subscriptions WHERE id = $1")
        .bind(&sub)
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    let invoice = json!({"id": "in_x", "object": "invoice", "customer": app.sim().subscription(&sub).unwrap()["customer"],
        "parent": {"type": "subscription_details", "subscription_details": {"subscription": sub}}});
    let body = event("evt_inv", "invoice.paid", watermark + 1, invoice);
    let response = app
        .post_webhook(&body, Some(sign(WEBHOOK_SECRET, now(), &body)))
        .await;
    assert_eq!(response.status().as_u16(), 200, "ours to retry");
    assert_eq!(app.event_state("evt_inv").await.as_deref(), Some("failed"));
    app.sim().clear_faults().await;
    sqlx::query("UPDATE stripe_events SET next_attempt_at = 0 WHERE id = 'evt_inv'")
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    msr_billing::billing::worker::run_due(&app.state)
        .await
        .unwrap();
    assert_eq!(app.event_state("evt_inv").await.as_deref(), Some("applied"));
}

#[tokio::test]
async fn old_event_payloads_are_reduced_to_id_type_and_outcome() {
    let app = StripeApp::spawn_with(&[("MSR_EVENT_RETENTION", "1h")]).await;
    app.subscribed("ret", "monthly", TestCard::Visa).await;
    let total = app.count_events().await;
    sqlx::query("UPDATE stripe_events SET received_at = received_at - 7200")
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    let reduced = msr_billing::billing::worker::reduce_old_events(&app.state)
        .await
        .unwrap();
    assert_eq!(reduced as i64, total);
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM stripe_events WHERE payload <> '' OR customer_id IS NOT NULL OR user_id IS NOT NULL")
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
    let kept: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM stripe_events WHERE state = 'applied' AND type <> ''",
    )
    .fetch_one(&app.state.db.pool)
    .await
    .unwrap();
    assert!(kept > 0, "id, type and outcome stay");
    assert_eq!(
        app.entitled("ret").await.0,
        200,
        "the entitlement does not depend on old payloads"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_forged_webhooks_is_refused_and_stores_nothing_while_real_ones_are_accepted() {
    let app = StripeApp::spawn().await;
    app.create_user("burst", "burst@example.com").await;
    let started = json(app.checkout("burst", "monthly").await).await;
    let body = event(
        "evt_forged",
        "customer.subscription.deleted",
        now() + 10_000,
        json!({"id": "sub_x", "object": "subscription"}),
    );
    let forged = sign("whsec_attacker", now(), &body);
    let client = app.client.clone();
    let url = format!("{}/billing/webhook", app.address);
    let started_at = std::time::Instant::now();
    let burst = tokio::spawn(async move {
        let mut refused = 0;
        for chunk in 0..40 {
            let calls = (0..250).map(|i| {
                let b = body.replace("evt_forged", &format!("evt_forged_{chunk}_{i}"));
                client
                    .post(&url)
                    .header("Stripe-Signature", &forged)
                    .body(b)
                    .send()
            });
            for r in futures::future::join_all(calls).await {
                if r.map(|r| r.status().as_u16() == 400).unwrap_or(false) {
                    refused += 1;
                }
            }
        }
        refused
    });
    // Meanwhile the owner pays and Stripe's real events come in.
    app.sim()
        .pay_checkout(started["session_id"].as_str().unwrap(), TestCard::Visa)
        .await
        .unwrap();
    app.settle().await;
    let refused = burst.await.unwrap();
    assert_eq!(refused, 10_000, "every forged webhook refused");
    eprintln!(
        "10,000 forged webhooks refused in {:?}",
        started_at.elapsed()
    );
    assert_eq!(
        app.entitled("burst").await.0,
        200,
        "the real ones were accepted and applied"
    );
    let stored: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM stripe_events WHERE id LIKE 'evt_forged%'")
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
    assert_eq!(stored, 0, "nothing forged was stored");
}

#[tokio::test]
async fn a_burst_for_many_subscriptions_is_applied_in_batches_and_ends_in_the_newest_state() {
    let app = StripeApp::spawn().await;
    let mut subs = Vec::new();
    for i in 0..6 {
        let user = format!("burst{i}");
        let sub = app.subscribed(&user, "monthly", TestCard::Visa).await;
        let truth = app.sim().subscription(&sub).unwrap();
        let watermark: i64 =
            sqlx::query_scalar("SELECT watermark FROM subscriptions WHERE id = $1")
                .bind(&sub)
                .fetch_one(&app.state.db.pool)
                .await
                .unwrap();
        subs.push((user, sub, truth, watermark));
    }
    let batched_before = app
        .state
        .counters
        .events_batched
        .load(std::sync::atomic::Ordering::Relaxed);
    // For each subscription: a stale "canceled", a newer "past_due" and a newest "active, ends at
    // the period end", each delivered twice, all at once; plus one for a customer nobody has.
    let mut bodies = Vec::new();
    for (i, (_, _, truth, w)) in subs.iter().enumerate() {
        let mut stale = truth.clone();
        stale["status"] = json!("canceled");
        let mut newer = truth.clone();
        newer["status"] = json!("past_due");
        let mut newest = truth.clone();
        newest["cancel_at_period_end"] = json!(true);
        for (n, (created, object)) in [(w - 1, stale), (w + 1, newer), (w + 2, newest)]
            .into_iter()
            .enumerate()
        {
            let body = event(
                &format!("evt_burst_{i}_{n}"),
                "customer.subscription.updated",
                created,
                object,
            );
            bodies.push(body.clone());
            bodies.push(body);
        }
    }
    let mut orphan = subs[0].2.clone();
    orphan["id"] = json!("sub_burst_orphan");
    orphan["customer"] = json!("cus_burst_nobody");
    orphan["metadata"] = json!({});
    bodies.push(event(
        "evt_burst_orphan",
        "customer.subscription.updated",
        now(),
        orphan,
    ));
    let posts = bodies.iter().map(|body| {
        let app = &app;
        async move {
            app.post_webhook(body, Some(sign(WEBHOOK_SECRET, now(), body)))
                .await
                .status()
                .as_u16()
        }
    });
    let codes = futures::future::join_all(posts).await;
    assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
    for (i, (user, sub, _, w)) in subs.iter().enumerate() {
        assert_eq!(
            app.event_state(&format!("evt_burst_{i}_0"))
                .await
                .as_deref(),
            Some("skipped")
        );
        assert_eq!(
            app.event_state(&format!("evt_burst_{i}_2"))
                .await
                .as_deref(),
            Some("applied")
        );
        let stored: (String, i64, i64) = sqlx::query_as(
            "SELECT stripe_status, cancel_at_period_end, watermark FROM subscriptions WHERE id = $1",
        )
        .bind(sub)
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
        assert_eq!(stored, ("active".to_owned(), 1, w + 2), "{user}");
        let status = json(app.dev_status(user).await).await;
        assert_eq!(status["entitlement"]["status"], "active", "{user}");
        assert_eq!(
            status["entitlement"]["cancel_at_period_end"], true,
            "{user}"
        );
        let (code, answer) = app.entitled(user).await;
        assert_eq!(code, 200, "{user}: {answer}");
    }
    assert_eq!(
        app.event_state("evt_burst_orphan").await.as_deref(),
        Some("unmatched")
    );
    let batched = app
        .state
        .counters
        .events_batched
        .load(std::sync::atomic::Ordering::Relaxed)
        - batched_before;
    assert!(
        batched >= 6,
        "the burst went through the batch path: {batched} events batched"
    );
}
