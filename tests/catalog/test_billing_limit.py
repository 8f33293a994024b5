"""The billing limit with a discount: limit ÷ (1 − discount), exact in minor units, and its API."""

from __future__ import annotations

from decimal import Decimal

import pytest
from flask import Flask
from hypothesis import given
from hypothesis import strategies as st

from domain.billing_limit import BillingLimitError, usage_allowed
from tests.fixtures.app import auth


def test_runbook_example_200_at_20_percent_allows_250() -> None:
    answer = usage_allowed(20000, Decimal("20"))
    assert answer.usage_allowed == 25000 and answer.exact
    assert answer.explanation == "A limit of 200.00 USD at 20% off allows 250.00 USD of usage."


def test_edges() -> None:
    assert usage_allowed(20000, Decimal("0")).usage_allowed == 20000
    free = usage_allowed(20000, Decimal("100"))
    assert free.usage_allowed is None and "never reached" in free.explanation
    zero = usage_allowed(0, Decimal("20"))
    assert zero.usage_allowed == 0 and "no charged usage" in zero.explanation
    assert usage_allowed(0, Decimal("100")).usage_allowed is None
    uneven = usage_allowed(10000, Decimal("33.3"))
    assert uneven.usage_allowed == 14992 and not uneven.exact  # 149.9250… rounded down
    assert usage_allowed(20000, Decimal("20"), "jpy").usage_allowed == 25000


@pytest.mark.parametrize(("limit", "discount", "message"), [
    (-1, Decimal("10"), "is negative"),
    (100, Decimal("100.01"), "outside 0–100%"),
    (100, Decimal("-5"), "outside 0–100%"),
    (100, Decimal("NaN"), "finite decimal percent"),
])
def test_refusals_name_the_value(limit: int, discount: Decimal, message: str) -> None:
    with pytest.raises(BillingLimitError, match=message):
        usage_allowed(limit, discount)


@given(st.integers(0, 10**12), st.decimals(Decimal(0), Decimal("99.99"), places=2))
def test_allowed_usage_is_the_most_the_limit_pays_for(limit: int, discount: Decimal) -> None:
    """usage × (1 − d) ≤ limit, and one more minor unit of usage would go over (exactly, no rounding)."""
    allowed = usage_allowed(limit, discount).usage_allowed
    assert allowed is not None and allowed >= limit
    factor = (100 - discount) / 100
    assert Decimal(allowed) * factor <= limit < Decimal(allowed + 1) * factor


def test_api(catalog_app: Flask, users: dict[str, str]) -> None:
    client = catalog_app.test_client()
    assert client.get("/api/catalog/billing-limit?limit=200&discount=20").status_code == 401
    ok = client.get("/api/catalog/billing-limit?limit=200.00&discount=20%25", headers=auth(users["viewer"]))
    assert ok.status_code == 200
    assert ok.get_json() == {"limit": "200.00", "currency": "usd", "discount": "20", "usage_allowed": "250.00",
                             "exact": True,
                             "explanation": "A limit of 200.00 USD at 20% off allows 250.00 USD of usage."}
    free = client.get("/api/catalog/billing-limit?limit=200&discount=100", headers=auth(users["viewer"])).get_json()
    assert free["usage_allowed"] is None
    zero = client.get("/api/catalog/billing-limit?limit=0&discount=0", headers=auth(users["viewer"])).get_json()
    assert zero["usage_allowed"] == "0.00"
    for query, message in (("limit=200&discount=abc", "'abc' is not a number"),
                           ("discount=20", "Give the billing limit"),
                           ("limit=200&discount=120", "120% is outside"),
                           ("limit=2x0&discount=5", "2x0"),
                           ("limit=200&currency=zzz", "zzz")):
        bad = client.get(f"/api/catalog/billing-limit?{query}", headers=auth(users["viewer"]))
        assert bad.status_code == 400 and message in bad.get_json()["error"], (query, bad.get_json())


def test_page_calculator(browser_of: object) -> None:
    client, _ = browser_of("viewer")  # type: ignore[operator]
    page = client.get("/catalog?limit=200&discount=20").get_data(as_text=True)
    assert "allows 250.00 USD of usage" in page
    page = client.get("/catalog?limit=200&discount=101").get_data(as_text=True)
    assert 'id="limit-error"' in page and "101% is outside" in page
