"""Moving a subscription to other prices (now, no proration) and subscription discounts, against
the Stripe sandbox: what the next invoice bills, exactly once, roles, and the plan row's timeline."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import stripe
from flask import Flask
from flask.testing import FlaskClient

from sandbox.stripe.harness import StripeSandbox
from settings import Settings
from store.db import unit_of_work
from store.plans import create_plan
from tests.fixtures.app import auth
from tests.web.conftest import VALID_PLAN

CARD: dict[str, Any] = {"payment_method": "pm_card_visa",
                        "invoice_settings": {"default_payment_method": "pm_card_visa"}}
DAY = 86400


def subscribe(sandbox: StripeSandbox, price: str = "price_product_analytics_default") -> stripe.Subscription:
    client = sandbox.client()
    customer = client.v1.customers.create({"email": "move@example.com", **CARD})  # type: ignore[typeddict-item]
    return client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price}]})


def next_invoice(sandbox: StripeSandbox, sub: stripe.Subscription) -> stripe.Invoice:
    """Run the clock past the period end; the renewal invoice of the subscription."""
    client = sandbox.client()
    end = client.v1.subscriptions.retrieve(sub.id)["items"].data[0].current_period_end
    sandbox.advance_to(end + 2 * 3600)  # renewal drafts finalize about an hour later
    [invoice] = [i for i in client.v1.invoices.list({"customer": sub.customer, "limit": 100}).data
                 if i.billing_reason == "subscription_cycle"]
    return invoice


def lines(sandbox: StripeSandbox, invoice: stripe.Invoice) -> list[tuple[int, bool, str]]:
    """(amount, is a proration, price) per line."""
    client = sandbox.client()
    out = []
    for line in client.v1.invoices.line_items.list(invoice.id, {"limit": 100}).data:
        details = line.parent.invoice_item_details
        proration = bool(details and details.invoice_item
                         and client.v1.invoice_items.retrieve(details.invoice_item).proration)
        price = line.pricing.price_details.price if line.pricing and line.pricing.price_details else ""
        out.append((line.amount, proration, price))
    return sorted(out)


def test_move_now_without_proration(catalog_app: Flask, users: dict[str, str],
                                    fresh_stripe_sandbox: StripeSandbox) -> None:
    sub = subscribe(fresh_stripe_sandbox)
    fresh_stripe_sandbox.advance(10 * DAY)
    client = catalog_app.test_client()
    body = {"from_price": "price_product_analytics_default", "to_price": "price_product_analytics_tiered"}
    moved = client.post(f"/api/subscriptions/{sub.id}/move", json=body, headers=auth(users["operator"]))
    assert moved.status_code == 200, moved.get_json()
    answer = moved.get_json()
    assert answer["changed"] and [i["price"] for i in answer["subscription"]["items"]] == [
        "price_product_analytics_tiered"]
    assert answer["removed_item"] == sub["items"].data[0].id  # the old item is gone, not edited
    # Applied now: the subscription already bills the new price; and nothing is prorated.
    assert lines(fresh_stripe_sandbox, next_invoice(fresh_stripe_sandbox, sub)) == [
        (0, False, "price_product_analytics_tiered")]  # quantity 1 sits in the free first tier
    again = client.post(f"/api/subscriptions/{sub.id}/move", json=body, headers=auth(users["operator"]))
    assert again.status_code == 200 and again.get_json()["changed"] is False


def test_the_sandbox_prorates_a_move_by_default(fresh_stripe_sandbox: StripeSandbox) -> None:
    """What the move avoids: Stripe's default `create_prorations` credits the unused old price."""
    sub = subscribe(fresh_stripe_sandbox)
    fresh_stripe_sandbox.advance(10 * DAY)
    client = fresh_stripe_sandbox.client()
    client.v1.subscriptions.update(sub.id, {"items": [{"id": sub["items"].data[0].id, "deleted": True},
                                                      {"price": "price_session_replay_default"}]})
    found = lines(fresh_stripe_sandbox, next_invoice(fresh_stripe_sandbox, sub))
    prorations = [amount for amount, proration, _ in found if proration]
    assert len(prorations) == 2 and prorations[0] < 0 < prorations[1]
    assert (30000, False, "price_session_replay_default") in found


