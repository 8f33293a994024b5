"""Issue 11 #7 and #11: nothing releases credit for money that was taken back or never came.

A refund, credit note or dispute between payment and a "next billing cycle" credit, or before an
installment's share, holds the credit and flags the row; an uncollectible invoice is still
polled, so one paid later with a lost webhook still releases the credit. End to end."""

from __future__ import annotations

from tests.fixtures.stack import LiveStack
from tests.plans.helpers import act, balance_transactions, save_history, timeline, upfront_plan, wait_for_plan
from tests.plans.test_monthly import monthly_plan


async def test_a_credit_note_before_a_next_billing_cycle_credit_holds_it(live_stack: LiveStack) -> None:
    s = live_stack
    stripe = s.stripe()
    existing = stripe.v1.customers.create({"email": "cycle@acme.test", "name": "Cycle Co"})
    stripe.v1.subscriptions.create({
        "customer": existing.id, "items": [{"price": "price_product_analytics_default"}],
        "collection_method": "send_invoice", "days_until_due": 30})
    pid = upfront_plan(s, stripe_customer_id_existing=existing.id, customer_email="cycle@acme.test",
                       credit_start="next_billing_cycle")["id"]
    for action in ("create_customer", "create_invoice", "send_invoice", "apply_credit"):
        plan = act(s, pid, action)
    stripe.v1.invoices.pay(plan["invoice_id"], {"paid_out_of_band": True})
    wait_for_plan(s, pid, lambda p: p["state"] == "credit_scheduled")

    # Finance gives 10,000.00 back before the billing period ends.
    stripe.v1.credit_notes.create({"invoice": plan["invoice_id"], "amount": 1_000_000,
                                   "out_of_band_amount": 1_000_000})
    plan = wait_for_plan(s, pid, lambda p: p["state"] == "credit_on_hold")
    assert "credit_notes" in plan["workflow"]["credit_hold"] and plan["credit_applied_at"] is None
    assert [t.amount for t in balance_transactions(s, existing.id)] == []
    assert any(e["action"] == "invoice_event" and "credit_note.created" in e["result"].values()
               for e in timeline(s, pid))


async def test_an_installment_not_paid_in_full_holds_its_share(live_stack: LiveStack) -> None:
    s = live_stack
    stripe = s.stripe()
    existing = stripe.v1.customers.create({"email": "billing@installments.test", "name": "Installments Inc"})
    pid = monthly_plan(s, existing.id, credit_release="per_installment", credit_amount="12000.00",
                       price="9600.00")["id"]
    new_id = act(s, pid, "create_customer")["stripe_customer_id"]
    act(s, pid, "create_monthly_subscription")
    act(s, pid, "apply_credit_monthly")
    s.sandbox.advance(3700)
    [invoice] = stripe.v1.invoices.list({"customer": new_id, "status": "open"}).data
    stripe.v1.credit_notes.create({"invoice": invoice.id, "amount": 30_000})  # 300.00 written off
    stripe.v1.invoices.pay(invoice.id, {"paid_out_of_band": True})
    plan = wait_for_plan(s, pid, lambda p: p["state"] == "credit_on_hold")
    assert plan["workflow"]["progress"]["shares_released"] == 0
    assert invoice.id in plan["workflow"]["credit_hold"]
    assert balance_transactions(s, existing.id) == []
    await save_history(s, pid, "monthly_share_on_hold")


async def test_an_uncollectible_invoice_paid_later_releases_the_credit(live_stack_factory) -> None:  # type: ignore[no-untyped-def]
    s: LiveStack = live_stack_factory(invoice_poll_seconds=1)
    s.sandbox.webhooks_enabled(False)
    stripe = s.stripe()
    pid = upfront_plan(s)["id"]
    for action in ("create_customer", "create_invoice", "send_invoice", "apply_credit"):
        plan = act(s, pid, action)
    stripe.v1.invoices.mark_uncollectible(plan["invoice_id"])
    wait_for_plan(s, pid, lambda p: p["state"] == "invoice_uncollectible")
    stripe.v1.invoices.pay(plan["invoice_id"], {"paid_out_of_band": True})
    plan = wait_for_plan(s, pid, lambda p: p["credit_applied_at"])
    assert [t.amount for t in balance_transactions(s, plan["stripe_customer_id"])] == [-12_000_000]
    await save_history(s, pid, "upfront_uncollectible_paid_later")



async def test_a_card_refund_before_a_next_billing_cycle_credit_holds_it(live_stack: LiveStack) -> None:
    """The `charge.refunded` webhook names only the customer: the plan is found by it, and the
    payment re-checked through the invoice's PaymentIntent and charge."""
    s = live_stack
    stripe = s.stripe()
    existing = stripe.v1.customers.create({"email": "card@acme.test", "name": "Card Co"})
    stripe.v1.subscriptions.create({
        "customer": existing.id, "items": [{"price": "price_product_analytics_default"}],
        "collection_method": "send_invoice", "days_until_due": 30})
    pid = upfront_plan(s, stripe_customer_id_existing=existing.id, customer_email="card@acme.test",
                       credit_start="next_billing_cycle")["id"]
    for action in ("create_customer", "create_invoice", "send_invoice", "apply_credit"):
        plan = act(s, pid, action)
    card = stripe.v1.payment_methods.attach("pm_card_visa", {"customer": existing.id})
    stripe.v1.invoices.pay(plan["invoice_id"], {"payment_method": card.id})
    wait_for_plan(s, pid, lambda p: p["state"] == "credit_scheduled")
    paid = stripe.v1.invoices.retrieve(plan["invoice_id"], {"expand": ["payments"]})
    charge = stripe.v1.payment_intents.retrieve(paid.payments.data[0].payment.payment_intent).latest_charge
    stripe.v1.refunds.create({"charge": charge, "amount": 500_000})
    plan = wait_for_plan(s, pid, lambda p: p["state"] == "credit_on_hold")
    assert "refunded 5,000.00" in plan["workflow"]["credit_hold"]
    assert any(e["action"] == "invoice_event" and "charge.refunded" in e["result"].values()
               for e in timeline(s, pid))
