"""Top customers rank in SQL (the reporting currency summed by the database, other currencies
converted month by month, the candidates' figures from the schedule): the same list as converting
every customer-month row, with ties."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert

from reports.customers import top_customers
from reports.period import Converter, Range
from store import revenue_totals
from store.db import unit_of_work
from store.revenue import revenue_by_customer_month
from store.warehouse import ExchangeRate, RevenueScheduleEntry, touch

MONTHS = [date(2026, m, 1) for m in range(1, 13)]
rows_strategy = st.lists(st.tuples(st.integers(0, 30), st.sampled_from(MONTHS), st.sampled_from(["usd", "eur", "jpy"]),
                                   st.integers(-5000, 50000)), max_size=120)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows_strategy, limit=st.integers(1, 8), start=st.sampled_from(MONTHS[:6]))
def test_the_ranking_equals_converting_every_row(database_url: str, rows: list[tuple[int, date, str, int]],
                                                 limit: int, start: date) -> None:
    merged: dict[tuple[str, date, str], int] = defaultdict(int)
    for who, month, currency, net in rows:
        merged[(f"cus_{who}", month, currency)] += net
    r = Range(start, date(2026, 10, 15), "usd")
    with unit_of_work(database_url) as s:
        s.execute(delete(RevenueScheduleEntry))
        s.execute(delete(ExchangeRate))
        s.execute(insert(ExchangeRate), [
            {"currency": "eur", "reporting_currency": "usd", "rate": Decimal("1.083"), "valid_from": date(2025, 1, 1)},
            {"currency": "eur", "reporting_currency": "usd", "rate": Decimal("1.171"), "valid_from": date(2026, 6, 1)},
            {"currency": "jpy", "reporting_currency": "usd", "rate": Decimal("0.0067"),
             "valid_from": date(2025, 1, 1)}])
        if merged:
            s.execute(insert(RevenueScheduleEntry), [
                {"source_type": "invoice", "source_id": f"in_{c}_{m}", "line_id": f"in_{c}_{m}_{cur}@{m}",
                 "customer_id": c, "month": m, "currency": cur, "currency_unit": 100, "gross": abs(n), "net": n,
                 "paid_at": datetime(2026, 1, 1, tzinfo=UTC)} for (c, m, cur), n in merged.items()])
        revenue_totals.rebuild(s)  # the totals, summed from the schedule
        touch(s)  # a new warehouse version: no cached ranking from the example before
    with unit_of_work(database_url) as s:
        convert = Converter(s, r)
        totals: dict[str, int] = defaultdict(int)
        for customer, currency, month, _, net in revenue_by_customer_month(s, r.start, r.end):
            totals[customer] += convert(net, currency, convert.month(month))
        expected = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
        got = top_customers(s, r, Converter(s, r), limit)
    assert [(row["customer_id"], row["net_minor"]) for row in got] == expected
