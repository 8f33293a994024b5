"""Bespoke prices end to end against the Stripe sandbox: made once on an existing product, metered
on a `last` meter, graduated, `Custom - {date}`; refused with each mismatch listed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from domain.catalog_check import parse_tier_rows
from sandbox.stripe.harness import StripeSandbox
from tests.fixtures.app import auth

MATCHING = [{"up_to": 1_000_000, "unit_amount": "0"}, {"up_to": 2_000_000, "unit_amount": "0.00004"},
            {"up_to": "15,000,000", "unit_amount": "0.00003", "flat_amount": "10.00"},
            {"up_to": None, "unit_amount": "0.00001"}]
MISMATCHED = [{"up_to": 1_000_000, "unit_amount": "0"}, {"up_to": 2_000_000, "unit_amount": "0.00004"},
              {"up_to": 16_000_000, "unit_amount": "0.00003"}, {"up_to": "inf", "unit_amount": "0.00001"}]


def test_bespoke_price_end_to_end(catalog_app: Flask, users: dict[str, str],
                                  fresh_stripe_sandbox: StripeSandbox) -> None:
    client = catalog_app.test_client()
    body = {"product": "prod_group_analytics", "tiers": MATCHING, "metadata": {"customer": "cus_acme"}}
    made = client.post("/api/catalog/prices", json=body, headers=auth(users["operator"]))
    assert made.status_code == 201, made.get_json()
    answer = made.get_json()
    stripe = fresh_stripe_sandbox.client()
    price = stripe.v1.prices.retrieve(answer["price"], {"expand": ["tiers"]})
    assert price.product == "prod_group_analytics"  # an existing product, never a new one
    assert price.nickname == f"Custom - {datetime.now(UTC).date().isoformat()}" == answer["nickname"]
    assert price.billing_scheme == "tiered" and price.tiers_mode == "graduated" and price.type == "recurring"
    assert price.recurring.usage_type == "metered" and price.recurring.interval == "month"
    assert [t.up_to for t in price.tiers] == [1_000_000, 2_000_000, 15_000_000, None]
    # Per-unit amounts arrive in major units and are stored in minor units (cents).
    assert [str(t.unit_amount_decimal) for t in price.tiers] == ["0", "0.004", "0.003", "0.001"]
    assert price.tiers[2].flat_amount == 1000
    assert price.metadata.customer == "cus_acme" and price.metadata.created_by == "operator@example.com"
    meter = stripe.v1.billing.meters.retrieve(price.recurring.meter)
    assert meter.default_aggregation.formula == "last" and meter.event_name == "group_analytics_usage"
    # Exactly once: the same request again (a double click, a retry) returns the same price.
    again = client.post("/api/catalog/prices", json=body, headers=auth(users["operator"]))
    assert again.status_code == 200 and again.get_json()["price"] == answer["price"]
    assert not again.get_json()["created"]
    made_prices = [p for p in stripe.v1.prices.list({"product": "prod_group_analytics", "limit": 100}).data
                   if p.nickname and p.nickname.startswith("Custom - ")]
    assert len(made_prices) == 1
    # Archived since: the same request does not silently answer with a price nobody can use.
    stripe.v1.prices.update(answer["price"], {"active": False})
    archived = client.post("/api/catalog/prices", json=body, headers=auth(users["operator"]))
    assert archived.status_code == 422 and f"made before as {answer['price']}" in archived.get_json()["problems"][0]
    stripe.v1.prices.update(answer["price"], {"active": True})
    # A second product reuses nothing but makes its own meter; the catalog stays clean.
    main = client.post("/api/catalog/prices", json={"product": "prod_product_analytics", "tiers": MATCHING},
                       headers=auth(users["operator"]))
    assert main.status_code == 201 and main.get_json()["meter"] != answer["meter"]
    problems = client.get("/api/catalog/problems", headers=auth(users["viewer"])).get_json()
    assert problems["problems"] == []


def test_refused_with_each_mismatch_listed(catalog_app: Flask, users: dict[str, str],
                                           fresh_stripe_sandbox: StripeSandbox) -> None:
    client = catalog_app.test_client()
    refused = client.post("/api/catalog/prices", json={"product": "prod_group_analytics", "tiers": MISMATCHED},
                          headers=auth(users["operator"]))
    assert refused.status_code == 422
    assert refused.get_json()["problems"] == [
        "tier 3 is up to 16,000,000 but up to 15,000,000 on price_product_analytics_tiered (prod_product_analytics)"]
    # For the main product, the add-on's prices are what it must match.
    short = [{"up_to": 1_000_000, "unit_amount": "0"}, {"unit_amount": "0.00001"}]
    refused = client.post("/api/catalog/prices", json={"product": "prod_product_analytics", "tiers": short},
                          headers=auth(users["operator"]))
    assert refused.get_json()["problems"] == [
        "tier 2 is up to inf but up to 2,000,000 on price_group_analytics_tiered (prod_group_analytics)",
        "tier 3 is missing but is up to 15,000,000 on price_group_analytics_tiered (prod_group_analytics)",
        "tier 4 is missing but is up to inf on price_group_analytics_tiered (prod_group_analytics)",
    ]
    stripe = fresh_stripe_sandbox.client()
    assert not [p for p in stripe.v1.prices.list({"limit": 100}).auto_paging_iter()
                if (p.nickname or "").startswith("Custom - ")]


def test_refusals_of_bad_input(catalog_app: Flask, users: dict[str, str], fresh_stripe_sandbox: StripeSandbox) -> None:
    client = catalog_app.test_client()

    def post(body: Any, role: str = "operator") -> Any:
        return client.post("/api/catalog/prices", json=body, headers=auth(users[role]))

    assert post({"product": "prod_group_analytics", "tiers": MATCHING}, role="viewer").status_code == 403
    assert post(["not", "an", "object"]).status_code == 400
    missing = post({"product": "prod_new_thing", "tiers": MATCHING})
    assert missing.status_code == 422 and "never a new one" in missing.get_json()["problems"][0]
    credit = post({"product": "prod_posthog_credit", "tiers": MATCHING}).get_json()["problems"]
    assert credit == ["product prod_posthog_credit is not a billable product of the billing config "
                      "(posthog_product_key=posthog_credit)"]
    summed = fresh_stripe_sandbox.client().v1.billing.meters.create(
        {"display_name": "Summed", "event_name": "summed", "default_aggregation": {"formula": "sum"}})
    wrong_meter = post({"product": "prod_group_analytics", "tiers": MATCHING, "meter": summed.id}).get_json()
    assert wrong_meter["problems"] == [f"billing meter {summed.id} aggregates with `sum`; a bespoke price must bill "
                                       "the most recent usage (`last`)"]
    rows = post({"product": "prod_group_analytics", "currency": "usd",
                 "tiers": [{"up_to": "5", "unit_amount": "-1"}, {"up_to": "3", "unit_amount": "x"},
                           {"up_to": "9"}]}).get_json()["problems"]
    assert rows == ["tier 1's unit amount '-1' must be zero or more",
                    "tier 2's `up to` 3 must be above tier 1's 5",
                    "tier 2's unit amount 'x' is not a number",
                    "the last tier (tier 3) must be unbounded (leave `up to` empty), not 9"]


def test_parse_tier_rows_converts_major_units_per_unit_to_minor() -> None:
    parsed, problems = parse_tier_rows([{"up_to": "10", "unit_amount": "1.5"}, {"up_to": "", "unit_amount": "0.25"}],
                                       "usd")
    assert problems == []
    assert [(t.up_to, t.unit_amount_decimal) for t in parsed] == [(10, "150"), (None, "25")]
    yen, _ = parse_tier_rows([{"up_to": "inf", "unit_amount": "3"}], "jpy")
    assert yen[0].unit_amount_decimal == "3"
    _, too_fine = parse_tier_rows([{"unit_amount": "0.000000000000001"}], "usd")
    assert too_fine and "more precision than Stripe keeps" in too_fine[0]
    assert parse_tier_rows([], "usd") == ((), ["enter at least one tier"])


def test_a_lost_response_still_makes_one_price(catalog_app: Flask, users: dict[str, str],
                                               fresh_stripe_sandbox: StripeSandbox) -> None:
    """The response of the create is lost after Stripe made the price; the operator clicks again."""
    fresh_stripe_sandbox.set_faults({"rules": [{"method": "POST", "path": "/v1/prices", "lost_response": "first"}]})
    client = catalog_app.test_client()
    body = {"product": "prod_group_analytics", "tiers": MATCHING}
    first = client.post("/api/catalog/prices", json=body, headers=auth(users["operator"]))
    assert first.status_code == 422 and "sending the same request again is safe" in first.get_json()["problems"][0]
    fresh_stripe_sandbox.clear_faults()
    second = client.post("/api/catalog/prices", json=body, headers=auth(users["operator"]))
    assert second.status_code == 200 and second.get_json()["created"] is False
    stripe = fresh_stripe_sandbox.client()
    assert len([p for p in stripe.v1.prices.list({"product": "prod_group_analytics", "limit": 100}).data
                if (p.nickname or "").startswith("Custom - ")]) == 1


def test_form(browser_of: Callable[[str], tuple[FlaskClient, str]], fresh_stripe_sandbox: StripeSandbox) -> None:
    viewer, _ = browser_of("viewer")
    assert viewer.get("/catalog/prices/new").status_code == 403
    client, csrf = browser_of("operator")
    page = client.get("/catalog/prices/new?product=prod_group_analytics").get_data(as_text=True)
    # The family's volumes are filled in: they must match anyway.
    assert 'name="up_to_2" inputmode="numeric" value="15000000"' in page
    form = {"csrf_token": csrf, "product": "prod_group_analytics", "currency": "usd", "interval": "month",
            "meter": "", "metadata": "deal=acme-2026"}
    for i, row in enumerate(MISMATCHED):
        form |= {f"up_to_{i}": "" if row["up_to"] == "inf" else str(row["up_to"]),
                 f"unit_amount_{i}": str(row["unit_amount"])}
    refused = client.post("/catalog/prices", data=form)
    assert refused.status_code == 422
    assert "tier 3 is up to 16,000,000 but up to 15,000,000" in refused.get_data(as_text=True)
    form["up_to_2"] = "15000000"
    made = client.post("/catalog/prices", data=form, follow_redirects=True)
    assert made.status_code == 200 and "Created price price_" in made.get_data(as_text=True)
    stripe = fresh_stripe_sandbox.client()
    [custom] = [p for p in stripe.v1.prices.list({"product": "prod_group_analytics", "limit": 100}).data
                if (p.nickname or "").startswith("Custom - ")]
    assert custom.metadata.deal == "acme-2026"
    bad_meta = client.post("/catalog/prices", data={**form, "metadata": "no equals sign"})
    assert bad_meta.status_code == 422 and "must read name=value" in bad_meta.get_data(as_text=True)