def test_always_invoice_bills_the_prorations_now(fresh_stripe_sandbox: StripeSandbox) -> None:
    sub = subscribe(fresh_stripe_sandbox)
    client = fresh_stripe_sandbox.client()
    period = sub["items"].data[0]
    fresh_stripe_sandbox.advance((period.current_period_end - period.current_period_start) // 2)
    client.v1.subscriptions.update(sub.id, {"items": [{"id": period.id, "quantity": 2}],
                                            "proration_behavior": "always_invoice"})
    latest = client.v1.invoices.retrieve(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    assert latest.billing_reason == "subscription_update" and latest.status == "paid"
    # Half a period of 450.00 credited, half a period of 900.00 charged: +225.00 (to the cent).
    assert abs(latest.total - 22500) <= 1


def test_move_back_and_forth_moves_each_time(catalog_app: Flask, users: dict[str, str],
                                             fresh_stripe_sandbox: StripeSandbox,
                                             caplog: pytest.LogCaptureFixture) -> None:
    sub = subscribe(fresh_stripe_sandbox)
    client = catalog_app.test_client()
    a, b = "price_product_analytics_default", "price_product_analytics_startup"
    for from_price, to_price in ((a, b), (b, a), (a, b)):
        moved = client.post(f"/api/subscriptions/{sub.id}/move", json={"from_price": from_price, "to_price": to_price},
                            headers=auth(users["operator"])).get_json()
        assert moved["changed"] and [i["price"] for i in moved["subscription"]["items"]] == [to_price]
    audited = [json.loads(r.getMessage()) for r in caplog.records if r.name == "revops.audit.catalog"]
    assert [(e["actor"], e["action"], e["to_price"]) for e in audited] == [
        ("operator@example.com", "subscription_price_moved", to) for to in (b, a, b)]
    assert fresh_stripe_sandbox.client().v1.subscriptions.retrieve(sub.id).metadata["revops_changes"] == "3"


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"from_price": "price_nope", "to_price": "price_surveys_default"}, 409, "has no item on price price_nope"),
    ({"from_price": "price_product_analytics_default", "to_price": "price_missing"}, 409, "no price price_missing"),
    ({"from_price": "price_product_analytics_default", "to_price": "price_posthog_credit"}, 409, "one-time"),
    ({"from_price": "price_product_analytics_default"}, 400, "to_price"),
    ({"from_price": "price_product_analytics_default", "to_price": "price_surveys_default", "plan_id": 999}, 404,
     "no plan row 999"),
])
def test_move_refusals(catalog_app: Flask, users: dict[str, str], fresh_stripe_sandbox: StripeSandbox,
                       body: dict[str, Any], status: int, message: str) -> None:
    sub = subscribe(fresh_stripe_sandbox)
    client = catalog_app.test_client()
    response = client.post(f"/api/subscriptions/{sub.id}/move", json=body, headers=auth(users["operator"]))
    assert response.status_code == status and message in response.get_json()["error"], response.get_json()
    assert client.post(f"/api/subscriptions/{sub.id}/move", json=body,
                       headers=auth(users["viewer"])).status_code == 403
    assert client.post("/api/subscriptions/sub_missing/move", json={"from_price": "a", "to_price": "b"},
                       headers=auth(users["operator"])).status_code == 409


