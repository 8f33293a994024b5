"""The running product moves its metrics: a real worker and Temporal dev server, the web app on a real
port, the Stripe sandbox delivering signed webhooks, `/metrics` scraped over HTTP."""

from __future__ import annotations

from tests.fixtures.stack import LiveStack
from tests.operations.conftest import scrape, total, value
from tests.plans.helpers import act, upfront_plan, wait_for_plan

STEPS = ("create_customer", "create_invoice", "send_invoice")


async def test_an_upfront_plan_moves_clicks_steps_stripe_webhooks_and_states(live_stack: LiveStack) -> None:
    s = live_stack
    before = scrape(None, s.base_url)
    plan = upfront_plan(s)
    pid = plan["id"]
    assert value(scrape(None, s.base_url), "revops_plans", state="new") == 1
    for step in STEPS:
        plan = act(s, pid, step)
    assert plan["state"] == "awaiting_payment"
    waiting = scrape(None, s.base_url)
    assert value(waiting, "revops_plans", state="awaiting_payment") == 1
    assert value(waiting, "revops_plans", state="new") == 0

    s.stripe().v1.invoices.pay(plan["invoice_id"], {"paid_out_of_band": True})
    plan = wait_for_plan(s, pid, lambda p: p["state"] != "awaiting_payment")
    after = scrape(None, s.base_url)

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    for step in STEPS:
        assert moved("revops_button_clicks_total", action=step, outcome="done") == 1, step
        assert moved("revops_step_duration_seconds_count", action=step) == 1, step
    # The worker's Stripe calls (same process here) by endpoint template.
    assert moved("revops_stripe_requests_total", method="POST", endpoint="/v1/customers", status="200") >= 1
    assert moved("revops_stripe_requests_total", method="POST", endpoint="/v1/invoices/{id}/finalize") >= 1
    # invoice.paid reached the waiting workflow: processed, with its lag measured.
    assert moved("revops_webhook_deliveries_total", source="stripe", outcome="processed") >= 1
    assert moved("revops_webhook_processing_lag_seconds_count", source="stripe") >= 1
    assert value(after, "revops_plans", state="awaiting_payment") == 0
    assert value(after, "revops_plans", state=plan["state"]) == 1
