"""Revenue over HTTP: webhooks apply changes without a sync run; JSON endpoints; the page; the
seed's SQL against the analytics views."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, text
from werkzeug.serving import make_server

from settings import Settings
from store.db import engine_for, unit_of_work
from store.sync import full_sync, incremental_sync
from store.warehouse import ExchangeRate, RevenueScheduleEntry, StripeCustomer, StripeInvoice, StripeSubscription
from tests.fixtures.app import auth
from tests.revenue.conftest import PERSON, fill, paid_invoice, sqlite_only
from web import create_app


@pytest.fixture
def revenue_app(revenue_settings: Settings) -> Flask:
    app = create_app(revenue_settings, temporal=object())
    app.testing = True
    return app


@pytest.fixture
def live_app(revenue_app: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, revenue_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)


def _wait_for(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_webhooks_apply_changes_without_a_sync_run(fresh_stripe_sandbox: Any, revenue_settings: Settings,
                                                    live_app: str) -> None:
    filled = fill(fresh_stripe_sandbox, customers=6, subscriptions=2, invoices=1)
    full_sync(revenue_settings, rate=None)
    fresh_stripe_sandbox.register_webhook(f"{live_app}/webhooks/stripe", revenue_settings.stripe_webhook_secret)
    client = fresh_stripe_sandbox.client()
    cancelled, invoice, gone = filled.subscriptions[0], filled.open_invoices[0], filled.customers[2]
    client.v1.subscriptions.cancel(cancelled)
    client.v1.invoices.pay(invoice, {"paid_out_of_band": True})
    client.v1.customers.delete(gone)

    def arrived() -> bool:
        with unit_of_work(revenue_settings.database_url) as s:
            sub, inv, cus = s.get(StripeSubscription, cancelled), s.get(StripeInvoice, invoice), s.get(
                StripeCustomer, gone)
            return bool(sub and sub.status == "canceled" and inv and inv.status == "paid"
                        and cus and cus.deleted_at is not None)

    assert _wait_for(arrived), "webhooks did not bring the three changes"
    with unit_of_work(revenue_settings.database_url) as s:
        assert s.scalar(select(RevenueScheduleEntry.net).where(RevenueScheduleEntry.source_id == invoice)) == 10000


def test_a_refunded_invoice_nets_to_zero_and_keeps_gross(fresh_stripe_sandbox: Any,
                                                         revenue_settings: Settings) -> None:
    client = fresh_stripe_sandbox.client()
    customer = client.v1.customers.create({"email": "refund@example.com", "metadata": {PERSON: "refunded"}})
    start = int(datetime(2026, 1, 15, tzinfo=UTC).timestamp())
    end = int(datetime(2027, 1, 15, tzinfo=UTC).timestamp())
    invoice = paid_invoice(client, customer.id, 120000, start, end)
    full_sync(revenue_settings, rate=None)
    client.v1.credit_notes.create({"invoice": invoice, "amount": 120000, "out_of_band_amount": 120000})
    incremental_sync(revenue_settings, rate=None)
    with unit_of_work(revenue_settings.database_url) as s:
        rows = list(s.scalars(select(RevenueScheduleEntry).where(RevenueScheduleEntry.source_id == invoice)))
    assert sum(r.gross for r in rows) == 120000
    # Paid today for a period that began in January 2026: the months already over catch up into
    # this month (they were closed before the money came); the later months keep their days.
    now = datetime.fromtimestamp(fresh_stripe_sandbox.now(), UTC).date().replace(day=1)
    service = {date(2026, m, 1) for m in range(1, 13)} | {date(2027, 1, 1)}
    assert {r.month for r in rows} == {now} | {m for m in service if m > now}
    # The credit note the same day takes back what was still deferred: every month nets to zero.
    by_month: dict[date, int] = {}
    for r in rows:
        by_month[r.month] = by_month.get(r.month, 0) + r.net
    assert set(by_month.values()) == {0}


def test_revenue_endpoints_and_the_seed_query(fresh_stripe_sandbox: Any, revenue_settings: Settings,
                                              revenue_app: Flask, users: dict[str, str]) -> None:
    fill(fresh_stripe_sandbox, customers=40, subscriptions=4, invoices=4)
    full_sync(revenue_settings, rate=None)
    http = revenue_app.test_client()
    viewer = auth(users["viewer"])

    assert http.get("/api/revenue/summary").status_code == 401
    summary = http.get("/api/revenue/summary", headers=viewer).get_json()
    # Four subscriptions of the 450.00 monthly Product analytics price.
    assert (summary["mrr"], summary["arr"], summary["customers"], summary["arpu"]) == (
        "1800.00", "21600.00", 4, "450.00")

    mrr = http.get("/api/revenue/mrr", headers=viewer).get_json()
    assert mrr["points"][-1]["mrr"] == "1800.00"

    today = datetime.now(UTC).date()
    far = (today + timedelta(days=800)).isoformat()
    query = f"start={today.replace(day=1)}&end={far}&limit=3"
    top = http.get(f"/api/revenue/top-customers?{query}", headers=viewer).get_json()["customers"]
    assert [c["net"] for c in top] == ["1200.00", "1200.00", "1200.00"]

    persons = http.get("/api/revenue/persons", headers=viewer).get_json()
    # Tagged customers with revenue: two with a 1,200.00 invoice, two with a 450.00 subscription.
    assert sorted((r["person_id"], r["amount"]) for r in persons["rows"]) == [
        ("person-0", "450.00"), ("person-2", "450.00"), ("person-36", "1200.00"), ("person-38", "1200.00")]
    assert http.get("/api/revenue/groups", headers=viewer).get_json() == {"total": 0, "rows": []}

    with engine_for(revenue_settings.database_url).connect() as conn:
        seed = "SELECT COUNT(*) FROM persons_revenue_analytics WHERE amount > 1000000"
        assert conn.execute(text(seed)).scalar_one() == 0
        over_1000 = "SELECT COUNT(*) FROM persons_revenue_analytics WHERE amount > 1000"
        assert conn.execute(text(over_1000)).scalar_one() == 2

    page = http.get("/revenue", headers=viewer)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'id="chart-mrr"' in html and "1800.00" in html
    # Nothing loaded from elsewhere (these machines are offline); a Stripe id may contain "cdn".
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', html)

    bad = http.get("/api/revenue/summary?start=yesterday", headers=viewer)
    assert bad.status_code == 400 and "YYYY-MM-DD" in bad.get_json()["error"]


def test_reporting_currency_uses_the_rates_table(fresh_stripe_sandbox: Any, revenue_settings: Settings,
                                                  revenue_app: Flask, users: dict[str, str]) -> None:
    fill(fresh_stripe_sandbox, customers=2, subscriptions=2, invoices=0)
    full_sync(revenue_settings, rate=None)
    http = revenue_app.test_client()
    viewer = auth(users["viewer"])
    missing = http.get("/api/revenue/summary?currency=eur", headers=viewer).get_json()
    assert missing["missing_rates"] == ["usd"] and missing["mrr"] == "0.00"
    with unit_of_work(revenue_settings.database_url) as s:
        from decimal import Decimal

        s.add(ExchangeRate(currency="usd", reporting_currency="eur", rate=Decimal("0.5"),
                           valid_from=datetime(2020, 1, 1).date()))
    eur = http.get("/api/revenue/summary?currency=eur", headers=viewer).get_json()
    assert (eur["mrr"], eur["missing_rates"]) == ("450.00", [])


def test_reports_follow_the_next_sync(fresh_stripe_sandbox: Any, revenue_settings: Settings,
                                      revenue_app: Flask, users: dict[str, str]) -> None:
    filled = fill(fresh_stripe_sandbox, customers=3, subscriptions=2, invoices=0)
    full_sync(revenue_settings, rate=None)
    http = revenue_app.test_client()
    viewer = auth(users["viewer"])
    assert http.get("/api/revenue/summary", headers=viewer).get_json()["mrr"] == "900.00"
    fresh_stripe_sandbox.client().v1.subscriptions.cancel(filled.subscriptions[0])
    incremental_sync(revenue_settings, rate=None)
    # Cached reports are keyed on the warehouse version, which the sync bumped.
    assert http.get("/api/revenue/summary", headers=viewer).get_json()["mrr"] == "450.00"


BAD_QUERIES = [
    ("start=9999-12-01", "start"),
    ("end=9999-12-01", "end"),
    ("start=0001-01-01", "start"),
    ("start=garbage", "start"),
    ("start=2027-05-01&end=2027-01-01", "start"),
    ("start=1971-01-01&end=2199-12-31", "months"),
    ("limit=%C2%B2", "limit"),
    ("limit=-5", "limit"),
    ("offset=99999999999999999999999", "offset"),
    ("currency=%00%00", "currency"),
]


def test_bad_query_strings_are_a_400_naming_the_parameter(revenue_app: Flask, users: dict[str, str],
                                                         revenue_settings: Settings) -> None:
    """Issue 11 #12 (revenue part): each is a 400 naming the parameter, never a 500."""
    sqlite_only(revenue_settings, "query-string parsing")
    http = revenue_app.test_client()
    viewer = auth(users["viewer"])
    takes = {"/api/revenue/summary": ("start", "end", "currency"), "/api/revenue/mrr": ("start", "end", "currency"),
             "/api/revenue/top-customers": ("start", "end", "currency", "limit"),
             "/api/revenue/persons": ("limit", "offset", "currency"),
             "/api/revenue/groups": ("limit", "offset", "currency"), "/revenue": ("start", "end", "currency"),
             **{f"/api/revenue/{name}": ("start", "end", "currency")
                for name in ("bridge", "cohorts", "committed", "one-off")}}
    for query, names in BAD_QUERIES:
        for path, params in takes.items():
            if not query.startswith(params):
                continue
            response = http.get(f"{path}?{query}", headers=viewer)
            assert response.status_code == 400, (path, query, response.status_code)
            assert names in response.get_json()["error"], (path, response.get_json())


