"""The Stripe webhook set-up in one click, against the Stripe sandbox (issue 15, "What it must show" 5):
registered once (a second click changes nothing), its secret verifies the next delivery, and the
page shows both sides' status."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import stripe
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from activities.webhook_setup import WEBHOOK_EVENTS, StripeWebhookEndpoint, signing_secrets
from settings import Settings
from store.db import unit_of_work
from store.models import InboundEvent
from tests.fixtures.app import auth
from tests.fixtures.stack import wait_until
from tests.operations.conftest import NoTemporal
from web import create_app


@pytest.fixture
def served(sandbox_settings: Settings, users: dict[str, str]) -> Iterator[tuple[Flask, Settings]]:
    """The app on a real port, PUBLIC_URL pointing at it, so the sandbox can deliver to it."""
    from werkzeug.serving import make_server

    app = create_app(sandbox_settings, temporal=NoTemporal())
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    cfg = replace(sandbox_settings, public_url=f"http://127.0.0.1:{server.server_port}")
    app.extensions["revops.settings"] = cfg
    try:
        yield app, cfg
    finally:
        server.shutdown()


def _signed_in_admin(app: Flask) -> tuple[FlaskClient, str]:
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf
    response = client.post("/login", data={"email": "admin@example.com", "password": "password-admin",
                                           "csrf_token": csrf.group(1)})
    assert response.status_code == 302
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/admin/stripe/webhook").get_data(as_text=True))
    assert token
    return client, token.group(1)


def _ours(sdk: stripe.StripeClient, url: str) -> list[Any]:
    return [e for e in sdk.v1.webhook_endpoints.list({"limit": 100}).data if e.url == url]


def test_one_click_registers_once_and_its_secret_verifies_the_next_delivery(
        served: tuple[Flask, Settings], fresh_stripe_sandbox: Any) -> None:
    app, cfg = served
    sdk = fresh_stripe_sandbox.client()
    url = cfg.public_url + "/webhooks/stripe"
    admin, csrf = _signed_in_admin(app)

    before = admin.get("/admin/stripe/webhook").get_data(as_text=True)
    assert "not registered" in before and "Create webhook" in before

    first = admin.post("/admin/stripe/webhook", data={"csrf_token": csrf}, follow_redirects=True)
    assert first.status_code == 200
    assert "Registered the Stripe webhook endpoint we_" in first.get_data(as_text=True)
    [endpoint] = _ours(sdk, url)
    assert endpoint.api_version == stripe.api_version
    assert sorted(endpoint.enabled_events) == sorted(WEBHOOK_EVENTS)
    assert endpoint.metadata.to_dict() == {"managed_by": "revops", "installation_id": cfg.installation_id}
    with unit_of_work(cfg.database_url) as session:
        [stored] = session.scalars(select(StripeWebhookEndpoint)).all()
        assert stored.id == endpoint.id and stored.secret.startswith("whsec_") and stored.created_by == (
            "admin@example.com")
        secret = stored.secret
    assert secret != cfg.stripe_webhook_secret

    second = admin.post("/admin/stripe/webhook", data={"csrf_token": csrf}, follow_redirects=True)
    assert f"{endpoint.id} was already registered; nothing changed" in second.get_data(as_text=True)
    assert [e.id for e in _ours(sdk, url)] == [endpoint.id]
    with unit_of_work(cfg.database_url) as session:
        assert len(session.scalars(select(StripeWebhookEndpoint)).all()) == 1

    # The next event Stripe sends is signed with the stored secret, not STRIPE_WEBHOOK_SECRET.
    assert signing_secrets(cfg) == [cfg.stripe_webhook_secret, secret]
    customer = sdk.v1.customers.create({"email": "hook@example.com"})
    assert fresh_stripe_sandbox.wait_for_webhooks(15)

    def delivered() -> list[InboundEvent]:
        with unit_of_work(cfg.database_url) as session:
            return list(session.scalars(select(InboundEvent).where(InboundEvent.source == "stripe",
                                                                   InboundEvent.event_type == "customer.created")))

    [event] = wait_until(delivered, timeout=15)
    assert customer.id in event.body and event.status in ("processed", "ignored")

    page = admin.get("/admin/stripe/webhook").get_data(as_text=True)
    ours = page[page.index('id="our-status"'):page.index('id="stripe-status"')]
    assert "customer.created" in ours and "none yet" not in ours
    assert re.search(r"\d+\.\d s from Stripe creating it", ours)
    theirs = page[page.index('id="stripe-status"'):]
    assert endpoint.id in theirs and "enabled" in theirs and "stored here" in theirs
    assert f"{len(WEBHOOK_EVENTS)}, all the server needs" in theirs
    assert secret not in page  # stored to verify deliveries, never shown

    # Stripe's side changes are shown: an endpoint disabled in the dashboard.
    sdk.v1.webhook_endpoints.update(endpoint.id, {"disabled": True})
    status = admin.get("/api/stripe/webhook").get_json()
    assert status["stripe"]["status"] == "disabled" and status["stripe"]["endpoint_id"] == endpoint.id
    assert status["ours"]["last_event_type"] == "customer.created"
    assert status["ours"]["received_24h"] >= 1
    assert secret not in str(status)


def test_a_delivery_signed_with_neither_secret_is_refused(served: tuple[Flask, Settings]) -> None:
    app, cfg = served
    import hashlib
    import hmac
    import time

    payload = b'{"id": "evt_Forged1", "type": "customer.created", "data": {"object": {}}}'
    stamp = int(time.time())
    mac = hmac.new(b"whsec_someone_else", f"{stamp}.".encode() + payload, hashlib.sha256).hexdigest()
    response = app.test_client().post("/webhooks/stripe", data=payload,
                                      headers={"Stripe-Signature": f"t={stamp},v1={mac}"})
    assert response.status_code == 400
    with unit_of_work(cfg.database_url) as session:
        assert session.scalars(select(InboundEvent)).all() == []


def test_an_endpoint_whose_secret_is_not_stored_here_is_explained(
        served: tuple[Flask, Settings], fresh_stripe_sandbox: Any, users: dict[str, str]) -> None:
    app, cfg = served
    sdk = fresh_stripe_sandbox.client()
    made = sdk.v1.webhook_endpoints.create({
        "url": cfg.public_url + "/webhooks/stripe", "enabled_events": ["invoice.paid"],
        "metadata": {"managed_by": "revops", "installation_id": cfg.installation_id}})
    response = app.test_client().post("/api/stripe/webhook", headers=auth(users["admin"]))
    assert response.status_code == 409
    message = response.get_json()["error"]
    assert made.id in message and "Delete that endpoint in the Stripe dashboard" in message
    assert len(_ours(sdk, cfg.public_url + "/webhooks/stripe")) == 1  # nothing was created


def test_outdated_events_are_brought_up_to_date(served: tuple[Flask, Settings], fresh_stripe_sandbox: Any,
                                                users: dict[str, str]) -> None:
    app, cfg = served
    client = app.test_client()
    assert client.post("/api/stripe/webhook", headers=auth(users["admin"])).status_code == 200
    sdk = fresh_stripe_sandbox.client()
    [endpoint] = _ours(sdk, cfg.public_url + "/webhooks/stripe")
    sdk.v1.webhook_endpoints.update(endpoint.id, {"enabled_events": ["invoice.paid"]})
    assert client.get("/api/stripe/webhook", headers=auth(users["admin"])).get_json()["stripe"]["missing_events"]
    again = client.post("/api/stripe/webhook", headers=auth(users["admin"])).get_json()
    assert "now sends the events this server needs" in again["message"]
    assert again["stripe"]["missing_events"] == []
    assert sorted(sdk.v1.webhook_endpoints.retrieve(endpoint.id).enabled_events) == sorted(WEBHOOK_EVENTS)


def test_only_admins_set_up_the_webhook(app: Flask, users: dict[str, str]) -> None:
    client = app.test_client()
    for role in ("viewer", "operator"):
        assert client.get("/api/stripe/webhook", headers=auth(users[role])).status_code == 403
        assert client.post("/api/stripe/webhook", headers=auth(users[role])).status_code == 403
    assert client.get("/admin/stripe/webhook").status_code == 302  # to the sign-in page


def test_the_events_are_valid_and_cover_what_the_receiver_acts_on() -> None:
    import inspect

    import stripe.params._webhook_endpoint_create_params as create_params

    from web.stripe_webhooks import INVOICE_EVENTS, MONEY_BACK_EVENTS

    source = inspect.getsource(create_params)
    accepted = set(re.findall(r'"([a-z_]+(?:\.[a-z_]+)+)"', source))
    assert set(WEBHOOK_EVENTS) <= accepted, sorted(set(WEBHOOK_EVENTS) - accepted)
    assert len(WEBHOOK_EVENTS) == len(set(WEBHOOK_EVENTS))
    assert set(INVOICE_EVENTS) | set(MONEY_BACK_EVENTS) <= set(WEBHOOK_EVENTS)
    # Balance changes arrive as customer.updated (there is no customer_balance_transaction event).
    assert "customer.updated" in WEBHOOK_EVENTS
