"""Intake commands: `revops import-csv FILE` and `revops intake schedules`; and
`ensure_intake_schedules(client, settings)`, which the worker start-up or `revops dev` calls."""

from __future__ import annotations

import argparse
import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from temporalio.client import Client

    from settings import Settings

RECONCILE_SCHEDULE_ID = "pandadoc-reconcile"
SHEET_MIRROR_WORKFLOW_ID = "sheet-mirror"


def cmd_import_csv(args: argparse.Namespace) -> None:
    from cli import CliError, _db_settings
    from domain.billing_config import BillingConfigError, load_billing_config
    from plans.service import PlanService
    from store.csv_import import CsvImportError, import_csv

    settings = _db_settings()
    known: set[str] | None
    try:
        known = set(load_billing_config(settings.billing_config).products)
    except BillingConfigError:
        known = None  # no billing config here: product keys are checked when a row is worked on
    try:
        # The CLI is its own composition root: rows go through the plan service, no Temporal needed.
        report = import_csv(PlanService.for_settings(settings), args.file, known_products=known, locale=args.locale)
    except CsvImportError as exc:
        raise CliError(str(exc)) from None
    print(f"{args.file}: {report.imported} imported, {report.unchanged} unchanged, {len(report.invalid)} invalid.")
    for line, reason in report.needs_review:
        print(f"  line {line}: imported for review: {reason}")
    for line, reason in report.invalid:
        print(f"  line {line}: not imported: {reason}")
    if report.ignored_columns:
        print(f"  columns not imported: {', '.join(report.ignored_columns)}")
    if report.invalid:
        raise SystemExit(1)


def cmd_schedules(args: argparse.Namespace) -> None:
    from cli import _settings
    from temporal_client import connect

    settings = _settings()

    async def run() -> list[str]:
        return await ensure_intake_schedules(await connect(settings), settings)

    for line in asyncio.run(run()):
        print(line)


async def ensure_intake_schedules(client: Client, settings: Settings, *, task_queue: str | None = None,
                                  reconcile_every: timedelta = timedelta(days=1)) -> list[str]:
    """Create or update the daily PandaDoc reconcile Schedule and, when `GOOGLE_SHEET_KEY` is set,
    start the sheet mirror workflow. Safe to call on every start-up; returns what it did."""
    from temporalio.client import (
        Schedule,
        ScheduleActionStartWorkflow,
        ScheduleAlreadyRunningError,
        ScheduleIntervalSpec,
        SchedulePolicy,
        ScheduleSpec,
        ScheduleUpdate,
        ScheduleUpdateInput,
    )
    from temporalio.client import ScheduleOverlapPolicy as Overlap
    from temporalio.common import WorkflowIDConflictPolicy

    from workflows.intake import MirrorInput, PandaDocReconcile, ReconcileInput, SheetMirror

    queue = task_queue or settings.temporal_task_queue
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(PandaDocReconcile.run, ReconcileInput(), id="pandadoc-reconcile-run",
                                           task_queue=queue),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=reconcile_every)]),
        policy=SchedulePolicy(overlap=Overlap.SKIP),
    )
    done = []
    try:
        await client.create_schedule(RECONCILE_SCHEDULE_ID, schedule)
        done.append(f"Created schedule {RECONCILE_SCHEDULE_ID} (every {reconcile_every}).")
    except ScheduleAlreadyRunningError:

        def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(RECONCILE_SCHEDULE_ID).update(replace)
        done.append(f"Updated schedule {RECONCILE_SCHEDULE_ID} (every {reconcile_every}).")
    if settings.google_sheet_key:
        await client.start_workflow(SheetMirror.run, MirrorInput(settings.google_sheet_key),
                                    id=SHEET_MIRROR_WORKFLOW_ID, task_queue=queue,
                                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
        done.append(f"Sheet mirror {SHEET_MIRROR_WORKFLOW_ID} is running.")
    return done


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("import-csv", help="import an exported Zapier Annual Plan Table (CSV)")
    parser.add_argument("file", help="the CSV file, with the table's original column names")
    parser.add_argument("--locale", default="en-US",
                        help="how the file writes amounts and dates (default en-US: 96,000.00 and 12/01/2026 "
                             "for 1 December; e.g. de-DE for 96.000,00 and 01.12.2026)")
    parser.set_defaults(func=cmd_import_csv)

    intake = commands.add_parser("intake", help="PandaDoc intake and the sheet mirror")
    sub = intake.add_subparsers(dest="intake_command", required=True)
    sub.add_parser("schedules", help="create or update the daily reconcile schedule and start the sheet mirror"
                   ).set_defaults(func=cmd_schedules)
