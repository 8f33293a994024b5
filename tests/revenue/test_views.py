"""The seed's query counts each person once, in the reporting currency (issue 18 defect 7)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from flask import Flask
from sqlalchemy import text

from settings import Settings
from store.db import engine_for, unit_of_work
from store.revenue import rebuild, resolve_customers, set_reporting_currency
from store.warehouse import TABLES, ExchangeRate, row_for, upsert
from tests.fixtures.app import auth
from web import create_app

PAID = int(datetime(2026, 3, 10, tzinfo=UTC).timestamp())


def _paid(customer: str, person: str, invoices: list[tuple[str, int]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"id": customer, "object": "customer", "created": PAID,
                                  "metadata": {"posthog_person_distinct_id": person}}]
    for i, (currency, amount) in enumerate(invoices):
        iid = f"in_{customer}_{i}"
        out += [{"id": iid, "object": "invoice", "customer": customer, "created": PAID, "currency": currency,
                 "status": "paid", "total": amount, "amount_paid": amount, "status_transitions": {"paid_at": PAID}},
                {"id": f"il_{iid}", "object": "line_item", "invoice": iid, "amount": amount, "currency": currency,
                 "period": {"start": PAID, "end": PAID}}]
    return out


def test_one_row_per_person_in_the_reporting_currency(revenue_settings: Settings) -> None:
    objects = (_paid("cus_yen", "p-yen", [("jpy", 2_000_000)])  # ¥2,000,000: about $13,400
               + _paid("cus_two", "p-two", [("usd", 70_000_000), ("eur", 70_000_000)])  # $700k + €700k
               + _paid("cus_big", "p-big", [("usd", 150_000_000), ("eur", 120_000_000)])
               + _paid("cus_chf", "p-chf", [("chf", 500_000_000)]))  # no CHF rate
    with unit_of_work(revenue_settings.database_url) as s:
        for o in objects:
            upsert(s, TABLES[o["object"]][0], [row_for(o)])
        rebuild(s, invoices=[o["id"] for o in objects if o["object"] == "invoice"], charges=[], customers=[])
        resolve_customers(s, [o["id"] for o in objects if o["object"] == "customer"])
        set_reporting_currency(s, "usd")
        s.add(ExchangeRate(currency="eur", reporting_currency="usd", rate=Decimal("1.1"), valid_from=date(2020, 1, 1)))
        s.add(ExchangeRate(currency="jpy", reporting_currency="usd", rate=Decimal("0.0067"),
                           valid_from=date(2020, 1, 1)))
    with engine_for(revenue_settings.database_url).connect() as conn:
        seed = "SELECT COUNT(*) FROM persons_revenue_analytics WHERE amount > 1000000"
        # p-two: 700,000 + 770,000 = 1,470,000; p-big: 1,500,000 + 1,320,000. Each once; the yen
        # customer is $13,400 (on main: counted as a millionaire, and p-big twice → 3).
        assert conn.execute(text(seed)).scalar_one() == 2
        rows = {p: (c, Decimal(str(a)), int(m)) for p, c, a, m in conn.execute(text(
            "SELECT person_id, currency, amount, amount_minor FROM persons_revenue_analytics"))}
        assert rows["p-two"][0] == "usd" and rows["p-two"][2] == 147_000_000
        assert rows["p-yen"][2] == 1_340_000
        assert "p-chf" not in rows  # no rate: left out here, visible per currency
        per_currency = conn.execute(text(
            "SELECT COUNT(*) FROM persons_revenue_analytics_by_currency WHERE person_id = 'p-chf'")).scalar_one()
        assert per_currency == 1


def test_the_persons_endpoint_reads_the_converted_view(revenue_settings: Settings, users: dict[str, str]) -> None:
    objects = _paid("cus_two", "p-two", [("usd", 70_000_000), ("eur", 70_000_000)])
    with unit_of_work(revenue_settings.database_url) as s:
        for o in objects:
            upsert(s, TABLES[o["object"]][0], [row_for(o)])
        rebuild(s, invoices=["in_cus_two_0", "in_cus_two_1"], charges=[], customers=[])
        resolve_customers(s, ["cus_two"])
        s.add(ExchangeRate(currency="eur", reporting_currency="usd", rate=Decimal("1.1"), valid_from=date(2020, 1, 1)))
    app: Flask = create_app(revenue_settings, temporal=object())
    http = app.test_client()
    body = http.get("/api/revenue/persons", headers=auth(users["viewer"])).get_json()
    assert body["rows"] == [{"person_id": "p-two", "currency": "usd", "amount": "1470000.00",
                             "amount_last_30_days": body["rows"][0]["amount_last_30_days"], "customers": 1}]
    euros = http.get("/api/revenue/persons?currency=eur", headers=auth(users["viewer"])).get_json()
    assert [(r["currency"], r["amount"]) for r in euros["rows"]] == [("eur", "700000.00")]
