"""Customers and MRR retained by month since their start month (`GET /api/revenue/cohorts`).

From the MRR pre-aggregates when the range's days are kept (see reports/mrr.py), else live. Kept
per currency, gross retention caps each customer's MRR in each currency at its first month's in
that currency; for a customer paying in one currency that is the per-customer cap exactly."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.orm import Session

from domain import mrr
from reports import cache
from reports import mrr as mrr_report
from reports.period import Converter, Range, months
from store import mrr_aggregates as kept_mrr


def report(session: Session, r: Range, convert: Converter) -> dict[str, Any]:
    """Cohorts of customers whose first paying day falls in the range, each followed to `end`."""
    return dict(cache.report(session, "cohorts", r, convert, lambda: _report(session, r, convert)))


def _kept_cohorts(session: Session, r: Range, convert: Converter) -> list[mrr.Cohort] | None:
    """`domain.mrr.cohorts` from the pre-aggregates, or None when the range's days are not kept."""
    keep = kept_mrr.kept(session)
    days = mrr_report.range_days(r)
    if keep is None:
        return None
    pairs = list(zip(days, days[1:], strict=False))
    keys = [keep.pair(s, e) for s, e in pairs]
    if any(k is None for k in keys):
        return None
    figures = kept_mrr.pair_figures(session, sorted({k for k in keys if k is not None}), by_cohort=True)
    in_range = months(r)
    sizes = kept_mrr.cohort_sizes(session, in_range[0], in_range[-1])
    out = []
    for i, month in enumerate(in_range):
        if month not in sizes:
            continue
        customers, retained, capped = [], [], []
        for k in range(i, len(in_range)):
            key = keys[k]
            assert key is not None
            found = figures[key].get(month) or kept_mrr.PairFigures({}, [0] * len(kept_mrr.COUNTS))
            conv = convert.on(days[k + 1])
            customers.append(found.counts[4])
            retained.append(sum(conv(v[6], cur) for cur, v in found.amounts.items()))
            # The first month's own snapshot is its base: nothing is capped against itself.
            capped.append(retained[-1] if k == i else sum(conv(v[7], cur) for cur, v in found.amounts.items()))
        out.append(mrr.Cohort(month, sizes[month], retained[0], tuple(customers), tuple(retained), tuple(capped)))
    return out


def _report(session: Session, r: Range, convert: Converter) -> dict[str, Any]:
    found = _kept_cohorts(session, r, convert)
    if found is None:
        snaps = mrr_report.snapshots(session, r, convert)[1:]
        month_ends = [(m, s) for m, (_, s) in zip(months(r), snaps, strict=True)]
        found = mrr.cohorts(month_ends, mrr_report.first_paying_days(session))
    money = convert.money
    rows = []
    for c in found:
        rows.append({"month": c.month.isoformat(), "customers": c.customers, "mrr": money(c.mrr),
                     "retained": [{"months_since_start": k, "customers": c.retained_customers[k],
                                   "mrr": money(c.retained_mrr[k]), "nrr": mrr.percent(c.nrr(k)),
                                   "grr": mrr.percent(c.grr(k))} for k in range(len(c.retained_mrr))]})
    return {"currency": r.currency, "start": r.start.isoformat(), "end": r.end.isoformat(), "cohorts": rows,
            "missing_rates": sorted(convert.missing)}


def table(body: dict[str, Any]) -> Iterable[dict[str, Any]]:
    """One CSV row per cohort and month since its start."""
    for c in body["cohorts"]:
        for cell in c["retained"]:
            yield {"cohort": c["month"], "cohort_customers": c["customers"], "cohort_mrr": c["mrr"], **cell}
