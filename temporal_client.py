"""Connecting to Temporal the same way from the worker, the web app and the CLI."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)

from settings import Settings


async def connect(settings: Settings) -> Client:
    tls = settings.temporal_tls or bool(settings.temporal_api_key)
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        api_key=settings.temporal_api_key or None,
        tls=tls,
    )


def workflow_url(settings: Settings, workflow_id: str) -> str:
    """Link to a workflow in the Temporal Web UI."""
    return f"{settings.temporal_ui_url}/namespaces/{settings.temporal_namespace}/workflows/{workflow_id}"


async def ensure_interval_schedule(client: object, schedule_id: str, workflow: Any, *args: Any, workflow_id: str,
                                   task_queue: str, every: timedelta) -> str:
    """Create a schedule that starts `workflow(*args)` every `every` unless it exists (idempotent:
    a restarted worker finds it and leaves it). Overlaps are skipped: a long run is never joined by
    a second one."""
    assert isinstance(client, Client)
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(workflow, *args, id=workflow_id, task_queue=task_queue),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    try:
        await client.create_schedule(schedule_id, schedule)
    except ScheduleAlreadyRunningError:
        pass
    return schedule_id
