"""Acceptance 4 of issue 7: the Google Sheet mirror writes through gspread to a fake Sheets server,
one batch per burst of changes, and survives the server answering 429 twice."""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from temporalio import activity
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.sheets import MirrorPass, MirrorResult, SheetMirrorActivities
from domain.annual_plan_table import SHEET_HEADER
from sandbox.sheets.server import FakeSheetsServer
from store.db import unit_of_work
from store.models import Plan
from store.plans import create_plan, update_plan
from tests.fixtures.app import make_settings
from tests.intake.conftest import eventually
from workflows.intake import MirrorInput, SheetMirror

KEY = "1AbcSheetKeyForTests"
SETTLE = 0.2  # seconds a burst is left to settle before it is mirrored


def _plan(i: int) -> dict[str, Any]:
    return {"pandadoc_id": f"pdMirror{i:04d}", "company_name": f"Mirror Co {i}",
            "customer_email": f"m{i}@example.com", "credit_amount": "1000.00", "discount": "0",
            "price": "1000.00", "start_date": "2026-12-01", "term_months": "12"}


def _column(fake: FakeSheetsServer, title: str) -> list[str]:
    lines = fake.fake.values(KEY)
    if not lines:
        return []
    index = lines[0].index(title)
    return [line[index] if len(line) > index else "" for line in lines[1:]]


async def test_the_mirror_upserts_each_burst_in_one_batch_and_survives_429s(
        dev_env: WorkflowEnvironment, database_url: str, fake_sheets: FakeSheetsServer) -> None:
    settings = make_settings(database_url, google_sheet_key=KEY)
    fake_sheets.fake.create(KEY, rows=4)  # a small grid: the mirror must grow it
    queue = f"mirror-{uuid.uuid4().hex[:8]}"
    mirror = SheetMirrorActivities(settings, open_client=fake_sheets.client)
    with ThreadPoolExecutor(max_workers=4) as pool:
        async with Worker(dev_env.client, task_queue=queue, workflows=[SheetMirror],
                          activities=[mirror.mirror_changed_rows], activity_executor=pool):
            # Burst 1: five new rows in one transaction.
            with unit_of_work(database_url) as session:
                ids = [create_plan(session, _plan(i), actor="test")[0].id for i in range(5)]  # type: ignore[union-attr]
            # Past the settle window: each row's time is its own, and under load a pass begun at
            # once saw some rows of the burst settled and others not, and wrote it in two batches.
            await asyncio.sleep(SETTLE * 1.5)
            handle = await dev_env.client.start_workflow(
                SheetMirror.run, MirrorInput(KEY, poll_seconds=60, settle_seconds=SETTLE),
                id=f"sheet-mirror-{uuid.uuid4().hex[:8]}", task_queue=queue)
            await eventually(lambda: len(fake_sheets.fake.values(KEY)) == 6)
            assert fake_sheets.fake.values(KEY)[0] == SHEET_HEADER
            assert _column(fake_sheets, "Row ID") == [str(i) for i in ids]
            assert _column(fake_sheets, "Company Name") == [f"Mirror Co {i}" for i in range(5)]
            # One resize (the grid had 4 rows and 26 columns) and one values write for the burst.
            assert fake_sheets.fake.writes() == ["batchUpdate", "values.batchUpdate"]

            # Burst 2: two rows edited and one added, while the sheet answers 429 twice.
            fake_sheets.fake.fail_next(2, 429, writes_only=True)
            with unit_of_work(database_url) as session:
                for row_id in ids[1:3]:
                    plan = session.get(Plan, row_id)
                    assert plan is not None
                    update_plan(session, plan, {"company_name": f"Renamed {row_id}"}, actor="test")
                ids.append(create_plan(session, _plan(5), actor="test")[0].id)  # type: ignore[union-attr]
            await asyncio.sleep(SETTLE * 1.5)  # the burst settled, as above
            await handle.signal(SheetMirror.rows_changed)
            await eventually(lambda: len(fake_sheets.fake.values(KEY)) == 7, seconds=15)
            assert fake_sheets.fake.failed == 2
            assert _column(fake_sheets, "Row ID") == [str(i) for i in ids]
            assert _column(fake_sheets, "Company Name") == [
                "Mirror Co 0", f"Renamed {ids[1]}", f"Renamed {ids[2]}", "Mirror Co 3", "Mirror Co 4", "Mirror Co 5"]
            assert fake_sheets.fake.writes() == ["batchUpdate", "values.batchUpdate", "values.batchUpdate"]

            # A nudge with nothing changed runs a pass that writes nothing.
            before = (await handle.query(SheetMirror.stats))["passes"]
            await handle.signal(SheetMirror.rows_changed)
            for _ in range(200):
                stats = await handle.query(SheetMirror.stats)
                if stats["passes"] > before:
                    break
                await asyncio.sleep(0.05)
            assert stats["passes"] == before + 1
            assert stats["write_requests"] == 3
            assert fake_sheets.fake.writes() == ["batchUpdate", "values.batchUpdate", "values.batchUpdate"]
            with unit_of_work(database_url) as session:
                assert session.scalar(select(Plan.company_name).where(Plan.id == ids[1])) == f"Renamed {ids[1]}"
            await handle.terminate("test over")


async def test_the_mirror_stays_within_60_writes_a_minute_however_fast_rows_change(ts_env: WorkflowEnvironment) -> None:
    """Rows changing without pause (every pass finds more): the pacing keeps the write requests in any
    60-second window at 60 or fewer. Time-skipping server; the activity stands in for the sheet."""
    writes_at: list[float] = []

    @activity.defn(name="sheets.mirror_changed_rows")
    def busy_sheet(job: MirrorPass) -> MirrorResult:
        if len(writes_at) >= 150:
            raise ApplicationError("enough", non_retryable=True)
        writes_at.append(activity.info().started_time.timestamp())
        return MirrorResult(rows=1, written=1, write_requests=1, more=True)

    queue = f"mirror-pace-{uuid.uuid4().hex[:8]}"
    with ThreadPoolExecutor(max_workers=2) as pool:
        async with Worker(ts_env.client, task_queue=queue, workflows=[SheetMirror], activities=[busy_sheet],
                          activity_executor=pool):
            handle = await ts_env.client.start_workflow(
                SheetMirror.run, MirrorInput(KEY, settle_seconds=0.2, passes_per_run=1000),
                id=f"sheet-mirror-pace-{uuid.uuid4().hex[:8]}", task_queue=queue,
                run_timeout=timedelta(hours=1))
            try:
                await handle.result()
            except WorkflowFailureError:
                pass
    assert len(writes_at) == 150
    busiest = max(sum(1 for t in writes_at if start <= t < start + 60) for start in writes_at)
    assert busiest <= 60
    assert busiest >= 55  # and the pacing does not waste the quota either
