"""Runbook, monthly setup: the new installment customer gets new virtual bank account details, so
the row's checklist says the customer must be sent them, with the details Stripe has (through the
plan API, the worker and the Stripe sandbox's funding instructions)."""

from __future__ import annotations

from tests.fixtures.stack import LiveStack
from tests.plans.helpers import act
from tests.plans.test_monthly import monthly_plan


async def test_the_installment_customers_bank_details_are_on_the_checklist(live_stack: LiveStack) -> None:
    s = live_stack
    stripe = s.stripe()
    existing = stripe.v1.customers.create({"email": "billing@installments.test", "name": "Installments Inc"})
    plan = act(s, monthly_plan(s, existing.id)["id"], "create_customer")
    new_id = plan["stripe_customer_id"]
    [bank] = [c for c in plan["workflow"]["checks"] if c["check"] == "bank_transfer"]
    assert bank["status"] == "to send"
    # The details are the new customer's own virtual account (Stripe gives the same one each time).
    account = stripe.v1.customers.funding_instructions.create(new_id, {
        "currency": "usd", "funding_type": "bank_transfer", "bank_transfer": {"type": "us_bank_transfer"}})
    aba = account.bank_transfer.financial_addresses[0].aba
    assert f"routing number {aba.routing_number}, account number {aba.account_number}" in bank["label"]
    assert new_id in bank["label"] and "old customer" in bank["label"]

    # A currency the server does not ask Stripe about still puts the line on the checklist.
    euro = act(s, monthly_plan(s, existing.id, currency="eur", posthog_org_id="org_eur")["id"], "create_customer")
    [line] = [c for c in euro["workflow"]["checks"] if c["check"] == "bank_transfer"]
    assert line["status"] == "unknown" and "EUR" in line["label"] and euro["stripe_customer_id"] in line["label"]
