"""Fault injection: what the client sees, and that the sandbox state is what Stripe's would be."""

from __future__ import annotations

import threading
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
    pm = client.v1.payment_methods.attach("pm_card_visa", {"customer": cus.id})
    inv = client.v1.invoices.create({"customer": cus.id, "collection_method": "send_invoice", "days_until_due": 3})
    client.v1.invoice_items.create({"customer": cus.id, "invoice": inv.id, "amount": 100, "currency": "usd"})
    paid = client.v1.invoices.pay(inv.id, {"payment_method": pm.id})
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


def _post(sb: StripeSandbox, path: str, data: dict[str, str], key: str) -> requests.Response:
    return requests.post(sb.url + path, data=data, headers={**AUTH, "Idempotency-Key": key}, timeout=10)


def test_a_500_from_a_request_that_ran_is_replayed_for_its_key(fresh_stripe_sandbox: StripeSandbox) -> None:
    sb = fresh_stripe_sandbox
    sb.set_faults({"rules": [{"method": "POST", "path": "/v1/customers", "server_error": "first"}]})
    client = sb.client(max_network_retries=3)
    email = _email()
    key = f"cus-{uuid.uuid4().hex}"
    with pytest.raises(stripe.APIError) as exc:
        client.v1.customers.create({"email": email}, {"idempotency_key": key})
    # Stripe-Should-Retry: false stops the SDK after one attempt; the retry would get the same 500.
    assert exc.value.http_status == 500 and exc.value.headers["Stripe-Should-Retry"] == "false"
    assert "Idempotent-Replayed" not in exc.value.headers
    first_log = exc.value.json_body["error"]["request_log_url"]

    replay = _post(sb, "/v1/customers", {"email": email}, key)
    assert replay.status_code == 500 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.headers["Stripe-Should-Retry"] == "false"
    assert replay.json()["error"]["request_log_url"] == first_log  # the stored first response
    sb.clear_faults()
    again = _post(sb, "/v1/customers", {"email": email}, key)
    assert again.status_code == 500 and again.headers["Idempotent-Replayed"] == "true"
    assert _count(client, email) == 0  # nothing was written
    # Other parameters with that key are still refused; a new key runs the request.
    other = _post(sb, "/v1/customers", {"email": "other@example.com"}, key)
    assert other.status_code == 400 and other.json()["error"]["type"] == "idempotency_error"
    assert client.v1.customers.create({"email": email}).email == email
    assert _count(client, email) == 1


def test_a_crashing_handler_500_is_stored_too(
    fresh_stripe_sandbox: StripeSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sandbox.stripe.router import ROUTES

    sb = fresh_stripe_sandbox
    route = next(r for r in ROUTES if r.method == "POST" and r.path == "/v1/products")
    calls = []

    def boom(*args: object, **kw: object) -> None:
        calls.append(1)
        raise RuntimeError("a sandbox bug")

    monkeypatch.setattr(route, "handler", boom)
    key = f"prod-{uuid.uuid4().hex}"
    first = _post(sb, "/v1/products", {"name": "Crash"}, key)
    second = _post(sb, "/v1/products", {"name": "Crash"}, key)
    assert first.status_code == second.status_code == 500
    assert first.json()["error"]["type"] == "api_error" and first.headers["Stripe-Should-Retry"] == "false"
    assert second.headers["Idempotent-Replayed"] == "true" and second.json() == first.json()
    assert calls == [1]  # the replay did not run the handler again


def test_server_error_rule_can_say_retry(fresh_stripe_sandbox: StripeSandbox) -> None:
    sb = fresh_stripe_sandbox
    sb.set_faults({"rules": [{"path": "/v1/customers", "server_error": 1.0, "should_retry": True}]})
    r = _post(sb, "/v1/customers", {}, f"k-{uuid.uuid4().hex}")
    assert r.status_code == 500 and r.headers["Stripe-Should-Retry"] == "true"
    # A fault before the request ran (error_rate) is not stored: the same key then runs the request.
    sb.set_faults({"rules": [{"path": "/v1/customers", "error_rate": 1.0, "status": 503, "should_retry": True}]})
    key = f"k-{uuid.uuid4().hex}"
    r = _post(sb, "/v1/customers", {}, key)
    assert r.status_code == 503 and r.headers["Stripe-Should-Retry"] == "true"
    sb.clear_faults()
    r = _post(sb, "/v1/customers", {}, key)
    assert r.status_code == 200 and "Idempotent-Replayed" not in r.headers


def test_lost_connection_then_same_key_gets_the_stored_success(fresh_stripe_sandbox: StripeSandbox) -> None:
    sb = fresh_stripe_sandbox
    sb.set_faults({"rules": [{"method": "POST", "path": "/v1/customers", "lost_response": "first", "mode": "drop"}]})
    key = f"k-{uuid.uuid4().hex}"
    with pytest.raises(requests.ConnectionError):
        _post(sb, "/v1/customers", {"email": "drop@example.com"}, key)
    r = _post(sb, "/v1/customers", {"email": "drop@example.com"}, key)
    assert r.status_code == 200 and r.headers["Idempotent-Replayed"] == "true"
    assert "Stripe-Should-Retry" not in r.headers


def test_same_key_concurrently_gets_409(fresh_stripe_sandbox: StripeSandbox) -> None:
    sb = fresh_stripe_sandbox
    sb.set_faults({"rules": [{"method": "POST", "path": "/v1/customers", "latency_ms": 600}]})
    key = f"k-{uuid.uuid4().hex}"
    first: list[requests.Response] = []
    slow = threading.Thread(target=lambda: first.append(_post(sb, "/v1/customers", {"email": "c@example.com"}, key)))
    slow.start()
    time.sleep(0.2)  # the first request holds the key (it is sleeping in the injected latency)
    with pytest.raises(stripe.APIError) as exc:  # the SDK maps a 409 to its generic APIError
        sb.client(max_network_retries=0).v1.customers.create({"email": "c@example.com"}, {"idempotency_key": key})
    assert exc.value.http_status == 409 and exc.value.error.type == "idempotency_error"
    assert exc.value.headers["Stripe-Should-Retry"] == "true"
    slow.join()
    assert first[0].status_code == 200
    # Once the first finished, the same key replays its result.
    r = _post(sb, "/v1/customers", {"email": "c@example.com"}, key)
    assert r.headers["Idempotent-Replayed"] == "true" and r.json()["id"] == first[0].json()["id"]
