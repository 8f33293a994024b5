"""Committed MRR for the next twelve months, customers scheduled to churn, and prepaid plans as
contracted revenue (`GET /api/revenue/committed`).

Committed MRR is MRR from what Stripe already knows will happen: subscription schedules (phases
not started yet, scheduled price changes), `cancel_at`, trial ends and discounts that run out.
It assumes nothing else changes: no new sales, no usage growth (metered items stay at their last
period). The forecast starts from `end` (default today) and measures each of the next twelve
months at its last day, converted at the newest rate known on `end`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date
from typing import Any

from sqlalchemy.orm import Session

from domain import mrr
from reports import cache
from reports import mrr as mrr_report
from reports.period import Converter, Range, month_end, month_start
from store import revenue as queries

HORIZON_MONTHS = 12


def forecast_days(on: date) -> list[date]:
    """`on` and the last day of each of the twelve months after its month."""
    return [on, *(month_end(month_start(on, -k)) for k in range(1, HORIZON_MONTHS + 1))]


def report(session: Session, r: Range, convert: Converter) -> dict[str, Any]:
    return dict(cache.report(session, "committed", r, convert, lambda: _report(session, r, convert)))


def scheduled_churn(subs: Iterable[mrr.Subscription], on: date, until: date) -> dict[str, tuple[date, int]]:
    """Customer → (the day its MRR drops to zero, its MRR on `on`) for customers paying on `on`
    whose subscriptions all end by `until` (a `cancel_at`, a cancelling schedule)."""
    by_customer: dict[str, list[mrr.Subscription]] = defaultdict(list)
    for sub in subs:
        by_customer[sub.customer].append(sub)
    def total(own: list[mrr.Subscription], day: date) -> int:
        return sum(mrr.subscription_mrr(s, day) for s in own)

    out = {}
    for customer, own in by_customer.items():
        now = total(own, on)
        if not now or total(own, until):
            continue
        ends = sorted({d for s in own for d in (s.cancel_at, s.ended_at) if d is not None and on < d <= until})
        for day in ends:
            if total(own, day) == 0:
                out[customer] = (day, now)
                break
    return out


def _report(session: Session, r: Range, convert: Converter) -> dict[str, Any]:
    on = r.end
    days = forecast_days(on)
    # The future has no exchange rates yet: every day converts at the newest rate known on `on`.
    snapshots = list(zip(days, mrr.mrr_series(mrr_report.inputs(session)[0], days, convert.on(on)), strict=True))
    steps = mrr.bridge(snapshots, mrr_report.first_paying_days(session))
    money = convert.money
    months = [{"month": step.end.replace(day=1).isoformat(), "on": step.end.isoformat(),
               "mrr": money(step.end_mrr), "arr": money(step.end_mrr * 12), "customers": step.end_customers,
               "new": money(step.new), "reactivation": money(step.reactivation),
               "expansion": money(step.expansion), "contraction": money(step.contraction),
               "churned": money(step.churned)} for step in steps]
    leaving = scheduled_churn(mrr_report.inputs(session)[0], on, days[-1])
    people = queries.customers_by_id(session, leaving)
    churn = []
    for customer, (day, _) in sorted(leaving.items(), key=lambda kv: (kv[1][0], kv[0])):
        c = people.get(customer)
        churn.append({"customer_id": customer, "name": c.name if c else None, "email": c.email if c else None,
                      "churn_on": day.isoformat(), "mrr": money(snapshots[0][1].get(customer, 0))})
    plans = []
    for p in queries.plan_contracts(session, on):
        conv = convert.on(on)
        plans.append({"plan_key": p["plan_key"], "customer_id": p["customer_id"], "currency": r.currency,
                      "received": money(conv(p["received"], p["currency"])),
                      "recognised": money(conv(p["recognised"], p["currency"])),
                      "contracted": money(conv(p["deferred"], p["currency"])),
                      "credit_granted": money(conv(p["credit_granted"], p["currency"])),
                      "credit_left": money(conv(p["credit_left"], p["currency"])),
                      "term_end": p["term_end"].isoformat() if p["term_end"] else None})
    return {"currency": r.currency, "on": on.isoformat(), "mrr": money(sum(snapshots[0][1].values())),
            "months": months, "scheduled_churn": churn, "prepaid_plans": plans,
            "missing_rates": sorted(convert.missing)}

