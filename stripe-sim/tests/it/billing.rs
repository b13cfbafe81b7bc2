//! Billing journeys as an integration drives them with async-stripe: test clocks,
//! payment methods, subscriptions created through the API, prorations to the cent,
//! customer balance, retries, 3-D Secure, trials.

use stripe_billing::invoice::{ListInvoice, RetrieveInvoice};
use stripe_billing::subscription::{
    CreateSubscription, CreateSubscriptionItems, CreateSubscriptionTrialSettings,
    CreateSubscriptionTrialSettingsEndBehavior,
    CreateSubscriptionTrialSettingsEndBehaviorMissingPaymentMethod, RetrieveSubscription,
    UpdateSubscription, UpdateSubscriptionItems, UpdateSubscriptionProrationBehavior,
};
use stripe_billing::test_helpers_test_clock::{
    AdvanceTestHelpersTestClock, CreateTestHelpersTestClock, DeleteTestHelpersTestClock,
    RetrieveTestHelpersTestClock,
};
use stripe_core::customer::{
    CreateCustomer, RetrieveCustomer, UpdateCustomer, UpdateCustomerInvoiceSettings,
};
use stripe_payment::payment_method::AttachPaymentMethod;
use stripe_product::price::{
    CreatePrice, CreatePriceProductData, CreatePriceRecurring, CreatePriceRecurringInterval,
};
use stripe_shared::{Invoice, Subscription};

use crate::helpers::*;

/// 2027-01-15 00:00 UTC: a fixed start makes calendar months predictable.
const T0: i64 = 1_799_971_200;
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

async fn monthly_price(c: &stripe::Client, cents: i64, name: &str) -> String {
    CreatePrice::new(stripe_types::Currency::USD)
        .unit_amount(cents)
        .recurring(CreatePriceRecurring::new(
            CreatePriceRecurringInterval::Month,
        ))
        .product_data(CreatePriceProductData::new(name))
        .send(c)
        .await
        .unwrap()
        .id
        .to_string()
}

async fn clock(c: &stripe::Client, at: i64) -> String {
    CreateTestHelpersTestClock::new(at)
        .name("journey")
        .send(c)
        .await
        .unwrap()
        .id
        .to_string()
}

