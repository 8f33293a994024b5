"""MRR at the end of each month of a range, with its movements (`GET /api/revenue/mrr`)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlalchemy.orm import Session

from domain import mrr
from reports import cache
from reports.period import Converter, Range, month_end_days, months
from store import revenue as queries


def inputs(session: Session) -> tuple[list[mrr.Subscription], list[str]]:
    """Every subscription as domain.mrr dataclasses and the items MRR could not price (cached)."""
    return cache.query(session, "mrr-inputs", lambda: queries.mrr_inputs(session))  # type: ignore[no-any-return]


def series(session: Session, days: list[date], convert: Converter) -> list[dict[str, int]]:
    """Customer → MRR in the reporting currency on each of `days`, each day at its own rate."""
    subs = inputs(session)[0]
    key = ("series", *cache.warehouse_key(session), tuple(days), convert.reporting, convert.key)
    values, missing = cache.cached(key, lambda: (
        mrr.mrr_series(subs, days, converts=[convert.on(d) for d in days]), set(convert.missing)))
    convert.missing |= missing
    return list(values)


def first_paying_days(session: Session) -> dict[str, date]:
    return cache.query(session, "first-paying-days",  # type: ignore[no-any-return]
                       lambda: mrr.first_paying_days(inputs(session)[0]))


def snapshots(session: Session, r: Range, convert: Converter) -> list[tuple[date, dict[str, int]]]:
    """(day, customer → MRR) on the day before the first month and at each month's end (or `end`)."""
    days = [months(r)[0] - timedelta(days=1), *month_end_days(r)]
    return list(zip(days, series(session, days, convert), strict=True))


def points(session: Session, r: Range, convert: Converter) -> list[dict[str, Any]]:
    """Per month: MRR, ARR, customers, ARPU at its end; movements (minor units) from the month before."""
    return list(cache.report(session, "mrr-points", r, convert, lambda: _points(session, r, convert)))


def _points(session: Session, r: Range, convert: Converter) -> list[dict[str, Any]]:
    snaps = snapshots(session, r, convert)
    out = []
    for month, (_, before), (day, after) in zip(months(r), snaps[:-1], snaps[1:], strict=True):
        moved = mrr.movements(before, after)
        summary = mrr.summarise(after)
        out.append({"month": month.isoformat(), "on": day.isoformat(), "mrr_minor": summary.mrr,
                    "mrr": convert.money(summary.mrr), "arr": convert.money(summary.arr),
                    "customers": summary.customers, "arpu": convert.money(summary.arpu),
                    "new": moved.new, "expansion": moved.expansion, "contraction": moved.contraction,
                    "churned": moved.churned})
    return out


def mrr_report(session: Session, r: Range, convert: Converter) -> dict[str, Any]:
    """`GET /api/revenue/mrr`: the points with their movements as money."""
    pts = points(session, r, convert)
    for p in pts:
        for key in ("new", "expansion", "contraction", "churned"):
            p[key] = convert.money(p[key])
    return {"currency": r.currency, "points": pts, "missing_rates": sorted(convert.missing)}
