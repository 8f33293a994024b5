"""Revenue: JSON (and CSV) endpoints (SPEC §9, issue 16) and the revenue page.

This module only parses the query string, calls a report from `reports/` and renders it.
Query parameters, all optional: `start`, `end` (YYYY-MM-DD; default the last twelve months up to
today), `currency` (reporting currency; default REPORTING_CURRENCY), `limit`, `offset`, and
`format=csv` on every JSON endpoint (the same figures as a CSV table; `table=` picks one of a
report's tables, e.g. `table=scheduled_churn` of the committed report).
Money is a decimal string in major units of the reporting currency (`"1234.50"`), each month
converted at its own rate from the exchange_rates table; currencies without a rate are left out
and listed in `missing_rates`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from typing import Any

from flask import Blueprint, Response, abort, jsonify, render_template, request, url_for

from domain.money import MoneyError, check_currency
from reports import analytics, bridge, cohorts, committed, customers, one_off
from reports import customer as customer_report
from reports import mrr as mrr_report
from reports import summary as summary_report
from reports.period import Converter, Range, month_start
from web.auth import requires
from web.charts import page_data
from web.context import db, settings

bp = Blueprint("revenue", __name__)


class BadQuery(ValueError):
    pass


@bp.errorhandler(BadQuery)
def _bad_query(exc: BadQuery) -> Any:
    return jsonify({"error": str(exc)}), 400


# Reports walk the range month by month: bound it so a typo (9999-12-01) is a 400, not a
# request that runs for minutes or overflows the calendar.
EARLIEST = date(1970, 1, 1)
LATEST = date(2199, 12, 31)
MAX_MONTHS = 240


def _parse_date(name: str, default: date) -> date:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise BadQuery(f"{name}={raw!r} is not a date; write it as YYYY-MM-DD.") from None
    if not EARLIEST <= day <= LATEST:
        raise BadQuery(f"{name}={raw!r} is out of range; use a date from {EARLIEST} to {LATEST}.")
    return day


def _range() -> Range:
    today = datetime.now(UTC).date()
    default_end = today
    if not request.args.get("end"):
        # The day of the last MRR refresh when it is before today: the warehouse's figures are as
        # of the last sync, and that day's MRR is kept (store/mrr_aggregates.py) where today's is not.
        from store import mrr_aggregates

        with db() as session:
            synced = mrr_aggregates.refresh_day(session)
        default_end = synced if synced is not None and synced < today else today
    end = _parse_date("end", min(default_end, LATEST))
    start = _parse_date("start", max(month_start(end, 11), EARLIEST))
    if start > end:
        raise BadQuery(f"start {start} is after end {end}; swap them.")
    from domain.calendar import months_touched  # month arithmetic lives in domain/calendar.py

    months = months_touched(start, end)
    if months > MAX_MONTHS:
        raise BadQuery(f"start {start} to end {end} spans {months} months; ask for at most {MAX_MONTHS}.")
    return Range(start, end, _currency(request.args.get("currency") or settings().reporting_currency))


def _currency(raw: str) -> str:
    try:
        return check_currency(raw)
    except MoneyError as exc:
        raise BadQuery(f"currency: {exc}") from None


def _int_arg(name: str, default: int, maximum: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    # ASCII digits only ("²".isdigit() is true, int("²") fails), and short enough to parse.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise BadQuery(f"{name}={raw!r} must be a whole number from 0 to {maximum}.")
    return min(int(raw), maximum)


def _wants_csv() -> bool:
    fmt = request.args.get("format") or "json"
    if fmt not in ("json", "csv"):
        raise BadQuery(f"format={fmt!r} is not json or csv.")
    return fmt == "csv"


def _flat(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted columns (`movements.new`); lists of plain values joined by spaces."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, f"{name}."))
        elif isinstance(value, list):
            out[name] = " ".join(str(v) for v in value)
        else:
            out[name] = "" if value is None else value
    return out


def _csv(rows: Iterable[dict[str, Any]], name: str) -> Response:
    flat = [_flat(r) for r in rows]
    columns: list[str] = []
    for r in flat:
        columns += [c for c in r if c not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    return Response(buffer.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})


Table = Callable[[dict[str, Any]], Iterable[dict[str, Any]]]


def _table(tables: dict[str, Table]) -> Table:
    """Which of a report's tables a CSV download is (`table=`; default the first)."""
    name = request.args.get("table") or next(iter(tables))
    if name not in tables:
        raise BadQuery(f"table={name!r} is not one of {', '.join(tables)}.")
    return tables[name]


def _respond(body: dict[str, Any], name: str, tables: dict[str, Table]) -> Any:
    """JSON, or with `format=csv` one of the report's tables: one CSV row per row."""
    if _wants_csv():
        return _csv(_table(tables)(body), name)
    return jsonify(body)


def _report(name: str, build: Callable[[Any, Range, Converter], dict[str, Any]], **tables: Table) -> Any:
    r = _range()
    if _wants_csv():
        _table(tables)  # a bad format or table is a 400 before any work
    with db() as session:
        body = build(session, r, Converter(session, r))
    return _respond(body, name, tables)


def _without_missing(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in body.items() if k != "mrr_left_out"}]


@bp.get("/api/revenue/summary")
@requires("viewer")
def summary() -> Any:
    return _report("revenue-summary", summary_report.summary, summary=_without_missing)


