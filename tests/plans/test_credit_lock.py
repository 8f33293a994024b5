"""The credit amount and discount are what the upfront invoice sells: once it exists, they are
locked like the price (a changed credit would give the customer another amount than invoiced)."""

from __future__ import annotations

from domain.plan_rules import PlanFacts, Progress, locked_fields


def test_credit_and_discount_lock_with_the_upfront_invoice() -> None:
    facts = PlanFacts(plan_id=1, credit_amount=12_000_000, price=9_600_000, discount="20")
    assert "credit_amount" not in locked_fields(facts, Progress(customer_id="cus_1"))
    locked = locked_fields(facts, Progress(customer_id="cus_1", invoice_id="in_1", invoice_status="draft"))
    assert {"price", "credit_amount", "discount"} <= set(locked)
    assert "in_1" in locked["credit_amount"]
