"""Parameters the current API does not take are refused exactly like Stripe (from the SDK's types)."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from sandbox.stripe.harness import StripeSandbox
from sandbox.stripe.params import validate

from .helpers import raw

CASES = [
    # (route, form body, refused parameter)
    (
        "/v1/subscription_schedules",
        "customer=cus_x&start_date=now&phases[0][items][0][price]=price_product_analytics_default"
        "&phases[0][iterations]=12",
        "phases[0][iterations]",
    ),
    ("/v1/invoiceitems", "customer=cus_x&price=price_posthog_credit", "price"),
    ("/v1/invoiceitems", "customer=cus_x&amount=100&currency=usd&unit_amount=5", "unit_amount"),
    ("/v1/customers", "email=a%40b.c&coupon=SAVE10", "coupon"),
    ("/v1/subscriptions", "customer=cus_x&coupon=SAVE10", "coupon"),
    (
        "/v1/prices",
        "currency=usd&product=prod_product_analytics&unit_amount=1&recurring[interval]=month"
        "&recurring[aggregate_usage]=sum",
        "recurring[aggregate_usage]",
    ),
    ("/v1/customers", "emial=a%40b.c", "emial"),
]


@pytest.mark.parametrize(("path", "body", "param"), CASES, ids=[c[2] for c in CASES])
def test_removed_and_unknown_params_refused(stripe_sandbox: StripeSandbox, path: str, body: str, param: str) -> None:
    r = raw(stripe_sandbox, "POST", path, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400
    assert r.json() == {
        "error": {
            "type": "invalid_request_error",
            "code": "parameter_unknown",
            "doc_url": "https://stripe.com/docs/error-codes#parameter-unknown",
            "message": f"Received unknown parameter: {param}",
            "param": param,
            "request_log_url": r.json()["error"]["request_log_url"],
        }
    }


def test_sdk_surfaces_unknown_param_as_invalid_request(stripe_sandbox: StripeSandbox) -> None:
    client = stripe_sandbox.client()
    params: Any = {"email": "x@example.com", "coupon": "SAVE10"}  # not in CustomerCreateParams any more
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.customers.create(params)
    assert exc.value.code == "parameter_unknown"
    assert exc.value.param == "coupon"


def test_validation_is_derived_from_sdk_types() -> None:
    # Accepted shapes come straight from stripe.params TypedDicts: nested lists, enums, ints.
    out = validate(
        "SubscriptionScheduleCreateParams",
        {
            "customer": "c",
            "end_behavior": "cancel",
            "phases": {"0": {"items": {"0": {"price": "p", "quantity": "2"}}, "duration": {"interval": "year"}}},
        },
    )
    assert out["phases"][0]["items"][0]["quantity"] == 2
    with pytest.raises(Exception, match="must be one of"):
        validate("SubscriptionScheduleCreateParams", {"end_behavior": "explode"})
    with pytest.raises(Exception, match="Invalid integer"):
        validate("InvoiceItemCreateParams", {"amount": "ten"})
    with pytest.raises(Exception, match="Missing required param: currency"):
        validate("PriceCreateParams", {"unit_amount": "5"})
