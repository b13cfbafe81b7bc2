"""Billing journeys driven with Stripe's official Python library against the simulator."""

import time

import pytest
import stripe

MONTH = 31 * 86400


def customer_with_card(tag, pm="pm_card_visa", **kwargs):
    customer = stripe.Customer.create(email=f"{tag}@example.com", metadata={"tag": tag}, **kwargs)
    card = stripe.PaymentMethod.attach(pm, customer=customer.id)
    stripe.Customer.modify(customer.id, invoice_settings={"default_payment_method": card.id})
    return customer, card


def wait_ready(clock_id):
    for _ in range(50):
        clock = stripe.test_helpers.TestClock.retrieve(clock_id)
        if clock.status == "ready":
            return clock
        time.sleep(0.1)
    raise AssertionError(f"test clock {clock_id} never became ready")


def advance(clock, to):
    advancing = stripe.test_helpers.TestClock.advance(clock.id, frozen_time=to)
    assert advancing.status in ("advancing", "ready")
    return wait_ready(clock.id)


def test_customers_are_listed_with_auto_paging(tag):
    created = {stripe.Customer.create(email=f"{tag}-{n}@example.com").id for n in range(5)}
    first_page = stripe.Customer.list(limit=2)
    assert len(first_page.data) == 2
    assert first_page.has_more
    seen = [c.id for c in stripe.Customer.list(limit=2).auto_paging_iter()]
    assert created <= set(seen)
    assert len(seen) == len(set(seen)), "auto-paging returned a customer twice"
    found = stripe.Customer.list(email=f"{tag}-3@example.com")
    assert [c.email for c in found.data] == [f"{tag}-3@example.com"]


def test_unknown_ids_and_live_keys_are_refused_as_stripe_does():
    with pytest.raises(stripe.InvalidRequestError) as missing:
        stripe.Customer.retrieve("cus_does_not_exist")
    assert missing.value.http_status == 404
    assert missing.value.code == "resource_missing"
    with pytest.raises(stripe.AuthenticationError):
        stripe.Customer.list(api_key="sk_live_not_here")


def test_a_card_is_attached_and_a_declined_card_is_refused(tag):
    customer = stripe.Customer.create(email=f"{tag}@example.com")
    card = stripe.PaymentMethod.attach("pm_card_visa", customer=customer.id)
    assert card.customer == customer.id
    assert card.card.last4 == "4242"
    from_token = stripe.PaymentMethod.create(type="card", card={"token": "tok_mastercard"})
    assert from_token.card.brand == "mastercard"
    stripe.PaymentMethod.attach(from_token.id, customer=customer.id)
    listed = stripe.PaymentMethod.list(customer=customer.id, type="card")
    assert {p.id for p in listed.data} == {card.id, from_token.id}

    with pytest.raises(stripe.CardError) as declined:
        stripe.PaymentMethod.attach("pm_card_chargeDeclined", customer=customer.id)
    assert declined.value.code == "card_declined"
    assert declined.value.http_status == 402

    stripe.PaymentMethod.detach(from_token.id)
    listed = stripe.PaymentMethod.list(customer=customer.id, type="card")
    assert [p.id for p in listed.data] == [card.id]


def test_a_subscription_is_created_upgraded_and_canceled(tag, monthly_prices):
    basic, pro = monthly_prices
    customer, _ = customer_with_card(tag)
    sub = stripe.Subscription.create(
        customer=customer.id, items=[{"price": basic.id}], metadata={"tag": tag}
    )
    assert sub.status == "active"
    assert sub["items"].data[0].current_period_end > sub["items"].data[0].current_period_start
    first = stripe.Invoice.retrieve(sub.latest_invoice)
    assert (first.status, first.amount_paid, first.billing_reason) == ("paid", 1000, "subscription_create")

    updated = stripe.Subscription.modify(
        sub.id,
        items=[{"id": sub["items"].data[0].id, "price": pro.id}],
        proration_behavior="always_invoice",
    )
    assert updated["items"].data[0].price.id == pro.id
    upgrade = stripe.Invoice.retrieve(updated.latest_invoice)
    assert upgrade.billing_reason == "subscription_update"
    assert upgrade.status == "paid"
    # Only the difference for the rest of the period: at most 30.00 - 10.00.
    assert 0 < upgrade.amount_paid <= 2000
    assert len(upgrade.lines.data) == 2

    at_end = stripe.Subscription.modify(sub.id, cancel_at_period_end=True)
    assert at_end.status == "active" and at_end.cancel_at_period_end
    canceled = stripe.Subscription.cancel(sub.id)
    assert canceled.status == "canceled"

    invoices = stripe.Invoice.list(customer=customer.id)
    assert [i.billing_reason for i in invoices.data] == ["subscription_update", "subscription_create"]
    listed = stripe.Subscription.list(customer=customer.id, status="all")
    assert [s.id for s in listed.data] == [sub.id]


