"""`revops sync revenue [--full]`: the revenue sync by hand, with a progress line on stderr;
`revops sync revenue --rebuild`: the revenue schedule again from the warehouse (after changing
REVENUE_RECOGNITION), no Stripe request; `revops sync schedule`: create the Temporal Schedule that
runs the sync (idempotent)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def _progress_line(state: Any) -> None:
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(state.by_type.items()) if n)
    line = (f"\rSyncing revenue ({state.kind}): {state.objects} objects, {state.requests} requests, "
            f"{state.seconds:.1f} s" + (f" [{kinds}]" if kinds else ""))
    print(line[:160].ljust(80), end="", file=sys.stderr, flush=True)


def cmd_sync_revenue(args: argparse.Namespace) -> None:
    from cli import _settings
    from store.sync import sync_revenue

    settings = _settings()
    if args.rebuild:
        from store.sync import rebuild_schedule

        rows = rebuild_schedule(settings)
        print(f"Revenue schedule rebuilt ({settings.revenue_recognition} recognition): {rows} rows.")
        return
    progress = None if args.quiet else _progress_line
    report = sync_revenue(settings, full=args.full, progress=progress)
    if progress is not None:
        print(file=sys.stderr)
    print(f"Revenue sync ({report.kind}) done: {report.objects} objects, {report.events} events, "
          f"{report.requests} requests ({report.rate_limited} rate-limited) in {report.seconds:.1f} s.")


def cmd_sync_schedule(args: argparse.Namespace) -> None:
    import asyncio
    from datetime import timedelta

    from cli import _settings
    from temporal_client import connect
    from workflows.revenue import ensure_revenue_sync_schedule

    settings = _settings()

    async def create() -> str:
        client = await connect(settings)
        return await ensure_revenue_sync_schedule(client, settings.temporal_task_queue,
                                                  every=timedelta(minutes=args.every_minutes))

    print(f"Temporal Schedule {asyncio.run(create())!r} runs the revenue sync every {args.every_minutes} minutes.")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sync = commands.add_parser("sync", help="revenue sync").add_subparsers(dest="sync_command", required=True)
    revenue = sync.add_parser("revenue", help="sync Stripe into the revenue warehouse now")
    revenue.add_argument("--full", action="store_true", help="list everything again instead of reading events")
    revenue.add_argument("--quiet", action="store_true", help="no progress line")
    revenue.add_argument("--rebuild", action="store_true",
                         help="rebuild the revenue schedule from the warehouse (no Stripe requests), e.g. after "
                              "changing REVENUE_RECOGNITION")
    revenue.set_defaults(func=cmd_sync_revenue)
    schedule = sync.add_parser("schedule", help="create the Temporal Schedule of the revenue sync (idempotent)")
    schedule.add_argument("--every-minutes", type=int, default=15)
    schedule.set_defaults(func=cmd_sync_schedule)
