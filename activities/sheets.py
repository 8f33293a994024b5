"""The Google Sheet mirror's one side effect: upsert changed plan rows into the sheet, keyed by
row id in column A, in one write request per burst (plus one to grow the grid when it is full).
gspread raises on 429 and 5xx; Temporal retries the activity with backoff.

The cursor (the last row change mirrored) is kept in `claims` (scope "sheet-mirror"), so the
mirror needs no help from the code that changes rows: `plans.updated_at` is bumped on every change.
A retried pass re-reads the sheet and writes only lines that differ, so it never duplicates one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from temporalio import activity

from domain.annual_plan_table import SHEET_HEADER, sheet_row
from settings import Settings
from store.db import unit_of_work
from store.models import Claim, Plan
from store.plans import plan_to_json

CURSOR_SCOPE = "sheet-mirror"


@dataclass
class MirrorPass:
    sheet_key: str
    worksheet: str = ""  # empty: the first worksheet
    max_rows: int = 1000
    # Rows changed this recently wait for the next pass: a transaction still open may commit a row
    # with an older updated_at, which a keyset cursor that had moved past it would miss.
    settle_seconds: float = 2.0


@dataclass
class MirrorResult:
    rows: int = 0  # rows read since the cursor
    written: int = 0  # sheet lines written (updated or appended)
    write_requests: int = 0
    more: bool = False  # more rows are waiting (the limit was hit, or rows are still settling)


def _column_letter(number: int) -> str:
    letters = ""
    while number:
        number, rest = divmod(number - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


LAST_COLUMN = _column_letter(len(SHEET_HEADER))


class SheetMirrorActivities:
    def __init__(self, settings: Settings, open_client: Callable[[], Any] | None = None) -> None:
        self._settings = settings
        self._open_client = open_client or self._service_account_client

    def _service_account_client(self) -> Any:
        import gspread

        return gspread.service_account(filename=self._settings.google_service_account_file)

    @activity.defn(name="sheets.mirror_changed_rows")
    def mirror_changed_rows(self, job: MirrorPass) -> MirrorResult:
        cursor_at, cursor_id = self._cursor(job.sheet_key)
        settled_before = datetime.now(UTC) - timedelta(seconds=job.settle_seconds)
        with unit_of_work(self._settings.database_url) as session:
            since = select(Plan).where(or_(
                Plan.updated_at > cursor_at,
                and_(Plan.updated_at == cursor_at, Plan.id > cursor_id),
            )).order_by(Plan.updated_at, Plan.id)
            plans = list(session.scalars(since.where(Plan.updated_at <= settled_before).limit(job.max_rows)))
            settling = session.scalar(since.where(Plan.updated_at > settled_before).limit(1)) is not None
            rows = {plan.id: sheet_row(plan_to_json(plan)) for plan in plans}
            last = (plans[-1].updated_at, plans[-1].id) if plans else None
        result = MirrorResult(rows=len(rows), more=settling or len(rows) == job.max_rows)
        if rows:
            result.written, result.write_requests = self._upsert(job, rows)
        if last is not None:
            self._save_cursor(job.sheet_key, *last)
        return result

    def _upsert(self, job: MirrorPass, rows: dict[int, list[str]]) -> tuple[int, int]:
        spreadsheet = self._open_client().open_by_key(job.sheet_key)
        worksheet = spreadsheet.worksheet(job.worksheet) if job.worksheet else spreadsheet.sheet1
        lines = worksheet.get_all_values()
        at_line = {line[0]: number for number, line in enumerate(lines, start=1) if line and line[0]}
        updates: list[dict[str, Any]] = []
        if not lines or lines[0][: len(SHEET_HEADER)] != SHEET_HEADER:
            updates.append({"range": f"A1:{LAST_COLUMN}1", "values": [SHEET_HEADER]})
        next_line = max(len(lines), 1) + 1
        written = 0
        for row_id, values in rows.items():
            number = at_line.get(str(row_id))
            if number is None:
                number, next_line = next_line, next_line + 1
            elif _padded(lines[number - 1]) == values:
                continue
            updates.append({"range": f"A{number}:{LAST_COLUMN}{number}", "values": [values]})
            written += 1
        if not updates:
            return 0, 0
        requests = 0
        rows_needed, columns_needed = next_line - 1, len(SHEET_HEADER)
        if rows_needed > worksheet.row_count or columns_needed > worksheet.col_count:
            # values.batchUpdate cannot write past the grid: grow it first, with rows to spare.
            worksheet.resize(rows=max(worksheet.row_count, rows_needed + 500 if rows_needed > worksheet.row_count
                                      else 0), cols=max(worksheet.col_count, columns_needed))
            requests += 1
        # One write request for the whole burst: changed lines and new lines together.
        worksheet.batch_update(updates, value_input_option="RAW")
        return written, requests + 1

    def _cursor(self, sheet_key: str) -> tuple[datetime, int]:
        with unit_of_work(self._settings.database_url) as session:
            value = session.scalar(select(Claim.value).where(Claim.scope == CURSOR_SCOPE, Claim.key == sheet_key))
        if not value:
            return datetime(1970, 1, 1, tzinfo=UTC), 0
        moment, _, row_id = value.rpartition("|")
        return datetime.fromisoformat(moment), int(row_id)

    def _save_cursor(self, sheet_key: str, at: datetime, row_id: int) -> None:
        value = f"{at.isoformat()}|{row_id}"
        with unit_of_work(self._settings.database_url) as session:
            claim = session.scalar(select(Claim).where(Claim.scope == CURSOR_SCOPE, Claim.key == sheet_key))
            if claim is None:
                session.add(Claim(scope=CURSOR_SCOPE, key=sheet_key, value=value))
            else:
                claim.value = value


def _padded(line: list[str]) -> list[str]:
    # The Sheets API drops trailing empty cells from each line it returns.
    return (line + [""] * len(SHEET_HEADER))[: len(SHEET_HEADER)]
