"""Issue 16: the SQL views of revenue movements and cohorts (migration 0010), queried with the
example queries of docs/revenue.md, every figure computed by hand here; SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from settings import Settings
from store.db import engine_for, unit_of_work
from store.revenue import rebuild
from store.warehouse import TABLES, row_for, upsert

# Customer → the invoices it paid, (year, month, cents), each for its own month.
PAID = {"cus_x": [(2026, 1, 10_000), (2026, 2, 10_000), (2026, 4, 10_000)],  # March skipped
        "cus_y": [(2026, 1, 10_000), (2026, 2, 15_000), (2026, 3, 12_000)],
        "cus_z": [(2026, 3, 5_000)]}


def _fill(settings: Settings) -> None:
    objects: list[dict[str, Any]] = []
    for customer, invoices in PAID.items():
        objects.append({"id": customer, "object": "customer", "created": 1_760_000_000, "metadata": {}})
        for year, month, amount in invoices:
            at = int(datetime(year, month, 10, tzinfo=UTC).timestamp())
            iid = f"in_{customer}_{month}"
            objects += [{"id": iid, "object": "invoice", "customer": customer, "created": at, "currency": "usd",
                         "status": "paid", "total": amount, "amount_paid": amount,
                         "status_transitions": {"paid_at": at}},
                        {"id": f"il_{iid}", "object": "line_item", "invoice": iid, "amount": amount,
                         "currency": "usd", "period": {"start": at, "end": at}}]
    with unit_of_work(settings.database_url) as s:
        for o in objects:
            upsert(s, TABLES[str(o["object"])][0], [row_for(o)])
        rebuild(s, invoices=[o["id"] for o in objects if o["object"] == "invoice"], charges=[], customers=[])


def _rows(settings: Settings, sql: str) -> list[tuple[Any, ...]]:
    with engine_for(settings.database_url).connect() as conn:
        return [tuple(str(v)[:10] if hasattr(v, "isoformat") else v for v in row) for row in conn.execute(text(sql))]


def test_movements_per_customer_month(revenue_settings: Settings) -> None:
    _fill(revenue_settings)
    rows = _rows(revenue_settings, "SELECT customer_id, month, movement, previous_minor, amount_minor, change_minor "
                                   "FROM revenue_mrr_movements ORDER BY customer_id, month")
    assert [(c, str(m)[:10], mv, int(p), int(a), int(d)) for c, m, mv, p, a, d in rows] == [
        ("cus_x", "2026-01-01", "new", 0, 10_000, 10_000),
        ("cus_x", "2026-02-01", "flat", 10_000, 10_000, 0),
        ("cus_x", "2026-03-01", "churn", 10_000, 0, -10_000),
        ("cus_x", "2026-04-01", "reactivation", 0, 10_000, 10_000),
        ("cus_x", "2026-05-01", "churn", 10_000, 0, -10_000),
        ("cus_y", "2026-01-01", "new", 0, 10_000, 10_000),
        ("cus_y", "2026-02-01", "expansion", 10_000, 15_000, 5_000),
        ("cus_y", "2026-03-01", "contraction", 15_000, 12_000, -3_000),
        ("cus_y", "2026-04-01", "churn", 12_000, 0, -12_000),
        ("cus_z", "2026-03-01", "new", 0, 5_000, 5_000),
        ("cus_z", "2026-04-01", "churn", 5_000, 0, -5_000),
    ]
    # The docs' bridge query: per month, start + movements = end (here in March: 25,000 at the
    # end of February; −10,000 churn, −3,000 contraction, +5,000 new; 17,000 at its end).
    bridge = _rows(revenue_settings, """
        SELECT month, SUM(previous_minor) AS start_minor, SUM(change_minor) AS moved_minor,
               SUM(amount_minor) AS end_minor
        FROM revenue_mrr_movements WHERE currency = 'usd' GROUP BY month ORDER BY month""")
    assert [(str(m)[:10], int(s), int(d), int(e)) for m, s, d, e in bridge] == [
        ("2026-01-01", 0, 20_000, 20_000), ("2026-02-01", 20_000, 5_000, 25_000),
        ("2026-03-01", 25_000, -8_000, 17_000), ("2026-04-01", 17_000, -7_000, 10_000),
        ("2026-05-01", 10_000, -10_000, 0)]


def test_cohorts_and_the_deferred_schedule(revenue_settings: Settings) -> None:
    _fill(revenue_settings)
    rows = _rows(revenue_settings, "SELECT cohort, month, months_since_start, customers, amount_minor "
                                   "FROM revenue_cohorts WHERE currency = 'usd' ORDER BY cohort, month")
    assert [(str(c)[:10], str(m)[:10], int(k), int(n), int(a)) for c, m, k, n, a in rows] == [
        ("2026-01-01", "2026-01-01", 0, 2, 20_000),  # X and Y
        ("2026-01-01", "2026-02-01", 1, 2, 25_000),
        ("2026-01-01", "2026-03-01", 2, 1, 12_000),  # X skipped March
        ("2026-01-01", "2026-04-01", 3, 1, 10_000),  # Y left, X came back
        ("2026-03-01", "2026-03-01", 0, 1, 5_000),  # Z
    ]
    schedule = _rows(revenue_settings, "SELECT month, source_type, gross_minor, net_minor FROM "
                                       "revenue_deferred_schedule ORDER BY month")
    assert [(str(m)[:10], t, int(g), int(n)) for m, t, g, n in schedule] == [
        ("2026-01-01", "invoice", 20_000, 20_000), ("2026-02-01", "invoice", 25_000, 25_000),
        ("2026-03-01", "invoice", 17_000, 17_000), ("2026-04-01", "invoice", 10_000, 10_000)]


def test_the_docs_example_queries_run(revenue_settings: Settings) -> None:
    _fill(revenue_settings)
    retention = _rows(revenue_settings, """
        SELECT c.cohort, c.months_since_start, c.customers,
               c.amount_minor * 100.0 / f.amount_minor AS revenue_retained_percent
        FROM revenue_cohorts c
        JOIN revenue_cohorts f ON f.cohort = c.cohort AND f.currency = c.currency AND f.months_since_start = 0
        WHERE c.currency = 'usd' ORDER BY c.cohort, c.months_since_start""")
    # January's 20,000: 25,000 (125 %), 12,000 (60 %), 10,000 (50 %).
    assert [(str(c)[:10], int(k), int(n), round(float(p), 2)) for c, k, n, p in retention] == [
        ("2026-01-01", 0, 2, 100.0), ("2026-01-01", 1, 2, 125.0), ("2026-01-01", 2, 1, 60.0),
        ("2026-01-01", 3, 1, 50.0), ("2026-03-01", 0, 1, 100.0)]
    back = _rows(revenue_settings, "SELECT customer_id, month, amount_minor FROM revenue_mrr_movements "
                                   "WHERE movement = 'reactivation'")
    assert [(c, str(m)[:10], int(a)) for c, m, a in back] == [("cus_x", "2026-04-01", 10_000)]
    march = _rows(revenue_settings, """
        SELECT month, movement, COUNT(*) AS customers, SUM(change_minor) AS change_minor
        FROM revenue_mrr_movements WHERE currency = 'usd' GROUP BY month, movement ORDER BY month, movement""")
    assert [(mv, int(n), int(d)) for m, mv, n, d in march if str(m)[:10] == "2026-03-01"] == [
        ("churn", 1, -10_000), ("contraction", 1, -3_000), ("new", 1, 5_000)]
