"""Plans as the plan workflows make them in Stripe (metadata from activities/plan), through the
sandbox and the sync: prepaid credit counted once, upfront and per installment (issue 18)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select

from settings import Settings
from store.db import unit_of_work
from store.revenue import rebuild_all
from store.sync import full_sync, incremental_sync
from store.warehouse import RevenueScheduleEntry

DAY = 86400


def _meta(settings: Settings, plan: int, kind: str, **extra: str) -> dict[str, str]:
    return {"plan_id": str(plan), "revops_kind": kind, "revops_installation": settings.installation_id, **extra}


def _invoice(client: Any, customer: str, amount: int, start: int, end: int, metadata: dict[str, str]) -> str:
    inv = client.v1.invoices.create({"customer": customer, "collection_method": "send_invoice", "days_until_due": 30,
                                     "metadata": metadata})
    client.v1.invoice_items.create({"customer": customer, "invoice": inv.id, "amount": amount, "currency": "usd",
                                    "period": {"start": start, "end": end}, "metadata": metadata})
    inv = client.v1.invoices.finalize_invoice(inv.id)
    if inv.status == "open":
        client.v1.invoices.pay(inv.id, {"paid_out_of_band": True})
    return str(inv.id)


def _by_month(settings: Settings, customer: str) -> dict[date, int]:
    out: dict[date, int] = defaultdict(int)
    with unit_of_work(settings.database_url) as s:
        for month, net, owner in s.execute(select(RevenueScheduleEntry.month, RevenueScheduleEntry.net,
                                                  RevenueScheduleEntry.customer_id)):
            assert owner == customer  # everything is booked with the customer holding the credit
            out[month] += net
    return {m: v for m, v in sorted(out.items()) if v}


def _month(ts: int) -> date:
    return datetime.fromtimestamp(ts, UTC).date().replace(day=1)


def test_an_upfront_plan_through_the_sync(fresh_stripe_sandbox: Any, revenue_settings: Settings) -> None:
    """12,000.00 for 15,000.00 of credit, three 1,000.00 usage invoices paid from the balance."""
    sb, client = fresh_stripe_sandbox, fresh_stripe_sandbox.client()
    customer = client.v1.customers.create({"email": "plan@example.com",
                                           "metadata": _meta(revenue_settings, 7, "plan_customer")}).id
    start = sb.now()
    _invoice(client, customer, 1_200_000, start, start + 365 * DAY,
             _meta(revenue_settings, 7, "upfront_invoice", credit_amount="1500000"))
    client.v1.customers.balance_transactions.create(customer, {
        "amount": -1_500_000, "currency": "usd", "metadata": _meta(revenue_settings, 7, "plan_credit")})
    full_sync(revenue_settings, rate=None)
    usage_months = []
    for _ in range(3):
        sb.advance(31 * DAY)
        now = sb.now()
        usage_months.append(_month(now))
        _invoice(client, customer, 100_000, now, now, {})
        incremental_sync(revenue_settings, rate=None)
    months = _by_month(revenue_settings, customer)
    # Each 1,000.00 of credit used is 800.00 of revenue, in its month; the rest waits for the term's
    # last month (breakage): 12,000.00 in all, never 15,000.00.
    for month in usage_months:
        assert months[month] == 80_000
    assert sum(months.values()) == 1_200_000
    term_last = _month(start + 364 * DAY)
    assert months[term_last] == 1_200_000 - 3 * 80_000

    with unit_of_work(revenue_settings.database_url) as s:
        rebuild_all(s, "ratable")
    ratable = _by_month(revenue_settings, customer)
    assert sum(ratable.values()) == 1_200_000  # the usage adds nothing
    assert len(ratable) >= 12  # spread over the term


def test_a_monthly_plan_released_per_installment_through_the_sync(fresh_stripe_sandbox: Any,
                                                                 revenue_settings: Settings) -> None:
    """Installments on the installment customer, credit shares on the existing customer: one book."""
    sb, client = fresh_stripe_sandbox, fresh_stripe_sandbox.client()
    existing = client.v1.customers.create({"email": "existing@example.com"}).id
    installments = client.v1.customers.create({"email": "installments@example.com", "metadata": _meta(
        revenue_settings, 9, "installment_customer", existing_customer_id=existing)}).id
    start = sb.now()
    paid = 0
    for k in range(3):
        now = sb.now()
        _invoice(client, installments, 10_000, now, now + 30 * DAY,
                 _meta(revenue_settings, 9, "first_installment") if k == 0 else {})
        paid += 10_000
        client.v1.customers.balance_transactions.create(existing, {
            "amount": -12_500, "currency": "usd",
            "metadata": _meta(revenue_settings, 9, "monthly_credit_share", share=str(k + 1))})
        _invoice(client, existing, 5_000, now, now + 30 * DAY, {})  # usage, paid from the shares
        sb.advance(31 * DAY)
    full_sync(revenue_settings, rate=None)
    months = _by_month(revenue_settings, existing)
    # 50.00 of credit a month at 100.00 ÷ 125.00 = 40.00; the rest of the money still deferred.
    assert months[_month(start)] == 4_000
    assert sum(months.values()) == paid
