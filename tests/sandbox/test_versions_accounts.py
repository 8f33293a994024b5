"""API versions (requests, account default, event rendering), Stripe-Account and /v1/account(s)."""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest
import stripe
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.stripe import versions
from sandbox.stripe.harness import StripeSandbox
from sandbox.stripe.resources.accounts import ACCOUNT_ID

from .helpers import control, raw, webhook_receiver

OLD = "2024-06-20"  # before 2025-03-31.basil: invoices carry paid/subscription/charge/payment_intent


@pytest.mark.parametrize(
    "version", [OLD, "2025-03-31.basil", "2020-08-27", "2024-09-30.acacia", stripe.api_version, "2011-01-01"]
)
def test_published_versions_are_served_in_the_emulated_shape(stripe_sandbox: StripeSandbox, version: str) -> None:
    client = stripe_sandbox.client()
    cus = client.v1.customers.create({"email": "pinned@example.com"}, {"stripe_version": version})
    assert cus.email == "pinned@example.com"
    assert cus.last_response.headers["Stripe-Version"] == stripe.api_version  # the one shape served
    r = raw(stripe_sandbox, "GET", f"/v1/customers/{cus.id}", headers={"Stripe-Version": version})
    assert r.status_code == 200 and r.json()["id"] == cus.id


@pytest.mark.parametrize(
    "version", ["banana", "2020-13-45", "2020-08-27.", "2099-01-01", "2010-12-31", "20-08-27", "2020-08-28"]
)
def test_malformed_or_unpublished_versions_are_refused(stripe_sandbox: StripeSandbox, version: str) -> None:
    r = raw(stripe_sandbox, "GET", "/v1/customers", headers={"Stripe-Version": version})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"] == f"Invalid Stripe API version: {version}"
    with pytest.raises(stripe.InvalidRequestError, match="Invalid Stripe API version"):
        stripe_sandbox.client().v1.customers.list(options={"stripe_version": version})


def test_account_endpoints_and_stripe_account_header(stripe_sandbox: StripeSandbox) -> None:
    client = stripe_sandbox.client()
    me = client.v1.accounts.retrieve_current()
    assert isinstance(me, stripe.Account) and me.id == ACCOUNT_ID and me.charges_enabled is True
    assert client.v1.accounts.retrieve(ACCOUNT_ID).id == ACCOUNT_ID
    with pytest.raises(stripe.PermissionError) as exc:
        client.v1.accounts.retrieve("acct_1NotMine000000")
    assert exc.value.http_status == 403 and exc.value.error.code == "account_invalid"

    # Acting on the sandbox's own account works; any other account is Stripe's 403.
    cus = client.v1.customers.create({"email": "own@example.com"}, {"stripe_account": ACCOUNT_ID})
    assert cus.email == "own@example.com"
    with pytest.raises(stripe.PermissionError) as exc:
        client.v1.customers.list(options={"stripe_account": "acct_1Unknown0000000"})
    assert exc.value.http_status == 403 and exc.value.error.code == "account_invalid"
    assert "acct_1Unknown0000000" in exc.value.user_message
    r = raw(stripe_sandbox, "POST", "/v1/customers", data={"email": "x@example.com"},
            headers={"Stripe-Account": "not-an-account"})
    assert r.status_code == 403 and r.json()["error"]["type"] == "invalid_request_error"
    assert client.v1.customers.list({"email": "x@example.com"}).data == []  # nothing was created


def test_account_default_version_control(fresh_stripe_sandbox: StripeSandbox) -> None:
    sb = fresh_stripe_sandbox
    assert control(sb, "GET", "/_sandbox/account") == {"id": ACCOUNT_ID, "default_api_version": stripe.api_version}
    assert control(sb, "POST", "/_sandbox/account", {"default_api_version": OLD})["default_api_version"] == OLD
    import requests

    bad = requests.post(sb.url + "/_sandbox/account", json={"default_api_version": "soon"}, timeout=5)
    assert bad.status_code == 400 and "Invalid Stripe API version: soon" in bad.text


def _paid_subscription(client: stripe.StripeClient, email: str) -> tuple[stripe.Customer, stripe.Subscription]:
    cus = client.v1.customers.create({"email": email})
    pm = client.v1.payment_methods.attach("pm_card_visa", {"customer": cus.id})
    client.v1.customers.update(cus.id, {"invoice_settings": {"default_payment_method": pm.id}})
    sub = client.v1.subscriptions.create(
        {"customer": cus.id, "items": [{"price": "price_product_analytics_default"}]}
    )
    client.v1.invoice_items.create({"customer": cus.id, "pricing": {"price": "price_surveys_default"}})
    return cus, sub


