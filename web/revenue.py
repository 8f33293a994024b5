"""Revenue: JSON endpoints (SPEC §9) and the revenue page, read from the warehouse.

Query parameters, all optional: `start`, `end` (YYYY-MM-DD; default the last twelve months up to
today), `currency` (reporting currency; default REPORTING_CURRENCY), `limit`, `offset`.
Money is a decimal string in major units of the reporting currency (`"1234.50"`), converted with
the exchange_rates table as of `end`; currencies without a rate are left out and listed in
`missing_rates`.
"""

from __future__ import annotations

import copy
import threading
from bisect import bisect_right
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from flask import Blueprint, jsonify, render_template, request
from sqlalchemy import text
from sqlalchemy.orm import Session

from domain import fx, mrr
from domain.deferred import allocate
from domain.money import MoneyError, check_currency, display, format_amount
from store import revenue as queries
from web.auth import requires
from web.context import db, settings

bp = Blueprint("revenue", __name__)


class BadQuery(ValueError):
    pass


@bp.errorhandler(BadQuery)
def _bad_query(exc: BadQuery) -> Any:
    return jsonify({"error": str(exc)}), 400


@dataclass(frozen=True)
class Range:
    start: date
    end: date
    currency: str


def _month_start(day: date, back: int = 0) -> date:
    index = day.year * 12 + day.month - 1 - back
    return date(index // 12, index % 12 + 1, 1)


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
    end = _parse_date("end", min(today, LATEST))
    start = _parse_date("start", max(_month_start(end, 11), EARLIEST))
    if start > end:
        raise BadQuery(f"start {start} is after end {end}; swap them.")
    months = (end.year - start.year) * 12 + end.month - start.month + 1
    if months > MAX_MONTHS:
        raise BadQuery(f"start {start} to end {end} spans {months} months; ask for at most {MAX_MONTHS}.")
    raw_currency = request.args.get("currency") or settings().reporting_currency
    try:
        currency = check_currency(raw_currency)
    except MoneyError as exc:
        raise BadQuery(f"currency: {exc}") from None
    return Range(start, end, currency)


def _int_arg(name: str, default: int, maximum: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    # ASCII digits only ("²".isdigit() is true, int("²") fails), and short enough to parse.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise BadQuery(f"{name}={raw!r} must be a whole number from 0 to {maximum}.")
    return min(int(raw), maximum)


class Converter:
    """Minor units of any currency → minor units of the reporting currency, noting missing rates.

    Each amount converts at the rate of its own day (a month at its last day in the range): past
    months keep their figures when the range moves."""

    def __init__(self, session: Session, r: Range) -> None:
        self.reporting = r.currency
        self.end = r.end
        self.history = queries.rate_history(session, r.currency)
        self.rates = self.rates_on(r.end)
        self.missing: set[str] = set()
        # The whole rates table for this currency: cache keys change when any rate does.
        self.key = tuple((c, tuple(h)) for c, h in sorted(self.history.items()))

    def rates_on(self, day: date) -> dict[str, Decimal]:
        out = {}
        for currency, history in self.history.items():
            i = bisect_right([d for d, _ in history], day)
            if i:
                out[currency] = history[i - 1][1]
        return out

    def __call__(self, amount: int, currency: str, on: date | None = None) -> int:
        rates = self.rates if on is None or on == self.end else self._rates_cached(on)
        try:
            return fx.convert(amount, currency, self.reporting, rates)
        except fx.MissingRate:
            self.missing.add(currency.lower())
            return 0

    def _rates_cached(self, day: date) -> dict[str, Decimal]:
        cache: dict[date, dict[str, Decimal]] = self.__dict__.setdefault("_by_day", {})
        if day not in cache:
            cache[day] = self.rates_on(day)
        return cache[day]

    def on(self, day: date) -> Callable[[int, str], int]:
        return lambda amount, currency: self(amount, currency, day)

    def month(self, month: date) -> date:
        """The day a month's amounts convert on: its last day, or `end` within the last month."""
        return min(_month_start(month, -1) - timedelta(days=1), self.end)

    def money(self, minor: int) -> str:
        return format_amount(minor, self.reporting)


def _months(r: Range) -> list[date]:
    out, cursor = [], _month_start(r.start)
    while cursor <= r.end:
        out.append(cursor)
        cursor = _month_start(cursor, -1)
    return out


# MRR inputs and series are recomputed only when subscriptions, items or prices changed: at
# 100,000 subscriptions loading and pricing them is seconds, reading the marker milliseconds.
_cache_lock = threading.Lock()
_cache: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
CACHE_ENTRIES = 64


def _cached(key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    value = compute()
    with _cache_lock:
        _cache[key] = value
        while len(_cache) > CACHE_ENTRIES:
            _cache.popitem(last=False)
    return value


def _mrr_inputs(session: Session) -> tuple[list[mrr.Subscription], list[str]]:
    marker = (settings().database_url, queries.subscriptions_marker(session))
    return _cached(("subs", marker), lambda: queries.mrr_inputs(session))  # type: ignore[no-any-return]


def _series(session: Session, days: list[date], convert: Converter) -> list[dict[str, int]]:
    marker = (settings().database_url, queries.subscriptions_marker(session))
    subs = _mrr_inputs(session)[0]
    key = ("series", marker, tuple(days), convert.reporting, convert.key)
    series, missing = _cached(key, lambda: (mrr.mrr_series(subs, days, converts=[convert.on(d) for d in days]),
                                            set(convert.missing)))
    convert.missing |= missing
    return list(series)


def _report(session: Session, name: str, compute: Callable[[], Any], *args: Any) -> Any:
    """A warehouse report query, recomputed only when the revenue data changed."""
    marker = (settings().database_url, queries.revenue_marker(session))
    return _cached((name, marker, *args), compute)


def _by_month(session: Session, r: Range) -> list[tuple[date, str, int, int]]:
    return list(_report(session, "by_month", lambda: queries.revenue_by_month(session, r.start, r.end), r.start, r.end))


def _summary(session: Session, r: Range, convert: Converter) -> dict[str, Any]:
    # Movements from the day before `start`, as the chart measures its first month.
    before, after = _series(session, [r.start - timedelta(days=1), r.end], convert)
    moved = mrr.movements(before, after)
    now = mrr.summarise(after)
    gross = net = 0
    end_month = r.end.replace(day=1)
    month_days = (_month_start(end_month, -1) - end_month).days
    partial = r.end.day < month_days
    for month, currency, g, n in _by_month(session, r):
        if partial and month == end_month:
            continue  # counted below, as of `end`
        gross += convert(g, currency, convert.month(month))
        net += convert(n, currency, convert.month(month))
    later = _report(session, "deferred", lambda: queries.deferred_after(session, r.end), r.end)
    deferred = sum(convert(n, c) for c, n in later)
    if partial:
        # `end` falls inside a month: of what that month had booked by `end`, the days up to
        # `end` are recognised and the rest of the month is still deferred.
        booked = _report(session, "booked", lambda: queries.booked_in_month(session, r.end), r.end)
        for currency, g, n in booked:
            done_g, _ = allocate(g, [r.end.day, month_days - r.end.day]) if g else (0, 0)
            done_n, rest_n = allocate(n, [r.end.day, month_days - r.end.day]) if n else (0, 0)
            gross += convert(done_g, currency)
            net += convert(done_n, currency)
            deferred += convert(rest_n, currency)
    m = convert.money
    return {
        "currency": r.currency, "start": r.start.isoformat(), "end": r.end.isoformat(),
        "mrr": m(now.mrr), "arr": m(now.arr), "customers": now.customers, "arpu": m(now.arpu),
        "movements": {"start_mrr": m(moved.start_mrr), "new": m(moved.new), "expansion": m(moved.expansion),
                      "contraction": m(moved.contraction), "churned": m(moved.churned),
                      "net_new": m(moved.net_new), "new_customers": moved.new_customers,
                      "churned_customers": moved.churned_customers},
        "revenue": {"gross": m(gross), "net": m(net)},
        "deferred": m(deferred),
        "missing_rates": sorted(convert.missing),
        # Subscription items MRR could not price (a price not synced, metered and never billed, no
        # amount in the subscription's currency): named, so 0 is never silently wrong.
        "mrr_left_out": _mrr_inputs(session)[1][:100],
    }


def _whole(session: Session, name: str, r: Range, convert: Converter, compute: Callable[[], Any],
           *extra: Any) -> Any:
    """A whole computed report, cached on the warehouse version, the range and the rates; a copy
    is returned because callers format it in place."""
    key = (name, settings().database_url, queries.revenue_marker(session), r, convert.reporting, convert.key,
           *extra)
    value, missing = _cached(key, lambda: (compute(), set(convert.missing)))
    convert.missing |= missing
    return copy.deepcopy(value)


def _mrr_points(session: Session, r: Range, convert: Converter) -> list[dict[str, Any]]:
    return list(_whole(session, "points", r, convert, lambda: _compute_mrr_points(session, r, convert)))


def _compute_mrr_points(session: Session, r: Range, convert: Converter) -> list[dict[str, Any]]:
    months = _months(r)
    # MRR at the end of each month (or on `end` for the last one); movements against the day
    # before the first month.
    days = [months[0] - timedelta(days=1), *(min(_month_start(m, -1) - timedelta(days=1), r.end) for m in months)]
    series = _series(session, days, convert)
    points = []
    for i, month in enumerate(months, start=1):
        moved = mrr.movements(series[i - 1], series[i])
        summary = mrr.summarise(series[i])
        points.append({"month": month.isoformat(), "on": days[i].isoformat(), "mrr_minor": summary.mrr,
                       "mrr": convert.money(summary.mrr),
                       "arr": convert.money(summary.arr), "customers": summary.customers,
                       "arpu": convert.money(summary.arpu),
                       "new": moved.new, "expansion": moved.expansion, "contraction": moved.contraction,
                       "churned": moved.churned})
    return points


def _deferred_points(session: Session, r: Range, convert: Converter) -> list[dict[str, Any]]:
    by_month: dict[date, list[int]] = defaultdict(lambda: [0, 0])
    for month, currency, g, n in _by_month(session, r):
        by_month[month][0] += convert(g, currency, convert.month(month))
        by_month[month][1] += convert(n, currency, convert.month(month))
    return [{"month": month.isoformat(), "gross_minor": by_month[month][0], "net_minor": by_month[month][1],
             "gross": convert.money(by_month[month][0]), "net": convert.money(by_month[month][1])}
            for month in _months(r)]


def _top_customers(session: Session, r: Range, convert: Converter, limit: int) -> list[dict[str, Any]]:
    return list(_whole(session, "top", r, convert, lambda: _compute_top_customers(session, r, convert, limit), limit))


def _compute_top_customers(session: Session, r: Range, convert: Converter, limit: int) -> list[dict[str, Any]]:
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    rows = _report(session, "by_customer_month",
                   lambda: queries.revenue_by_customer_month(session, r.start, r.end), r.start, r.end)
    for customer_id, currency, month, g, n in rows:
        totals[customer_id][0] += convert(g, currency, convert.month(month))
        totals[customer_id][1] += convert(n, currency, convert.month(month))
    top = sorted(totals.items(), key=lambda kv: (-kv[1][1], kv[0]))[:limit]
    customers = queries.customers_by_id(session, [c for c, _ in top])
    out = []
    for customer_id, (gross, net) in top:
        c = customers.get(customer_id)
        out.append({"customer_id": customer_id, "name": c.name if c else None, "email": c.email if c else None,
                    "person_id": c.person_distinct_id if c else None, "group_key": c.group_key if c else None,
                    "deleted": bool(c and c.deleted_at), "gross": convert.money(gross), "net": convert.money(net),
                    "net_minor": net})
    return out


@bp.get("/api/revenue/summary")
@requires("viewer")
def summary() -> Any:
    r = _range()
    with db() as session:
        convert = Converter(session, r)
        return jsonify(_summary(session, r, convert))


@bp.get("/api/revenue/mrr")
@requires("viewer")
def mrr_series() -> Any:
    r = _range()
    with db() as session:
        convert = Converter(session, r)
        points = _mrr_points(session, r, convert)
        for p in points:
            for key in ("new", "expansion", "contraction", "churned"):
                p[key] = convert.money(p[key])
        return jsonify({"currency": r.currency, "points": points, "missing_rates": sorted(convert.missing)})


@bp.get("/api/revenue/top-customers")
@requires("viewer")
def top_customers() -> Any:
    r = _range()
    limit = _int_arg("limit", 10, 1000)
    with db() as session:
        convert = Converter(session, r)
        rows = _top_customers(session, r, convert, limit)
        return jsonify({"currency": r.currency, "start": r.start.isoformat(), "end": r.end.isoformat(),
                        "customers": rows, "missing_rates": sorted(convert.missing)})


def _analytics(view: str, key: str) -> Any:
    """Rows of a revenue analytics view, read with plain SQL as any SQL user would."""
    limit = _int_arg("limit", 100, 10000)
    offset = _int_arg("offset", 0, 10**9)
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    where = ""
    if request.args.get("currency"):
        # One currency's own amounts (unconverted): the per-currency view beside the main one.
        view = f"{view}_by_currency"
        where = "WHERE currency = :currency"
        try:
            params["currency"] = check_currency(request.args["currency"])
        except MoneyError as exc:
            raise BadQuery(f"currency: {exc}") from None
    # One pass over the view: the total rides along as a window count.
    sql = (f"SELECT {key}, currency, amount_minor, amount_last_30_days_minor, customers, COUNT(*) OVER () "  # noqa: S608 - fixed names
           f"FROM {view} {where} ORDER BY amount_minor DESC, {key} LIMIT :limit OFFSET :offset")
    def read(session: Session) -> tuple[list[Any], int]:
        rows = [tuple(row) for row in session.execute(text(sql), params).all()]
        if rows:
            return rows, int(rows[0][5])
        return rows, session.execute(text(f"SELECT COUNT(*) FROM {view} {where}"), params).scalar_one()  # noqa: S608

    with db() as session:
        # The last-30-days columns move with the calendar: today is part of the key.
        rows, total = _report(session, view, lambda: read(session), sql, tuple(sorted(params.items())),
                              datetime.now(UTC).date())
    return jsonify({"total": total, "rows": [
        {key: row[0], "currency": row[1], "amount": format_amount(int(row[2]), row[1]),
         "amount_last_30_days": format_amount(int(row[3]), row[1]), "customers": int(row[4])} for row in rows]})


@bp.get("/api/revenue/persons")
@requires("viewer")
def persons() -> Any:
    return _analytics("persons_revenue_analytics", "person_id")


@bp.get("/api/revenue/groups")
@requires("viewer")
def groups() -> Any:
    return _analytics("groups_revenue_analytics", "group_key")


# --- the page: charts drawn as inline SVG on the server ----------------------------------------

@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    title: str
    kind: str


def bars(values: list[tuple[str, list[tuple[str, int]]]], money: Callable[[int], str], *, width: int = 720,
         height: int = 220) -> dict[str, Any]:
    """Geometry of a bar chart: per label, stacked parts (kind, value); negatives go below zero."""
    top = max([sum(v for _, v in parts if v > 0) for _, parts in values] + [1])
    bottom = min([sum(v for _, v in parts if v < 0) for _, parts in values] + [0])
    span = top - bottom or 1
    zero = height * top / span
    slot = width / max(len(values), 1)
    out: list[Bar] = []
    for i, (label, parts) in enumerate(values):
        up = down = 0.0
        for kind, value in parts:
            h = height * abs(value) / span
            if value >= 0:
                y = zero - up - h
                up += h
            else:
                y = zero + down
                down += h
            out.append(Bar(round(i * slot + slot * 0.15, 1), round(y, 1), round(slot * 0.7, 1), round(h, 1),
                           label, f"{label} {kind}: {money(value)}", kind))
    return {"bars": out, "width": width, "height": height, "zero": round(zero, 1), "slot": slot,
            "labels": [(round(i * slot + slot / 2, 1), label) for i, (label, _) in enumerate(values)]}


@bp.get("/revenue")
@requires("viewer")
def page() -> Any:
    r = _range()
    with db() as session:
        convert = Converter(session, r)
        points = _mrr_points(session, r, convert)
        summary_data = _summary(session, r, convert)
        deferred_points = _deferred_points(session, r, convert)
        top = _top_customers(session, r, convert, 10)
    money = convert.money
    short = [(p["month"][:7], p) for p in points]
    charts = {
        "mrr": bars([(m, [("MRR", p["mrr_minor"])]) for m, p in short], money),  # end of each month
        "movements": bars([(m, [("new", p["new"]), ("expansion", p["expansion"]),
                                ("contraction", -p["contraction"]), ("churned", -p["churned"])]) for m, p in short],
                          money),
        "deferred": bars([(p["month"][:7], [("net", p["net_minor"])]) for p in deferred_points], money),
    }
    return render_template("revenue/index.html", r=r, summary=summary_data, charts=charts, top=top,
                           deferred=deferred_points, display=display)
