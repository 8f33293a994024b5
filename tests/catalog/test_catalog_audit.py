"""The catalog audit table and the table page's catalog banner, through HTTP: changes made outside
a plan row (a price move, a discount, a bespoke price) are recorded with who, what and on which
Stripe ids and shown on the customer page; the scheduled check's newest result is one line on the
table page, read from the database (the app here has no Temporal at all)."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import func, select

from activities.catalog import CatalogActivities
from sandbox.stripe.harness import StripeSandbox
from settings import Settings
from store.catalog_audit import CatalogAuditEntry
from store.db import unit_of_work
from tests.catalog.test_subscription_changes import subscribe
from tests.fixtures.app import auth
from tests.web.conftest import sign_in

BESPOKE = {"product": "prod_group_analytics", "currency": "usd", "interval": "month",
           "tiers": [{"up_to": 1000000, "unit_amount": "0"}, {"up_to": 2000000, "unit_amount": "0.00004"},
                     {"up_to": 15000000, "unit_amount": "0.00003"}, {"up_to": None, "unit_amount": "0.00001"}]}


def test_changes_outside_a_row_are_recorded_and_shown_on_the_customer_page(
        catalog_app: Flask, users: dict[str, str], fresh_stripe_sandbox: StripeSandbox,
        catalog_settings: Settings) -> None:
    sub = subscribe(fresh_stripe_sandbox)
    customer = str(sub.customer)
    coupon = fresh_stripe_sandbox.client().v1.coupons.create({"percent_off": 20, "duration": "forever"})
    client = catalog_app.test_client()
    operator = auth(users["operator"])
    move = {"from_price": "price_product_analytics_default", "to_price": "price_product_analytics_tiered"}
    assert client.post(f"/api/subscriptions/{sub.id}/move", json=move, headers=operator).status_code == 200
    assert client.post(f"/api/subscriptions/{sub.id}/move", json=move, headers=operator).get_json()["changed"] is False
    assert client.post(f"/api/subscriptions/{sub.id}/discounts", json={"coupon": coupon.id},
                       headers=operator).status_code == 201
    price = client.post("/api/catalog/prices", json={**BESPOKE, "metadata": {"customer": customer}}, headers=operator)
    assert price.status_code == 201, price.get_json()
    # A refused change is not a change: nothing recorded for it.
    refused = client.post(f"/api/subscriptions/{sub.id}/move", headers=operator,
                          json={"from_price": "price_product_analytics_tiered", "to_price": "price_nope"})
    assert refused.status_code == 409

    changes = client.get(f"/api/customers/{customer}", headers=auth(users["viewer"])).get_json()["changes"]
    assert [(c["action"], c["actor"], c["subscription"], c["price"]) for c in changes] == [
        ("bespoke_price_created", "operator@example.com", None, price.get_json()["price"]),
        ("add_subscription_discount", "operator@example.com", sub.id, None),
        ("move_subscription_price", "operator@example.com", sub.id, "price_product_analytics_tiered"),
    ]  # newest first; the repeated move (nothing changed) is not there
    assert changes[1]["detail"] == {"coupon": coupon.id}
    assert changes[2]["detail"]["removed_item"] == sub["items"].data[0].id
    with unit_of_work(catalog_settings.database_url) as session:
        assert session.scalar(select(func.count()).select_from(CatalogAuditEntry)) == 3

    browser = catalog_app.test_client()
    sign_in(browser, "viewer")
    page = browser.get(f"/catalog/customers/{customer}").get_data(as_text=True)
    assert page.count('class="customer-change"') == 3
    assert 'data-action="move_subscription_price"' in page and "operator@example.com" in page


def test_the_table_page_shows_the_scheduled_checks_last_result(
        catalog_app: Flask, users: dict[str, str], fresh_stripe_sandbox: StripeSandbox,
        catalog_settings: Settings) -> None:
    browser = catalog_app.test_client()
    sign_in(browser, "viewer")

    def banner() -> str:
        html = browser.get("/").get_data(as_text=True)
        start = html.rindex("<p ", 0, html.index('id="catalog-banner"'))
        return html[start:html.index("</p>", start)]

    assert "no scheduled check has run yet" in banner()
    # The scheduled check's activity, as the worker runs it, against the sandbox's demo catalog.
    check = CatalogActivities(catalog_settings).check
    assert check().problems == []
    clean = banner()
    assert "Catalog: no problems" in clean and 'href="/catalog"' in clean and "(checked " in clean
    fresh_stripe_sandbox.client().v1.prices.update("price_surveys_default", {"active": False})
    fresh_stripe_sandbox.client().v1.prices.update("price_feature_flags_default", {"active": False})
    assert len(check().problems) == 2
    broken = banner()
    assert "Catalog: 2 problems</a>" in broken and 'href="/catalog"' in broken and "notice-warn" in broken
