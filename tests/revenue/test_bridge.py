"""Issue 16: the whole MRR bridge (reactivation included), NRR/GRR, cohorts, ARPA, LTV, churn
rates and committed MRR, on one warehouse fixture whose every figure is computed by hand here;
every JSON report also as CSV with the same figures."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from typing import Any

import pytest
from flask import Flask

from settings import Settings
from store.db import unit_of_work
from store.warehouse import TABLES, row_for, upsert
from tests.fixtures.app import auth
from web import create_app


def ts(y: int, m: int, d: int) -> int:
    return int(datetime(y, m, d, tzinfo=UTC).timestamp())


def price(amount: int) -> dict[str, Any]:
    return {"id": f"price_{amount}", "object": "price", "currency": "usd", "billing_scheme": "per_unit",
            "unit_amount": amount, "type": "recurring",
            "recurring": {"interval": "month", "interval_count": 1, "usage_type": "licensed"}}


def subscription(sub_id: str, customer: str, amount: int, start: int, *, quantity: int = 1,
                 **fields: Any) -> list[dict[str, Any]]:
    return [{"id": sub_id, "object": "subscription", "customer": customer, "currency": "usd",
             "status": fields.pop("status", "active"), "start_date": start, "created": start, **fields},
            {"id": f"si_{sub_id}", "object": "subscription_item", "subscription": sub_id,
             "price": f"price_{amount}", "quantity": quantity}]


def phase(start: int, end: int, amount: int, quantity: int = 1) -> dict[str, Any]:
    return {"start_date": start, "end_date": end, "currency": "usd",
            "items": [{"price": f"price_{amount}", "quantity": quantity}]}


def schedule(sched_id: str, customer: str, sub_id: str | None, status: str, *phases: dict[str, Any],
             end_behavior: str = "release") -> dict[str, Any]:
    return {"id": sched_id, "object": "subscription_schedule", "customer": customer, "subscription": sub_id,
            "status": status, "end_behavior": end_behavior, "phases": list(phases), "created": ts(2025, 10, 1)}


QUARTER_OFF_FROM_MAY = [{"id": "di_c", "object": "discount", "start": ts(2026, 5, 1), "end": None,
                         "coupon": {"id": "quarter", "percent_off": 25, "duration": "forever"}}]

# Amounts in cents, all monthly USD prices.
#   A  100.00 from 2025-12-01; its schedule: 150.00 from 2026-03-01, 200.00 from 2026-10-01
#   B  200.00 from 2025-11-01, ended 2026-02-15; again 50.00 from 2026-04-10 (reactivation)
#   C   80.00 from 2026-01-20; 25% off from 2026-05-01 (contraction to 60.00)
#   D   40.00 from 2026-02-01, trial until 2026-03-05
#   E  120.00 from 2026-01-05; its schedule: 2 × 120.00 from 2026-06-01; cancel_at 2026-08-01
#   F   a schedule not started: 70.00 from 2026-09-01
#   G   30.00 from 2026-06-15, trial until 2026-07-15
FIXTURE: list[dict[str, Any]] = [
    *(price(a) for a in (3000, 4000, 5000, 7000, 8000, 10000, 12000, 15000, 20000, 20001)),
    *({"id": f"cus_{c}", "object": "customer", "name": f"Customer {c}", "email": f"{c}@example.com",
       "created": ts(2025, 10, 1), "metadata": {}} for c in "abcdefg"),
    *subscription("sub_a", "cus_a", 20000, ts(2025, 12, 1)),
    schedule("sub_sched_a", "cus_a", "sub_a", "active", phase(ts(2025, 12, 1), ts(2026, 3, 1), 10000),
             phase(ts(2026, 3, 1), ts(2026, 10, 1), 15000), phase(ts(2026, 10, 1), ts(2027, 10, 1), 20000)),
    *subscription("sub_b1", "cus_b", 20000, ts(2025, 11, 1), status="canceled", canceled_at=ts(2026, 2, 1),
                  ended_at=ts(2026, 2, 15)),
    *subscription("sub_b2", "cus_b", 5000, ts(2026, 4, 10)),
    *subscription("sub_c", "cus_c", 8000, ts(2026, 1, 20), discounts=QUARTER_OFF_FROM_MAY),
    *subscription("sub_d", "cus_d", 4000, ts(2026, 2, 1), trial_end=ts(2026, 3, 5)),
    *subscription("sub_e", "cus_e", 12000, ts(2026, 1, 5), quantity=2, cancel_at=ts(2026, 8, 1)),
    schedule("sub_sched_e", "cus_e", "sub_e", "active", phase(ts(2026, 1, 5), ts(2026, 6, 1), 12000),
             phase(ts(2026, 6, 1), ts(2026, 8, 1), 12000, 2)),
    schedule("sub_sched_f", "cus_f", None, "not_started", phase(ts(2026, 9, 1), ts(2027, 9, 1), 7000)),
    *subscription("sub_g", "cus_g", 3000, ts(2026, 6, 15), status="trialing", trial_end=ts(2026, 7, 15)),
]


@pytest.fixture
def fixture_app(revenue_settings: Settings) -> Flask:
    with unit_of_work(revenue_settings.database_url) as s:
        for o in FIXTURE:
            upsert(s, TABLES[o["object"]][0], [row_for(o)])
    app = create_app(revenue_settings, temporal=object())
    app.testing = True
    return app


RANGE = "start=2026-01-01&end=2026-06-30"


def _get(app: Flask, users: dict[str, str], path: str) -> Any:
    response = app.test_client().get(path, headers=auth(users["viewer"]))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response


def test_the_bridge_month_by_month(fixture_app: Flask, users: dict[str, str]) -> None:
    body = _get(fixture_app, users, f"/api/revenue/bridge?{RANGE}").get_json()
    got = [(m["month"], m["start_mrr"], m["new"], m["reactivation"], m["expansion"], m["contraction"],
            m["churned"], m["end_mrr"]) for m in body["months"]]
    assert got == [
        # Dec 31: A 100 + B 200. C (20 Jan) and E (5 Jan) are new.
        ("2026-01-01", "300.00", "200.00", "0.00", "0.00", "0.00", "0.00", "500.00"),
        # B ended on 15 Feb.
        ("2026-02-01", "500.00", "0.00", "0.00", "0.00", "0.00", "200.00", "300.00"),
        # A's schedule: 150.00 from 1 March; D's trial ends 5 March (new, its first paying day).
        ("2026-03-01", "300.00", "40.00", "0.00", "50.00", "0.00", "0.00", "390.00"),
        # B is back: it paid before, so reactivation, not new.
        ("2026-04-01", "390.00", "0.00", "50.00", "0.00", "0.00", "0.00", "440.00"),
        # C's 25% off: 80.00 → 60.00.
        ("2026-05-01", "440.00", "0.00", "0.00", "0.00", "20.00", "0.00", "420.00"),
        # E's schedule: 2 × 120.00 from 1 June. G is still in its trial.
        ("2026-06-01", "420.00", "0.00", "0.00", "120.00", "0.00", "0.00", "540.00"),
    ]
    for m in body["months"]:  # start + movements = end, every month
        cents = {k: int(m[k].replace(".", "")) for k in ("start_mrr", "new", "reactivation", "expansion",
                                                         "contraction", "churned", "end_mrr")}
        assert (cents["start_mrr"] + cents["new"] + cents["reactivation"] + cents["expansion"]
                - cents["contraction"] - cents["churned"]) == cents["end_mrr"]
    rates = [(m["nrr"], m["grr"], m["customer_churn_rate"], m["revenue_churn_rate"], m["arpa"], m["ltv"])
             for m in body["months"]]
    assert rates == [
        ("100.00", "100.00", "0.00", "0.00", "125.00", None),  # 500 / 4 customers
        # 300 of 500 kept; 1 of 4 customers gone; ARPA 300 / 3; LTV 100.00 ÷ 25%.
        ("60.00", "60.00", "25.00", "40.00", "100.00", "400.00"),
        ("116.67", "100.00", "0.00", "0.00", "97.50", None),  # (300 + 50) / 300; 390 / 4
        ("100.00", "100.00", "0.00", "0.00", "88.00", None),  # reactivation is not retention; 440 / 5
        ("95.45", "95.45", "0.00", "4.55", "84.00", None),  # 420 / 440; 20 / 440; 420 / 5
        ("128.57", "100.00", "0.00", "0.00", "108.00", None),  # 540 / 420; 540 / 5
    ]
    assert [(m["new_customers"], m["reactivated_customers"], m["churned_customers"], m["end_customers"])
            for m in body["months"]] == [(2, 0, 0, 4), (0, 0, 1, 3), (1, 0, 0, 4), (0, 1, 0, 5), (0, 0, 0, 5),
                                         (0, 0, 0, 5)]
    totals = body["totals"]
    # 1 churned of 2 + 4 + 3 + 4 + 5 + 5 = 23 customer-months: 4.35%; LTV = 108.00 × 23.
    assert totals == {"start_mrr": "300.00", "end_mrr": "540.00", "new": "240.00", "reactivation": "50.00",
                      "expansion": "170.00", "contraction": "20.00", "churned": "200.00", "net_new": "240.00",
                      "fx": "0.00", "new_customers": 3, "reactivated_customers": 1, "churned_customers": 1,
                      "arpa": "108.00", "customer_churn_rate": "4.35", "ltv": "2484.00"}


def test_cohorts_by_start_month(fixture_app: Flask, users: dict[str, str]) -> None:
    body = _get(fixture_app, users, f"/api/revenue/cohorts?{RANGE}").get_json()
    # A and B started before the range; January: C and E (200.00); March: D (40.00).
    assert [(c["month"], c["customers"], c["mrr"]) for c in body["cohorts"]] == [
        ("2026-01-01", 2, "200.00"), ("2026-03-01", 1, "40.00")]
    january = [(r["months_since_start"], r["customers"], r["mrr"], r["nrr"], r["grr"])
               for r in body["cohorts"][0]["retained"]]
    assert january == [
        (0, 2, "200.00", "100.00", "100.00"), (1, 2, "200.00", "100.00", "100.00"),
        (2, 2, "200.00", "100.00", "100.00"), (3, 2, "200.00", "100.00", "100.00"),
        # May: C at 60.00 (kept 60 of 80): 180 / 200.
        (4, 2, "180.00", "90.00", "90.00"),
        # June: C 60 + E 240 = 300 (150%); gross retention caps E at its first 120: (60 + 120) / 200.
        (5, 2, "300.00", "150.00", "90.00")]
    assert [r["mrr"] for r in body["cohorts"][1]["retained"]] == ["40.00"] * 4


def test_committed_mrr_for_the_next_twelve_months(fixture_app: Flask, users: dict[str, str]) -> None:
    body = _get(fixture_app, users, "/api/revenue/committed?end=2026-06-30").get_json()
    assert body["mrr"] == "540.00"
    got = [(m["month"], m["mrr"], m["new"], m["expansion"], m["churned"]) for m in body["months"]]
    steady = [(f"{y}-{m:02d}-01", "450.00", "0.00", "0.00", "0.00")
              for y, m in [(2026, 11), (2026, 12), *((2027, k) for k in range(1, 7))]]
    assert got == [
        ("2026-07-01", "570.00", "30.00", "0.00", "0.00"),  # G's trial ends 15 July
        ("2026-08-01", "330.00", "0.00", "0.00", "240.00"),  # E's cancel_at, 1 August
        ("2026-09-01", "400.00", "70.00", "0.00", "0.00"),  # F's schedule starts 1 September
        ("2026-10-01", "450.00", "0.00", "50.00", "0.00"),  # A's scheduled price change: 150 → 200
        *steady]
    assert body["scheduled_churn"] == [{"customer_id": "cus_e", "name": "Customer e", "email": "e@example.com",
                                        "churn_on": "2026-08-01", "mrr": "240.00"}]
    assert body["prepaid_plans"] == []


def _csv(app: Flask, users: dict[str, str], path: str) -> list[dict[str, str]]:
    response = _get(app, users, path)
    assert response.mimetype == "text/csv"
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


def test_every_report_downloads_as_csv_with_the_same_figures(fixture_app: Flask, users: dict[str, str]) -> None:
    def same(path: str, key: str) -> None:
        rows = _get(fixture_app, users, path).get_json()[key]
        table = _csv(fixture_app, users, f"{path}&format=csv")
        assert len(table) == len(rows) > 0
        for row, line in zip(rows, table, strict=True):
            for k, v in row.items():
                assert line[k] == ("" if v is None else str(v)), (path, k)

    same(f"/api/revenue/bridge?{RANGE}", "months")
    same(f"/api/revenue/mrr?{RANGE}", "points")
    same("/api/revenue/committed?end=2026-06-30", "months")
    same(f"/api/revenue/one-off?{RANGE}", "months")
    cohorts = _csv(fixture_app, users, f"/api/revenue/cohorts?{RANGE}&format=csv")
    assert [(r["cohort"], r["months_since_start"], r["mrr"], r["nrr"]) for r in cohorts][4:6] == [
        ("2026-01-01", "4", "180.00", "90.00"), ("2026-01-01", "5", "300.00", "150.00")]
    summary = _get(fixture_app, users, f"/api/revenue/summary?{RANGE}").get_json()
    [line] = _csv(fixture_app, users, f"/api/revenue/summary?{RANGE}&format=csv")
    # The summary compares two days only (31 Dec → 30 Jun): B went 200.00 → 50.00 (contraction, its
    # month at zero unseen); new C 60 + D 40 + E 240.
    assert (line["mrr"], line["movements.new"], line["movements.contraction"], line["movements.churned"]) == (
        summary["mrr"], summary["movements"]["new"], summary["movements"]["contraction"],
        summary["movements"]["churned"]) == ("540.00", "340.00", "150.00", "0.00")
    churn = _csv(fixture_app, users, "/api/revenue/committed?end=2026-06-30&format=csv&table=scheduled_churn")
    assert [(r["customer_id"], r["churn_on"], r["mrr"]) for r in churn] == [("cus_e", "2026-08-01", "240.00")]
    [totals] = _csv(fixture_app, users, f"/api/revenue/bridge?{RANGE}&format=csv&table=totals")
    assert (totals["reactivation"], totals["ltv"]) == ("50.00", "2484.00")
    per_cohort = _csv(fixture_app, users, f"/api/revenue/cohorts?{RANGE}&format=csv&table=cohorts")
    assert [(r["month"], r["customers"], r["mrr"]) for r in per_cohort] == [
        ("2026-01-01", "2", "200.00"), ("2026-03-01", "1", "40.00")]
    http = fixture_app.test_client()
    for query, name in (("format=xls", "format"), ("format=csv&table=nope", "table")):
        bad = http.get(f"/api/revenue/bridge?{RANGE}&{query}", headers=auth(users["viewer"]))
        assert bad.status_code == 400 and name in bad.get_json()["error"], query


def test_new_endpoints_need_a_login(fixture_app: Flask) -> None:
    http = fixture_app.test_client()
    for path in ("bridge", "cohorts", "committed", "one-off"):
        assert http.get(f"/api/revenue/{path}").status_code == 401


def test_a_bridge_range_before_anyone_paid_is_empty_not_an_error(fixture_app: Flask, users: dict[str, str]) -> None:
    body = _get(fixture_app, users, "/api/revenue/bridge?start=2020-01-01&end=2020-02-29").get_json()
    assert [(m["start_mrr"], m["end_mrr"], m["nrr"], m["ltv"]) for m in body["months"]] == [
        ("0.00", "0.00", None, None)] * 2
    assert date.fromisoformat(body["start"]) == date(2020, 1, 1)


def test_a_schedule_that_ends_by_cancelling_ends_its_subscription(revenue_settings: Settings) -> None:
    from domain.mrr import mrr_by_customer
    from store.revenue import mrr_inputs

    objects = [price(9000), *subscription("sub_h", "cus_h", 9000, ts(2026, 1, 1)),
               schedule("sub_sched_h", "cus_h", "sub_h", "active", phase(ts(2026, 1, 1), ts(2026, 4, 1), 9000),
                        {**phase(ts(2026, 4, 1), ts(2026, 7, 1), 9000), "items": [{"price": "price_gone"}]},
                        end_behavior="cancel")]
    with unit_of_work(revenue_settings.database_url) as s:
        for o in objects:
            upsert(s, TABLES[o["object"]][0], [row_for(o)])
    with unit_of_work(revenue_settings.database_url) as s:
        subs, left_out = mrr_inputs(s)
    [sub] = subs
    assert sub.cancel_at == date(2026, 7, 1)
    # The second phase's price was never synced: named, and that phase counts nothing.
    assert left_out == ["subscription schedule sub_sched_h phase 1: price price_gone is not synced"]
    assert [mrr_by_customer(subs, d) for d in (date(2026, 3, 31), date(2026, 4, 1), date(2026, 7, 1))] == [
        {"cus_h": 9000}, {}, {}]
