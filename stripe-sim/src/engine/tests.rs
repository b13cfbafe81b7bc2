//! Engine transitions without HTTP.
use super::*;

pub(crate) fn state() -> State {
    State::new(
        Settings {
            public_url: "http://sim/".into(),
            retry_delays: vec![86_400, 3 * 86_400, 5 * 86_400],
            after_retries: AfterRetries::Cancel,
            finalize_delay: 3600,
            incomplete_expiry: 23 * 3600,
            checkout_expiry: 24 * 3600,
            webhook_endpoints: 0,
        },
        &PlanSeed::defaults(),
    )
}

#[test]
fn add_interval_uses_calendar_months() {
    // 2026-01-31 + 1 month clamps to 2026-02-28.
    let jan31 = 1_769_817_600;
    let feb28 = 1_772_236_800;
    assert_eq!(billing_add_interval(jan31, "month"), feb28);
    assert_eq!(billing_add_interval(jan31, "week"), jan31 + 7 * 86_400);
}

fn billing_add_interval(t: i64, i: &str) -> i64 {
    subscriptions::add_interval(t, i, 1)
}

fn types_since(st: &State, from: usize) -> Vec<String> {
    st.events[from..]
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect()
}

fn checkout(st: &mut State, trial: Option<i64>, card: Option<TestCard>) -> (String, String) {
    let cus = st
        .create_customer(NewCustomer {
            email: Some("a@b.c".into()),
            ..Default::default()
        })
        .unwrap();
    let cs = st
        .create_checkout(NewCheckout {
            customer: Some(cus.clone()),
            line_items: vec![NewLineItem::price("price_msr_weekly", 1)],
            trial_period_days: trial,
            success_url: Some("http://app/ok?s={CHECKOUT_SESSION_ID}".into()),
            payment_method_collection: card.is_none().then(|| "if_required".to_string()),
            missing_payment_method: card.is_none().then(|| "pause".to_string()),
            ..Default::default()
        })
        .unwrap();
    match st.complete_checkout(&cs, card).unwrap() {
        CheckoutOutcome::Completed {
            subscription,
            redirect,
            ..
        } => {
            assert_eq!(redirect.unwrap(), format!("http://app/ok?s={cs}"));
            (cus, subscription)
        }
        CheckoutOutcome::RequiresAction { subscription } => (cus, subscription),
    }
}

#[test]
fn paying_checkout_activates_and_emits_stripe_sequence() {
    let mut st = state();
    let start = st.events.len() + 1; // after customer.created
    let (_, sub) = checkout(&mut st, None, Some(TestCard::Visa));
    assert_eq!(
        types_since(&st, start),
        [
            "customer.subscription.created",
            "invoice.created",
            "invoice.finalized",
            "invoice.paid",
            "invoice.payment_succeeded",
            "customer.subscription.updated",
            "checkout.session.completed"
        ]
    );
    assert_eq!(st.subscriptions[&sub].status, "active");
    let created = &st.events[start]["data"]["object"];
    assert_eq!(created["status"], "incomplete");
}

#[test]
fn renewal_is_drafted_at_period_end_and_charged_an_hour_later() {
    let mut st = state();
    let (_, sub) = checkout(&mut st, None, Some(TestCard::Visa));
    let end = st.subscriptions[&sub].period_end();
    let from = st.events.len();
    st.advance_to(end);
    assert_eq!(
        types_since(&st, from),
        ["invoice.created", "customer.subscription.updated"]
    );
    let upd = st.events.last().unwrap();
    assert_eq!(
        upd["data"]["previous_attributes"]["items"]["data"][0]["current_period_end"],
        end
    );
    st.advance(3600);
    assert_eq!(
        types_since(&st, from)[2..],
        [
            "invoice.finalized",
            "invoice.paid",
            "invoice.payment_succeeded"
        ]
    );
    assert_eq!(st.subscriptions[&sub].period_start(), end);
}

#[test]
fn failed_renewal_goes_past_due_then_recovers_with_a_new_card() {
    let mut st = state();
    let (cus, sub) = checkout(&mut st, None, Some(TestCard::Visa));
    st.fail_next_renewal(&sub).unwrap();
    let at = st.next_renewal_of(&sub).unwrap();
    st.advance_to(at);
    assert_eq!(st.subscriptions[&sub].status, "past_due");
    let inv = st.subscriptions[&sub].latest_invoice.clone().unwrap();
    assert_eq!(st.invoices[&inv].next_payment_attempt, Some(at + 86_400));
    // The card is fine again (forced failure is one-shot): the day-1 retry pays.
    st.advance(86_400);
    assert_eq!(st.subscriptions[&sub].status, "active");
    assert_eq!(st.invoices[&inv].status, "paid");
    // Now a card that always fails; updating the card recovers at once.
    st.attach_card(&cus, TestCard::ChargeCustomerFail).unwrap();
    let at = st.next_renewal_of(&sub).unwrap();
    st.advance_to(at);
    assert_eq!(st.subscriptions[&sub].status, "past_due");
    st.attach_card(&cus, TestCard::Visa).unwrap();
    assert_eq!(st.subscriptions[&sub].status, "active");
}

