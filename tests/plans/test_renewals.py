"""Issue 11 #1: a renewing customer's unused credit balance must not pay the new upfront invoice.

At "Send invoice" the balance is set aside (one balance transaction, exactly once), the invoice is
finalized and sent, and the balance is given back once it is paid or voided. The credit is given
only for an invoice paid in money for its whole total, unless an operator let the old credit pay
it (recorded with the amount). End to end: API, worker, Temporal, the Stripe sandbox, webhooks.
"""

from __future__ import annotations

from typing import Any

from tests.fixtures.stack import LiveStack
from tests.plans.helpers import act, balance_transactions, get_plan, save_history, timeline, upfront_plan, wait_for_plan


def renewing_customer(s: LiveStack, credit: int) -> Any:
    stripe = s.stripe()
    customer = stripe.v1.customers.create({"email": "renewal@acme.test", "name": "Acme Inc"})
    stripe.v1.customers.balance_transactions.create(
        customer.id, {"amount": -credit, "currency": "usd", "description": "Unused credit of last year's plan"})
    return customer


def kinds(s: LiveStack, customer_id: str) -> list[tuple[str, int]]:
    return sorted(((t.metadata.to_dict() if t.metadata else {}).get("revops_kind", ""), t.amount)
                  for t in balance_transactions(s, customer_id) if t.type == "adjustment")


async def test_renewal_holds_the_old_credit_and_gives_it_back(live_stack: LiveStack) -> None:
    s = live_stack
    stripe = s.stripe()
    customer = renewing_customer(s, 3_000_000)
    pid = upfront_plan(s, stripe_customer_id_existing=customer.id, customer_email="renewal@acme.test")["id"]
    for action in ("create_customer", "create_invoice"):
        plan = act(s, pid, action)
    plan = act(s, pid, "send_invoice")
    invoice = stripe.v1.invoices.retrieve(plan["invoice_id"])
    # The old credit did not pay the new invoice: Stripe asks for the whole price in money.
    assert invoice.status == "open" and invoice.amount_due == 9_600_000 and invoice.starting_balance == 0
    held = plan["workflow"]["held_balance"]
    assert held["amount"] == "30,000.00 USD" or held["amount"].replace(",", "").startswith("30000")
    assert "paid or voided" in held["returns"]
    assert stripe.v1.customers.retrieve(customer.id).balance == 0

    # A second click is refused; the hold is never made twice.
    assert s.api("POST", f"/api/plans/{pid}/actions/send_invoice").status_code == 409
    act(s, pid, "apply_credit")
    stripe.v1.invoices.pay(plan["invoice_id"], {"paid_out_of_band": True})
    plan = wait_for_plan(s, pid, lambda p: p["credit_applied_at"]
                         and p["workflow"]["progress"]["held_balance_returned_txn"])

    assert stripe.v1.invoices.retrieve(plan["invoice_id"]).amount_paid == 9_600_000
    assert stripe.v1.customers.retrieve(customer.id).balance == -15_000_000  # 30,000 back + 120,000 new
    assert kinds(s, customer.id) == sorted([
        ("", -3_000_000), ("held_balance", 3_000_000), ("held_balance_return", -3_000_000),
        ("plan_credit", -12_000_000)])
    entries = {e["action"]: e for e in timeline(s, pid) if e["outcome"] == "ok"}
    assert entries["send_invoice"]["result"]["held_balance_transaction"].startswith("cbtxn_")
    assert "held_balance" in entries["send_invoice"]["result"]
    assert entries["return_held_balance"]["outcome"] == "ok"
    assert entries["apply_credit"]["outcome"] == "ok"
    assert entries["check_payment"]["result"]["money_kept"] == entries["check_payment"]["result"]["total"]
    await save_history(s, pid, "upfront_renewal_held_balance")


async def test_a_partial_balance_is_held_too(live_stack: LiveStack) -> None:
    s = live_stack
    stripe = s.stripe()
    customer = renewing_customer(s, 1_000_000)  # 10,000.00: less than the 96,000.00 invoice
    pid = upfront_plan(s, stripe_customer_id_existing=customer.id, customer_email="renewal@acme.test")["id"]
    for action in ("create_customer", "create_invoice", "send_invoice"):
        plan = act(s, pid, action)
    invoice = stripe.v1.invoices.retrieve(plan["invoice_id"])
    assert invoice.amount_due == invoice.total == 9_600_000
    assert plan["workflow"]["progress"]["held_balance"] == 1_000_000
    page = s.api("GET", f"/plans/{pid}", role="viewer")
    assert page.status_code == 200
    assert "Customer credit held" in page.text and "paid or voided" in page.text
    stripe.v1.invoices.void_invoice(plan["invoice_id"])
    wait_for_plan(s, pid, lambda p: p["workflow"]["progress"]["held_balance_returned_txn"])
    assert stripe.v1.customers.retrieve(customer.id).balance == -1_000_000  # given back on void
    assert get_plan(s, pid)["state"] == "invoice_void"


async def test_an_operator_may_let_the_old_credit_pay_the_invoice(live_stack: LiveStack) -> None:
    s = live_stack
    stripe = s.stripe()
    customer = renewing_customer(s, 3_000_000)
    pid = upfront_plan(s, stripe_customer_id_existing=customer.id, customer_email="renewal@acme.test")["id"]
    for action in ("create_customer", "create_invoice"):
        act(s, pid, action)
    plan = act(s, pid, "send_invoice", json={"use_existing_credit": "true"})
    invoice = stripe.v1.invoices.retrieve(plan["invoice_id"])
    assert invoice.amount_due == 6_600_000  # 96,000 − the 30,000 of old credit the operator allowed
    act(s, pid, "apply_credit")
    stripe.v1.invoices.pay(plan["invoice_id"], {"paid_out_of_band": True})
    plan = wait_for_plan(s, pid, lambda p: p["credit_applied_at"])
    assert stripe.v1.customers.retrieve(customer.id).balance == -12_000_000
    sent = next(e for e in timeline(s, pid) if e["action"] == "send_invoice")
    assert sent["input"] == {"use_existing_credit": "true"}
    assert sent["result"]["existing_credit_used"].replace(",", "").startswith("30000")


async def test_an_invoice_not_paid_in_money_gives_no_credit(live_stack: LiveStack) -> None:
    """Part of the invoice cancelled by a credit note before payment: Stripe marks it paid, but
    the money did not come; the credit is held and the row says why."""
    s = live_stack
    stripe = s.stripe()
    pid = upfront_plan(s)["id"]
    for action in ("create_customer", "create_invoice", "send_invoice", "apply_credit"):
        plan = act(s, pid, action)
    stripe.v1.credit_notes.create({"invoice": plan["invoice_id"], "amount": 4_000_000})
    stripe.v1.invoices.pay(plan["invoice_id"], {"paid_out_of_band": True})
    plan = wait_for_plan(s, pid, lambda p: p["state"] == "credit_on_hold")
    assert plan["credit_applied_at"] is None
    assert "the credit is held" in plan["workflow"]["credit_hold"]
    assert [t for t in balance_transactions(s, plan["stripe_customer_id"]) if t.amount < 0] == []
    assert [a for a, v in plan["actions"].items() if v["allowed"]] == ["retry_step"]
    assert any(e["action"] == "credit_on_hold" for e in timeline(s, pid))
    await save_history(s, pid, "upfront_credit_on_hold")
