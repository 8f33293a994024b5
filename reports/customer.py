"""One customer's own revenue history (`GET /api/revenue/customers/<id>`): what was recognised from
them each month of the range, beside who they are in the warehouse."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from reports.period import Converter, Range, months
from store import revenue as queries


class UnknownCustomer(LookupError):
    pass


def history(session: Session, r: Range, convert: Converter, customer_id: str) -> dict[str, Any]:
    """Gross and net recognised per month of `r` for one customer, in the reporting currency.

    Reads the same per-customer-month totals as the top-customers table, so a row there and this
    page's total agree to the cent."""
    found = queries.customers_by_id(session, [customer_id]).get(customer_id)
    own = queries.revenue_by_customer_month(session, r.start, r.end, customer_id)
    if found is None and not own:
        raise UnknownCustomer(f"No customer {customer_id!r} in the revenue warehouse; "
                              "run `revops sync revenue` or check the id.")
    by_month: dict[Any, list[int]] = {m: [0, 0] for m in months(r)}
    for _, currency, month, gross, net in own:
        totals = by_month.setdefault(month, [0, 0])
        totals[0] += convert(gross, currency, convert.month(month))
        totals[1] += convert(net, currency, convert.month(month))
    return {
        "customer_id": customer_id,
        "name": found.name if found else None, "email": found.email if found else None,
        "person_id": found.person_distinct_id if found else None, "group_key": found.group_key if found else None,
        "deleted": bool(found and found.deleted_at),
        "currency": r.currency, "start": r.start.isoformat(), "end": r.end.isoformat(),
        "months": [{"month": m.isoformat(), "gross": convert.money(g), "net": convert.money(n)}
                   for m, (g, n) in sorted(by_month.items())],
        "gross": convert.money(sum(g for g, _ in by_month.values())),
        "net": convert.money(sum(n for _, n in by_month.values())),
        "missing_rates": sorted(convert.missing),
    }
