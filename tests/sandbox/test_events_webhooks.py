"""Events listing/filters and signed webhook deliveries verified with the SDK."""

from __future__ import annotations

import json

import stripe

from sandbox.stripe.harness import StripeSandbox

from .helpers import control, webhook_receiver

DAY = 86400


def test_events_filters_and_retrieve(fresh_stripe_sandbox: StripeSandbox) -> None:
    sb = fresh_stripe_sandbox
    client = sb.client()
    cus = client.v1.customers.create({"email": "e@example.com"})
    client.v1.customers.update(cus.id, {"name": "New"})
    client.v1.customers.balance_transactions.create(cus.id, {"amount": -100, "currency": "usd"})
    price = client.v1.prices.create({"currency": "usd", "unit_amount": 5, "product_data": {"name": "Thing"}})
    client.v1.customers.delete(cus.id)

    types = [e.type for e in client.v1.events.list({"limit": 100}).data]
    for expected in (
        "customer.created",
        "customer.updated",
        "product.created",
        "price.created",
        "customer.deleted",
    ):
        assert expected in types
    updated = client.v1.events.list({"type": "customer.updated"}).data
    assert updated[-1].data.previous_attributes.name is None and updated[-1].data.object.name == "New"
    only = client.v1.events.list({"types": ["price.created", "customer.deleted"]}).data
    assert {e.type for e in only} == {"price.created", "customer.deleted"}
    assert only[-1].data.object.id == price.id
    wildcard = client.v1.events.list({"type": "customer.*"}).data
    assert {e.type for e in wildcard} <= {"customer.created", "customer.updated", "customer.deleted"}

    evt = client.v1.events.retrieve(only[0].id)
    assert evt.id.startswith("evt_") and evt.api_version == stripe.api_version
    t = evt.created
    assert all(e.created >= t for e in client.v1.events.list({"created": {"gte": t}}).data)
    assert client.v1.events.list({"created": {"gt": t + 10**6}}).data == []
    assert [e.id for e in client.v1.events.list({"created": {"lte": t}}).data][0] == evt.id


def test_events_kept_30_days(fresh_stripe_sandbox: StripeSandbox) -> None:
    sb = fresh_stripe_sandbox
    client = sb.client()
    client.v1.customers.create({"email": "old@example.com"})
    sb.advance(29 * DAY)
    assert client.v1.events.list({"type": "customer.created"}).data
    sb.advance(2 * DAY)
    assert client.v1.events.list({"type": "customer.created"}).data == []


def test_webhook_endpoint_and_signed_delivery(fresh_stripe_sandbox: StripeSandbox) -> None:
    sb = fresh_stripe_sandbox
    client = sb.client()
    with webhook_receiver() as rx:
        we = client.v1.webhook_endpoints.create({"url": rx.url, "enabled_events": ["*"]})
        assert we.id.startswith("we_") and we.secret.startswith("whsec_")
        assert we.api_version is None  # not set: deliveries use the account's default version
        assert "secret" not in client.v1.webhook_endpoints.retrieve(we.id).to_dict()
        assert [w.id for w in client.v1.webhook_endpoints.list().data] == [we.id]

        cus = client.v1.customers.create({"email": "wh@example.com"})
        rx.wait_for(lambda got: len(got) >= 1)
        body, headers = rx.received[0]
        event = stripe.Webhook.construct_event(body.decode(), headers["Stripe-Signature"], we.secret)
        assert event.type == "customer.created" and event.data.object.id == cus.id
        assert headers["Stripe-Signature"].startswith("t=") and ",v1=" in headers["Stripe-Signature"]

        # Endpoint filter: only invoice events.
        client.v1.webhook_endpoints.delete(we.id)
        we2 = client.v1.webhook_endpoints.create({"url": rx.url, "enabled_events": ["invoice.created"]})
        client.v1.customers.update(cus.id, {"name": "x"})
        client.v1.invoices.create({"customer": cus.id, "collection_method": "send_invoice", "days_until_due": 1})
        rx.wait_for(lambda got: any(json.loads(b)["type"] == "invoice.created" for b, _ in got))
        sb.wait_for_webhooks()
        types = [e["type"] for e in rx.events()]
        assert "customer.updated" not in types
        last_body, last_headers = rx.received[-1]
        assert stripe.Webhook.construct_event(last_body.decode(), last_headers["Stripe-Signature"], we2.secret)


def test_webhook_retried_with_backoff_until_2xx(fresh_stripe_sandbox: StripeSandbox) -> None:
    sb = fresh_stripe_sandbox
    client = sb.client()
    with webhook_receiver(fail_first=2) as rx:
        secret = sb.register_webhook(rx.url)
        cus = client.v1.customers.create({"email": "retry@example.com"})
        rx.wait_for(lambda got: len(got) == 1, timeout=10)
        assert rx.attempts == 3
        event = stripe.Webhook.construct_event(
            rx.received[0][0].decode(), rx.received[0][1]["Stripe-Signature"], secret
        )
        assert event.data.object.id == cus.id
        # The receiver has the third attempt before the sandbox has written down its answer.
        sb.wait_for_webhooks()
        history = control(sb, "GET", "/_sandbox/webhooks")["deliveries"]
        assert [d["status"] for d in history] == [500, 500, 200]
        evt = client.v1.events.retrieve(event.id)
        assert evt.pending_webhooks == 0


def test_webhook_connection_error_is_retried(fresh_stripe_sandbox: StripeSandbox) -> None:
    sb = fresh_stripe_sandbox
    with webhook_receiver() as rx:
        url = rx.url
    sb.register_webhook(url)  # nobody listens there any more
    sb.client().v1.customers.create({"email": "down@example.com"})
    import time

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        history = control(sb, "GET", "/_sandbox/webhooks")["deliveries"]
        if len(history) >= 2:
            break
        time.sleep(0.05)
    assert len(history) >= 2 and all(d["error"] for d in history)


def test_webhooks_can_be_switched_off(fresh_stripe_sandbox: StripeSandbox) -> None:
    sb = fresh_stripe_sandbox
    client = sb.client()
    with webhook_receiver() as rx:
        sb.register_webhook(rx.url)
        assert control(sb, "POST", "/_sandbox/webhooks", {"enabled": False})["enabled"] is False
        cus = client.v1.customers.create({"email": "quiet@example.com"})
        sb.wait_for_webhooks()
        assert rx.received == []
        assert client.v1.events.list({"type": "customer.created"}).data[0].data.object.id == cus.id
        sb.webhooks_enabled(True)
        client.v1.customers.update(cus.id, {"name": "loud"})
        rx.wait_for(lambda got: len(got) == 1)