def test_discount_lowers_the_next_invoice_and_can_be_removed(catalog_app: Flask, users: dict[str, str],
                                                             fresh_stripe_sandbox: StripeSandbox) -> None:
    sub = subscribe(fresh_stripe_sandbox)
    stripe_client = fresh_stripe_sandbox.client()
    coupon = stripe_client.v1.coupons.create({"percent_off": 20, "duration": "forever", "name": "Startup 20"})
    client = catalog_app.test_client()
    added = client.post(f"/api/subscriptions/{sub.id}/discounts", json={"coupon": coupon.id},
                        headers=auth(users["operator"]))
    assert added.status_code == 201
    [discount] = added.get_json()["subscription"]["discounts"]
    assert discount["coupon"] == coupon.id and discount["percent_off"] == "20" and discount["name"] == "Startup 20"
    # The current API: the discount is on the subscription, not the customer.
    assert stripe_client.v1.customers.retrieve(sub.customer).discount is None
    twice = client.post(f"/api/subscriptions/{sub.id}/discounts", json={"coupon": coupon.id},
                        headers=auth(users["operator"]))
    assert twice.status_code == 200 and len(twice.get_json()["subscription"]["discounts"]) == 1
    invoice = next_invoice(fresh_stripe_sandbox, sub)
    assert (invoice.subtotal, invoice.total) == (45000, 36000)
    viewer = client.get(f"/api/subscriptions/{sub.id}", headers=auth(users["viewer"])).get_json()
    assert [d["coupon"] for d in viewer["discounts"]] == [coupon.id]
    assert client.delete(f"/api/subscriptions/{sub.id}/discounts/{discount['id']}",
                         headers=auth(users["viewer"])).status_code == 403
    removed = client.delete(f"/api/subscriptions/{sub.id}/discounts/{discount['id']}",
                            headers=auth(users["operator"]))
    assert removed.status_code == 200 and removed.get_json()["subscription"]["discounts"] == []
    end = stripe_client.v1.subscriptions.retrieve(sub.id)["items"].data[0].current_period_end
    fresh_stripe_sandbox.advance_to(end + 2 * 3600)
    latest = stripe_client.v1.invoices.retrieve(stripe_client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    assert latest.total == 45000
    # Adding it again after removal applies it again (a fresh idempotency key, not a replay).
    readded = client.post(f"/api/subscriptions/{sub.id}/discounts", json={"coupon": coupon.id},
                          headers=auth(users["operator"]))
    assert readded.status_code == 201 and len(readded.get_json()["subscription"]["discounts"]) == 1


def test_discount_refusals(catalog_app: Flask, users: dict[str, str], fresh_stripe_sandbox: StripeSandbox) -> None:
    sub = subscribe(fresh_stripe_sandbox)
    eur = fresh_stripe_sandbox.client().v1.coupons.create({"amount_off": 500, "currency": "eur", "duration": "once"})
    client = catalog_app.test_client()
    for coupon, message in (("nope", "no coupon nope"), (eur.id, "in EUR; the subscription bills in USD")):
        refused = client.post(f"/api/subscriptions/{sub.id}/discounts", json={"coupon": coupon},
                              headers=auth(users["operator"]))
        assert refused.status_code == 409 and message in refused.get_json()["error"]


def test_changes_from_a_plan_row_land_on_its_timeline(catalog_settings: Settings, catalog_app: Flask,
                                                      users: dict[str, str],
                                                      fresh_stripe_sandbox: StripeSandbox) -> None:
    with unit_of_work(catalog_settings.database_url) as s:
        plan, checked = create_plan(s, dict(VALID_PLAN), actor="test@example.com")
        assert plan is not None, checked.errors
        plan_id = plan.id
    sub = subscribe(fresh_stripe_sandbox)
    client = catalog_app.test_client()
    client.post(f"/api/subscriptions/{sub.id}/move", headers=auth(users["operator"]), json={
        "from_price": "price_product_analytics_default", "to_price": "price_product_analytics_startup",
        "plan_id": plan_id})
    timeline = client.get(f"/api/plans/{plan_id}/timeline", headers=auth(users["viewer"])).get_json()
    entries = timeline if isinstance(timeline, list) else timeline.get("timeline", timeline.get("entries", []))
    [entry] = [e for e in entries if e["action"] == "move_subscription_price"]
    assert entry["actor"] == "operator@example.com" and entry["result"]["to_price"] == "price_product_analytics_startup"
    assert entry["result"]["subscription"] == sub.id


def test_subscription_page(browser_of: Callable[[str], tuple[FlaskClient, str]],
                           fresh_stripe_sandbox: StripeSandbox) -> None:
    sub = subscribe(fresh_stripe_sandbox)
    coupon = fresh_stripe_sandbox.client().v1.coupons.create({"percent_off": 10, "duration": "forever"})
    viewer, _ = browser_of("viewer")
    page = viewer.get(f"/catalog/subscriptions/{sub.id}").get_data(as_text=True)
    assert 'data-price="price_product_analytics_default"' in page and 'id="move-form"' not in page
    client, csrf = browser_of("operator")
    page = client.get(f"/catalog/subscriptions/{sub.id}").get_data(as_text=True)
    assert 'value="price_product_analytics_startup"' in page and 'value="price_posthog_credit"' not in page
    moved = client.post(f"/catalog/subscriptions/{sub.id}/move", follow_redirects=True, data={
        "csrf_token": csrf, "from_price": "price_product_analytics_default",
        "to_price": "price_product_analytics_startup", "plan_id": ""}).get_data(as_text=True)
    assert 'data-price="price_product_analytics_startup"' in moved and "Done: move subscription price" in moved
    added = client.post(f"/catalog/subscriptions/{sub.id}/discounts", follow_redirects=True,
                        data={"csrf_token": csrf, "coupon": coupon.id, "plan_id": ""}).get_data(as_text=True)
    assert f'data-coupon="{coupon.id}"' in added
    refused = client.post(f"/catalog/subscriptions/{sub.id}/move", follow_redirects=True, data={
        "csrf_token": csrf, "from_price": "price_gone", "to_price": "price_surveys_default"}).get_data(as_text=True)
    assert "has no item on price price_gone" in refused
    assert viewer.get("/catalog/subscriptions/sub_missing").status_code == 404
