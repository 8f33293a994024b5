"""The MRR bridge per month: new, reactivation, expansion, contraction, churn; NRR, GRR, ARPA,
LTV and churn rates (`GET /api/revenue/bridge`).

From the MRR pre-aggregates when the range's days are kept (see reports/mrr.py), else live.
`fx`: the change of the month's start MRR from exchange rates alone (start at its own day's rates
+ movements + fx = end); NRR and GRR measure against the start re-expressed at the end's rates."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from sqlalchemy.orm import Session

from domain import mrr
from reports import cache
from reports import mrr as mrr_report
from reports.period import Converter, Range, months


def steps(session: Session, r: Range, convert: Converter) -> list[mrr_report.Step]:
    """One bridge step per month of `r`: from the end of the month before to the month's end."""
    return mrr_report.steps(session, r, convert)


def report(session: Session, r: Range, convert: Converter) -> dict[str, Any]:
    return dict(cache.report(session, "bridge", r, convert, lambda: _report(session, r, convert)))


def _month(month: str, kept: mrr_report.Step, money: Any) -> dict[str, Any]:
    step = kept.bridge
    return {"month": month, "start": step.start.isoformat(), "end": step.end.isoformat(),
            "start_mrr": money(kept.start_mrr), "new": money(step.new), "reactivation": money(step.reactivation),
            "expansion": money(step.expansion), "contraction": money(step.contraction),
            "churned": money(step.churned), "net_new": money(step.net_new), "fx": money(kept.fx),
            "end_mrr": money(step.end_mrr),
            "start_customers": step.start_customers, "new_customers": step.new_customers,
            "reactivated_customers": step.reactivated_customers, "churned_customers": step.churned_customers,
            "end_customers": step.end_customers,
            "nrr": mrr.percent(step.nrr), "grr": mrr.percent(step.grr),
            "customer_churn_rate": mrr.percent(step.customer_churn_rate),
            "revenue_churn_rate": mrr.percent(step.revenue_churn_rate),
            "arpa": money(step.arpa), "ltv": money(step.ltv) if step.ltv is not None else None}


def _report(session: Session, r: Range, convert: Converter) -> dict[str, Any]:
    kept = steps(session, r, convert)
    found = [k.bridge for k in kept]
    money = convert.money
    rows = [_month(m.isoformat(), step, money) for m, step in zip(months(r), kept, strict=True)]
    last = found[-1]
    # Over the range: the mean monthly customer churn rate weighs each month by its customers.
    started = sum(s.start_customers for s in found)
    churn_rate = Fraction(sum(s.churned_customers for s in found), started) if started else None
    ltv = mrr.ltv_of(last.arpa, churn_rate)
    totals = {
        "start_mrr": money(kept[0].start_mrr), "end_mrr": money(last.end_mrr),
        **{k: money(sum(getattr(s, k) for s in found))
           for k in ("new", "reactivation", "expansion", "contraction", "churned", "net_new")},
        "fx": money(sum(k.fx for k in kept)),
        "new_customers": sum(s.new_customers for s in found),
        "reactivated_customers": sum(s.reactivated_customers for s in found),
        "churned_customers": sum(s.churned_customers for s in found),
        "arpa": money(last.arpa), "customer_churn_rate": mrr.percent(churn_rate),
        "ltv": money(ltv) if ltv is not None else None,
    }
    return {"currency": r.currency, "start": r.start.isoformat(), "end": r.end.isoformat(),
            "months": rows, "totals": totals, "missing_rates": sorted(convert.missing)}
