"""Committed MRR for the next twelve months, customers scheduled to churn, and prepaid plans as
contracted revenue (`GET /api/revenue/committed`).

Committed MRR is MRR from what Stripe already knows will happen: subscription schedules (phases
not started yet, scheduled price changes), `cancel_at`, trial ends and discounts that run out.
It assumes nothing else changes: no new sales, no usage growth (metered items stay at their last
period). The forecast starts from `end` (default today) and measures each of the next twelve
months at its last day, converted at the newest rate known on `end`.

When `end` is the day of the last MRR refresh (the default range's end), the months and the
customers scheduled to churn come from the pre-aggregates (store/mrr_aggregates.py); on any other
day they are computed live from every subscription.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy.orm import Session

from domain import mrr
from reports import cache
from reports import mrr as mrr_report
from reports.period import Converter, Range, month_end, month_start
from store import mrr_aggregates as kept_mrr
from store import revenue as queries

HORIZON_MONTHS = 12


def forecast_days(on: date) -> list[date]:
    """`on` and the last day of each of the twelve months after its month."""
    return [on, *(month_end(month_start(on, -k)) for k in range(1, HORIZON_MONTHS + 1))]


def report(session: Session, r: Range, convert: Converter) -> dict[str, Any]:
    return dict(cache.report(session, "committed", r, convert, lambda: _report(session, r, convert)))


# Kept for callers of the report module; the rule lives in domain/mrr.py.
scheduled_churn = mrr.scheduled_churn


def _report(session: Session, r: Range, convert: Converter) -> dict[str, Any]:
    on = r.end
    days = forecast_days(on)
    conv = convert.on(on)
    keep = kept_mrr.kept(session)
    # The future has no exchange rates yet: every day converts at the newest rate known on `on`.
    kept = (mrr_report.steps_between(session, days, convert, rate_day=on, live=False)
            if keep is not None and keep.refresh_day == on else None)
    if kept is not None:
        steps = [k.bridge for k in kept]
        now = kept[0].start_mrr
        leaving = kept_mrr.scheduled_churn(session)
        paying = kept_mrr.customers_on(session, on, sorted(leaving))
        churn_mrr = {c: sum(conv(v, cur) for cur, v in paying.get(c, {}).items()) for c in leaving}
    else:
        snapshots = list(zip(days, mrr.mrr_series(mrr_report.inputs(session)[0], days, conv), strict=True))
        steps = mrr.bridge(snapshots, mrr_report.first_paying_days(session))
        now = sum(snapshots[0][1].values())
        leaving = {c: d for c, (d, _) in scheduled_churn(mrr_report.inputs(session)[0], on, days[-1]).items()}
        churn_mrr = {c: snapshots[0][1].get(c, 0) for c in leaving}
    money = convert.money
    months = [{"month": step.end.replace(day=1).isoformat(), "on": step.end.isoformat(),
               "mrr": money(step.end_mrr), "arr": money(step.end_mrr * 12), "customers": step.end_customers,
               "new": money(step.new), "reactivation": money(step.reactivation),
               "expansion": money(step.expansion), "contraction": money(step.contraction),
               "churned": money(step.churned)} for step in steps]
    people = kept_mrr.names_and_emails(session, sorted(leaving))
    churn = []
    for customer, day in sorted(leaving.items(), key=lambda kv: (kv[1], kv[0])):
        name, email = people.get(customer, (None, None))
        churn.append({"customer_id": customer, "name": name, "email": email,
                      "churn_on": day.isoformat(), "mrr": money(churn_mrr[customer])})
    plans = []
    for p in queries.plan_contracts(session, on):
        plans.append({"plan_key": p["plan_key"], "customer_id": p["customer_id"], "currency": r.currency,
                      "received": money(conv(p["received"], p["currency"])),
                      "recognised": money(conv(p["recognised"], p["currency"])),
                      "contracted": money(conv(p["deferred"], p["currency"])),
                      "credit_granted": money(conv(p["credit_granted"], p["currency"])),
                      "credit_left": money(conv(p["credit_left"], p["currency"])),
                      "term_end": p["term_end"].isoformat() if p["term_end"] else None})
    return {"currency": r.currency, "on": on.isoformat(), "mrr": money(now),
            "months": months, "scheduled_churn": churn, "prepaid_plans": plans,
            "missing_rates": sorted(convert.missing)}