def test_a_test_clock_renews_a_subscription_month_by_month(tag, monthly_prices):
    basic, _ = monthly_prices
    start = int(time.time())
    clock = stripe.test_helpers.TestClock.create(frozen_time=start, name=f"renewals {tag}")
    assert clock.status == "ready"
    customer, _ = customer_with_card(tag, test_clock=clock.id)
    sub = stripe.Subscription.create(customer=customer.id, items=[{"price": basic.id}])
    period_end = sub["items"].data[0].current_period_end

    # Stripe refuses to jump more than two periods at once.
    with pytest.raises(stripe.InvalidRequestError):
        stripe.test_helpers.TestClock.advance(clock.id, frozen_time=start + 5 * MONTH)

    clock = advance(clock, period_end + 2 * 3600)
    assert clock.frozen_time == period_end + 2 * 3600
    sub = stripe.Subscription.retrieve(sub.id)
    assert sub.status == "active"
    assert sub["items"].data[0].current_period_start == period_end
    paid = stripe.Invoice.list(customer=customer.id, status="paid")
    assert [i.billing_reason for i in paid.data] == ["subscription_cycle", "subscription_create"]

    types = {e.type for e in stripe.Event.list(type="test_helpers.test_clock.*", limit=100).auto_paging_iter()}
    assert {"test_helpers.test_clock.advancing", "test_helpers.test_clock.ready"} <= types

    stripe.test_helpers.TestClock.delete(clock.id)
    assert stripe.Customer.retrieve(customer.id)["deleted"] is True


def test_a_failing_card_ends_the_subscription_after_retries(tag, monthly_prices):
    basic, _ = monthly_prices
    clock = stripe.test_helpers.TestClock.create(frozen_time=int(time.time()))
    customer, _ = customer_with_card(tag, test_clock=clock.id)
    sub = stripe.Subscription.create(customer=customer.id, items=[{"price": basic.id}])
    failing = stripe.PaymentMethod.attach("pm_card_chargeCustomerFail", customer=customer.id)
    stripe.Customer.modify(customer.id, invoice_settings={"default_payment_method": failing.id})
    period_end = sub["items"].data[0].current_period_end

    advance(clock, period_end + 2 * 3600)
    assert stripe.Subscription.retrieve(sub.id).status == "past_due"
    renewal = stripe.Invoice.list(subscription=sub.id, limit=1).data[0]
    assert renewal.status == "open" and renewal.attempt_count == 1
    assert renewal.next_payment_attempt is not None

    advance(clock, period_end + 10 * 86400)
    ended = stripe.Subscription.retrieve(sub.id)
    assert ended.status == "canceled"
    types = [e.type for e in stripe.Event.list(types=["invoice.payment_failed"], limit=100).data
             if e.data.object["customer"] == customer.id]
    assert len(types) == 4


def test_a_three_d_secure_card_leaves_the_subscription_incomplete_until_it_expires(tag, monthly_prices):
    basic, _ = monthly_prices
    clock = stripe.test_helpers.TestClock.create(frozen_time=int(time.time()))
    customer, _ = customer_with_card(tag, pm="pm_card_threeDSecure2Required", test_clock=clock.id)
    sub = stripe.Subscription.create(customer=customer.id, items=[{"price": basic.id}])
    assert sub.status == "incomplete"
    advance(clock, clock.frozen_time + 24 * 3600)
    assert stripe.Subscription.retrieve(sub.id).status == "incomplete_expired"
    assert stripe.Invoice.retrieve(sub.latest_invoice).status == "void"


