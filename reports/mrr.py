"""MRR at the end of each month of a range, with its movements (`GET /api/revenue/mrr`), and the
bridge steps the bridge, cohort, committed and summary reports share.

Read from the pre-aggregates the revenue rebuild keeps (store/mrr_aggregates.py) whenever the
range's days are kept snapshot days: month ends up to 13 months after the last refresh, and the
refresh day itself. Any other day (a range ending mid-month on a day that is not the refresh day,
or a database never refreshed) falls back to the live computation: every subscription loaded and
priced (correct, seconds at 100,000 subscriptions; cached until the next warehouse write).

Amounts are kept in native currencies and converted here, each day at its own rate. A month's
start is shown at its start day's rates (the month before's end) and its movements at the end
day's; when a rate moved between the two, `fx` is the difference, so start + movements + fx = end
(see docs/revenue.md). With every currency the reporting currency `fx` is zero and the figures
are those of the per-customer computation exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy.orm import Session

from domain import mrr
from reports import cache
from reports.period import Converter, Range, month_end_days, months
from store import mrr_aggregates as kept_mrr
from store import revenue as queries


def inputs(session: Session) -> tuple[list[mrr.Subscription], list[str]]:
    """Every subscription as domain.mrr dataclasses and the items MRR could not price (cached)."""
    return cache.query(session, "mrr-inputs", lambda: queries.mrr_inputs(session))  # type: ignore[no-any-return]


def series(session: Session, days: list[date], convert: Converter) -> list[dict[str, int]]:
    """Customer → MRR in the reporting currency on each of `days`, each day at its own rate (live)."""
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
    return list(zip(range_days(r), series(session, range_days(r), convert), strict=True))


def range_days(r: Range) -> list[date]:
    """The day before the range's first month and each month's measuring day."""
    return [months(r)[0] - timedelta(days=1), *month_end_days(r)]


@dataclass(frozen=True)
class Step:
    """One bridge step in the reporting currency.

    `bridge.start_mrr` is the start re-expressed at the end day's rates, so that start +
    movements = end holds in `bridge`; `start_mrr` is the start at its own day's rates (what the
    month before ended on) and `fx` the difference."""

    bridge: mrr.BridgeMonth
    start_mrr: int

    @property
    def fx(self) -> int:
        return self.bridge.start_mrr - self.start_mrr


def steps_between(session: Session, days: list[date], convert: Converter, rate_day: date | None = None,
                  live: bool = True) -> list[Step] | None:
    """A bridge step between each pair of consecutive `days`, each day converted at its own rate
    (or all at `rate_day`'s). From the pre-aggregates when every pair is kept; else computed live,
    or None when `live` is False."""
    pairs = list(zip(days, days[1:], strict=False))
    found = _kept_steps(session, pairs, convert, rate_day)
    if found is not None or not live:
        return found
    if rate_day is not None:
        values = mrr.mrr_series(inputs(session)[0], days, convert.on(rate_day))
    else:
        values = series(session, days, convert)
    return [Step(b, b.start_mrr) for b in mrr.bridge(list(zip(days, values, strict=True)), first_paying_days(session))]


def _kept_steps(session: Session, pairs: list[tuple[date, date]], convert: Converter,
                rate_day: date | None) -> list[Step] | None:
    keep = kept_mrr.kept(session)
    if keep is None:
        return None
    keys = [keep.pair(s, e) for s, e in pairs]
    if any(k is None for k in keys):
        return None
    figures = kept_mrr.pair_figures(session, sorted({k for k in keys if k is not None}))
    out = []
    for (start, end), key in zip(pairs, keys, strict=True):
        assert key is not None
        found = figures[key].get(None) or kept_mrr.PairFigures({}, [0] * len(kept_mrr.COUNTS))
        out.append(_step(start, end, found, convert, rate_day))
    return out


def _step(start: date, end: date, found: kept_mrr.PairFigures, convert: Converter, rate_day: date | None) -> Step:
    at_start, at_end = convert.on(rate_day or start), convert.on(rate_day or end)

    def total(i: int, conv: Any) -> int:
        return sum(conv(values[i], currency) for currency, values in found.amounts.items())

    start_own, new, reactivation, expansion, contraction, churned, end_mrr = (
        total(0, at_start), *(total(i, at_end) for i in range(1, 7)))
    rerated = end_mrr - (new + reactivation + expansion - contraction - churned)
    return Step(mrr.BridgeMonth(start, end, rerated, new, reactivation, expansion, contraction, churned, end_mrr,
                                *found.counts), start_own)


def steps(session: Session, r: Range, convert: Converter) -> list[Step]:
    """One step per month of `r`: from the end of the month before to the month's end (or `end`)."""
    found = steps_between(session, range_days(r), convert)
    assert found is not None
    return found


def points(session: Session, r: Range, convert: Converter) -> list[dict[str, Any]]:
    """Per month: MRR, ARR, customers, ARPU at its end; movements (minor units) from the month before."""
    return list(cache.report(session, "mrr-points", r, convert, lambda: _points(session, r, convert)))


def _points(session: Session, r: Range, convert: Converter) -> list[dict[str, Any]]:
    out = []
    for month, step in zip(months(r), steps(session, r, convert), strict=True):
        b = step.bridge
        out.append({"month": month.isoformat(), "on": b.end.isoformat(), "mrr_minor": b.end_mrr,
                    "mrr": convert.money(b.end_mrr), "arr": convert.money(b.end_mrr * 12),
                    "customers": b.end_customers, "arpu": convert.money(b.arpa),
                    "new": b.new + b.reactivation, "expansion": b.expansion, "contraction": b.contraction,
                    "churned": b.churned, "fx": step.fx})
    return out


def mrr_report(session: Session, r: Range, convert: Converter) -> dict[str, Any]:
    """`GET /api/revenue/mrr`: the points with their movements as money."""
    pts = points(session, r, convert)
    for p in pts:
        for key in ("new", "expansion", "contraction", "churned", "fx"):
            p[key] = convert.money(p[key])
    return {"currency": r.currency, "points": pts, "missing_rates": sorted(convert.missing)}


def left_out(session: Session) -> list[str]:
    """The first 100 subscription items MRR could not price, with the reason."""
    if kept_mrr.kept(session) is not None:
        return kept_mrr.left_out(session)
    return inputs(session)[1][:100]
