"""Rows of the persons / groups revenue views, read with plain SQL as any SQL user would."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from domain.money import format_amount
from reports import cache

VIEWS = {"persons": ("persons_revenue_analytics", "person_id"), "groups": ("groups_revenue_analytics", "group_key")}


def rows(session: Session, which: str, limit: int, offset: int, currency: str | None = None) -> dict[str, Any]:
    """`which` is persons or groups; with `currency`, that currency's own (unconverted) amounts from
    the per-currency view beside the main one."""
    view, key = VIEWS[which]
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    where = ""
    if currency:
        view = f"{view}_by_currency"
        where = "WHERE currency = :currency"
        params["currency"] = currency
    # One pass over the view: the total rides along as a window count.
    sql = (f"SELECT {key}, currency, amount_minor, amount_last_30_days_minor, customers, COUNT(*) OVER () "  # noqa: S608 - fixed names
           f"FROM {view} {where} ORDER BY amount_minor DESC, {key} LIMIT :limit OFFSET :offset")

    def read() -> tuple[list[Any], int]:
        found = [tuple(row) for row in session.execute(text(sql), params).all()]
        if found:
            return found, int(found[0][5])
        return found, session.execute(text(f"SELECT COUNT(*) FROM {view} {where}"), params).scalar_one()  # noqa: S608

    # The last-30-days columns move with the calendar: today is part of the key.
    found, total = cache.query(session, view, read, sql, tuple(sorted(params.items())), datetime.now(UTC).date())
    return {"total": total, "rows": [
        {key: row[0], "currency": row[1], "amount": format_amount(int(row[2]), row[1]),
         "amount_last_30_days": format_amount(int(row[3]), row[1]), "customers": int(row[4])} for row in found]}
