"""Points Stripe's official Python library at the simulator named by STRIPE_SIM_BASE."""

import os
import uuid

import pytest
import stripe


@pytest.fixture(autouse=True, scope="session")
def simulator():
    base = os.environ.get("STRIPE_SIM_BASE")
    if not base:
        pytest.skip("STRIPE_SIM_BASE is not set (run through cargo test -p msr-stripe-sim)")
    # The library appends "/v1/..." itself.
    stripe.api_base = base.rstrip("/")
    stripe.api_key = "sk_test_official_library_suite"
    # Fail fast: the simulator answers at once, retries would hide errors.
    stripe.max_network_retries = 0
    return base


@pytest.fixture
def tag():
    """A unique marker so tests sharing one simulator can find their own objects."""
    return uuid.uuid4().hex[:12]


@pytest.fixture
def monthly_prices(tag):
    """A 10.00 and a 30.00 USD monthly price of a fresh product."""
    product = stripe.Product.create(name=f"Plan {tag}")
    basic = stripe.Price.create(
        product=product.id,
        unit_amount=1000,
        currency="usd",
        recurring={"interval": "month"},
        lookup_key=f"basic_{tag}",
    )
    pro = stripe.Price.create(
        product_data={"name": f"Pro {tag}"},
        unit_amount=3000,
        currency="usd",
        recurring={"interval": "month"},
        lookup_key=f"pro_{tag}",
    )
    return basic, pro
