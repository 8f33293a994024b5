"""The revenue sync workflow, and the Temporal Schedule that starts it every few minutes."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.revenue import RevenueSyncInput, RevenueSyncResult

SCHEDULE_ID = "revenue-sync"
WORKFLOW_ID = "revenue-sync"


@workflow.defn(name="RevenueSync")
class RevenueSyncWorkflow:
    """Runs one sync. The activity is checkpointed, so retries resume where the last try stopped."""

    @workflow.run
    async def run(self, request: RevenueSyncInput) -> RevenueSyncResult:
        result: RevenueSyncResult = await workflow.execute_activity(
            "sync_revenue",
            request,
            result_type=RevenueSyncResult,
            start_to_close_timeout=timedelta(hours=6),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=10), backoff_coefficient=2.0,
                                     maximum_interval=timedelta(minutes=10), maximum_attempts=10),
        )
        return result


WORKFLOWS: list[type] = [RevenueSyncWorkflow]


async def ensure_revenue_sync_schedule(client: object, task_queue: str, *,
                                       every: timedelta = timedelta(minutes=15)) -> str:
    """Create the `revenue-sync` schedule unless it exists (idempotent). Overlaps are skipped: a
    long first sync is never joined by a second one."""
    from temporal_client import ensure_interval_schedule

    return await ensure_interval_schedule(client, SCHEDULE_ID, RevenueSyncWorkflow.run, RevenueSyncInput(full=False),
                                          workflow_id=WORKFLOW_ID, task_queue=task_queue, every=every)