def test_events_render_in_the_account_default_version_at_event_time(fresh_stripe_sandbox: StripeSandbox) -> None:
    sb = fresh_stripe_sandbox
    client = sb.client()
    _, new_sub = _paid_subscription(client, "current@example.com")
    sb.set_default_api_version(OLD)
    cus, sub = _paid_subscription(client, "old@example.com")

    def event(kind: str, obj_id: str) -> stripe.Event:
        found = [e for e in client.v1.events.list({"type": kind, "limit": 100}).data if e.data.object.id == obj_id]
        assert found, (kind, obj_id)
        return found[0]

    # Before the switch: the current shape, whatever the request's version.
    current = event("customer.subscription.created", new_sub.id)
    assert current.api_version == stripe.api_version
    assert "current_period_end" not in current.data.object.to_dict()
    assert "current_period_end" in current.data.object.items.data[0].to_dict()

    # After it: the older shapes (versions.py).
    old_sub = event("customer.subscription.created", sub.id)
    assert old_sub.api_version == OLD
    assert old_sub.data.object.current_period_end == sub.items.data[0].current_period_end
    assert "current_period_end" not in old_sub.data.object["items"].data[0].to_dict()
    assert "billing_mode" not in old_sub.data.object.to_dict()

    paid = event("invoice.paid", sub.latest_invoice)  # type: ignore[arg-type]
    old_inv = paid.data.object.to_dict()
    assert old_inv["paid"] is True and old_inv["subscription"] == sub.id and "parent" not in old_inv
    assert old_inv["payment_intent"].startswith("pi_") and old_inv["charge"].startswith("ch_")
    assert client.v1.charges.retrieve(old_inv["charge"]).payment_intent == old_inv["payment_intent"]
    line = old_inv["lines"]["data"][0]
    assert line["type"] == "subscription" and line["price"]["id"] == "price_product_analytics_default"
    assert "pricing" not in line and "parent" not in line

    item_event = [e for e in client.v1.events.list({"type": "invoiceitem.created"}).data
                  if e.data.object.customer == cus.id][0]
    item = item_event.data.object.to_dict()
    assert item["price"]["id"] == "price_surveys_default" and item["unit_amount"] > 0 and "pricing" not in item

    # The same event retrieved alone, and with a request pinned to the current version: still old.
    again = client.v1.events.retrieve(paid.id, options={"stripe_version": stripe.api_version})
    assert again.api_version == OLD and again.data.object["paid"] is True
    # The objects themselves are served in the current shape.
    assert "paid" not in client.v1.invoices.retrieve(sub.latest_invoice).to_dict()  # type: ignore[arg-type]


def test_webhook_endpoints_get_their_own_version_or_the_account_default(fresh_stripe_sandbox: StripeSandbox) -> None:
    sb = fresh_stripe_sandbox
    client = sb.client()
    with webhook_receiver() as plain_rx, webhook_receiver() as pinned_rx:
        plain = client.v1.webhook_endpoints.create({"url": plain_rx.url, "enabled_events": ["invoice.paid"]})
        pinned = client.v1.webhook_endpoints.create(
            {"url": pinned_rx.url, "enabled_events": ["invoice.paid"], "api_version": stripe.api_version}
        )
        assert plain.api_version is None and pinned.api_version == stripe.api_version
        sb.set_default_api_version(OLD)
        _, sub = _paid_subscription(client, "hooks@example.com")
        plain_rx.wait_for(lambda got: len(got) >= 1)
        pinned_rx.wait_for(lambda got: len(got) >= 1)

        body, headers = plain_rx.received[0]
        event = stripe.Webhook.construct_event(body.decode(), headers["Stripe-Signature"], plain.secret)
        assert event.api_version == OLD and event.data.object["paid"] is True
        assert event.data.object["subscription"] == sub.id

        body, headers = pinned_rx.received[0]
        event = stripe.Webhook.construct_event(body.decode(), headers["Stripe-Signature"], pinned.secret)
        assert event.api_version == stripe.api_version
        payload = json.loads(body)["data"]["object"]
        assert "paid" not in payload and payload["parent"]["subscription_details"]["subscription"] == sub.id

    with pytest.raises(stripe.InvalidRequestError, match="Invalid api_version: must be one of 2011-01-01") as exc:
        client.v1.webhook_endpoints.create({"url": "http://x", "enabled_events": ["*"], "api_version": "v2"})
    assert exc.value.param == "api_version"


# ---- every published version, every event: the invariants of the older shapes ------------------


@functools.cache
def _seeded() -> tuple[Any, list[dict[str, Any]]]:
    """An in-process sandbox with a few seeded customers, and its events (made once per run)."""
    from sandbox.stripe.bulk_seed import seed
    from sandbox.stripe.core import Sandbox

    engine = Sandbox()
    engine.dispatcher.stop()  # no endpoints: nothing to deliver
    seed(engine, customers=4, span_days=1)
    return engine, engine.state.all("event")


@settings(max_examples=150, deadline=None)
@given(version=st.sampled_from(sorted(versions.published())), index=st.integers(min_value=0))
def test_any_published_version_renders_every_event_consistently(version: str, index: int) -> None:
    engine, events = _seeded()
    event = events[index % len(events)]
    stored = json.dumps(event, sort_keys=True, default=str)
    current = versions.render_event(engine.state, event)
    shown = versions.render_event(engine.state, event, version)
    assert json.dumps(event, sort_keys=True, default=str) == stored  # rendering never edits the event
    assert shown["api_version"] == version and shown["id"] == event["id"] and shown["type"] == event["type"]
    obj, now = shown["data"]["object"], current["data"]["object"]
    assert obj["id"] == now["id"] and obj["object"] == now["object"]
    old = versions.before(version, versions.BASIL)
    if now["object"] == "invoice":
        assert ("parent" in obj) is not old
        if old:
            assert obj["paid"] is (now["status"] == "paid")
            assert obj["subscription"] == ((now["parent"] or {}).get("subscription_details") or {}).get("subscription")
            for line, line_now in zip(obj["lines"]["data"], now["lines"]["data"], strict=True):
                assert "pricing" not in line and line["type"] in ("subscription", "invoiceitem")
                price_now = (line_now["pricing"] or {}).get("price_details") or {}
                assert (line["price"] or {}).get("id") == price_now.get("price")
    if now["object"] == "subscription":
        assert ("current_period_end" in obj) is old
        if old:
            assert obj["current_period_end"] == now["items"]["data"][0]["current_period_end"]
        assert ("billing_mode" in obj) is (not versions.before(version, versions.CLOVER) and "billing_mode" in now)
    if not old and now["object"] not in ("subscription", "subscription_schedule"):
        assert obj == now  # nothing else changes shape between basil and today
