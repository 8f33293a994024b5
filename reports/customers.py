"""Top customers by net revenue recognised in a range (`GET /api/revenue/top-customers`)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy.orm import Session

from reports import cache
from reports.period import Converter, Range
from store import revenue as queries


def top_customers(session: Session, r: Range, convert: Converter, limit: int) -> list[dict[str, Any]]:
    return list(cache.report(session, "top", r, convert, lambda: _top(session, r, convert, limit), limit))


def _top(session: Session, r: Range, convert: Converter, limit: int) -> list[dict[str, Any]]:
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    own, foreign = queries.top_customers_in(session, r.start, r.end, r.currency.lower(), limit)
    for customer_id, (g, n) in own.items():
        totals[customer_id][0] += g
        totals[customer_id][1] += n
    for customer_id, currency, month, g, n in foreign:
        totals[customer_id][0] += convert(g, currency, convert.month(month))
        totals[customer_id][1] += convert(n, currency, convert.month(month))
    top = sorted(totals.items(), key=lambda kv: (-kv[1][1], kv[0]))[:limit]
    customers = queries.customers_by_id(session, [c for c, _ in top])
    out = []
    for customer_id, (gross, net) in top:
        c = customers.get(customer_id)
        out.append({"customer_id": customer_id, "name": c.name if c else None, "email": c.email if c else None,
                    "person_id": c.person_distinct_id if c else None, "group_key": c.group_key if c else None,
                    "deleted": bool(c and c.deleted_at), "gross": convert.money(gross), "net": convert.money(net),
                    "net_minor": net})
    return out


def report(session: Session, r: Range, convert: Converter, limit: int) -> dict[str, Any]:
    rows = top_customers(session, r, convert, limit)
    return {"currency": r.currency, "start": r.start.isoformat(), "end": r.end.isoformat(),
            "customers": rows, "missing_rates": sorted(convert.missing)}
