"""Recognised revenue by month (the deferred revenue schedule) and the deferred balance."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from typing import Any

from sqlalchemy.orm import Session

from reports import cache
from reports.period import Converter, Range, months
from store import revenue as queries


def by_month(session: Session, r: Range) -> list[tuple[date, str, int, int]]:
    """(month, currency, gross, net) recognised in the months of `r`, as stored."""
    return list(cache.query(session, "by_month", lambda: queries.revenue_by_month(session, r.start, r.end),
                            r.start, r.end))


def points(session: Session, r: Range, convert: Converter) -> list[dict[str, Any]]:
    """Per month of `r`: gross and net recognised, each month at its own rate."""
    totals: dict[date, list[int]] = defaultdict(lambda: [0, 0])
    for month, currency, g, n in by_month(session, r):
        totals[month][0] += convert(g, currency, convert.month(month))
        totals[month][1] += convert(n, currency, convert.month(month))
    return [{"month": month.isoformat(), "gross_minor": totals[month][0], "net_minor": totals[month][1],
             "gross": convert.money(totals[month][0]), "net": convert.money(totals[month][1])}
            for month in months(r)]
