"""Customers and MRR retained by month since their start month (`GET /api/revenue/cohorts`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.orm import Session

from domain import mrr
from reports import cache
from reports import mrr as mrr_report
from reports.period import Converter, Range, months


def report(session: Session, r: Range, convert: Converter) -> dict[str, Any]:
    """Cohorts of customers whose first paying day falls in the range, each followed to `end`."""
    return dict(cache.report(session, "cohorts", r, convert, lambda: _report(session, r, convert)))


def _report(session: Session, r: Range, convert: Converter) -> dict[str, Any]:
    snaps = mrr_report.snapshots(session, r, convert)[1:]
    month_ends = [(m, s) for m, (_, s) in zip(months(r), snaps, strict=True)]
    money = convert.money
    rows = []
    for c in mrr.cohorts(month_ends, mrr_report.first_paying_days(session)):
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
