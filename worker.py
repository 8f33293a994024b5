"""The Temporal worker: registers every workflow and activity of every area of the product."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from settings import Settings

# Each area owns workflows/<area>.py (WORKFLOWS) and activities/<area>.py (build(settings)).
AREAS = ("plan", "intake", "revenue", "catalog")


def all_workflows() -> list[type]:
    import importlib

    return [wf for area in AREAS for wf in importlib.import_module(f"workflows.{area}").WORKFLOWS]


def all_activities(settings: Settings) -> list[Callable[..., Any]]:
    import importlib

    return [fn for area in AREAS for fn in importlib.import_module(f"activities.{area}").build(settings)]


def build_worker(client: Client, settings: Settings, *, task_queue: str | None = None) -> Worker:
    # Activities are synchronous (stripe, SQLAlchemy, requests): they run on this thread pool.
    return Worker(
        client,
        task_queue=task_queue or settings.temporal_task_queue,
        workflows=all_workflows(),
        activities=all_activities(settings),
        activity_executor=ThreadPoolExecutor(max_workers=32),
        max_concurrent_activities=32,
    )


async def ensure_schedules(client: Client, settings: Settings) -> None:
    """The recurring work: daily PandaDoc reconcile (+ sheet mirror when configured), revenue sync,
    catalog check. Idempotent, so every worker start-up can call it."""
    from cli.intake import ensure_intake_schedules
    from workflows.catalog import ensure_catalog_check_schedule
    from workflows.revenue import ensure_revenue_sync_schedule

    await ensure_intake_schedules(client, settings)
    await ensure_revenue_sync_schedule(client, settings.temporal_task_queue)
    await ensure_catalog_check_schedule(client, settings.temporal_task_queue)


async def run(settings: Settings) -> None:
    from observability.logging import configure_logging
    from observability.metrics import install_worker_metrics
    from temporal_client import connect

    configure_logging(settings)
    install_worker_metrics(settings)  # before connecting: the client takes the default runtime
    client = await connect(settings)
    worker = build_worker(client, settings)
    await ensure_schedules(client, settings)
    await worker.run()


if __name__ == "__main__":
    asyncio.run(run(Settings.load()))


class WorkerThread:
    """`build_worker` on a private event loop in a daemon thread, as if it were another process:
    the tests and the benchmarks run it beside code that blocks on HTTP."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._worker: Any = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> None:
        self._ready.clear()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name="plan-worker", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("The worker did not start within 30 s.")
        if self._error is not None:
            raise RuntimeError(f"The worker failed to start: {self._error!r}")

    def _main(self) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._run())
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            self._error = exc
            self._ready.set()

    async def _run(self) -> None:
        from temporal_client import connect

        client = await connect(self.settings)
        self._worker = build_worker(client, self.settings)
        self._ready.set()
        await self._worker.run()

    def stop(self) -> None:
        """Begin a graceful shutdown without waiting for it: the dev server only lets go of a
        worker's long polls after about a minute. It takes no new tasks meanwhile."""
        if self._loop is None or self._worker is None:
            return
        asyncio.run_coroutine_threadsafe(self._worker.shutdown(), self._loop)
        self._loop = self._worker = self._thread = None
