"""One-off charges and payments without an invoice, apart from recurring revenue
(`GET /api/revenue/one-off`).

domain.recognition already books a charge that paid no invoice as revenue of the month it was
paid, less its refunds and lost disputes in the months they happen (`source_type` `charge` in
the revenue schedule); a charge that Stripe's invoice payments tie to an invoice is that
invoice's money and never appears here. This report splits each month into that one-off revenue
and the rest (invoices, plans, credit)."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from typing import Any

from sqlalchemy.orm import Session

from reports import cache
from reports.period import Converter, Range, months
from store import revenue as queries


def report(session: Session, r: Range, convert: Converter) -> dict[str, Any]:
    return dict(cache.report(session, "one-off", r, convert, lambda: _report(session, r, convert)))


def _report(session: Session, r: Range, convert: Converter) -> dict[str, Any]:
    # month → [one-off gross, one-off net, recurring gross, recurring net]
    totals: dict[date, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for month, currency, source, g, n in queries.revenue_by_month_and_source(session, r.start, r.end):
        at = 0 if source == "charge" else 2
        totals[month][at] += convert(g, currency, convert.month(month))
        totals[month][at + 1] += convert(n, currency, convert.month(month))
    money = convert.money
    rows = [{"month": m.isoformat(), "one_off_gross": money(totals[m][0]), "one_off_net": money(totals[m][1]),
             "recurring_gross": money(totals[m][2]), "recurring_net": money(totals[m][3]),
             "net": money(totals[m][1] + totals[m][3])} for m in months(r)]
    charges: dict[tuple[str, str | None], list[int]] = defaultdict(lambda: [0, 0])
    for charge_id, customer, currency, month, g, n in queries.one_off_charges(session, r.start, r.end):
        charges[(charge_id, customer)][0] += convert(g, currency, convert.month(month))
        charges[(charge_id, customer)][1] += convert(n, currency, convert.month(month))
    return {"currency": r.currency, "start": r.start.isoformat(), "end": r.end.isoformat(), "months": rows,
            "one_off_net": money(sum(t[1] for t in totals.values())),
            "recurring_net": money(sum(t[3] for t in totals.values())),
            "charges": [{"charge_id": c, "customer_id": cus, "gross": money(g), "net": money(n)}
                        for (c, cus), (g, n) in sorted(charges.items())],
            "missing_rates": sorted(convert.missing)}
