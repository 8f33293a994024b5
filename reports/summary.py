"""Headline figures of a range (`GET /api/revenue/summary`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from domain.deferred import allocate
from reports import cache
from reports import mrr as mrr_report
from reports.deferred import by_month
from reports.period import Converter, Range, month_start
from store import revenue as queries


def summary(session: Session, r: Range, convert: Converter) -> dict[str, Any]:
    """MRR, ARR, customers, ARPU at `end`; movements `start` → `end`; recognised revenue in the
    range; the deferred balance after `end`."""
    # Movements from the day before `start`, as the chart measures its first month: from the MRR
    # pre-aggregates when both days are kept (reports/mrr.py), else live.
    steps = mrr_report.steps_between(session, [r.start - timedelta(days=1), r.end], convert)
    assert steps is not None  # computed live when not kept: one step for two days
    [step] = steps
    moved, fx = step.bridge, step.fx
    gross = net = 0
    end_month = r.end.replace(day=1)
    month_days = (month_start(end_month, -1) - end_month).days
    partial = r.end.day < month_days
    for month, currency, g, n in by_month(session, r):
        if partial and month == end_month:
            continue  # counted below, as of `end`
        gross += convert(g, currency, convert.month(month))
        net += convert(n, currency, convert.month(month))
    later = cache.query(session, "deferred", lambda: queries.deferred_after(session, r.end), r.end)
    deferred = sum(convert(n, c) for c, n in later)
    if partial:
        # `end` falls inside a month: of what that month had booked by `end`, the days up to
        # `end` are recognised and the rest of the month is still deferred.
        booked = cache.query(session, "booked", lambda: queries.booked_in_month(session, r.end), r.end)
        for currency, g, n in booked:
            done_g, _ = allocate(g, [r.end.day, month_days - r.end.day]) if g else (0, 0)
            done_n, rest_n = allocate(n, [r.end.day, month_days - r.end.day]) if n else (0, 0)
            gross += convert(done_g, currency)
            net += convert(done_n, currency)
            deferred += convert(rest_n, currency)
    m = convert.money
    return {
        "currency": r.currency, "start": r.start.isoformat(), "end": r.end.isoformat(),
        "mrr": m(moved.end_mrr), "arr": m(moved.end_mrr * 12), "customers": moved.end_customers,
        "arpu": m(moved.arpa),
        # Reactivated customers are new here: two days only, as `domain.mrr.movements` counts.
        "movements": {"start_mrr": m(step.start_mrr), "new": m(moved.new + moved.reactivation),
                      "expansion": m(moved.expansion), "contraction": m(moved.contraction),
                      "churned": m(moved.churned), "net_new": m(moved.net_new), "fx": m(fx),
                      "new_customers": moved.new_customers + moved.reactivated_customers,
                      "churned_customers": moved.churned_customers},
        "revenue": {"gross": m(gross), "net": m(net)},
        "deferred": m(deferred),
        "missing_rates": sorted(convert.missing),
        # Subscription items MRR could not price (a price not synced, metered and never billed, no
        # amount in the subscription's currency): named, so 0 is never silently wrong.
        "mrr_left_out": mrr_report.left_out(session),
    }
