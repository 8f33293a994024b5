"""Each metric moves when its event happens: real SDK calls against the Stripe sandbox, real HTTP
into Flask, `/metrics` read the way Prometheus reads it (issue 15, "What it must show" 1).

Counters are per process, so every test compares a scrape before with one after."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import pytest
import stripe
from flask.testing import FlaskClient
from hypothesis import given
from hypothesis import strategies as st

from activities.stripe_api import stripe_client, sync_client
from observability.metrics import stripe_endpoint
from settings import Settings
from store.db import unit_of_work
from store.plans import create_plan
from tests.fixtures.app import auth
from tests.operations.conftest import scrape, total, value

# --- Stripe requests: endpoint templates -----------------------------------------------------------

RESOURCE = st.from_regex(r"[a-z]+(_[a-z]+)*", fullmatch=True)
STRIPE_ID = st.builds(lambda prefix, body, digit: f"{prefix}_{body}{digit}",
                      st.sampled_from(["cus", "in", "sub_sched", "we", "evt", "price", "cbtxn", "il"]),
                      st.from_regex(r"[A-Za-z0-9]{4,20}", fullmatch=True), st.sampled_from("0123456789"))


@given(st.lists(st.tuples(RESOURCE, STRIPE_ID), min_size=1, max_size=3), RESOURCE)
def test_every_id_collapses_and_every_name_stays(pairs: list[tuple[str, str]], action: str) -> None:
    path = "/v1/" + "/".join(f"{name}/{object_id}" for name, object_id in pairs) + f"/{action}"
    expected = "/v1/" + "/".join(f"{name}/{{id}}" for name, _ in pairs) + f"/{action}"
    assert stripe_endpoint(f"https://api.stripe.com{path}?expand[]=x") == expected


def test_known_endpoints_keep_their_names() -> None:
    assert stripe_endpoint("http://127.0.0.1:12111/v1/customers") == "/v1/customers"
    assert stripe_endpoint("https://api.stripe.com/v1/invoices/in_1Qx/finalize") == "/v1/invoices/{id}/finalize"
    assert stripe_endpoint("https://api.stripe.com/v1/test_helpers/test_clocks/clock_9Zz/advance") == (
        "/v1/test_helpers/test_clocks/{id}/advance")
    assert stripe_endpoint("https://api.stripe.com/v1/webhook_endpoints") == "/v1/webhook_endpoints"


# --- Stripe requests: counted by endpoint and status, 429 and 5xx visible ---------------------

def test_stripe_requests_by_endpoint_and_status(client: FlaskClient, sandbox_settings: Settings,
                                                fresh_stripe_sandbox: Any) -> None:
    sdk = stripe_client(sandbox_settings)
    before = scrape(client)
    customer = sdk.v1.customers.create({"email": "metrics@example.com"})
    sdk.v1.customers.retrieve(customer.id)
    with pytest.raises(stripe.InvalidRequestError):
        sdk.v1.customers.retrieve("cus_DoesNotExist1")
    after = scrape(client)
    created = ("revops_stripe_requests_total", dict(method="POST", endpoint="/v1/customers", status="200"))
    assert value(after, created[0], **created[1]) - value(before, created[0], **created[1]) == 1
    read = dict(method="GET", endpoint="/v1/customers/{id}")
    assert value(after, "revops_stripe_requests_total", **read, status="200") - value(
        before, "revops_stripe_requests_total", **read, status="200") == 1
    assert value(after, "revops_stripe_requests_total", **read, status="404") - value(
        before, "revops_stripe_requests_total", **read, status="404") == 1
    timed = "revops_stripe_request_duration_seconds_count"
    assert value(after, timed, **read) - value(before, timed, **read) == 2

    # A 429 and a 500: each attempt the SDK makes is counted, so retried failures stay visible.
    fresh_stripe_sandbox.set_faults({"rules": [{"path": "/v1/products", "rate_limit": True, "retry_after": 0}]})
    with pytest.raises(stripe.RateLimitError):
        sdk.v1.products.list({"limit": 1}, {"max_network_retries": 0})
    fresh_stripe_sandbox.set_faults({"rules": [{"path": "/v1/prices", "error_rate": 1.0, "status": 503}]})
    with pytest.raises(stripe.APIError):
        sdk.v1.prices.list({"limit": 1}, {"max_network_retries": 1})
    fresh_stripe_sandbox.clear_faults()
    final = scrape(client)
    assert value(final, "revops_stripe_requests_total", method="GET", endpoint="/v1/products", status="429") - value(
        after, "revops_stripe_requests_total", method="GET", endpoint="/v1/products", status="429") == 1
    assert value(final, "revops_stripe_requests_total", method="GET", endpoint="/v1/prices", status="503") - value(
        after, "revops_stripe_requests_total", method="GET", endpoint="/v1/prices", status="503") == 2


def test_a_request_with_no_answer_counts_as_a_network_error(client: FlaskClient, sandbox_settings: Settings) -> None:
    import socket
    from dataclasses import replace

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    nowhere = replace(sandbox_settings, stripe_api_base=f"http://127.0.0.1:{port}", stripe_max_network_retries=0)
    before = scrape(client)
    with pytest.raises(stripe.APIConnectionError):
        stripe_client(nowhere).v1.customers.list({"limit": 1})
    after = scrape(client)
    labels = dict(method="GET", endpoint="/v1/customers", status="network_error")
    assert value(after, "revops_stripe_requests_total", **labels) - value(
        before, "revops_stripe_requests_total", **labels) == 1


# --- plans by state -----------------------------------------------------------------------------

def test_plans_by_state_follow_the_rows(client: FlaskClient, settings: Settings, users: dict[str, str]) -> None:
    assert value(scrape(client), "revops_plans", state="new") == 0
    body = {"company_name": "Metrics Inc", "customer_email": "ap@metrics.test", "credit_amount": "1200.00",
            "discount": "0", "price": "1200.00", "start_date": "2031-01-01", "term_months": 12}
    for _ in range(2):
        assert client.post("/api/plans", json=body, headers=auth(users["operator"])).status_code == 201
    with unit_of_work(settings.database_url) as session:
        plan, _ = create_plan(session, {**body, "customer_email": "not an email"}, actor="test", keep_invalid=True)
        assert plan is not None
        broken_state = plan.state
    samples = scrape(client)
    assert value(samples, "revops_plans", state="new") == 2
    assert broken_state != "new" and value(samples, "revops_plans", state=broken_state) == 1
    assert value(samples, "revops_metrics_database_up") == 1


# --- button clicks --------------------------------------------------------------------------------

def test_clicks_by_action_and_outcome(client: FlaskClient, settings: Settings, users: dict[str, str]) -> None:
    with unit_of_work(settings.database_url) as session:
        plan, _ = create_plan(session, {"company_name": "Broken", "customer_email": "nope", "price": "-1"},
                              actor="test", keep_invalid=True)
        assert plan is not None
        broken = plan.id
    before = scrape(client)
    refused = client.post(f"/api/plans/{broken}/actions/create_customer", headers=auth(users["operator"]))
    assert refused.status_code == 409
    missing = client.post("/api/plans/9999/actions/create_invoice", headers=auth(users["operator"]))
    assert missing.status_code == 404
    typo = client.post(f"/api/plans/{broken}/actions/create_custmer", headers=auth(users["operator"]))
    assert typo.status_code == 404
    after = scrape(client)
    clicks = "revops_button_clicks_total"
    assert value(after, clicks, action="create_customer", outcome="refused") - value(
        before, clicks, action="create_customer", outcome="refused") == 1
    assert value(after, clicks, action="create_invoice", outcome="not_found") - value(
        before, clicks, action="create_invoice", outcome="not_found") == 1
    # A typo is not a new time series per spelling.
    assert value(after, clicks, action="unknown", outcome="not_found") - value(
        before, clicks, action="unknown", outcome="not_found") == 1
    assert not any(dict(labels).get("action") == "create_custmer" for _, labels in after)
    # Refused clicks ran no step: no duration.
    assert total(after, "revops_step_duration_seconds_count", action="create_customer") == total(
        before, "revops_step_duration_seconds_count", action="create_customer")


# --- webhook deliveries -------------------------------------------------------------------------

def _signed(event: dict[str, Any], secret: str) -> tuple[bytes, dict[str, str]]:
    payload = json.dumps(event).encode()
    stamp = int(time.time())
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return payload, {"Stripe-Signature": f"t={stamp},v1={mac}", "Content-Type": "application/json"}


def _event(event_id: str, event_type: str, obj: dict[str, Any], created: int) -> dict[str, Any]:
    return {"id": event_id, "object": "event", "type": event_type, "created": created,
            "api_version": stripe.api_version, "data": {"object": obj}, "livemode": False, "pending_webhooks": 1}


def test_stripe_deliveries_received_rejected_duplicated_ignored_failed(client: FlaskClient,
                                                                       sandbox_settings: Settings) -> None:
    secret = sandbox_settings.stripe_webhook_secret
    deliveries, lag = "revops_webhook_deliveries_total", "revops_webhook_processing_lag_seconds"
    before = scrape(client)

    forged, headers = _signed(_event("evt_forged1", "invoice.paid", {"id": "in_1"}, int(time.time())), "whsec_other")
    assert client.post("/webhooks/stripe", data=forged, headers=headers).status_code == 400

    product = {"id": "prod_Metrics1", "object": "product", "name": "Metrics", "active": True, "created": 1,
               "metadata": {}}
    payload, headers = _signed(_event("evt_Product1", "product.created", product, int(time.time()) - 30), secret)
    first = client.post("/webhooks/stripe", data=payload, headers=headers)
    assert first.status_code == 200 and first.get_json()["outcome"] == "ignored"
    again = client.post("/webhooks/stripe", data=payload, headers=headers)
    assert again.get_json()["duplicate"] is True

    # An invoice of a plan: its workflow must be signalled, and Temporal is down here.
    invoice = {"id": "in_Metrics1", "object": "invoice", "customer": "cus_X1", "metadata": {"plan_id": "1"},
               "total": 100, "currency": "usd"}
    payload, headers = _signed(_event("evt_Paid1", "invoice.paid", invoice, int(time.time())), secret)
    assert client.post("/webhooks/stripe", data=payload, headers=headers).status_code == 500

    after = scrape(client)

    def moved(outcome: str) -> float:
        return value(after, deliveries, source="stripe", outcome=outcome) - value(
            before, deliveries, source="stripe", outcome=outcome)

    assert (moved("received"), moved("rejected"), moved("ignored"), moved("duplicate"), moved("failed")) == (
        4, 1, 1, 1, 1)
    assert value(after, f"{lag}_count", source="stripe") - value(before, f"{lag}_count", source="stripe") == 1
    # The product event was created 30 s before it was handled.
    assert value(after, f"{lag}_sum", source="stripe") - value(before, f"{lag}_sum", source="stripe") >= 29
    assert value(after, "revops_webhook_last_received_timestamp_seconds", source="stripe") >= time.time() - 60


def test_pandadoc_deliveries_rejected_and_ignored(client: FlaskClient, sandbox_settings: Settings) -> None:
    deliveries = "revops_webhook_deliveries_total"
    before = scrape(client)
    body = json.dumps([{"event": "document_state_changed", "data": {"id": "doc1", "status": "document.draft"}}])
    assert client.post("/webhooks/pandadoc?signature=00", data=body).status_code == 401
    signature = hmac.new(sandbox_settings.pandadoc_webhook_key.encode(), body.encode(), hashlib.sha256).hexdigest()
    assert client.post(f"/webhooks/pandadoc?signature={signature}", data=body).status_code == 200
    after = scrape(client)
    for outcome, count in (("received", 2), ("rejected", 1), ("ignored", 1)):
        assert value(after, deliveries, source="pandadoc", outcome=outcome) - value(
            before, deliveries, source="pandadoc", outcome=outcome) == count, outcome


# --- revenue sync -----------------------------------------------------------------------------

def test_revenue_sync_pages_objects_lag_and_last_success(client: FlaskClient, sandbox_settings: Settings,
                                                         fresh_stripe_sandbox: Any) -> None:
    from store.sync import sync_revenue

    sdk = fresh_stripe_sandbox.client()
    for n in range(3):
        sdk.v1.customers.create({"email": f"sync{n}@example.com"})
    before = scrape(client)
    started = time.time()
    report = sync_revenue(sandbox_settings, full=True, rate=None)
    assert report.kind == "full"
    after = scrape(client)
    pages = "revops_revenue_sync_pages_total"
    assert value(after, pages, endpoint="/v1/customers") - value(before, pages, endpoint="/v1/customers") >= 1
    objects = "revops_revenue_sync_objects_total"
    assert value(after, objects, endpoint="/v1/customers") - value(before, objects, endpoint="/v1/customers") >= 3
    assert value(after, "revops_revenue_sync_runs_total", outcome="succeeded") - value(
        before, "revops_revenue_sync_runs_total", outcome="succeeded") == 1
    assert value(after, "revops_revenue_sync_last_success_timestamp_seconds", kind="full") >= started
    # Right after a complete run the warehouse has every event Stripe had.
    assert ("revops_revenue_sync_lag_seconds", frozenset()) in after
    assert value(after, "revops_revenue_sync_lag_seconds") <= 5
    assert value(after, "revops_revenue_sync_cursor_timestamp_seconds") > 0
    # The reports' data changed with the sync: their freshness is measured from now.
    assert value(after, "revops_revenue_reports_data_timestamp_seconds") >= started - 1

    # A run that fails is counted as failed, and the last success stays where it was.
    fresh_stripe_sandbox.set_faults({"rules": [{"path": "/v1/events", "error_rate": 1.0, "status": 400}]})
    with pytest.raises(stripe.StripeError):
        sync_revenue(sandbox_settings, rate=None)
    fresh_stripe_sandbox.clear_faults()
    failed = scrape(client)
    assert value(failed, "revops_revenue_sync_runs_total", outcome="failed") - value(
        after, "revops_revenue_sync_runs_total", outcome="failed") == 1
    assert value(failed, "revops_revenue_sync_last_success_timestamp_seconds", kind="full") == value(
        after, "revops_revenue_sync_last_success_timestamp_seconds", kind="full")


def test_the_sync_reads_with_its_own_key_when_set(sandbox_settings: Settings) -> None:
    from dataclasses import replace

    own = replace(sandbox_settings, stripe_sync_api_key="rk_test_readonly")
    assert sync_client(own)._requestor.api_key == "rk_test_readonly"  # type: ignore[attr-defined]
    assert sync_client(sandbox_settings)._requestor.api_key == sandbox_settings.stripe_api_key  # type: ignore[attr-defined]
    assert sync_client(sandbox_settings) is not stripe_client(sandbox_settings)