def test_summary_and_chart_measure_new_mrr_from_the_same_day(fresh_stripe_sandbox: Any, revenue_settings: Settings,
                                                             revenue_app: Flask, users: dict[str, str]) -> None:
    """Issue 18 defect 9: a subscription that starts on `start` is new in both."""
    fill(fresh_stripe_sandbox, customers=1, subscriptions=1, invoices=0)
    full_sync(revenue_settings, rate=None)
    today = datetime.fromtimestamp(fresh_stripe_sandbox.now(), UTC).date()
    http = revenue_app.test_client()
    viewer = auth(users["viewer"])
    query = f"start={today}&end={today}"
    summary = http.get(f"/api/revenue/summary?{query}", headers=viewer).get_json()
    chart = http.get(f"/api/revenue/mrr?{query}", headers=viewer).get_json()
    assert summary["movements"]["new"] == chart["points"][0]["new"] == "450.00"


def test_each_month_converts_at_its_own_rate(revenue_settings: Settings, revenue_app: Flask,
                                             users: dict[str, str]) -> None:
    """Issue 18 defect 9: January's euros stay January's when the range's end moves past a new rate."""
    from decimal import Decimal

    from store.revenue import rebuild
    from store.warehouse import TABLES, row_for, upsert

    paid = int(datetime(2026, 1, 10, tzinfo=UTC).timestamp())
    objects = [{"id": "cus_fx", "object": "customer", "created": paid, "metadata": {}},
               {"id": "in_fx", "object": "invoice", "customer": "cus_fx", "created": paid, "currency": "usd",
                "status": "paid", "total": 10_000, "amount_paid": 10_000, "status_transitions": {"paid_at": paid}},
               {"id": "il_fx", "object": "line_item", "invoice": "in_fx", "amount": 10_000, "currency": "usd",
                "period": {"start": paid, "end": paid}}]
    with unit_of_work(revenue_settings.database_url) as s:
        for o in objects:
            upsert(s, TABLES[str(o["object"])][0], [row_for(o)])
        rebuild(s, invoices=["in_fx"], charges=[], customers=[])
        s.add(ExchangeRate(currency="usd", reporting_currency="eur", rate=Decimal("0.5"), valid_from=date(2020, 1, 1)))
        s.add(ExchangeRate(currency="usd", reporting_currency="eur", rate=Decimal("0.8"), valid_from=date(2026, 3, 1)))
    http = revenue_app.test_client()
    viewer = auth(users["viewer"])
    january = http.get("/api/revenue/summary?currency=eur&start=2026-01-01&end=2026-01-31", headers=viewer)
    half_year = http.get("/api/revenue/summary?currency=eur&start=2026-01-01&end=2026-06-30", headers=viewer)
    assert january.get_json()["revenue"]["net"] == half_year.get_json()["revenue"]["net"] == "50.00"
    top = http.get("/api/revenue/top-customers?currency=eur&start=2026-01-01&end=2026-06-30", headers=viewer)
    assert top.get_json()["customers"][0]["net"] == "50.00"


