"""Issue 4, point 4: "next billing cycle" credits wait on a durable timer until the end of the
existing customer's current billing period — on the time-skipping server, against the sandbox."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.testing import WorkflowEnvironment

from domain.plan_rules import ActionRequest, ActionResult, InvoiceEvent
from plans.service import facts_for
from settings import Settings
from store.db import unit_of_work
from store.models import Plan
from store.plans import create_plan
from worker import build_worker
from workflows.plan import PlanStart, PlanWorkflow


async def test_credit_waits_for_the_end_of_the_current_billing_period(
    ts_env: WorkflowEnvironment, fresh_stripe_sandbox: Any, settings: Settings,
) -> None:
    sandbox = fresh_stripe_sandbox
    stripe = sandbox.client()
    # The time-skipping server is shared by the session and only moves forward: Stripe's clock
    # starts from the workflows' now.
    skipped = int((await ts_env.get_current_time()).replace(tzinfo=UTC).timestamp())
    if skipped > sandbox.now():
        sandbox.advance_to(skipped)
    cfg = Settings(**{**settings.__dict__, "stripe_api_base": sandbox.url, "stripe_api_key": sandbox.api_key})
    existing = stripe.v1.customers.create({"email": "ops@existing.test", "name": "Existing Co"})
    subscription = stripe.v1.subscriptions.create({
        "customer": existing.id, "items": [{"price": "price_product_analytics_default"}],
        "collection_method": "send_invoice", "days_until_due": 30})
    period_end = datetime.fromtimestamp(subscription["items"].data[0].current_period_end, UTC)

    start = datetime.fromtimestamp(sandbox.now(), UTC).date() + timedelta(days=3)
    with unit_of_work(cfg.database_url) as session:
        plan, checked = create_plan(session, {
            "company_name": "Existing Co", "customer_email": "ops@existing.test", "credit_amount": "50000.00",
            "discount": "0", "price": "50000.00", "start_date": start.isoformat(), "term_months": 12,
            "credit_start": "next_billing_cycle", "stripe_customer_id_existing": existing.id}, actor="test")
        assert plan is not None, checked.errors
        plan_id = plan.id

    def facts() -> Any:
        with unit_of_work(cfg.database_url) as session:
            row = session.get(Plan, plan_id)
            assert row is not None
            return facts_for(row)

    queue = f"ts-{uuid.uuid4().hex[:8]}"
    async with build_worker(ts_env.client, cfg, task_queue=queue):
        handle = await ts_env.client.start_workflow(
            PlanWorkflow.run, PlanStart(plan_id, 3600), id=f"plan-{plan_id}", task_queue=queue)
        for action in ("create_customer", "create_invoice", "send_invoice", "apply_credit"):
            result = await handle.execute_update(action, ActionRequest("operator@example.com", facts()),
                                                 result_type=ActionResult)
            assert result.ok, result.message
        progress = await handle.query(PlanWorkflow.progress)
        assert progress.customer_id == existing.id and progress.credit == "armed"
        stripe.v1.invoices.pay(progress.invoice_id, {"paid_out_of_band": True})
        await handle.signal(PlanWorkflow.invoice_event, InvoiceEvent(progress.invoice_id, "invoice.paid", "evt_t"))

        async def scheduled() -> Any:
            for _ in range(100):
                p = await handle.query(PlanWorkflow.progress)
                if p.credit == "scheduled":
                    return p
                await ts_env.sleep(1)
            raise AssertionError("the credit was never scheduled")

        progress = await scheduled()
        assert datetime.fromisoformat(progress.credit_scheduled_for) == period_end
        with unit_of_work(cfg.database_url) as session:
            row = session.get(Plan, plan_id)
            assert row is not None and row.state == "credit_scheduled"
            assert row.credit_scheduled_for is not None
        credits = lambda: stripe.v1.customers.balance_transactions.list(existing.id).data  # noqa: E731

        # An hour before D: nothing on the customer.
        await ts_env.sleep(period_end - ts_env_now(await ts_env.get_current_time()) - timedelta(hours=1))
        assert (await handle.query(PlanWorkflow.progress)).credit == "scheduled"
        assert credits() == []
        # At D: exactly one credit.
        await ts_env.sleep(timedelta(hours=2))
        for _ in range(50):
            if (await handle.query(PlanWorkflow.progress)).credit == "applied":
                break
            await ts_env.sleep(1)
        [credit] = credits()
        assert credit.amount == -5_000_000
        progress = await handle.query(PlanWorkflow.progress)
        assert datetime.fromisoformat(progress.credit_applied_at) >= period_end
        await handle.execute_update("schedule_subscription", ActionRequest("operator@example.com", facts()),
                                    result_type=ActionResult)
        progress = await handle.query(PlanWorkflow.progress)
        assert progress.schedule_skipped and subscription.id in progress.schedule_skipped
        assert await handle.result() == "done"


def ts_env_now(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
