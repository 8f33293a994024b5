"""The customer page and finding a row's existing Stripe customer (by the organisation's other rows
or the email), with balances and subscriptions, one click to use one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from sandbox.stripe.harness import StripeSandbox
from settings import Settings
from store.db import unit_of_work
from store.models import Plan
from store.plans import create_plan
from tests.fixtures.app import auth
from tests.web.conftest import VALID_PLAN


def add_row(settings: Settings, **overrides: Any) -> int:
    with unit_of_work(settings.database_url) as s:
        plan, checked = create_plan(s, {**VALID_PLAN, **overrides}, actor="test@example.com")
        assert plan is not None, checked.errors
        return plan.id


def test_suggestions_and_customer_page(catalog_settings: Settings, catalog_app: Flask, users: dict[str, str],
                                       fresh_stripe_sandbox: StripeSandbox,
                                       browser_of: Callable[[str], tuple[FlaskClient, str]]) -> None:
    stripe = fresh_stripe_sandbox.client()
    by_email = stripe.v1.customers.create({"email": VALID_PLAN["customer_email"], "name": "Acme (billing)"})
    by_org = stripe.v1.customers.create({"email": "finance@acme.example", "metadata": {"posthog_org_id": "org-acme"}})
    stranger = stripe.v1.customers.create({"email": "someone@else.example"})
    coupon = stripe.v1.coupons.create({"percent_off": 10, "duration": "forever", "name": "Ten"})
    sub = stripe.v1.subscriptions.create({"customer": by_org.id, "collection_method": "send_invoice",
                                          "days_until_due": 30, "discounts": [{"coupon": coupon.id}],
                                          "items": [{"price": "price_surveys_default"}]})
    # After the subscription's first invoice, or that invoice would have used the credit.
    stripe.v1.customers.balance_transactions.create(by_org.id, {"amount": -5000, "currency": "usd"})
    add_row(catalog_settings, pandadoc_id="pd-acme-0", stripe_customer_id_existing=by_org.id)
    row = add_row(catalog_settings)
    client = catalog_app.test_client()
    answer = client.get(f"/api/customer-suggestions?plan_id={row}", headers=auth(users["viewer"])).get_json()
    found = {s["id"]: s for s in answer["suggestions"]}
    assert set(found) == {by_email.id, by_org.id} and stranger.id not in found
    assert found[by_email.id]["why"] == [f"same email {VALID_PLAN['customer_email']}"]
    assert found[by_org.id]["why"] == ["used by another row of organisation org-acme",
                                       "its metadata names the organisation"]
    assert found[by_org.id]["balances"] == {"usd": "-50.00"}
    assert [s["id"] for s in found[by_org.id]["subscriptions"]] == [sub.id]
    assert client.get("/api/customer-suggestions?plan_id=999", headers=auth(users["viewer"])).status_code == 404
    # One click to use one.
    viewer, _ = browser_of("viewer")
    assert 'action="/catalog/plans/' not in viewer.get(f"/catalog/plans/{row}/customers").get_data(as_text=True)
    operator, csrf = browser_of("operator")
    page = operator.get(f"/catalog/plans/{row}/customers").get_data(as_text=True)
    assert page.count('class="suggestion"') == 2
    used = operator.post(f"/catalog/plans/{row}/customers", data={"csrf_token": csrf, "customer": by_org.id})
    assert used.status_code == 302 and used.headers["Location"].endswith(f"/plans/{row}")
    with unit_of_work(catalog_settings.database_url) as s:
        plan = s.get(Plan, row)
        assert plan is not None and plan.stripe_customer_id_existing == by_org.id
    # The customer page: balance, subscriptions with discounts, and the rows that use it.
    customer = client.get(f"/api/customers/{by_org.id}", headers=auth(users["viewer"])).get_json()
    assert customer["posthog_org_id"] == "org-acme" and customer["balances"] == {"usd": "-50.00"}
    assert customer["subscriptions"][0]["discounts"][0]["coupon"] == coupon.id
    assert sorted(p["id"] for p in customer["plans"]) == [row - 1, row]
    html = viewer.get(f"/catalog/customers/{by_org.id}").get_data(as_text=True)
    assert f'data-sub="{sub.id}"' in html and "-50.00 USD (credit the customer holds)" in html
    assert f'href="/plans/{row}"' in html
    assert client.get("/api/customers/cus_missing", headers=auth(users["viewer"])).status_code == 404
