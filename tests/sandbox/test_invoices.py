"""Invoices and invoice items through the SDK: lifecycle, balance application, lines, filters."""

from __future__ import annotations

import uuid

import pytest
import stripe

from sandbox.stripe import catalog
from sandbox.stripe.harness import StripeSandbox


@pytest.fixture
def client(stripe_sandbox: StripeSandbox) -> stripe.StripeClient:
    return stripe_sandbox.client()


def _customer(client: stripe.StripeClient) -> stripe.Customer:
    return client.v1.customers.create({"email": f"{uuid.uuid4().hex[:8]}@example.com"})


def _draft(client: stripe.StripeClient, cus: str, **extra: object) -> stripe.Invoice:
    return client.v1.invoices.create(
        {"customer": cus, "collection_method": "send_invoice", "days_until_due": 30, **extra}  # type: ignore[typeddict-item]
    )


def test_balance_applies_to_next_finalized_invoice(client: stripe.StripeClient) -> None:
    cus = _customer(client)
    client.v1.customers.balance_transactions.create(cus.id, {"amount": -30000, "currency": "usd"})
    inv = _draft(client, cus.id)
    client.v1.invoice_items.create(
        {"customer": cus.id, "invoice": inv.id, "pricing": {"price": catalog.PRICES["product_analytics"]["default"]}}
    )
    draft = client.v1.invoices.retrieve(inv.id)
    # A draft shows the balance it will use; nothing is applied before finalization.
    assert draft.status == "draft" and draft.total == 45000 and draft.starting_balance == -30000
    assert draft.amount_due == 15000 and client.v1.customers.retrieve(cus.id).balance == -30000

    inv = client.v1.invoices.finalize_invoice(inv.id)
    assert inv.status == "open" and inv.number
    assert inv.starting_balance == -30000 and inv.ending_balance == 0
    assert inv.total == 45000 and inv.amount_due == 15000 and inv.amount_remaining == 15000
    assert client.v1.customers.retrieve(cus.id).balance == 0
    applied = client.v1.customers.balance_transactions.list(cus.id).data[0]
    assert applied.type == "applied_to_invoice" and applied.amount == 30000 and applied.invoice == inv.id

    # Voiding gives the consumed balance back.
    inv = client.v1.invoices.void_invoice(inv.id)
    assert inv.status == "void"
    assert client.v1.customers.retrieve(cus.id).balance == -30000


def test_credit_covering_invoice_marks_it_paid(client: stripe.StripeClient) -> None:
    cus = _customer(client)
    client.v1.customers.balance_transactions.create(cus.id, {"amount": -100000, "currency": "usd"})
    inv = _draft(client, cus.id)
    client.v1.invoice_items.create({"customer": cus.id, "invoice": inv.id, "amount": 40000, "currency": "usd"})
    inv = client.v1.invoices.finalize_invoice(inv.id)
    assert inv.status == "paid" and inv.amount_due == 0 and inv.ending_balance == -60000


def test_invoice_items_variants_and_lines(client: stripe.StripeClient) -> None:
    cus = _customer(client)
    coupon = client.v1.coupons.create({"percent_off": 10, "duration": "once"})
    inv = _draft(client, cus.id, description="annual plan", metadata={"deal": "d1"})
    tiered = catalog.PRICES["product_analytics"]["tiered"]
    client.v1.invoice_items.create(
        {"customer": cus.id, "invoice": inv.id, "pricing": {"price": tiered}, "quantity": 3_000_000}
    )
    client.v1.invoice_items.create(
        {
            "customer": cus.id,
            "invoice": inv.id,
            "amount": 10000,
            "currency": "usd",
            "description": "Setup",
            "period": {"start": 1_700_000_000, "end": 1_731_536_000},
            "discounts": [{"coupon": coupon.id}],
            "metadata": {"k": "v"},
        }
    )
    inv = client.v1.invoices.retrieve(inv.id)
    # graduated: 1M free + 1M x 0.005 + 1M x 0.00343 = 5000 + 3430
    assert inv.subtotal == 8430 + 10000
    assert inv.total == 8430 + 9000
    assert inv.total_discount_amounts[0].amount == 1000
    lines = client.v1.invoices.line_items.list(inv.id)
    assert [ln.amount for ln in lines.data] == [8430, 10000]
    assert lines.data[0].pricing.price_details.price == tiered
    assert lines.data[1].period.start == 1_700_000_000
    assert lines.data[1].parent.type == "invoice_item_details"
    assert inv.lines.data[0].id == lines.data[0].id