#[test]
fn retries_running_out_cancels_the_subscription() {
    let mut st = state();
    let (cus, sub) = checkout(&mut st, None, Some(TestCard::Visa));
    st.attach_card(&cus, TestCard::ChargeCustomerFail).unwrap();
    let at = st.next_renewal_of(&sub).unwrap();
    st.advance_to(at + 5 * 86_400);
    assert_eq!(st.subscriptions[&sub].status, "canceled");
    let inv = st.subscriptions[&sub].latest_invoice.clone().unwrap();
    assert_eq!(st.invoices[&inv].attempt_count, 4);
    assert_eq!(
        st.events.last().unwrap()["type"],
        "customer.subscription.deleted"
    );
}

#[test]
fn trial_without_card_pauses_and_resume_bills() {
    let mut st = state();
    let (cus, sub) = checkout(&mut st, Some(7), None);
    assert_eq!(st.subscriptions[&sub].status, "trialing");
    st.advance(7 * 86_400);
    assert_eq!(st.subscriptions[&sub].status, "paused");
    assert_eq!(
        st.events.last().unwrap()["type"],
        "customer.subscription.paused"
    );
    st.attach_card(&cus, TestCard::Visa).unwrap();
    st.resume_subscription(&sub).unwrap();
    assert_eq!(st.subscriptions[&sub].status, "active");
    let inv = st.subscriptions[&sub].latest_invoice.clone().unwrap();
    assert_eq!(st.invoices[&inv].status, "paid");
}

#[test]
fn cancel_at_period_end_cancels_without_renewing() {
    let mut st = state();
    let (_, sub) = checkout(&mut st, None, Some(TestCard::Visa));
    st.update_subscription(
        &sub,
        SubscriptionUpdate {
            cancel_at_period_end: Some(true),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(st.subscriptions[&sub].status, "active");
    let invoices = st.invoices.len();
    st.advance(8 * 86_400);
    assert_eq!(st.subscriptions[&sub].status, "canceled");
    assert_eq!(st.invoices.len(), invoices);
}

#[test]
fn authentication_required_leaves_incomplete_then_expires() {
    let mut st = state();
    let (_, sub) = checkout(&mut st, None, Some(TestCard::AuthenticationRequired));
    assert_eq!(st.subscriptions[&sub].status, "incomplete");
    assert_eq!(
        st.events.last().unwrap()["type"],
        "invoice.payment_action_required"
    );
    st.advance(23 * 3600);
    assert_eq!(st.subscriptions[&sub].status, "incomplete_expired");
}

#[test]
fn pause_collection_voids_renewals_and_keeps_status() {
    let mut st = state();
    let (_, sub) = checkout(&mut st, None, Some(TestCard::Visa));
    st.update_subscription(
        &sub,
        SubscriptionUpdate {
            pause_collection: Some(Some(("void".into(), None))),
            ..Default::default()
        },
    )
    .unwrap();
    let at = st.next_renewal_of(&sub).unwrap();
    st.advance_to(at);
    assert_eq!(st.subscriptions[&sub].status, "active");
    let inv = st.subscriptions[&sub].latest_invoice.clone().unwrap();
    assert_eq!(st.invoices[&inv].status, "void");
}

#[test]
fn schedule_phases_chain_their_dates_and_the_last_one_defaults_to_one_interval() {
    let st = state();
    let phase = |price: &str, iterations: Option<i64>| NewPhase {
        items: vec![(price.to_string(), 1)],
        iterations,
        ..NewPhase::default()
    };
    let t0 = 1_799_971_200; // 2027-01-15
    let phases = st
        .resolve_phases(
            t0,
            &[
                phase("price_msr_weekly", Some(2)),
                phase("price_msr_monthly", None),
            ],
            None,
        )
        .unwrap();
    assert_eq!(phases[0].end_date, t0 + 14 * 86_400);
    assert_eq!(phases[1].start_date, phases[0].end_date);
    // 2027-01-29 + one calendar month = 2027-02-28.
    assert_eq!(phases[1].end_date, t0 + 44 * 86_400);
    let err = st
        .resolve_phases(
            t0,
            &[
                phase("price_msr_weekly", None),
                phase("price_msr_monthly", None),
            ],
            None,
        )
        .unwrap_err();
    assert_eq!(err.param.as_deref(), Some("phases[0][end_date]"));
}

#[test]
fn inline_prices_of_a_payment_session_emit_no_catalogue_events() {
    let mut st = state();
    let before = st.events.len();
    let id = st
        .create_checkout(NewCheckout {
            mode: CheckoutMode::Payment,
            line_items: vec![NewLineItem {
                price_data: Some(NewPriceData {
                    currency: "usd".into(),
                    unit_amount: 700,
                    product_name: Some("Toll pass".into()),
                    ..NewPriceData::default()
                }),
                quantity: 2,
                ..NewLineItem::default()
            }],
            ..NewCheckout::default()
        })
        .unwrap();
    assert_eq!(st.events.len(), before);
    assert_eq!(st.render_checkout(&id)["amount_total"], 1400);
    let outcome = st.complete_checkout(&id, Some(TestCard::Visa)).unwrap();
    let CheckoutOutcome::Completed { payment_intent, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(payment_intent.unwrap().starts_with("pi_"));
    assert_eq!(types_since(&st, before), ["checkout.session.completed"]);
}
