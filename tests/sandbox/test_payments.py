"""Charges, balance transactions, refunds, credit notes and disputes (what the revenue sync lists)."""

from __future__ import annotations

import uuid

import pytest
import stripe

from sandbox.stripe.harness import StripeSandbox

from .helpers import control


@pytest.fixture
def client(stripe_sandbox: StripeSandbox) -> stripe.StripeClient:
    return stripe_sandbox.client()


def _paid_invoice(client: stripe.StripeClient, amount: int = 10000) -> tuple[stripe.Customer, stripe.Invoice, str]:
    cus = client.v1.customers.create(
        {
            "email": f"{uuid.uuid4().hex[:8]}@example.com",
            "payment_method": "pm_card_visa",
            "invoice_settings": {"default_payment_method": "pm_card_visa"},
        }
    )
    inv = client.v1.invoices.create({"customer": cus.id, "collection_method": "send_invoice", "days_until_due": 30})
    client.v1.invoice_items.create({"customer": cus.id, "invoice": inv.id, "amount": amount, "currency": "usd"})
    inv = client.v1.invoices.pay(inv.id, {"expand": ["payments"]})  # draft -> finalized -> paid by the card
    intent = client.v1.payment_intents.retrieve(inv.payments.data[0].payment.payment_intent)
    return cus, inv, intent.latest_charge


def test_charge_and_refund(client: stripe.StripeClient) -> None:
    cus, inv, charge_id = _paid_invoice(client)
    assert [c.id for c in client.v1.charges.list({"customer": cus.id}).data] == [charge_id]
    refund = client.v1.refunds.create({"charge": charge_id, "amount": 4000, "reason": "requested_by_customer"})
    assert refund.id.startswith("re_") and refund.status == "succeeded" and refund.amount == 4000
    charge = client.v1.charges.retrieve(charge_id)
    assert charge.amount_refunded == 4000 and charge.refunded is False
    rest = client.v1.refunds.create({"charge": charge_id})
    assert rest.amount == 6000 and client.v1.charges.retrieve(charge_id).refunded is True
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.refunds.create({"charge": charge_id, "amount": 1})
    assert {r.id for r in client.v1.refunds.list({"charge": charge_id}).data} == {refund.id, rest.id}
    txn = client.v1.balance_transactions.retrieve(refund.balance_transaction)
    assert txn.type == "refund" and txn.amount == -4000 and txn.source == refund.id
    assert client.v1.balance_transactions.list({"type": "refund", "limit": 100}).data
    events = client.v1.events.list({"type": "charge.refunded"}).data
    assert events[0].data.object.id == charge_id and events[0].data.previous_attributes.amount_refunded == 4000


def test_credit_notes_on_open_and_paid_invoices(client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create({"email": "cn@example.com"})
    inv = client.v1.invoices.create({"customer": cus.id, "collection_method": "send_invoice", "days_until_due": 30})
    client.v1.invoice_items.create({"customer": cus.id, "invoice": inv.id, "amount": 9000, "currency": "usd"})
    inv = client.v1.invoices.finalize_invoice(inv.id)
    pre = client.v1.credit_notes.create({"invoice": inv.id, "amount": 2000, "reason": "order_change"})
    assert pre.id.startswith("cn_") and pre.type == "pre_payment" and pre.amount == 2000
    inv = client.v1.invoices.retrieve(inv.id)
    assert inv.amount_remaining == 7000 and inv.pre_payment_credit_notes_amount == 2000

    _, paid, charge_id = _paid_invoice(client, 5000)
    line = client.v1.invoices.line_items.list(paid.id).data[0]
    post = client.v1.credit_notes.create(
        {
            "invoice": paid.id,
            "lines": [{"type": "invoice_line_item", "invoice_line_item": line.id, "amount": 1500}],
            "refund_amount": 1500,
        }
    )
    assert post.type == "post_payment" and post.amount == 1500 and post.refunds[0].refund.startswith("re_")
    assert client.v1.charges.retrieve(charge_id).amount_refunded == 1500
    credit = client.v1.credit_notes.create({"invoice": paid.id, "amount": 500})
    assert credit.customer_balance_transaction
    assert client.v1.customers.retrieve(paid.customer).balance == -500
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.credit_notes.create({"invoice": paid.id, "amount": 999999})
    listed = client.v1.credit_notes.list({"invoice": paid.id})
    assert [c.id for c in listed.data] == [credit.id, post.id]
    assert client.v1.credit_notes.retrieve(post.id).lines.data[0].invoice_line_item == line.id
    assert "credit_note.created" in [e.type for e in client.v1.events.list({"limit": 30}).data]


def test_disputes(stripe_sandbox: StripeSandbox, client: stripe.StripeClient) -> None:
    _, _, charge_id = _paid_invoice(client, 7000)
    dispute = control(stripe_sandbox, "POST", "/_sandbox/disputes", {"charge": charge_id})
    assert dispute["id"].startswith("dp_") and dispute["amount"] == 7000
    got = client.v1.disputes.retrieve(dispute["id"], {"expand": ["charge"]})
    assert got.status == "needs_response" and got.charge.disputed is True
    assert dispute["id"] in [d.id for d in client.v1.disputes.list({"limit": 100}).data]
    assert client.v1.events.list({"type": "charge.dispute.created"}).data[0].data.object.id == dispute["id"]
