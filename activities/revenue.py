"""Revenue sync activities: the one the Temporal Schedule runs (see workflows/revenue.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from temporalio import activity

from settings import Settings


@dataclass(frozen=True)
class RevenueSyncInput:
    full: bool = False


@dataclass(frozen=True)
class RevenueSyncResult:
    kind: str
    objects: int
    requests: int
    rate_limited: int
    seconds: float
    events: int


HEARTBEAT_SECONDS = 10.0


def build(settings: Settings) -> list[Callable[..., Any]]:
    @activity.defn(name="sync_revenue")
    def sync_revenue(request: RevenueSyncInput) -> RevenueSyncResult:
        """One sync run. Checkpointed, so a retry after a crash or timeout resumes, not restarts."""
        from store.sync import SyncProgress, SyncReport
        from store.sync import sync_revenue as run_sync

        latest: list[int] = [0]
        outcome: list[SyncReport | BaseException] = []

        def progress(state: SyncProgress) -> None:
            latest[0] = state.objects

        def target() -> None:
            try:
                outcome.append(run_sync(settings, full=request.full, progress=progress))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the activity thread
                outcome.append(exc)

        # The sync's own threads cannot heartbeat (no activity context there): this thread does.
        runner = threading.Thread(target=target, name="revenue-sync", daemon=True)
        runner.start()
        while runner.is_alive():
            activity.heartbeat(latest[0])
            runner.join(HEARTBEAT_SECONDS)
        result = outcome[0]
        if isinstance(result, BaseException):
            raise result
        return RevenueSyncResult(result.kind, result.objects, result.requests, result.rate_limited,
                                 round(result.seconds, 3), result.events)

    return [sync_revenue]
