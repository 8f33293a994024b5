"""Issue 4 end to end: the upfront path through the JSON API, the worker on the Temporal dev
server, the Stripe sandbox through the SDK, and webhooks delivered over HTTP to the app."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from domain.plan_rules import add_months
from tests.fixtures.stack import LiveStack, wait_until
from tests.plans.helpers import (
    act,
    balance_transactions,
    customers_for,
    get_plan,
    save_history,
    timeline,
    upfront_plan,
    wait_for_plan,
)


async def test_upfront_path_for_a_new_customer(live_stack: LiveStack) -> None:
    s = live_stack
    stripe = s.stripe()
    plan = upfront_plan(s)
    pid = plan["id"]

    plan = act(s, pid, "create_customer")
    customer_id = plan["stripe_customer_id"]
    assert customer_id and plan["state"] == "customer_ready"
    assert plan["actions"]["create_customer"]["allowed"] is False

    plan = act(s, pid, "create_invoice")
    invoice = stripe.v1.invoices.retrieve(plan["invoice_id"])
    start = datetime.fromisoformat(plan["start_date"]).date()
    due = start + timedelta(days=30)
    assert invoice.status == "draft" and invoice.auto_advance is False
    assert invoice.collection_method == "send_invoice"
    assert datetime.fromtimestamp(invoice.due_date, UTC).date() == due
    assert invoice.total == 9_600_000 and invoice.currency == "usd"
    [line] = invoice.lines.data
    assert line.amount == 9_600_000
    assert datetime.fromtimestamp(line.period.start, UTC).date() == start
    assert datetime.fromtimestamp(line.period.end, UTC).date() == add_months(start, 12)
    checks = {c["check"]: c["status"] for c in plan["workflow"]["checks"]}
    assert checks["address"] == checks["shipping"] == "missing" and checks["tax_ids"] in ("missing", "unknown")
    assert plan["state"] == "invoice_draft"

    locked = s.api("PATCH", f"/api/plans/{pid}", json={"price": "90000.00", "company_name": "Acme Incorporated"})
    assert locked.status_code == 422 and set(locked.json()["errors"]) == {"price"}
    same = s.api("PATCH", f"/api/plans/{pid}", json={"price": "96000", "company_name": "Acme Incorporated"})
    assert same.status_code == 200 and same.json()["company_name"] == "Acme Incorporated"

    plan = act(s, pid, "send_invoice")
    assert stripe.v1.invoices.retrieve(plan["invoice_id"]).status == "open"
    assert plan["state"] == "awaiting_payment"
    assert plan["actions"]["schedule_subscription"] == {
        "allowed": False, "reason": "Wait for the invoice to be paid before scheduling the subscription."}

    # Clicked before payment: armed, and no credit reaches Stripe (it would pay the invoice itself).
    plan = act(s, pid, "apply_credit")
    assert plan["credit_applied_at"] is None
    assert plan["actions"]["apply_credit"]["allowed"] is False
    assert "armed" in plan["actions"]["apply_credit"]["reason"]
    assert balance_transactions(s, customer_id) == []

    stripe.v1.invoices.pay(plan["invoice_id"], {"paid_out_of_band": True})
    plan = wait_for_plan(s, pid, lambda p: p["credit_applied_at"])
    [credit] = balance_transactions(s, customer_id)
    assert credit.amount == -12_000_000 and credit.currency == "usd"
    assert stripe.v1.invoices.retrieve(plan["invoice_id"]).status == "paid"

    plan = act(s, pid, "schedule_subscription")
    schedule = stripe.v1.subscription_schedules.retrieve(plan["subscription_schedule_id"])
    assert schedule.customer == customer_id and schedule.end_behavior == "release"
    # Issue 12: no card was attached, so the subscription bills by invoice on the row's terms.
    assert schedule.default_settings.collection_method == "send_invoice"
    assert schedule.default_settings.invoice_settings.days_until_due == 30
    assert datetime.fromtimestamp(schedule.phases[0].start_date, UTC).date() == start
    assert datetime.fromtimestamp(schedule.phases[0].end_date, UTC).date() == add_months(start, 12)
    assert sorted(item.price if isinstance(item.price, str) else item.price.id
                  for item in schedule.phases[0]["items"]) == [
        "price_product_analytics_default", "price_session_replay_default"]
    assert plan["state"] == "done"

    # Exactly one of each object.
    assert [c.id for c in customers_for(s, plan["customer_email"])] == [customer_id]
    assert [i.id for i in stripe.v1.invoices.list({"customer": customer_id}).data] == [plan["invoice_id"]]
    assert len(balance_transactions(s, customer_id)) == 1
    assert len(stripe.v1.subscription_schedules.list({"customer": customer_id}).data) == 1

    steps = [(e["action"], e["outcome"], e["actor"]) for e in timeline(s, pid)]
    for step in ("create_customer", "create_invoice", "send_invoice", "apply_credit", "schedule_subscription"):
        assert (step, "ok", "operator@example.com") in steps
    assert ("invoice_event", "info", "stripe") in steps or ("poll_invoice", "info", "workflow") in steps
    entry = next(e for e in timeline(s, pid) if e["action"] == "create_invoice")
    assert entry["result"]["invoice"] == plan["invoice_id"]
    assert entry["result"]["links"][plan["invoice_id"]].endswith(f"/invoices/{plan['invoice_id']}")
    assert entry["result"]["workflow"].endswith(f"/workflows/plan-{pid}")
    # Once done, buttons say so and a click is refused with the reason.
    refused = s.api("POST", f"/api/plans/{pid}/actions/create_invoice")
    assert refused.status_code == 409 and refused.json()["error"] == f"Done: the invoice is {plan['invoice_id']}."
    await save_history(s, pid, "upfront_new_customer")


async def test_polling_applies_the_credit_when_webhooks_are_lost(live_stack_factory) -> None:  # type: ignore[no-untyped-def]
    s: LiveStack = live_stack_factory(invoice_poll_seconds=1)
    s.sandbox.webhooks_enabled(False)
    pid = upfront_plan(s)["id"]
    for action in ("create_customer", "create_invoice", "send_invoice", "apply_credit"):
        plan = act(s, pid, action)
    s.stripe().v1.invoices.pay(plan["invoice_id"], {"paid_out_of_band": True})
    plan = wait_for_plan(s, pid, lambda p: p["credit_applied_at"])
    assert len(balance_transactions(s, plan["stripe_customer_id"])) == 1
    assert any(e["action"] == "poll_invoice" for e in timeline(s, pid))
    await save_history(s, pid, "upfront_polling")


async def test_two_concurrent_clicks_make_one_customer(live_stack: LiveStack) -> None:
    s = live_stack
    plan = upfront_plan(s)
    statuses: list[int] = []

    def click() -> None:
        statuses.append(s.api("POST", f"/api/plans/{plan['id']}/actions/create_customer").status_code)

    threads = [threading.Thread(target=click) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) in ([200, 200], [200, 409])
    assert len(customers_for(s, plan["customer_email"])) == 1
    # and a third, later click is refused with the reason
    refused = s.api("POST", f"/api/plans/{plan['id']}/actions/create_customer")
    assert refused.status_code == 409 and refused.json()["error"].startswith("Done: the customer is cus_")


async def test_lost_responses_still_make_one_of_each(live_stack: LiveStack) -> None:
    s = live_stack
    s.sandbox.set_faults({"rules": [{"lost_response": "first", "mode": "500"}]})
    pid = upfront_plan(s)["id"]
    for action in ("create_customer", "create_invoice", "send_invoice", "apply_credit"):
        plan = act(s, pid, action)
    s.sandbox.clear_faults()
    s.stripe().v1.invoices.pay(plan["invoice_id"], {"paid_out_of_band": True})
    s.sandbox.set_faults({"rules": [{"lost_response": "first", "mode": "drop"}]})
    plan = wait_for_plan(s, pid, lambda p: p["credit_applied_at"])
    plan = act(s, pid, "schedule_subscription")
    s.sandbox.clear_faults()
    stripe = s.stripe()
    customer_id = plan["stripe_customer_id"]
    assert len(customers_for(s, plan["customer_email"])) == 1
    assert len(stripe.v1.invoices.list({"customer": customer_id}).data) == 1
    assert len(stripe.v1.invoices.retrieve(plan["invoice_id"]).lines.data) == 1
    assert len(balance_transactions(s, customer_id)) == 1
    assert len(stripe.v1.subscription_schedules.list({"customer": customer_id}).data) == 1


async def test_a_refused_step_fails_on_the_row_and_retry_step_runs_it_after_a_fix(live_stack: LiveStack) -> None:
    s = live_stack
    pid = upfront_plan(s, stripe_customer_id_existing="cus_doesnotexist")["id"]
    failed = s.api("POST", f"/api/plans/{pid}/actions/create_customer")
    assert failed.status_code == 502
    assert "cus_doesnotexist does not exist in Stripe" in failed.json()["error"]
    plan = get_plan(s, pid)
    assert plan["state"] == "step_failed"
    assert plan["workflow"]["error"]["action"] == "create_customer"
    assert [a for a, v in plan["actions"].items() if v["allowed"]] == ["retry_step"]
    real = s.stripe().v1.customers.create({"email": "real@acme.test", "name": "Acme"})
    assert s.api("PATCH", f"/api/plans/{pid}", json={"stripe_customer_id_existing": real.id}).status_code == 200
    plan = act(s, pid, "retry_step")
    assert plan["stripe_customer_id"] == real.id and plan["state"] == "customer_ready"
    outcomes = [(e["action"], e["outcome"]) for e in timeline(s, pid)]
    assert ("create_customer", "failed") in outcomes and ("create_customer", "ok") in outcomes
    await save_history(s, pid, "upfront_failed_then_retried")


@pytest.mark.slow
async def test_worker_killed_mid_flow_and_restarted(live_stack_factory) -> None:  # type: ignore[no-untyped-def]
    s: LiveStack = live_stack_factory(worker_process=True)
    [proc] = s._processes
    pid = upfront_plan(s)["id"]
    act(s, pid, "create_customer")
    # Every Stripe call takes a while, so the kill lands inside a step.
    s.sandbox.set_faults({"rules": [{"latency_ms": 700}]})
    done: dict[str, int] = {}

    def click() -> None:
        done["status"] = s.api("POST", f"/api/plans/{pid}/actions/create_invoice", timeout=120).status_code

    clicker = threading.Thread(target=click)
    clicker.start()
    wait_until(lambda: any(r for r in [s.stripe().v1.invoices.list({"limit": 1}).data]), timeout=30)
    proc.kill()
    proc.wait(timeout=10)
    s.sandbox.clear_faults()
    s.start_worker_process()
    clicker.join(timeout=120)
    plan = wait_for_plan(s, pid, lambda p: p["invoice_id"] and p["state"] == "invoice_draft", timeout=60)
    invoices = s.stripe().v1.invoices.list({"customer": plan["stripe_customer_id"]}).data
    assert [i.id for i in invoices] == [plan["invoice_id"]]
    assert len(s.stripe().v1.invoices.retrieve(plan["invoice_id"]).lines.data) == 1


async def test_a_voided_invoice_gives_no_credit(live_stack: LiveStack) -> None:
    s = live_stack
    pid = upfront_plan(s)["id"]
    for action in ("create_customer", "create_invoice", "send_invoice"):
        plan = act(s, pid, action)
    s.stripe().v1.invoices.void_invoice(plan["invoice_id"])
    plan = wait_for_plan(s, pid, lambda p: p["state"] == "invoice_void")
    assert plan["actions"]["apply_credit"] == {
        "allowed": False, "reason": "The invoice is void: no credit is given for it."}
    refused = s.api("POST", f"/api/plans/{pid}/actions/apply_credit")
    assert refused.status_code == 409
    assert refused.json() == {"error": "The invoice is void: no credit is given for it."}
    assert balance_transactions(s, plan["stripe_customer_id"]) == []


async def test_a_terminated_workflow_resumes_from_the_row(live_stack: LiveStack) -> None:
    """An engineer terminates the plan's workflow in the Temporal UI: the next click starts a new
    one from what the row shows, and makes no second Stripe object."""
    s = live_stack
    pid = upfront_plan(s)["id"]
    act(s, pid, "create_customer")
    plan = act(s, pid, "create_invoice")
    await s.client.get_workflow_handle(f"plan-{pid}").terminate("engineer in the Temporal UI")
    plan = act(s, pid, "send_invoice")
    assert plan["state"] == "awaiting_payment"
    customer_id = plan["stripe_customer_id"]
    assert len(customers_for(s, plan["customer_email"])) == 1
    assert [i.id for i in s.stripe().v1.invoices.list({"customer": customer_id}).data] == [plan["invoice_id"]]
    refused = s.api("POST", f"/api/plans/{pid}/actions/create_invoice")
    assert refused.status_code == 409


async def test_stripe_outage_is_retried_with_backoff(live_stack: LiveStack) -> None:
    """503s from Stripe are retried (SDK, then Temporal with backoff) until Stripe is back."""
    s = live_stack
    pid = upfront_plan(s)["id"]
    s.sandbox.set_faults({"rules": [{"method": "POST", "path": "/v1/customers", "error_rate": 1.0, "status": 503}]})
    threading.Timer(3.0, s.sandbox.clear_faults).start()
    plan = act(s, pid, "create_customer")
    assert plan["stripe_customer_id"] and plan["state"] == "customer_ready"
    assert len(customers_for(s, plan["customer_email"])) == 1
    assert [e["outcome"] for e in timeline(s, pid) if e["action"] == "create_customer"] == ["ok"]
