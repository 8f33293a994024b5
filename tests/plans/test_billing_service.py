"""Issue 17 #10 and issue 11 #13: the billing-service mapping names a real subscription and is
signed with a timestamp. A future-start plan's schedule id is no subscription id: the workflow
waits (a durable timer, on the time-skipping server) until the schedule has made the real one."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from temporalio.testing import WorkflowEnvironment

from activities.plan.billing_service import signature_header
from domain.plan_rules import ActionRequest, ActionResult, add_months
from plans.service import facts_for
from settings import Settings
from store.db import unit_of_work
from store.models import Plan
from store.plans import create_plan
from tests.plans.test_monthly import SECRET, Receiver
from worker import build_worker
from workflows.plan import PlanStart, PlanWorkflow


def test_the_signature_covers_a_timestamp() -> None:
    body = b'{"plan_id": "1"}'
    header = signature_header("secret", body, 1_800_000_000)
    t, v1 = header.split(",")
    assert t == "t=1800000000"
    assert v1 == "v1=" + hmac.new(b"secret", b"1800000000." + body, hashlib.sha256).hexdigest()
    assert signature_header("secret", body, 1_800_000_001) != header  # a replay with a new time does not verify


async def _stripe_at_workflow_time(ts_env: WorkflowEnvironment, sandbox: Any) -> None:
    # The time-skipping server is shared by the session and only moves forward: Stripe's clock
    # starts from the workflows' now.
    skipped = int((await ts_env.get_current_time()).replace(tzinfo=UTC).timestamp())
    if skipped > sandbox.now():
        sandbox.advance_to(skipped)


def _monthly_row(cfg: Settings, existing_id: str, name: str, email: str, org: str, start: date) -> tuple[int, Any]:
    """A monthly plan row; returns its id and a function reading its facts as they are now."""
    with unit_of_work(cfg.database_url) as session:
        plan, checked = create_plan(session, {
            "company_name": name, "customer_email": email, "credit_amount": "1200.00",
            "discount": "0", "price": "1200.00", "start_date": start.isoformat(), "term_months": 12,
            "payment_schedule": "monthly", "posthog_org_id": org,
            "stripe_customer_id_existing": existing_id}, actor="test")
        assert plan is not None, checked.errors
        plan_id = plan.id

    def facts() -> Any:
        with unit_of_work(cfg.database_url) as session:
            row = session.get(Plan, plan_id)
            assert row is not None
            return facts_for(row)

    return plan_id, facts


async def test_a_future_start_sends_the_mapping_once_the_subscription_exists(
    ts_env: WorkflowEnvironment, fresh_stripe_sandbox: Any, settings: Settings,
) -> None:
    sandbox = fresh_stripe_sandbox
    stripe = sandbox.client()
    await _stripe_at_workflow_time(ts_env, sandbox)
    receiver = Receiver(failures=0)
    cfg = Settings(**{**settings.__dict__, "stripe_api_base": sandbox.url, "stripe_api_key": sandbox.api_key,
                      "billing_service_url": receiver.url, "billing_service_secret": SECRET})
    existing = stripe.v1.customers.create({"email": "later@installments.test", "name": "Later Co"})
    start = datetime.fromtimestamp(sandbox.now(), UTC).date() + timedelta(days=10)
    plan_id, facts = _monthly_row(cfg, existing.id, "Later Co", "later@installments.test", "org_later", start)

    queue = f"ts-{uuid.uuid4().hex[:8]}"
    async with build_worker(ts_env.client, cfg, task_queue=queue):
        handle = await ts_env.client.start_workflow(
            PlanWorkflow.run, PlanStart(plan_id, 3600), id=f"plan-{plan_id}", task_queue=queue)
        for action in ("create_customer", "create_monthly_subscription", "apply_credit_monthly",
                       "sync_billing_service"):
            result = await handle.execute_update(action, ActionRequest("operator@example.com", facts()),
                                                 result_type=ActionResult)
            assert result.ok, result.message
        progress = await handle.query(PlanWorkflow.progress)
        assert progress.billing_sync_waiting and not progress.billing_synced
        assert progress.subscription_id is None and progress.subscription_schedule_id
        # Stripe's side: the schedule starts on month 2 and makes the subscription.
        second = add_months(start, 1)
        sandbox.advance_to(int(datetime.combine(second, time(0, 30), tzinfo=UTC).timestamp()))
        schedule = stripe.v1.subscription_schedules.retrieve(progress.subscription_schedule_id)
        assert schedule.subscription
        await ts_env.sleep(datetime.combine(second, time(2, 0), tzinfo=UTC) - await _now(ts_env))
        for _ in range(50):
            progress = await handle.query(PlanWorkflow.progress)
            if progress.billing_synced:
                break
            await ts_env.sleep(1)
        assert progress.billing_synced and progress.subscription_id == schedule.subscription
        assert progress.subscription_id.startswith("sub_") and not progress.subscription_id.startswith("sub_sched")
        assert await handle.result() == "done"
    assert [m["stripe_subscription_id"] for m in receiver.accepted] == [schedule.subscription]
    receiver.server.shutdown()


async def _now(env: WorkflowEnvironment) -> datetime:
    value = await env.get_current_time()
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def test_without_a_billing_service_url_nothing_is_sent_and_the_plan_is_not_done(
    ts_env: WorkflowEnvironment, fresh_stripe_sandbox: Any, settings: Settings,
) -> None:
    """Issue 17 #12: "Update billing service" with no URL says nothing was sent; the row is not Done."""
    sandbox = fresh_stripe_sandbox
    stripe = sandbox.client()
    await _stripe_at_workflow_time(ts_env, sandbox)
    cfg = Settings(**{**settings.__dict__, "stripe_api_base": sandbox.url, "stripe_api_key": sandbox.api_key,
                      "billing_service_url": ""})
    existing = stripe.v1.customers.create({"email": "nourl@installments.test", "name": "No Url Co"})
    start = datetime.fromtimestamp(sandbox.now(), UTC).date()
    plan_id, facts = _monthly_row(cfg, existing.id, "No Url Co", "nourl@installments.test", "org_nourl", start)

    queue = f"ts-{uuid.uuid4().hex[:8]}"
    async with build_worker(ts_env.client, cfg, task_queue=queue):
        handle = await ts_env.client.start_workflow(
            PlanWorkflow.run, PlanStart(plan_id, 3600), id=f"plan-{plan_id}", task_queue=queue)
        for action in ("create_customer", "create_monthly_subscription", "apply_credit_monthly"):
            result = await handle.execute_update(action, ActionRequest("operator@example.com", facts()),
                                                 result_type=ActionResult)
            assert result.ok, result.message
        result = await handle.execute_update("sync_billing_service", ActionRequest("operator@example.com", facts()),
                                             result_type=ActionResult)
        assert not result.ok and result.message.startswith("Nothing was sent to the billing service")
        assert result.state == "step_failed"
        progress = await handle.query(PlanWorkflow.progress)
        assert not progress.billing_synced and progress.failed_action == "sync_billing_service"
        await handle.terminate("test over")