/// Moves a test clock and waits for it to be `ready`, as Stripe's docs recommend.
async fn advance(c: &stripe::Client, clock: &str, to: i64) {
    AdvanceTestHelpersTestClock::new(clock, to)
        .send(c)
        .await
        .unwrap();
    for _ in 0..50 {
        let got = RetrieveTestHelpersTestClock::new(clock)
            .send(c)
            .await
            .unwrap();
        if got.status.as_str() == "ready" {
            assert_eq!(got.frozen_time, to);
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("test clock never became ready");
}

/// A customer on the clock whose default payment method is the given test card.
async fn customer(c: &stripe::Client, clock: Option<&str>, card: Option<&str>) -> String {
    let mut create = CreateCustomer::new().email("driver@example.com");
    if let Some(clock) = clock {
        create = create.test_clock(clock);
    }
    let cus = create.send(c).await.unwrap().id.to_string();
    if let Some(card) = card {
        let pm = AttachPaymentMethod::new(card)
            .customer(cus.as_str())
            .send(c)
            .await
            .unwrap();
        let mut settings = UpdateCustomerInvoiceSettings::new();
        settings.default_payment_method = Some(pm.id.to_string());
        UpdateCustomer::new(cus.as_str())
            .invoice_settings(settings)
            .send(c)
            .await
            .unwrap();
    }
    cus
}

async fn subscribe(c: &stripe::Client, cus: &str, price: &str) -> Subscription {
    let mut item = CreateSubscriptionItems::new();
    item.price = Some(price.to_string());
    CreateSubscription::new()
        .customer(cus)
        .items(vec![item])
        .send(c)
        .await
        .unwrap()
}

async fn sub(c: &stripe::Client, id: &str) -> Subscription {
    RetrieveSubscription::new(id).send(c).await.unwrap()
}

async fn invoices(c: &stripe::Client, sub: &str) -> Vec<Invoice> {
    ListInvoice::new()
        .subscription(sub)
        .send(c)
        .await
        .unwrap()
        .data
}

fn period(s: &Subscription) -> (i64, i64) {
    let item = &s.items.data[0];
    (item.current_period_start, item.current_period_end)
}

/// Stripe's proration of `amount` for `remaining` of `length` seconds.
fn prorate(amount: i64, remaining: i64, length: i64) -> i64 {
    (2 * amount * remaining + length) / (2 * length)
}

async fn switch(c: &stripe::Client, s: &Subscription, price: &str) -> Subscription {
    let mut item = UpdateSubscriptionItems::new();
    item.id = Some(s.items.data[0].id.to_string());
    item.price = Some(price.to_string());
    UpdateSubscription::new(s.id.as_str())
        .items(vec![item])
        .proration_behavior(UpdateSubscriptionProrationBehavior::AlwaysInvoice)
        .send(c)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_monthly_renewal_on_a_test_clock_is_paid_and_stays_active() {
    let h = spawn().await;
    let c = client(&h);
    let price = monthly_price(&c, 1000, "Basic").await;
    let clock = clock(&c, T0).await;
    let cus = customer(&c, Some(&clock), Some("pm_card_visa")).await;
    let s = subscribe(&c, &cus, &price).await;
    assert_eq!(s.status.as_str(), "active");
    assert_eq!(period(&s), (T0, T0 + 31 * DAY));

    advance(&c, &clock, T0 + 31 * DAY + 2 * HOUR).await;
    let renewed = sub(&c, s.id.as_str()).await;
    assert_eq!(renewed.status.as_str(), "active");
    assert_eq!(period(&renewed), (T0 + 31 * DAY, T0 + 59 * DAY));
    let all = invoices(&c, s.id.as_str()).await;
    assert_eq!(all.len(), 2);
    let cycle = &all[0];
    assert_eq!(
        cycle.billing_reason.as_ref().unwrap().as_str(),
        "subscription_cycle"
    );
    assert_eq!(cycle.status.as_ref().unwrap().as_str(), "paid");
    assert_eq!(cycle.amount_paid, 1000);
    // Drafted at the period end, finalized an hour later.
    assert_eq!(cycle.created, T0 + 31 * DAY);
    assert_eq!(
        cycle.status_transitions.finalized_at,
        Some(T0 + 31 * DAY + HOUR)
    );
    // The simulator's own clock did not move.
    assert!(h.sim.now() < T0);
    let kinds = h.sim.event_types();
    assert!(kinds.contains(&"test_helpers.test_clock.advancing".to_string()));
    assert_eq!(kinds.last().unwrap(), "test_helpers.test_clock.ready");
}

#[tokio::test]
async fn a_card_that_starts_failing_makes_the_renewal_fail_then_retries_end_the_subscription() {
    let h = spawn().await;
    let c = client(&h);
    let price = monthly_price(&c, 1000, "Basic").await;
    let clock = clock(&c, T0).await;
    let cus = customer(&c, Some(&clock), Some("pm_card_visa")).await;
    let s = subscribe(&c, &cus, &price).await;
    let failing = AttachPaymentMethod::new("pm_card_chargeCustomerFail")
        .customer(cus.as_str())
        .send(&c)
        .await
        .unwrap();
    let mut settings = UpdateCustomerInvoiceSettings::new();
    settings.default_payment_method = Some(failing.id.to_string());
    UpdateCustomer::new(cus.as_str())
        .invoice_settings(settings)
        .send(&c)
        .await
        .unwrap();

    let end = T0 + 31 * DAY;
    advance(&c, &clock, end + 2 * HOUR).await;
    assert_eq!(sub(&c, s.id.as_str()).await.status.as_str(), "past_due");
    let renewal = invoices(&c, s.id.as_str()).await.remove(0);
    assert_eq!(renewal.status.as_ref().unwrap().as_str(), "open");
    assert_eq!(renewal.attempt_count, 1);
    assert_eq!(renewal.next_payment_attempt, Some(end + HOUR + DAY));

    advance(&c, &clock, end + 4 * DAY).await;
    let retried = RetrieveInvoice::new(renewal.id.as_ref().unwrap().as_str())
        .send(&c)
        .await
        .unwrap();
    assert_eq!(retried.attempt_count, 3);
    assert_eq!(sub(&c, s.id.as_str()).await.status.as_str(), "past_due");

    advance(&c, &clock, end + 7 * DAY).await;
    let ended = sub(&c, s.id.as_str()).await;
    assert_eq!(ended.status.as_str(), "canceled");
    let failed = h
        .sim
        .event_types()
        .iter()
        .filter(|t| *t == "invoice.payment_failed")
        .count();
    assert_eq!(failed, 4);
    assert_eq!(
        h.sim.event_types().last().unwrap(),
        "test_helpers.test_clock.ready"
    );
}

#[tokio::test]
async fn an_upgrade_mid_period_with_always_invoice_charges_only_the_difference() {
    let h = spawn().await;
    let c = client(&h);
    let basic = monthly_price(&c, 1000, "Basic").await;
    let pro = monthly_price(&c, 3000, "Pro").await;
    let clock = clock(&c, T0).await;
    let cus = customer(&c, Some(&clock), Some("pm_card_visa")).await;
    let s = subscribe(&c, &cus, &basic).await;
    let (start, end) = period(&s);

    let now = T0 + 10 * DAY + 7 * HOUR + 13;
    advance(&c, &clock, now).await;
    let upgraded = switch(&c, &s, &pro).await;
    assert_eq!(
        period(&upgraded),
        (start, end),
        "same interval: period kept"
    );

    let (remaining, length) = (end - now, end - start);
    let credit = -prorate(1000, remaining, length);
    let charge = prorate(3000, remaining, length);
    let inv = RetrieveInvoice::new(
        upgraded
            .latest_invoice
            .unwrap()
            .id()
            .as_ref()
            .unwrap()
            .as_str(),
    )
    .send(&c)
    .await
    .unwrap();
    assert_eq!(
        inv.billing_reason.as_ref().unwrap().as_str(),
        "subscription_update"
    );
    let mut lines: Vec<i64> = inv.lines.data.iter().map(|l| l.amount).collect();
    lines.sort_unstable();
    assert_eq!(lines, vec![credit, charge]);
    assert_eq!(inv.total, charge + credit);
    assert_eq!(inv.amount_paid, charge + credit);
    assert_eq!(inv.status.as_ref().unwrap().as_str(), "paid");
    // 1 789 187 of 2 678 400 seconds left: 30.00 × that = 20.04, 10.00 × that = 6.68.
    assert_eq!((charge, credit), (2004, -668));
}

#[tokio::test]
async fn a_downgrade_leaves_a_credit_that_the_next_invoice_uses() {
    let h = spawn().await;
    let c = client(&h);
    let basic = monthly_price(&c, 1000, "Basic").await;
    let pro = monthly_price(&c, 3000, "Pro").await;
    let clock = clock(&c, T0).await;
    let cus = customer(&c, Some(&clock), Some("pm_card_visa")).await;
    let s = subscribe(&c, &cus, &pro).await;
    let (start, end) = period(&s);

    let now = T0 + 10 * DAY;
    advance(&c, &clock, now).await;
    let downgraded = switch(&c, &s, &basic).await;
    let (remaining, length) = (end - now, end - start);
    let total = prorate(1000, remaining, length) - prorate(3000, remaining, length);
    assert_eq!(total, -1355);
    let inv = RetrieveInvoice::new(
        downgraded
            .latest_invoice
            .unwrap()
            .id()
            .as_ref()
            .unwrap()
            .as_str(),
    )
    .send(&c)
    .await
    .unwrap();
    assert_eq!(inv.total, total);
    assert_eq!(inv.amount_due, 0);
    assert_eq!(inv.ending_balance, Some(total));
    let balance = RetrieveCustomer::new(cus.as_str()).send(&c).await.unwrap();
    let stripe_core::customer::RetrieveCustomerReturned::Customer(balance) = balance else {
        panic!("customer deleted")
    };
    assert_eq!(balance.balance, Some(total));

    advance(&c, &clock, end + 2 * HOUR).await;
    let renewal = invoices(&c, s.id.as_str()).await.remove(0);
    assert_eq!(
        renewal.billing_reason.as_ref().unwrap().as_str(),
        "subscription_cycle"
    );
    assert_eq!(renewal.total, 1000);
    assert_eq!(renewal.starting_balance, total);
    assert_eq!(renewal.amount_due, 0);
    assert_eq!(renewal.ending_balance, Some(total + 1000));
    assert_eq!(renewal.status.as_ref().unwrap().as_str(), "paid");
}

#[tokio::test]
async fn cancel_at_period_end_keeps_the_subscription_active_until_the_end() {
    let h = spawn().await;
    let c = client(&h);
    let price = monthly_price(&c, 1000, "Basic").await;
    let clock = clock(&c, T0).await;
    let cus = customer(&c, Some(&clock), Some("pm_card_visa")).await;
    let s = subscribe(&c, &cus, &price).await;
    let end = period(&s).1;
    let upd = UpdateSubscription::new(s.id.as_str())
        .cancel_at_period_end(true)
        .send(&c)
        .await
        .unwrap();
    assert_eq!(upd.cancel_at, Some(end));

    advance(&c, &clock, end - HOUR).await;
    assert_eq!(sub(&c, s.id.as_str()).await.status.as_str(), "active");
    advance(&c, &clock, end + HOUR).await;
    let ended = sub(&c, s.id.as_str()).await;
    assert_eq!(ended.status.as_str(), "canceled");
    assert_eq!(ended.ended_at, Some(end));
    assert_eq!(
        invoices(&c, s.id.as_str()).await.len(),
        1,
        "no renewal invoice"
    );
}

#[tokio::test]
async fn a_declined_card_is_refused_at_attach() {
    let h = spawn().await;
    let c = client(&h);
    let cus = customer(&c, None, None).await;
    for card in ["pm_card_chargeDeclined", "pm_card_visa_chargeDeclined"] {
        let err = AttachPaymentMethod::new(card)
            .customer(cus.as_str())
            .send(&c)
            .await
            .unwrap_err();
        let stripe::StripeError::Stripe(e, status) = err else {
            panic!("{err:?}")
        };
        assert_eq!(status, 402);
        assert_eq!(e.type_.as_str(), "card_error");
        assert_eq!(e.code.unwrap().as_str(), "card_declined");
    }
    assert!(
        !h.sim
            .event_types()
            .contains(&"payment_method.attached".to_string())
    );
}

#[tokio::test]
async fn a_three_d_secure_card_leaves_the_subscription_incomplete_until_it_expires_after_23_hours()
{
    let h = spawn().await;
    let c = client(&h);
    let price = monthly_price(&c, 1000, "Basic").await;
    let clock = clock(&c, T0).await;
    let cus = customer(&c, Some(&clock), Some("pm_card_threeDSecure2Required")).await;
    let s = subscribe(&c, &cus, &price).await;
    assert_eq!(s.status.as_str(), "incomplete");
    advance(&c, &clock, T0 + 22 * HOUR).await;
    assert_eq!(sub(&c, s.id.as_str()).await.status.as_str(), "incomplete");
    advance(&c, &clock, T0 + 23 * HOUR).await;
    assert_eq!(
        sub(&c, s.id.as_str()).await.status.as_str(),
        "incomplete_expired"
    );
    let first = invoices(&c, s.id.as_str()).await.remove(0);
    assert_eq!(first.status.as_ref().unwrap().as_str(), "void");
}

async fn trial(c: &stripe::Client, cus: &str, price: &str, missing: &str) -> Subscription {
    let mut item = CreateSubscriptionItems::new();
    item.price = Some(price.to_string());
    let mut end = CreateSubscriptionTrialSettingsEndBehavior::new();
    end.missing_payment_method = Some(match missing {
        "pause" => CreateSubscriptionTrialSettingsEndBehaviorMissingPaymentMethod::Pause,
        "cancel" => CreateSubscriptionTrialSettingsEndBehaviorMissingPaymentMethod::Cancel,
        _ => CreateSubscriptionTrialSettingsEndBehaviorMissingPaymentMethod::CreateInvoice,
    });
    CreateSubscription::new()
        .customer(cus)
        .items(vec![item])
        .trial_period_days(7u32)
        .trial_settings(CreateSubscriptionTrialSettings::new(end))
        .send(c)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_trial_converts_with_a_card_and_pauses_or_cancels_without_one() {
    let h = spawn().await;
    let c = client(&h);
    let price = monthly_price(&c, 1000, "Basic").await;
    let clock = clock(&c, T0).await;
    let with_card = customer(&c, Some(&clock), Some("pm_card_visa")).await;
    let paused_cus = customer(&c, Some(&clock), None).await;
    let canceled_cus = customer(&c, Some(&clock), None).await;
    let converts = trial(&c, &with_card, &price, "create_invoice").await;
    let pauses = trial(&c, &paused_cus, &price, "pause").await;
    let cancels = trial(&c, &canceled_cus, &price, "cancel").await;
    assert_eq!(converts.status.as_str(), "trialing");
    assert_eq!(converts.trial_end, Some(T0 + 7 * DAY));

    advance(&c, &clock, T0 + 4 * DAY + 1).await;
    let warned = h
        .sim
        .event_types()
        .iter()
        .filter(|t| *t == "customer.subscription.trial_will_end")
        .count();
    assert_eq!(warned, 3, "three days before the trial ends");

    advance(&c, &clock, T0 + 7 * DAY + 2 * HOUR).await;
    assert_eq!(
        sub(&c, converts.id.as_str()).await.status.as_str(),
        "active"
    );
    let paid = invoices(&c, converts.id.as_str()).await.remove(0);
    assert_eq!(paid.amount_paid, 1000);
    assert_eq!(sub(&c, pauses.id.as_str()).await.status.as_str(), "paused");
    assert_eq!(
        sub(&c, cancels.id.as_str()).await.status.as_str(),
        "canceled"
    );
}

#[tokio::test]
async fn test_clocks_keep_stripes_limits_and_deleting_one_deletes_its_customers() {
    let h = spawn().await;
    let c = client(&h);
    let price = monthly_price(&c, 1000, "Basic").await;
    let clock = clock(&c, T0).await;
    let cus = customer(&c, Some(&clock), Some("pm_card_visa")).await;
    subscribe(&c, &cus, &price).await;
    customer(&c, Some(&clock), None).await;
    customer(&c, Some(&clock), None).await;
    let fourth = CreateCustomer::new()
        .test_clock(clock.as_str())
        .send(&c)
        .await;
    assert!(matches!(fourth, Err(stripe::StripeError::Stripe(_, 400))));

    let too_far = AdvanceTestHelpersTestClock::new(clock.as_str(), T0 + 70 * DAY)
        .send(&c)
        .await;
    assert!(matches!(too_far, Err(stripe::StripeError::Stripe(_, 400))));
    advance(&c, &clock, T0 + 59 * DAY).await;

    DeleteTestHelpersTestClock::new(clock.as_str())
        .send(&c)
        .await
        .unwrap();
    let gone = RetrieveCustomer::new(cus.as_str()).send(&c).await.unwrap();
    assert!(matches!(
        gone,
        stripe_core::customer::RetrieveCustomerReturned::DeletedCustomer(_)
    ));
    assert!(
        h.sim
            .event_types()
            .contains(&"customer.deleted".to_string())
    );
}
