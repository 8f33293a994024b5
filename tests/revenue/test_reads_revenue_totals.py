"""The first request to each revenue endpoint after a sync reads the pre-aggregates
(store/revenue_totals.py), never a scan of the revenue schedule: every statement the requests run
is put to SQLite's query planner, and one that would walk `revenue_schedule` (beyond the partial
indexes of its few plan and one-off charge rows) fails the test."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from reports import cache
from settings import Settings
from store.db import unit_of_work
from tests.fixtures.app import auth
from tests.revenue.conftest import app_after_a_sync, sqlite_only, statements_run

PARTIAL_INDEXES = ("ix_revenue_schedule_plan_month", "ix_revenue_schedule_charge_month")
ENDPOINTS = ("/api/revenue/summary", "/api/revenue/mrr", "/api/revenue/top-customers", "/api/revenue/bridge",
             "/api/revenue/cohorts", "/api/revenue/committed", "/api/revenue/one-off", "/api/revenue/persons",
             "/api/revenue/groups", "/revenue")


def test_the_first_request_after_a_sync_never_scans_the_schedule(fresh_stripe_sandbox: Any,
                                                                 revenue_settings: Settings,
                                                                 users: dict[str, str]) -> None:
    sqlite_only(revenue_settings, "the plan check uses SQLite's EXPLAIN QUERY PLAN")
    app = app_after_a_sync(fresh_stripe_sandbox, revenue_settings, customers=5, subscriptions=3, invoices=2)
    with statements_run(revenue_settings) as seen:
        client = app.test_client()
        for path in ENDPOINTS:
            cache.clear()  # each one the first request after the sync
            response = client.get(path, headers=auth(users["viewer"]))
            assert response.status_code == 200, (path, response.get_data()[:300])
    statements = [(s, p) for s, p in seen if s.lstrip().upper().startswith(("SELECT", "WITH"))]
    assert statements, "no statement was counted: the listener is not on the app's engine"
    assert any("revenue_month_totals" in s for s, _ in statements)
    assert any("revenue_customer_month_totals" in s for s, _ in statements)
    scans = []
    with unit_of_work(revenue_settings.database_url) as s:
        raw = s.connection().connection.driver_connection
        for statement, parameters in statements:
            if "revenue_schedule" not in statement:
                continue
            plan = [row[3] for row in raw.execute(f"EXPLAIN QUERY PLAN {statement}", parameters or ())]
            # A search by key, or a walk of a partial index (only the few plan or charge rows), is
            # fine; walking the table or its full index is the scan the pre-aggregates replace.
            scans += [(statement[:200], step) for step in plan if step.startswith("SCAN revenue_schedule")
                      and not step.endswith(PARTIAL_INDEXES)]
        assert s.execute(text("SELECT COUNT(*) FROM revenue_schedule")).scalar_one() > 0
    assert scans == []
