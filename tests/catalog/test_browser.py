"""The catalog pages in headless Chromium: problems, the billing-limit calculator, a bespoke price
entered row by row, and moving a subscription and applying a coupon from its page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from sandbox.stripe.harness import StripeSandbox
from tests.catalog.test_catalog_check import plant_one_of_each
from tests.catalog.test_subscription_changes import subscribe
from tests.web.browser import chromium, needs_chromium, serve, sign_in

pytestmark = [pytest.mark.browser, needs_chromium]


@pytest.fixture
def base_url(catalog_app: Flask) -> Iterator[str]:
    with serve(catalog_app) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def _page(browser: Any) -> Any:
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.set_default_timeout(10_000)
    return page


def test_problems_and_billing_limit(browser: Any, base_url: str, fresh_stripe_sandbox: StripeSandbox) -> None:
    page = _page(browser)
    sign_in(page, base_url, "viewer")
    page.goto(f"{base_url}/catalog")
    assert "No problems" in page.locator("#catalog-ok").inner_text()
    assert page.locator("#new-price-link").count() == 0  # viewers do not make prices
    page.get_by_label("Billing limit", exact=True).fill("200")
    page.get_by_label("Discount (%)").fill("20")
    page.get_by_role("button", name="Calculate").click()
    assert page.locator("#limit-answer").inner_text() == "A limit of 200.00 USD at 20% off allows 250.00 USD of usage."
    expected = plant_one_of_each(fresh_stripe_sandbox)
    page.goto(f"{base_url}/catalog")
    rows = page.locator("tr.problem")
    assert rows.count() == len(expected)
    assert sorted(rows.nth(i).get_attribute("data-kind") for i in range(rows.count())) == sorted(expected)


def test_operator_enters_a_bespoke_price(browser: Any, base_url: str, fresh_stripe_sandbox: StripeSandbox) -> None:
    page = _page(browser)
    sign_in(page, base_url, "operator")
    page.goto(f"{base_url}/catalog")
    page.locator("#new-price-link").click()
    page.wait_for_url(f"{base_url}/catalog/prices/new")
    page.goto(f"{base_url}/catalog/prices/new?product=prod_group_analytics")
    assert page.get_by_label("Tier 3 up to").input_value() == "15000000"  # the family's volumes
    assert page.get_by_label("Product", exact=True).input_value() == "prod_group_analytics"
    page.get_by_label("Tier 3 up to").fill("16000000")
    for n, unit in enumerate(["0", "0.00004", "0.00003", "0.00001"], start=1):
        page.get_by_label(f"Tier {n} per unit").fill(unit)
    page.get_by_role("button", name="Create price").click()
    assert "tier 3 is up to 16,000,000 but up to 15,000,000" in page.locator("#price-problems").inner_text()
    # Nothing typed is lost; fix the one volume.
    assert page.get_by_label("Tier 2 per unit").input_value() == "0.00004"
    page.get_by_label("Tier 3 up to").fill("15000000")
    page.get_by_role("button", name="Create price").click()
    page.wait_for_url(f"{base_url}/catalog")
    assert "Created price price_" in page.locator(".flash-ok").first.inner_text()


def test_operator_moves_a_subscription_and_applies_a_coupon(browser: Any, base_url: str,
                                                            fresh_stripe_sandbox: StripeSandbox) -> None:
    sub = subscribe(fresh_stripe_sandbox)
    coupon = fresh_stripe_sandbox.client().v1.coupons.create({"percent_off": 15, "duration": "forever",
                                                              "name": "Partner 15"})
    page = _page(browser)
    sign_in(page, base_url, "operator")
    page.goto(f"{base_url}/catalog/subscriptions/{sub.id}")
    page.get_by_label("To").select_option("price_product_analytics_startup")
    page.get_by_role("button", name="Move now").click()
    assert page.locator("tr.sub-item").get_attribute("data-price") == "price_product_analytics_startup"
    page.get_by_label("Coupon").select_option(coupon.id)
    page.get_by_role("button", name="Apply coupon").click()
    assert "Partner 15" in page.locator("#sub-discounts").inner_text()
    page.get_by_role("button", name="Remove").click()
    assert page.locator("#no-discounts").is_visible()
