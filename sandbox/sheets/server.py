"""A local fake of the few Google Sheets v4 endpoints gspread 6 calls for the sheet mirror:

  GET  /v4/spreadsheets/{key}                         metadata (open_by_key, worksheets)
  GET  /v4/spreadsheets/{key}/values/{range}          values.get
  PUT  /v4/spreadsheets/{key}/values/{range}          values.update
  POST /v4/spreadsheets/{key}/values:batchUpdate      values.batchUpdate
  POST /v4/spreadsheets/{key}/values/{range}:append   values.append (grows the grid)
  POST /v4/spreadsheets/{key}:batchUpdate             updateSheetProperties (resize)

Like the real API, writing beyond the grid is refused (only append grows it) and trailing empty
cells are left out of returned lines. `fail_next(n, 429)` answers the next n requests with Google's
error shape. `client()` returns a gspread Client whose requests go here.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import requests

GOOGLE_SHEETS = "https://sheets.googleapis.com"
_CELL = re.compile(r"^([A-Z]*)(\d*)$")
_STATUS_NAMES = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
                 503: "UNAVAILABLE"}


@dataclass
class Worksheet:
    title: str
    sheet_id: int
    rows: int = 1000
    columns: int = 26
    cells: dict[tuple[int, int], str] = field(default_factory=dict)  # (row, column), 1-based

    def lines(self) -> list[list[str]]:
        if not self.cells:
            return []
        last_row = max(r for r, _ in self.cells)
        out = []
        for r in range(1, last_row + 1):
            present = [c for (row, c) in self.cells if row == r]
            width = max(present) if present else 0
            out.append([self.cells.get((r, c), "") for c in range(1, width + 1)])
        while out and not out[-1]:
            out.pop()
        return out


@dataclass
class Spreadsheet:
    key: str
    title: str
    sheets: list[Worksheet]


def _column_number(letters: str) -> int:
    number = 0
    for ch in letters:
        number = number * 26 + ord(ch) - 64
    return number


class FakeSheets:
    def __init__(self) -> None:
        self.spreadsheets: dict[str, Spreadsheet] = {}
        self.requests: list[tuple[str, str]] = []  # (method, kind) of every answered request
        self.failures: list[int] = []
        self.failed = 0
        self.fail_writes_only = False
        self.lock = threading.RLock()

    def create(self, key: str, title: str = "Annual Plan Table", rows: int = 1000) -> Spreadsheet:
        with self.lock:
            sheet = Spreadsheet(key, title, [Worksheet("Sheet1", 0, rows=rows)])
            self.spreadsheets[key] = sheet
            return sheet

    def fail_next(self, times: int, status: int = 429, *, writes_only: bool = False) -> None:
        """Answer the next `times` requests (or write requests) with `status` in Google's error shape."""
        with self.lock:
            self.failures = [status] * times
            self.fail_writes_only = writes_only

    def writes(self) -> list[str]:
        return [kind for method, kind in self.requests if method != "GET"]

    def values(self, key: str, title: str | None = None) -> list[list[str]]:
        spreadsheet = self.spreadsheets[key]
        sheet = self._sheet(spreadsheet, title)
        return sheet.lines()

    # ---- helpers -----------------------------------------------------------------------------
    def _sheet(self, spreadsheet: Spreadsheet, title: str | None) -> Worksheet:
        if not title:
            return spreadsheet.sheets[0]
        for sheet in spreadsheet.sheets:
            if sheet.title == title:
                return sheet
        raise LookupError(f"Unable to parse range: {title}")

    def _range(self, spreadsheet: Spreadsheet, text: str) -> tuple[Worksheet, int, int, int | None, int | None]:
        """'Sheet1'!A2:C3 → sheet, first row, first column, last row, last column (None: open)."""
        title, bang, cells = text.rpartition("!")
        if not bang:
            title, cells = (text, "") if not _CELL.match(text.upper()) else ("", text)
        title = title[1:-1].replace("''", "'") if title.startswith("'") else title
        sheet = self._sheet(spreadsheet, title)
        if not cells:
            return sheet, 1, 1, None, None
        start, _, end = cells.upper().partition(":")
        m1 = _CELL.match(start)
        m2 = _CELL.match(end or start)
        if not m1 or not m2:
            raise LookupError(f"Unable to parse range: {text}")
        r1, c1 = int(m1.group(2) or 1), _column_number(m1.group(1) or "A")
        r2 = int(m2.group(2)) if m2.group(2) else None
        c2 = _column_number(m2.group(1)) if m2.group(1) else None
        return sheet, r1, c1, r2, c2

    def _write(self, sheet: Worksheet, row: int, column: int, values: list[list[Any]]) -> int:
        last_row = row + len(values) - 1
        last_column = column + max((len(v) for v in values), default=1) - 1
        if last_row > sheet.rows or last_column > sheet.columns:
            raise ValueError(f"Range ('{sheet.title}'!R{last_row}C{last_column}) exceeds grid limits. "
                             f"Max rows: {sheet.rows}, max columns: {sheet.columns}")
        for i, line in enumerate(values):
            for j, value in enumerate(line):
                text = "" if value is None else str(value)
                if text:
                    sheet.cells[(row + i, column + j)] = text
                else:
                    sheet.cells.pop((row + i, column + j), None)
        return len(values)

    # ---- endpoints ---------------------------------------------------------------------------
    def handle(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            if self.failures and (method != "GET" or not self.fail_writes_only):
                status = self.failures.pop(0)
                self.failed += 1
                return status, {"error": {"code": status, "message": "Quota exceeded for quota metric 'Write "
                                          "requests' (fake).", "status": _STATUS_NAMES.get(status, "UNKNOWN")}}
            match = re.match(r"^/v4/spreadsheets/([^/:]+)(.*)$", path)
            if not match or match.group(1) not in self.spreadsheets:
                return 404, {"error": {"code": 404, "message": "Requested entity was not found.",
                                       "status": "NOT_FOUND"}}
            spreadsheet, rest = self.spreadsheets[match.group(1)], match.group(2)
            try:
                return self._route(method, spreadsheet, rest, body)
            except (LookupError, ValueError) as exc:
                return 400, {"error": {"code": 400, "message": str(exc), "status": "INVALID_ARGUMENT"}}

    def _route(self, method: str, spreadsheet: Spreadsheet, rest: str,
               body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if rest == "" and method == "GET":
            self.requests.append((method, "metadata"))
            return 200, {"spreadsheetId": spreadsheet.key, "properties": {"title": spreadsheet.title},
                         "sheets": [{"properties": {"sheetId": s.sheet_id, "title": s.title, "index": i,
                                                    "sheetType": "GRID", "gridProperties": {
                                                        "rowCount": s.rows, "columnCount": s.columns}}}
                                    for i, s in enumerate(spreadsheet.sheets)]}
        if rest == ":batchUpdate" and method == "POST":
            self.requests.append((method, "batchUpdate"))
            for request in body.get("requests", []):
                props = request.get("updateSheetProperties", {}).get("properties")
                if props is None:
                    raise ValueError(f"The fake supports only updateSheetProperties, not {list(request)}.")
                sheet = next(s for s in spreadsheet.sheets if s.sheet_id == props.get("sheetId", 0))
                grid = props.get("gridProperties", {})
                sheet.rows = int(grid.get("rowCount", sheet.rows))
                sheet.columns = int(grid.get("columnCount", sheet.columns))
            return 200, {"spreadsheetId": spreadsheet.key, "replies": [{} for _ in body.get("requests", [])]}
        if rest == "/values:batchUpdate" and method == "POST":
            self.requests.append((method, "values.batchUpdate"))
            total = 0
            for item in body.get("data", []):
                sheet, row, column, _, _ = self._range(spreadsheet, item["range"])
                total += self._write(sheet, row, column, item.get("values", []))
            return 200, {"spreadsheetId": spreadsheet.key, "totalUpdatedRows": total}
        if rest.startswith("/values/"):
            target = rest.removeprefix("/values/")
            if target.endswith(":append") and method == "POST":
                self.requests.append((method, "values.append"))
                sheet, _, column, _, _ = self._range(spreadsheet, unquote(target.removesuffix(":append")))
                values = body.get("values", [])
                start = len(sheet.lines()) + 1
                sheet.rows = max(sheet.rows, start + len(values) - 1)
                self._write(sheet, start, column, values)
                return 200, {"spreadsheetId": spreadsheet.key, "updates": {
                    "updatedRange": f"'{sheet.title}'!A{start}", "updatedRows": len(values)}}
            sheet, r1, c1, r2, c2 = self._range(spreadsheet, unquote(target))
            if method == "GET":
                self.requests.append((method, "values.get"))
                lines = sheet.lines()
                picked = [line[c1 - 1: c2] for line in lines[r1 - 1: r2]]
                out: dict[str, Any] = {"range": unquote(target), "majorDimension": "ROWS"}
                if picked:
                    out["values"] = picked
                return 200, out
            if method == "PUT":
                self.requests.append((method, "values.update"))
                rows = self._write(sheet, r1, c1, body.get("values", []))
                return 200, {"spreadsheetId": spreadsheet.key, "updatedRows": rows}
        return 404, {"error": {"code": 404, "message": f"No fake for {method} {rest}.", "status": "NOT_FOUND"}}


def _handler(fake: FakeSheets) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                body = {}
            status, payload = fake.handle(method, urlsplit(self.path).path, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            self._serve("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._serve("POST")

        def do_PUT(self) -> None:  # noqa: N802
            self._serve("PUT")

    return Handler


class RewritingSession(requests.Session):
    """A requests session that sends Google Sheets calls to another address."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self._base = base_url.rstrip("/")

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        text = url.decode() if isinstance(url, bytes) else url
        return super().request(method, text.replace(GOOGLE_SHEETS, self._base, 1), *args, **kwargs)


class FakeSheetsServer:
    def __init__(self, port: int = 0) -> None:
        self.fake = FakeSheets()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self.fake))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-sheets", daemon=True)
        self._thread.start()

    def client(self) -> Any:
        import gspread

        return gspread.Client(auth=None, session=RewritingSession(self.url))  # type: ignore[arg-type]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
