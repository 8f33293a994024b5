"""Customers, balance transactions, pagination, expand, idempotency, auth and error shapes."""

from __future__ import annotations

import uuid

import pytest
import stripe

from sandbox.stripe.harness import StripeSandbox

from .helpers import raw


@pytest.fixture
def client(stripe_sandbox: StripeSandbox) -> stripe.StripeClient:
    return stripe_sandbox.client()


def _email() -> str:
    return f"{uuid.uuid4().hex[:10]}@example.com"


def test_customer_crud_and_deleted_stub(client: stripe.StripeClient) -> None:
    email = _email()
    cus = client.v1.customers.create({"email": email, "name": "Ada", "metadata": {"org": "o1"}})
    assert cus.id.startswith("cus_") and cus.object == "customer"
    assert cus.balance == 0 and cus.metadata.to_dict() == {"org": "o1"}

    got = client.v1.customers.retrieve(cus.id)
    assert got.email == email

    upd = client.v1.customers.update(cus.id, {"name": "Ada L", "metadata": {"org": "", "tier": "gold"}})
    assert upd.name == "Ada L" and upd.metadata.to_dict() == {"tier": "gold"}

    listed = client.v1.customers.list({"email": email})
    assert [c.id for c in listed.data] == [cus.id]

    deleted = client.v1.customers.delete(cus.id)
    assert deleted.deleted is True and deleted.id == cus.id
    again = client.v1.customers.retrieve(cus.id)
    assert again.to_dict() == {"id": cus.id, "object": "customer", "deleted": True}
    assert client.v1.customers.list({"email": email}).data == []


