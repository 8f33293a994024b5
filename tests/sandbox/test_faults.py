"""Fault injection: what the client sees, and that the sandbox state is what Stripe's would be."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import requests
import stripe
from stripe._http_client import HTTPClient

from sandbox.stripe.harness import StripeSandbox

from .helpers import AUTH, control


@pytest.fixture(autouse=True)
def fast_sdk_retries(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The SDK sleeps 0.5 s+ between retries; the behaviour under test is the same at 10 ms.
    monkeypatch.setattr(HTTPClient, "INITIAL_DELAY", 0.01)
    monkeypatch.setattr(HTTPClient, "MAX_DELAY", 0.02)
    yield


def _count(client: stripe.StripeClient, email: str) -> int:
    return len(client.v1.customers.list({"email": email, "limit": 100}).data)


def _email() -> str:
    return f"{uuid.uuid4().hex[:10]}@example.com"


def test_error_rate_fails_before_the_write(fresh_stripe_sandbox: StripeSandbox) -> None:
    sb = fresh_stripe_sandbox
    sb.set_faults({"seed": 1, "rules": [{"method": "POST", "path": "/v1/customers", "error_rate": 1.0, "status": 500}]})
    client = sb.client(max_network_retries=0)
    email = _email()
    with pytest.raises(stripe.APIError) as exc:
        client.v1.customers.create({"email": email})
    assert exc.value.http_status == 500 and exc.value.error.type == "api_error"
    assert _count(client, email) == 0  # GETs are not matched by the POST rule
    sb.clear_faults()
    assert client.v1.customers.create({"email": email}).email == email


def test_seeded_error_rate_is_reproducible(fresh_stripe_sandbox: StripeSandbox) -> None:
    outcomes = []
    for _ in range(2):
        sb = fresh_stripe_sandbox(seed_catalog=False)
        control(
            sb,
            "POST",
            "/_sandbox/faults",
            {"seed": 7, "rules": [{"path_regex": "^/v1/cust", "error_rate": 0.5, "status": 503}]},
        )
        client = sb.client(max_network_retries=0)
        run = []
        for _ in range(12):
            try:
                client.v1.customers.create({})
                run.append("ok")
            except stripe.APIError as e:
                run.append(str(e.http_status))
        outcomes.append(run)
    assert outcomes[0] == outcomes[1]
    assert "ok" in outcomes[0] and "503" in outcomes[0]


def test_rate_limit_429(fresh_stripe_sandbox: StripeSandbox) -> None:
    sb = fresh_stripe_sandbox
    sb.set_faults({"rules": [{"path": "/v1/customers", "rate_limit": True, "retry_after": 1}]})
    client = sb.client()
    email = _email()
    with pytest.raises(stripe.RateLimitError) as exc:
        client.v1.customers.create({"email": email})
    assert exc.value.http_status == 429 and exc.value.error.code == "rate_limit"
    assert exc.value.headers["Retry-After"] == "1"
    r = requests.get(sb.url + "/v1/customers", headers=AUTH, timeout=5)
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit"
    control(sb, "DELETE", "/_sandbox/faults")
    assert _count(client, email) == 0


def test_latency(fresh_stripe_sandbox: StripeSandbox) -> None:
    sb = fresh_stripe_sandbox
    sb.set_faults({"rules": [{"method": "GET", "latency_ms": 200}]})
    client = sb.client()
    t0 = time.monotonic()
    client.v1.customers.list({"limit": 1})
    assert time.monotonic() - t0 >= 0.2
    t0 = time.monotonic()
    client.v1.customers.create({})
    assert time.monotonic() - t0 < 0.2


@pytest.mark.parametrize("mode", ["500", "drop"])
def test_lost_response_without_retries_still_wrote(fresh_stripe_sandbox: StripeSandbox, mode: str) -> None:
    sb = fresh_stripe_sandbox
    sb.set_faults({"rules": [{"method": "POST", "path": "/v1/customers", "lost_response": "first", "mode": mode}]})
    client = sb.client(max_network_retries=0)
    email = _email()
    expected = stripe.APIError if mode == "500" else stripe.APIConnectionError
    with pytest.raises(expected):
        client.v1.customers.create({"email": email})
    assert _count(client, email) == 1  # the write happened; only the response was lost


@pytest.mark.parametrize("mode", ["500", "drop"])
def test_lost_response_sdk_retry_replays_the_one_object(fresh_stripe_sandbox: StripeSandbox, mode: str) -> None:
    sb = fresh_stripe_sandbox
    sb.set_faults({"rules": [{"method": "POST", "lost_response": "first", "mode": mode}]})
    client = sb.client(max_network_retries=2)
    email = _email()
    cus = client.v1.customers.create({"email": email})  # first attempt lost, retry with the same key replayed
    assert cus.email == email
    assert cus.last_response.headers.get("Idempotent-Replayed") == "true"
    listed = client.v1.customers.list({"email": email}).data
    assert [c.id for c in listed] == [cus.id]
    # The same holds for a whole flow: every first write lost, every object exists exactly once.
    inv = client.v1.invoices.create({"customer": cus.id, "collection_method": "send_invoice", "days_until_due": 3})
    client.v1.invoice_items.create({"customer": cus.id, "invoice": inv.id, "amount": 100, "currency": "usd"})
    paid = client.v1.invoices.pay(inv.id)
    assert paid.status == "paid"
    assert len(client.v1.invoices.list({"customer": cus.id}).data) == 1
    assert len(client.v1.invoices.line_items.list(inv.id).data) == 1
    assert len(client.v1.charges.list({"customer": cus.id}).data) == 1


def test_lost_response_without_idempotency_key_duplicates_like_stripe(fresh_stripe_sandbox: StripeSandbox) -> None:
    sb = fresh_stripe_sandbox
    sb.set_faults({"rules": [{"method": "POST", "path": "/v1/customers", "lost_response": 1.0, "mode": "500"}]})
    email = _email()
    for _ in range(2):  # a naive client retrying without an idempotency key
        r = requests.post(sb.url + "/v1/customers", data={"email": email}, headers=AUTH, timeout=5)
        assert r.status_code == 500
    sb.clear_faults()
    assert _count(sb.client(), email) == 2


def test_fault_config_errors(fresh_stripe_sandbox: StripeSandbox) -> None:
    r = requests.post(fresh_stripe_sandbox.url + "/_sandbox/faults", json={"rules": [{"bogus": 1}]}, timeout=5)
    assert r.status_code == 400 and "unknown fault rule keys" in r.json()["error"]["message"]
