"""Issue 11 #7 at the activity level: `plan_verify_payment` re-reads an invoice paid by card
(a PaymentIntent and its charge, as the current API has them) right before a credit is given,
and holds the credit when money went back: a refund or a dispute."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import requests

from activities.plan import PlanActivities
from domain.plan_rules import PlanFacts, Progress, StepInput
from settings import Settings


def _paid_by_card(sandbox: Any, settings: Settings, amount: int = 9_600_000) -> tuple[PlanActivities, StepInput, Any]:
    stripe = sandbox.client()
    customer = stripe.v1.customers.create({"email": f"card-{uuid.uuid4().hex[:6]}@acme.test"})
    invoice = stripe.v1.invoices.create({"customer": customer.id, "collection_method": "send_invoice",
                                         "days_until_due": 30, "currency": "usd"})
    stripe.v1.invoice_items.create({"customer": customer.id, "invoice": invoice.id, "amount": amount,
                                    "currency": "usd"})
    stripe.v1.invoices.finalize_invoice(invoice.id)
    card = stripe.v1.payment_methods.attach("pm_card_visa", {"customer": customer.id})
    stripe.v1.invoices.pay(invoice.id, {"payment_method": card.id})
    cfg = replace(settings, stripe_api_base=sandbox.url, stripe_api_key=sandbox.api_key)
    facts = PlanFacts(plan_id=1, price=amount, credit_amount=12_000_000)
    progress = Progress(customer_id=customer.id, invoice_id=invoice.id, invoice_status="paid", credit="armed")
    step = StepInput(facts, progress, datetime.now(UTC).isoformat())
    paid = stripe.v1.invoices.retrieve(invoice.id, {"expand": ["payments"]})
    intent = stripe.v1.payment_intents.retrieve(paid.payments.data[0].payment.payment_intent)
    return PlanActivities(cfg), step, intent.latest_charge


def test_an_invoice_paid_by_card_releases_the_credit(fresh_stripe_sandbox: Any, settings: Settings) -> None:
    acts, step, _ = _paid_by_card(fresh_stripe_sandbox, settings)
    out = acts.verify_payment(step)
    assert out.progress.credit_hold is None
    assert out.result["money_kept"] == out.result["total"]


def test_a_refund_after_payment_holds_the_credit(fresh_stripe_sandbox: Any, settings: Settings) -> None:
    acts, step, charge = _paid_by_card(fresh_stripe_sandbox, settings)
    fresh_stripe_sandbox.client().v1.refunds.create({"charge": charge, "amount": 100})
    out = acts.verify_payment(step)
    assert out.progress.credit_hold and "refunded 1.00" in out.progress.credit_hold
    assert "the credit is held" in out.progress.credit_hold


def test_a_dispute_after_payment_holds_the_credit(fresh_stripe_sandbox: Any, settings: Settings) -> None:
    acts, step, charge = _paid_by_card(fresh_stripe_sandbox, settings)
    response = requests.post(f"{fresh_stripe_sandbox.url}/_sandbox/disputes", json={"charge": charge}, timeout=10)
    assert response.status_code == 200, response.text
    out = acts.verify_payment(step)
    assert out.progress.credit_hold and "disputed 96,000.00" in out.progress.credit_hold