@bp.get("/api/revenue/mrr")
@requires("viewer")
def mrr_series() -> Any:
    return _report("revenue-mrr", mrr_report.mrr_report, points=lambda b: b["points"])


@bp.get("/api/revenue/top-customers")
@requires("viewer")
def top_customers() -> Any:
    limit = _int_arg("limit", 10, 1000)
    return _report("revenue-top-customers", lambda s, r, c: customers.report(s, r, c, limit),
                   customers=lambda b: b["customers"])


@bp.get("/api/revenue/bridge")
@requires("viewer")
def mrr_bridge() -> Any:
    return _report("revenue-bridge", bridge.report, months=lambda b: b["months"], totals=lambda b: [b["totals"]])


@bp.get("/api/revenue/cohorts")
@requires("viewer")
def mrr_cohorts() -> Any:
    return _report("revenue-cohorts", cohorts.report, cells=cohorts.table,
                   cohorts=lambda b: [{k: v for k, v in c.items() if k != "retained"} for c in b["cohorts"]])


@bp.get("/api/revenue/committed")
@requires("viewer")
def committed_mrr() -> Any:
    return _report("revenue-committed", committed.report, months=lambda b: b["months"],
                   scheduled_churn=lambda b: b["scheduled_churn"], prepaid_plans=lambda b: b["prepaid_plans"])


@bp.get("/api/revenue/one-off")
@requires("viewer")
def one_off_revenue() -> Any:
    return _report("revenue-one-off", one_off.report, months=lambda b: b["months"], charges=lambda b: b["charges"])


def _analytics(which: str) -> Any:
    limit = _int_arg("limit", 100, 10000)
    offset = _int_arg("offset", 0, 10**9)
    raw = request.args.get("currency")
    currency = _currency(raw) if raw else None
    tables: dict[str, Table] = {"rows": lambda b: b["rows"]}
    if _wants_csv():
        _table(tables)
    with db() as session:
        body = analytics.rows(session, which, limit, offset, currency)
    return _respond(body, f"revenue-{which}", tables)


@bp.get("/api/revenue/persons")
@requires("viewer")
def persons() -> Any:
    return _analytics("persons")


@bp.get("/api/revenue/groups")
@requires("viewer")
def groups() -> Any:
    return _analytics("groups")


@bp.get("/api/revenue/customers/<customer_id>")
@requires("viewer")
def customer_history(customer_id: str) -> Any:
    """One customer's recognised revenue per month (the page's customer view, as JSON or CSV)."""
    r = _range()
    tables: dict[str, Table] = {"months": lambda b: b["months"]}
    if _wants_csv():
        _table(tables)
    with db() as session:
        try:
            body = customer_report.history(session, r, Converter(session, r), customer_id)
        except customer_report.UnknownCustomer as exc:
            return jsonify({"error": str(exc)}), 404
    return _respond(body, f"revenue-customer-{customer_id}", tables)


def _links(r: Range) -> dict[str, str]:
    """CSV downloads of every chart and table: the API endpoint with the page's own range and
    currency, so a download holds exactly the figures on screen."""
    query: dict[str, Any] = {"start": r.start.isoformat(), "end": r.end.isoformat(), "currency": r.currency,
                             "format": "csv"}

    def csv_url(endpoint: str, **extra: Any) -> str:
        return url_for(f"revenue.{endpoint}", **query, **extra)

    return {"mrr": csv_url("mrr_series"), "bridge": csv_url("mrr_bridge"), "cohorts": csv_url("mrr_cohorts"),
            "committed": csv_url("committed_mrr"), "scheduled_churn": csv_url("committed_mrr", table="scheduled_churn"),
            "prepaid_plans": csv_url("committed_mrr", table="prepaid_plans"), "one_off": csv_url("one_off_revenue"),
            "charges": csv_url("one_off_revenue", table="charges"), "summary": csv_url("summary"),
            "top": csv_url("top_customers", limit=TOP_CUSTOMERS)}


TOP_CUSTOMERS = 10


@bp.get("/revenue")
@requires("viewer")
def page() -> Any:
    r = _range()
    with db() as session:
        convert = Converter(session, r)
        data = {
            "summary": summary_report.summary(session, r, convert),
            "mrr": mrr_report.mrr_report(session, r, convert),
            "bridge": bridge.report(session, r, convert),
            "cohorts": cohorts.report(session, r, convert),
            "committed": committed.report(session, r, convert),
            "one_off": one_off.report(session, r, convert),
            "top": customers.top_customers(session, r, convert, TOP_CUSTOMERS),
        }
    return render_template("revenue/index.html", r=r, **data, links=_links(r), charts=page_data(data),
                           missing=sorted(convert.missing))


@bp.get("/revenue/customers/<customer_id>")
@requires("viewer")
def customer_page(customer_id: str) -> Any:
    r = _range()
    with db() as session:
        try:
            body = customer_report.history(session, r, Converter(session, r), customer_id)
        except customer_report.UnknownCustomer as exc:
            abort(404, description=str(exc))
    csv_url = url_for("revenue.customer_history", customer_id=customer_id, start=r.start.isoformat(),
                      end=r.end.isoformat(), currency=r.currency, format="csv")
    return render_template("revenue/customer.html", r=r, c=body, csv_url=csv_url,
                           chart={"labels": [m["month"][:7] for m in body["months"]],
                                  "net": [m["net"] for m in body["months"]],
                                  "gross": [m["gross"] for m in body["months"]]})
