"""Acceptance 2 of issue 7: the daily reconcile takes in completed documents whose webhook never came."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from temporalio.client import ScheduleIntervalSpec

from activities.intake import RowResult
from cli.intake import RECONCILE_SCHEDULE_ID, ensure_intake_schedules
from store.db import unit_of_work
from store.models import Plan
from tests.intake.conftest import IntakeStack, eventually
from workflows.intake import PandaDocReconcile, ReconcileInput, ReconcileResult


def _rows(stack: IntakeStack) -> dict[str, str]:
    with unit_of_work(stack.settings.database_url) as session:
        return dict(session.execute(select(Plan.pandadoc_id, Plan.company_name)).all())


async def _reconcile(stack: IntakeStack) -> ReconcileResult:
    return await stack.client.execute_workflow(
        PandaDocReconcile.run, ReconcileInput(lookback_hours=1), id=f"reconcile-{uuid.uuid4().hex[:8]}",
        task_queue=stack.settings.temporal_task_queue, result_type=ReconcileResult)


async def test_reconcile_takes_in_a_completed_document_whose_webhook_was_never_sent(
        intake_stack: IntakeStack) -> None:
    sandbox = intake_stack.sandbox
    delivered = intake_stack.complete_document(company_name="Webhook Arrived")
    await intake_stack.intake_result(delivered)
    lost = sandbox.create_document(company_name="Webhook Lost")
    sandbox.complete(lost["id"], send_webhook=False)
    sandbox.create_document(company_name="Still A Draft")
    assert _rows(intake_stack) == {delivered: "Webhook Arrived"}

    result = await _reconcile(intake_stack)
    assert result.completed == 2 and result.started == [lost["id"]]
    outcome = await intake_stack.client.get_workflow_handle(f"intake-{lost['id']}", result_type=RowResult).result()
    assert outcome.created is True
    assert _rows(intake_stack) == {delivered: "Webhook Arrived", lost["id"]: "Webhook Lost"}

    # The webhook arriving late, and the next reconcile, add nothing.
    assert sandbox.state.deliver(lost["id"])["status"] == 200
    again = await _reconcile(intake_stack)
    assert again.completed == 2 and again.started == []
    assert len(_rows(intake_stack)) == 2


async def test_the_schedule_is_created_once_updated_after_and_runs_the_reconcile(intake_stack: IntakeStack) -> None:
    queue = intake_stack.settings.temporal_task_queue
    first = await ensure_intake_schedules(intake_stack.client, intake_stack.settings, task_queue=queue)
    second = await ensure_intake_schedules(intake_stack.client, intake_stack.settings, task_queue=queue)
    handle = intake_stack.client.get_schedule_handle(RECONCILE_SCHEDULE_ID)
    try:
        assert first == [f"Created schedule {RECONCILE_SCHEDULE_ID} (every 1 day, 0:00:00)."]
        assert second == [f"Updated schedule {RECONCILE_SCHEDULE_ID} (every 1 day, 0:00:00)."]
        described = await handle.describe()
        assert [s.every.total_seconds() for s in described.schedule.spec.intervals
                if isinstance(s, ScheduleIntervalSpec)] == [86400]
        assert described.schedule.action.workflow == "PandaDocReconcile"  # type: ignore[union-attr]

        lost = intake_stack.sandbox.create_document(company_name="Found By Schedule")
        intake_stack.sandbox.complete(lost["id"], send_webhook=False)
        await handle.trigger()
        await eventually(lambda: lost["id"] in _rows(intake_stack), seconds=15)
    finally:
        await handle.delete()
