"""The sync as Temporal runs it (workflow + activity, and its Schedule) and as `revops sync revenue`."""

from __future__ import annotations

import os
import subprocess
import uuid
from typing import Any

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.revenue import RevenueSyncInput, RevenueSyncResult, build
from settings import Settings
from tests.revenue.conftest import fill, sqlite_only
from tests.revenue.test_sync import assert_mirrors
from workflows.revenue import SCHEDULE_ID, RevenueSyncWorkflow, ensure_revenue_sync_schedule


async def test_the_sync_workflow_runs_the_checkpointed_activity(ts_env: WorkflowEnvironment, fresh_stripe_sandbox: Any,
                                                                revenue_settings: Settings) -> None:
    sqlite_only(revenue_settings, "the Temporal wiring")
    from concurrent.futures import ThreadPoolExecutor

    fill(fresh_stripe_sandbox, customers=30, subscriptions=2, invoices=2)
    queue = f"revenue-{uuid.uuid4().hex[:8]}"
    async with Worker(ts_env.client, task_queue=queue, workflows=[RevenueSyncWorkflow],
                      activities=build(revenue_settings), activity_executor=ThreadPoolExecutor(4)):
        result: RevenueSyncResult = await ts_env.client.execute_workflow(
            RevenueSyncWorkflow.run, RevenueSyncInput(full=False), id=f"revenue-sync-{queue}", task_queue=queue)
    # No cursor yet, so the first scheduled run is a full one.
    assert result.kind == "full" and result.objects >= 30
    assert_mirrors(fresh_stripe_sandbox, revenue_settings)


async def test_the_schedule_is_created_once(dev_env: WorkflowEnvironment) -> None:
    client: Client = dev_env.client
    assert await ensure_revenue_sync_schedule(client, "revops") == SCHEDULE_ID
    assert await ensure_revenue_sync_schedule(client, "revops") == SCHEDULE_ID  # idempotent
    description = await client.get_schedule_handle(SCHEDULE_ID).describe()
    assert description.schedule.spec.intervals[0].every.total_seconds() == 900
    await client.get_schedule_handle(SCHEDULE_ID).delete()


def test_revops_sync_revenue_by_hand(fresh_stripe_sandbox: Any, revenue_settings: Settings,
                                     revops_cli: list[str]) -> None:
    sqlite_only(revenue_settings, "the CLI process")
    fill(fresh_stripe_sandbox, customers=120, subscriptions=1, invoices=1)
    env = {**os.environ, **revenue_settings.as_env()}
    done = subprocess.run([*revops_cli, "sync", "revenue", "--full"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Syncing revenue (full):" in done.stderr  # the progress line
    assert "Revenue sync (full) done:" in done.stdout
    assert_mirrors(fresh_stripe_sandbox, revenue_settings)
    again = subprocess.run([*revops_cli, "sync", "revenue", "--quiet"], env=env, capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0 and "Revenue sync (incremental) done:" in again.stdout, again.stderr
    ratable = subprocess.run([*revops_cli, "sync", "revenue", "--rebuild"],
                             env={**env, "REVENUE_RECOGNITION": "ratable"}, capture_output=True, text=True, timeout=120)
    assert ratable.returncode == 0 and "Revenue schedule rebuilt (ratable recognition):" in ratable.stdout, (
        ratable.stderr)
