"""Issue 16: prepaid plans as contracted revenue beside committed MRR (through the sandbox and the
sync), and one-off charges as revenue when paid, net of refunds, apart from recurring revenue."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from flask import Flask

from settings import Settings
from store.db import unit_of_work
from store.revenue import rebuild
from store.sync import full_sync, incremental_sync
from store.warehouse import TABLES, row_for, upsert
from tests.fixtures.app import auth
from tests.revenue.test_plans_warehouse import DAY, _invoice, _meta
from web import create_app


def _app(settings: Settings) -> Flask:
    app = create_app(settings, temporal=object())
    app.testing = True
    return app


def test_a_prepaid_plan_is_contracted_revenue_with_its_credit_left(fresh_stripe_sandbox: Any,
                                                                  revenue_settings: Settings,
                                                                  users: dict[str, str]) -> None:
    """12,000.00 paid for 15,000.00 of credit, then 1,000.00 of usage in each of two months."""
    sb, client = fresh_stripe_sandbox, fresh_stripe_sandbox.client()
    customer = client.v1.customers.create({"email": "prepaid@example.com",
                                           "metadata": _meta(revenue_settings, 5, "plan_customer")}).id
    start = sb.now()
    _invoice(client, customer, 1_200_000, start, start + 365 * DAY,
             _meta(revenue_settings, 5, "upfront_invoice", credit_amount="1500000"))
    client.v1.customers.balance_transactions.create(customer, {
        "amount": -1_500_000, "currency": "usd", "metadata": _meta(revenue_settings, 5, "plan_credit")})
    full_sync(revenue_settings, rate=None)
    for _ in range(2):
        sb.advance(31 * DAY)
        _invoice(client, customer, 100_000, sb.now(), sb.now(), {})
        incremental_sync(revenue_settings, rate=None)
    on = datetime.fromtimestamp(sb.now(), UTC).date()
    body = _app(revenue_settings).test_client().get(
        f"/api/revenue/committed?end={on}", headers=auth(users["viewer"])).get_json()
    # Two draws of 1,000.00 credit are worth 800.00 each (12,000 ÷ 15,000); 10,400.00 is still
    # contracted; 13,000.00 of credit is left on the Stripe balance; the term is 365 days from the
    # start, its last day one before the line's (exclusive) period end.
    term_last = datetime.fromtimestamp(start + 365 * DAY, UTC).date() - timedelta(days=1)
    assert body["prepaid_plans"] == [{
        "plan_key": f"{revenue_settings.installation_id}:5", "customer_id": customer, "currency": "usd",
        "received": "12000.00", "recognised": "1600.00", "contracted": "10400.00",
        "credit_granted": "15000.00", "credit_left": "13000.00", "term_end": term_last.isoformat()}]
    assert body["mrr"] == "0.00" and body["scheduled_churn"] == []


def _store(settings: Settings, objects: list[dict[str, Any]], invoices: list[str], charges: list[str]) -> None:
    with unit_of_work(settings.database_url) as s:
        for o in objects:
            upsert(s, TABLES[str(o["object"])][0], [row_for(o)])
        rebuild(s, invoices=invoices, charges=charges, customers=[])


def ts(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def test_one_off_charges_are_revenue_when_paid_net_of_refunds_apart_from_recurring(
        revenue_settings: Settings, users: dict[str, str]) -> None:
    march, april = ts(date(2026, 3, 10)), ts(date(2026, 4, 5))
    _store(revenue_settings, [
        {"id": "cus_once", "object": "customer", "created": march, "metadata": {}},
        # A 50.00 payment with no invoice, 20.00 of it refunded in April.
        {"id": "ch_once", "object": "charge", "customer": "cus_once", "created": march, "amount": 5_000,
         "currency": "usd", "status": "succeeded", "paid": True, "amount_refunded": 2_000},
        {"id": "re_once", "object": "refund", "charge": "ch_once", "amount": 2_000, "currency": "usd",
         "status": "succeeded", "created": april},
        # A failed charge is no revenue.
        {"id": "ch_failed", "object": "charge", "customer": "cus_once", "created": march, "amount": 9_900,
         "currency": "usd", "status": "failed", "paid": False},
        # 100.00 of a subscription invoice for March: recurring.
        {"id": "in_rec", "object": "invoice", "customer": "cus_once", "created": march, "currency": "usd",
         "status": "paid", "total": 10_000, "amount_paid": 10_000, "status_transitions": {"paid_at": march}},
        {"id": "il_rec", "object": "line_item", "invoice": "in_rec", "amount": 10_000, "currency": "usd",
         "period": {"start": march, "end": march}},
    ], invoices=["in_rec"], charges=["ch_once", "ch_failed"])
    body = _app(revenue_settings).test_client().get(
        "/api/revenue/one-off?start=2026-03-01&end=2026-04-30", headers=auth(users["viewer"])).get_json()
    assert [(m["month"], m["one_off_gross"], m["one_off_net"], m["recurring_net"], m["net"])
            for m in body["months"]] == [
        ("2026-03-01", "50.00", "50.00", "100.00", "150.00"),
        # The refund is booked in its own month (March stays closed): nothing was deferred.
        ("2026-04-01", "0.00", "-20.00", "0.00", "-20.00")]
    assert (body["one_off_net"], body["recurring_net"]) == ("30.00", "100.00")
    assert body["charges"] == [{"charge_id": "ch_once", "customer_id": "cus_once", "gross": "50.00",
                                "net": "30.00"}]
