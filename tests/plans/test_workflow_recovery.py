"""Issue 11 #9 and #10, and issue 12's replayed 500: the plan's row and workflow recover.

- A row that cannot be projected shows its error instead of holding the workflow (and every
  click) while the projection retries for ever.
- After a Temporal reset the row follows the new run and its timeline entries are kept.
- A write Stripe keeps answering with the same stored 500 fails the step at once with a clear
  message; "Retry step" looks first, then sends a fresh key.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType, ResetReapplyType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest

from activities.plan import PlanActivities
from domain.plan_rules import InvoiceEvent, PlanFacts, Progress, Projection
from plans.service import facts_for
from settings import Settings
from store.db import unit_of_work
from store.models import Plan
from store.plans import create_plan
from tests.fixtures.stack import LiveStack
from tests.plans.helpers import act, customers_for, get_plan, timeline, upfront_plan
from workflows.plan import PlanStart, PlanWorkflow


def test_a_row_that_cannot_be_projected_shows_the_error(settings: Settings) -> None:
    with unit_of_work(settings.database_url) as session:
        plan, checked = create_plan(session, {
            "company_name": "Far Future", "customer_email": "far@future.test", "credit_amount": "100.00",
            "discount": "0", "price": "100.00", "start_date": "2027-01-01", "term_months": 12}, actor="test")
        assert plan is not None, checked.errors
        plan_id = plan.id
    # Facts the workflow carries from an edit made before dates were bounded: the due date
    # (start + 30 days) does not exist, so working out the row's buttons raises.
    facts = PlanFacts(plan_id=plan_id, start_date="9999-12-25", price=10_000, credit_amount=10_000)
    now = datetime.now(UTC).isoformat()
    PlanActivities(settings).project(Projection(facts, Progress(customer_id="cus_x"), now, 1, None))
    with unit_of_work(settings.database_url) as session:
        row = session.get(Plan, plan_id)
        assert row is not None
        assert "could not be shown on this row" in row.workflow_view["projection_error"]
        assert "OverflowError" in row.workflow_view["projection_error"]


async def test_after_a_temporal_reset_the_row_follows_the_new_run(live_stack: LiveStack) -> None:
    s = live_stack
    pid = upfront_plan(s)["id"]
    act(s, pid, "create_customer")
    act(s, pid, "create_invoice")
    before = get_plan(s, pid)
    handle = s.client.get_workflow_handle(f"plan-{pid}")
    history = await handle.fetch_history()
    events = list(history.events)
    # Reset to the end of the workflow task that completed the first click (create_customer).
    first_update_done = next(e.event_id for e in events
                             if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED)
    reset_to = max(e.event_id for e in events if e.event_id < first_update_done
                   and e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
    run = WorkflowExecution(workflow_id=f"plan-{pid}", run_id=(await handle.describe()).run_id)
    await s.client.workflow_service.reset_workflow_execution(ResetWorkflowExecutionRequest(
        namespace=s.client.namespace, workflow_execution=run,
        reason="test: an engineer resets the plan", workflow_task_finish_event_id=reset_to,
        request_id=str(uuid.uuid4()), reset_reapply_type=ResetReapplyType.RESET_REAPPLY_TYPE_NONE))
    time.sleep(1)
    after = act(s, pid, "create_invoice")  # the new run has no invoice yet: it finds the one made
    assert after["invoice_id"] == before["invoice_id"]
    projected = [datetime.fromisoformat(p["workflow"]["projected_at"]) for p in (before, after)]
    assert projected[1] > projected[0]
    assert [e["outcome"] for e in timeline(s, pid) if e["action"] == "create_invoice"] == ["ok", "ok"]
    assert len(s.stripe().v1.invoices.list({"customer": after["stripe_customer_id"]}).data) == 1


async def test_a_replayed_stripe_500_fails_the_step_and_retry_step_uses_a_fresh_key(live_stack: LiveStack) -> None:
    s = live_stack
    plan = upfront_plan(s)
    pid = plan["id"]
    s.sandbox.set_faults({"rules": [{"method": "POST", "path": "/v1/customers", "server_error": "first"}]})
    started = time.monotonic()
    failed = s.api("POST", f"/api/plans/{pid}/actions/create_customer")
    assert failed.status_code == 502, failed.text
    assert time.monotonic() - started < 20  # not twelve retries of a key Stripe will answer the same way
    assert "Retry step" in failed.json()["error"]
    assert customers_for(s, plan["customer_email"]) == []
    s.sandbox.clear_faults()
    plan = act(s, pid, "retry_step")
    assert plan["stripe_customer_id"] and plan["state"] == "customer_ready"
    [customer] = customers_for(s, plan["customer_email"])
    assert customer.id == plan["stripe_customer_id"]




async def test_events_carried_over_continue_as_new_are_handled(live_stack_factory) -> None:  # type: ignore[no-untyped-def]
    """Issue 11 #11: a payment signalled while the workflow continued as new goes with the new run
    (`PlanStart.events`). Here the new run is started from the state and events the old one
    handed over, as `continue_as_new` does, with webhooks and polling out of the way."""
    s: LiveStack = live_stack_factory(invoice_poll_seconds=3600)
    s.sandbox.webhooks_enabled(False)
    pid = upfront_plan(s)["id"]
    for action in ("create_customer", "create_invoice", "send_invoice", "apply_credit"):
        plan = act(s, pid, action)
    s.stripe().v1.invoices.pay(plan["invoice_id"], {"paid_out_of_band": True})
    handle = s.client.get_workflow_handle(f"plan-{pid}")
    progress = await handle.query(PlanWorkflow.progress)
    assert progress.credit == "armed" and progress.invoice_status == "open"  # nobody told it yet
    with unit_of_work(s.settings.database_url) as session:
        row = session.get(Plan, pid)
        assert row is not None
        facts, seq = facts_for(row), int(row.workflow_view["seq"])
    await handle.terminate("test: the old run hands over")
    carried = [InvoiceEvent(plan["invoice_id"], "invoice.paid", "evt_during_continue_as_new")]
    new = await s.client.start_workflow(
        PlanWorkflow.run, PlanStart(pid, 3600, facts, progress, seq, carried),
        id=f"plan-{pid}", task_queue=s.settings.temporal_task_queue)
    for _ in range(100):
        if (await new.query(PlanWorkflow.progress)).credit == "applied":
            break
        await asyncio.sleep(0.1)
    assert (await new.query(PlanWorkflow.progress)).credit == "applied"
    assert get_plan(s, pid)["credit_applied_at"]