def test_a_mid_month_end_keeps_the_rest_of_its_month_deferred(revenue_settings: Settings, revenue_app: Flask,
                                                              users: dict[str, str]) -> None:
    """Issue 18 defect 10: on 15 June, half of June is still deferred."""
    from store.revenue import rebuild
    from store.warehouse import TABLES, row_for, upsert

    start = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
    paid = int(datetime(2026, 1, 10, tzinfo=UTC).timestamp())
    objects = [{"id": "cus_mid", "object": "customer", "created": paid, "metadata": {}},
               {"id": "in_mid", "object": "invoice", "customer": "cus_mid", "created": paid, "currency": "usd",
                "status": "paid", "total": 120_000, "amount_paid": 120_000, "status_transitions": {"paid_at": paid}},
               {"id": "il_mid", "object": "line_item", "invoice": "in_mid", "amount": 120_000, "currency": "usd",
                "period": {"start": start, "end": int(datetime(2027, 1, 1, tzinfo=UTC).timestamp())}}]
    with unit_of_work(revenue_settings.database_url) as s:
        for o in objects:
            upsert(s, TABLES[str(o["object"])][0], [row_for(o)])
        rebuild(s, invoices=["in_mid"], charges=[], customers=[])
    body = revenue_app.test_client().get("/api/revenue/summary?start=2026-01-01&end=2026-06-15",
                                         headers=auth(users["viewer"])).get_json()
    # 1,200.00 over 2026's 365 days: 31-day months 101.92 (December 101.91, the cents by largest
    # remainder), 30-day months 98.63. June's 98.63 splits 49.32 | 49.31 at the 15th.
    # Deferred: 49.31 + July–December (101.92 + 101.92 + 98.63 + 101.92 + 98.63 + 101.91) = 654.24.
    assert body["deferred"] == "654.24"
    assert body["revenue"]["net"] == "545.76"  # 1,200.00 − 654.24