def test_a_trial_without_a_card_pauses(tag, monthly_prices):
    basic, _ = monthly_prices
    clock = stripe.test_helpers.TestClock.create(frozen_time=int(time.time()))
    customer = stripe.Customer.create(email=f"{tag}@example.com", test_clock=clock.id)
    sub = stripe.Subscription.create(
        customer=customer.id,
        items=[{"price": basic.id}],
        trial_period_days=7,
        trial_settings={"end_behavior": {"missing_payment_method": "pause"}},
    )
    assert sub.status == "trialing"
    advance(clock, sub.trial_end + 60)
    assert stripe.Subscription.retrieve(sub.id).status == "paused"
    will_end = [e for e in stripe.Event.list(type="customer.subscription.trial_will_end").data
                if e.data.object.id == sub.id]
    assert len(will_end) == 1


def test_invoice_items_and_manual_invoices(tag):
    customer, _ = customer_with_card(tag)
    stripe.InvoiceItem.create(customer=customer.id, amount=1234, currency="usd", description="Setup")
    invoice = stripe.Invoice.create(customer=customer.id, pending_invoice_items_behavior="include")
    assert (invoice.status, invoice.billing_reason, invoice.total) == ("draft", "manual", 1234)
    invoice = stripe.Invoice.finalize_invoice(invoice.id)
    assert invoice.status == "open"
    invoice = stripe.Invoice.pay(invoice.id)
    assert (invoice.status, invoice.amount_paid, invoice.amount_remaining) == ("paid", 1234, 0)

    other = stripe.Invoice.create(customer=customer.id)
    stripe.InvoiceItem.create(customer=customer.id, amount=500, currency="usd", invoice=other.id)
    other = stripe.Invoice.finalize_invoice(other.id)
    voided = stripe.Invoice.void_invoice(other.id)
    assert voided.status == "void"


def test_events_are_listed_filtered_and_paged(tag):
    stripe.Customer.create(email=f"{tag}@example.com")
    created = stripe.Event.list(type="customer.created", limit=3)
    assert created.data and all(e.type == "customer.created" for e in created.data)
    wildcard = stripe.Event.list(type="customer.*", limit=5)
    assert all(e.type.startswith("customer.") for e in wildcard.data)
    newest = created.data[0]
    assert stripe.Event.retrieve(newest.id).id == newest.id
    since = stripe.Event.list(created={"gte": newest.created}, limit=100)
    assert all(e.created >= newest.created for e in since.data)
    ids = [e.id for e in stripe.Event.list(limit=3).auto_paging_iter()]
    assert len(ids) == len(set(ids))


def test_payment_behaviors_and_pending_prorations(tag, monthly_prices):
    basic, pro = monthly_prices
    customer, _ = customer_with_card(tag, pm="pm_card_chargeCustomerFail")
    with pytest.raises(stripe.CardError):
        stripe.Subscription.create(
            customer=customer.id, items=[{"price": basic.id}], payment_behavior="error_if_incomplete"
        )
    assert stripe.Subscription.list(customer=customer.id, status="all").data == []

    waiting = stripe.Subscription.create(
        customer=customer.id, items=[{"price": basic.id}], payment_behavior="default_incomplete"
    )
    assert waiting.status == "incomplete"
    good = stripe.PaymentMethod.attach("pm_card_visa", customer=customer.id)
    paid = stripe.Invoice.pay(waiting.latest_invoice, payment_method=good.id)
    assert paid.status == "paid"
    assert stripe.Subscription.retrieve(waiting.id).status == "active"

    stripe.Subscription.modify(
        waiting.id,
        items=[{"id": waiting["items"].data[0].id, "price": pro.id}],
        proration_behavior="create_prorations",
    )
    pending = stripe.InvoiceItem.list(customer=customer.id, pending=True)
    amounts = sorted(i.amount for i in pending.data)
    assert len(amounts) == 2 and amounts[0] < 0 < amounts[1]
    assert all(i.proration for i in pending.data)