def test_missing_customer_is_404_resource_missing(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.customers.retrieve("cus_nope")
    assert exc.value.http_status == 404
    assert exc.value.code == "resource_missing"
    assert exc.value.param == "id"


def test_balance_transactions(client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create({"email": _email()})
    t1 = client.v1.customers.balance_transactions.create(
        cus.id, {"amount": -2500, "currency": "usd", "description": "prepaid credit"}
    )
    assert t1.id.startswith("cbtxn_") and t1.ending_balance == -2500 and t1.type == "adjustment"
    client.v1.customers.balance_transactions.create(cus.id, {"amount": 500, "currency": "usd"})
    assert client.v1.customers.retrieve(cus.id).balance == -2000
    txns = client.v1.customers.balance_transactions.list(cus.id)
    assert [t.amount for t in txns.data] == [500, -2500]  # newest first
    # A second currency is a second balance; `balance` stays the default currency's.
    eur = client.v1.customers.balance_transactions.create(cus.id, {"amount": -700, "currency": "eur"})
    assert eur.currency == "eur" and eur.ending_balance == -700
    again = client.v1.customers.retrieve(cus.id, {"expand": ["invoice_credit_balance"]})
    assert again.balance == -2000 and again.currency == "usd"
    assert again.invoice_credit_balance.to_dict() == {"eur": 700, "usd": 2000}


def test_pagination_across_pages(client: stripe.StripeClient) -> None:
    tag = uuid.uuid4().hex[:8]
    ids = [client.v1.customers.create({"email": f"{tag}-{i}@example.com"}).id for i in range(7)]
    # Only this test's customers: walk the newest ones, which must be ours in reverse order.
    page1 = client.v1.customers.list({"limit": 3})
    assert page1.has_more and [c.id for c in page1.data] == ids[::-1][:3]
    page2 = client.v1.customers.list({"limit": 3, "starting_after": page1.data[-1].id})
    assert [c.id for c in page2.data] == ids[::-1][3:6]
    back = client.v1.customers.list({"limit": 3, "ending_before": page2.data[0].id})
    assert [c.id for c in back.data] == ids[::-1][:3]
    seen = [c.id for c in client.v1.customers.list({"limit": 2}).auto_paging_iter()]
    assert seen[:7] == ids[::-1] and len(seen) == len(set(seen))
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.list({"limit": 101})


def test_expand_on_objects_and_lists(client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create({"email": _email()})
    inv = client.v1.invoices.create({"customer": cus.id, "collection_method": "send_invoice", "days_until_due": 7}, {})
    got = client.v1.invoices.retrieve(inv.id, {"expand": ["customer"]})
    assert got.customer.id == cus.id and got.customer.object == "customer"
    listed = client.v1.invoices.list({"customer": cus.id, "expand": ["data.customer"]})
    assert listed.data[0].customer.email == cus.email
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.invoices.retrieve(inv.id, {"expand": ["nonsense"]})
    assert "cannot be expanded" in str(exc.value.user_message)


def test_idempotent_replay_and_conflict(stripe_sandbox: StripeSandbox, client: stripe.StripeClient) -> None:
    key = uuid.uuid4().hex
    email = _email()
    first = client.v1.customers.create({"email": email}, {"idempotency_key": key})
    second = client.v1.customers.create({"email": email}, {"idempotency_key": key})
    assert first.id == second.id
    assert second.last_response.headers.get("Idempotent-Replayed") == "true"
    assert len(client.v1.customers.list({"email": email}).data) == 1
    with pytest.raises(stripe.IdempotencyError) as exc:
        client.v1.customers.create({"email": _email()}, {"idempotency_key": key})
    assert exc.value.http_status == 400
    # An error response is replayed too, status included.
    bad_key = uuid.uuid4().hex
    r1 = raw(stripe_sandbox, "POST", "/v1/invoices/in_missing/finalize", headers={"Idempotency-Key": bad_key})
    r2 = raw(stripe_sandbox, "POST", "/v1/invoices/in_missing/finalize", headers={"Idempotency-Key": bad_key})
    assert r1.status_code == r2.status_code == 404 and r1.json() == r2.json()
    assert r2.headers["Idempotent-Replayed"] == "true"


def test_auth_and_error_shapes(stripe_sandbox: StripeSandbox) -> None:
    r = raw(stripe_sandbox, "GET", "/v1/customers", headers={"Authorization": "Bearer sk_live_abcdefghijkl"})
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert r.json()["error"]["message"].startswith("Invalid API Key provided")
    r = raw(stripe_sandbox, "GET", "/v1/customers", headers={"Authorization": ""})
    assert r.status_code == 401 and "did not provide an API key" in r.json()["error"]["message"]
    # Basic auth as some clients send it.
    import requests

    r = requests.get(stripe_sandbox.url + "/v1/customers", auth=("sk_test_anything", ""), timeout=5)
    assert r.status_code == 200 and r.json()["object"] == "list"
    assert r.headers["Stripe-Version"] == stripe.api_version
    r = raw(stripe_sandbox, "GET", "/v1/nope")
    assert r.status_code == 404 and "Unrecognized request URL" in r.json()["error"]["message"]
    # Any published version is answered (in the one emulated shape); what is not a version is refused.
    r = raw(stripe_sandbox, "GET", "/v1/customers", headers={"Stripe-Version": "2020-08-27"})
    assert r.status_code == 200
    r = raw(stripe_sandbox, "GET", "/v1/customers", headers={"Stripe-Version": "not-a-version"})
    assert r.status_code == 400


def test_sdk_bad_key_raises_authentication_error(stripe_sandbox: StripeSandbox) -> None:
    client = stripe_sandbox.client(api_key="rk_live_nope")
    with pytest.raises(stripe.AuthenticationError):
        client.v1.customers.list()


def test_nested_form_params_decoded(stripe_sandbox: StripeSandbox) -> None:
    r = raw(
        stripe_sandbox,
        "POST",
        "/v1/customers",
        data="email=x%40y.z&address[line1]=1+Main&address[city]=SF&preferred_locales[]=en&preferred_locales[]=fr"
        "&metadata[a]=1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    body = r.json()
    assert r.status_code == 200, body
    assert body["address"] == {"line1": "1 Main", "city": "SF"}
    assert body["preferred_locales"] == ["en", "fr"]
    assert body["metadata"] == {"a": "1"}


def test_customer_tax_ids_create_and_list(stripe_sandbox) -> None:
    client = stripe_sandbox.client()
    customer = client.v1.customers.create({"email": "tax@example.com"})
    assert client.v1.customers.tax_ids.list(customer.id).data == []
    created = client.v1.customers.tax_ids.create(customer.id, {"type": "eu_vat", "value": "DE123456789"})
    assert created.id.startswith("txi_") and created.value == "DE123456789"
    assert [t.id for t in client.v1.customers.tax_ids.list(customer.id).data] == [created.id]