def test_lifecycle_send_pay_charge_and_events(client: stripe.StripeClient) -> None:
    cus = _customer(client)
    inv = _draft(client, cus.id)
    client.v1.invoice_items.create({"customer": cus.id, "invoice": inv.id, "amount": 2000, "currency": "usd"})
    client.v1.invoices.finalize_invoice(inv.id)
    client.v1.invoices.send_invoice(inv.id)
    # The customer has no card: paying needs one (a test token makes and attaches a real one).
    paid = client.v1.invoices.pay(inv.id, {"payment_method": "pm_card_visa", "expand": ["payments"]})
    assert paid.status == "paid" and paid.amount_paid == 2000 and paid.amount_remaining == 0
    payment = paid.payments.data[0]
    assert payment.payment.type == "payment_intent" and payment.status == "paid" and payment.amount_paid == 2000
    intent = client.v1.payment_intents.retrieve(payment.payment.payment_intent)
    assert intent.status == "succeeded" and intent.amount_received == 2000
    charge = client.v1.charges.retrieve(intent.latest_charge, {"expand": ["balance_transaction"]})
    assert charge.status == "succeeded" and charge.amount == 2000 and charge.customer == cus.id
    assert charge.payment_intent == intent.id and charge.payment_method == intent.payment_method
    assert charge.balance_transaction.id.startswith("txn_") and charge.balance_transaction.fee == 88
    events = client.v1.events.list({"types": ["invoice.finalized", "invoice.sent", "invoice.paid"], "limit": 100})
    mine = [e.type for e in events.data if e.data.object.id == inv.id]
    assert sorted(mine) == ["invoice.finalized", "invoice.paid", "invoice.sent"]
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.pay(inv.id)


def test_paid_out_of_band_makes_no_charge(client: stripe.StripeClient) -> None:
    cus = _customer(client)
    inv = _draft(client, cus.id)
    client.v1.invoice_items.create({"customer": cus.id, "invoice": inv.id, "amount": 5000, "currency": "usd"})
    client.v1.invoices.finalize_invoice(inv.id)
    inv = client.v1.invoices.pay(inv.id, {"paid_out_of_band": True, "expand": ["payments"]})
    assert inv.status == "paid" and inv.amount_paid_off_stripe == 5000
    [payment] = inv.payments.data
    assert payment.payment.type == "out_of_band_payment" and payment.amount_paid == 5000 and payment.is_default
    assert client.v1.charges.list({"customer": cus.id}).data == []
    assert client.v1.payment_intents.list({"customer": cus.id}).data == []


def test_mark_uncollectible_delete_draft_and_filters(client: stripe.StripeClient) -> None:
    cus = _customer(client)
    a = _draft(client, cus.id)
    client.v1.invoice_items.create({"customer": cus.id, "invoice": a.id, "amount": 100, "currency": "usd"})
    client.v1.invoices.finalize_invoice(a.id)
    a = client.v1.invoices.mark_uncollectible(a.id)
    assert a.status == "uncollectible" and a.status_transitions.marked_uncollectible_at
    b = _draft(client, cus.id)
    assert [i.id for i in client.v1.invoices.list({"customer": cus.id, "status": "draft"}).data] == [b.id]
    assert [i.id for i in client.v1.invoices.list({"customer": cus.id, "status": "uncollectible"}).data] == [a.id]
    gone = client.v1.invoices.delete(b.id)
    assert gone.deleted is True
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.retrieve(b.id)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.delete(a.id)  # only drafts


def test_send_invoice_requires_due(client: stripe.StripeClient) -> None:
    cus = _customer(client)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.create({"customer": cus.id, "collection_method": "send_invoice"})
    due = client.v1.invoices.create(
        {"customer": cus.id, "collection_method": "send_invoice", "due_date": 2_000_000_000}
    )
    assert due.due_date == 2_000_000_000


def test_auto_advance_sets_finalize_time(client: stripe.StripeClient, stripe_sandbox: StripeSandbox) -> None:
    cus = _customer(client)
    inv = _draft(client, cus.id, auto_advance=True)
    assert inv.auto_advance is True
    assert inv.automatically_finalizes_at == pytest.approx(stripe_sandbox.now() + 3600, abs=5)


def test_items_only_on_drafts_and_pending_items(client: stripe.StripeClient) -> None:
    cus = _customer(client)
    pending = client.v1.invoice_items.create({"customer": cus.id, "amount": 700, "currency": "usd"})
    assert pending.invoice is None
    inv = client.v1.invoices.create(
        {
            "customer": cus.id,
            "collection_method": "send_invoice",
            "days_until_due": 5,
            "pending_invoice_items_behavior": "include",
        }
    )
    assert inv.total == 700 and client.v1.invoice_items.retrieve(pending.id).invoice == inv.id
    client.v1.invoices.finalize_invoice(inv.id)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoice_items.create({"customer": cus.id, "invoice": inv.id, "amount": 1, "currency": "usd"})
