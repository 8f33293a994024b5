"""A full revenue sync of a sandbox seeded with thousands of each object mirrors it exactly."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import func, select

from activities import stripe_api
from sandbox.stripe.bulk_seed import seed
from settings import Settings
from store.db import unit_of_work
from store.sync import full_sync, incremental_sync
from store.warehouse import TABLES, StripeInvoice, StripeSubscription

# 1,000 customers make 1,000 to 8,000 of most object types (about 500 credit notes and disputes);
# seeding takes ~3 s, seeding and syncing together ~11 s per database backend on a 2-core machine
# (the sandbox runs in the test's process here; bench/sync_bench.py times it in its own).
CUSTOMERS = int(os.environ.get("SEEDED_SYNC_CUSTOMERS", "1000"))  # more by hand, e.g. 4000
# Kinds the warehouse keeps besides the listed ones: reached through invoices, subscriptions and
# customers rather than a list endpoint of their own.
NESTED = ("line_item", "subscription_item", "customer_balance_transaction")


def _sandbox_counts(sandbox: Any) -> Counter[str]:
    engine = sandbox.engine
    with engine.lock:
        return Counter(o["object"] for o in dict.values(engine.state.objects) if not o.get("deleted"))


def _warehouse_count(settings: Settings, kind: str) -> int:
    model, _ = TABLES[kind]
    with unit_of_work(settings.database_url) as s:
        live = select(func.count()).select_from(model)
        if hasattr(model, "deleted_at"):
            live = live.where(model.deleted_at.is_(None))
        return int(s.scalar(live) or 0)


@pytest.mark.slow
def test_full_sync_of_a_seeded_sandbox_matches_every_count(fresh_stripe_sandbox: Any,
                                                           revenue_settings: Settings) -> None:
    made = seed(fresh_stripe_sandbox.engine, customers=CUSTOMERS).made
    for kind in ("customer", "subscription", "invoice", "invoiceitem", "charge", "refund",
                 "balance_transaction", "customer_balance_transaction"):
        assert made[kind] >= 0.9 * CUSTOMERS, (kind, made[kind])
    assert made["credit_note"] >= 0.45 * CUSTOMERS and made["dispute"] >= 0.45 * CUSTOMERS
    assert made["line_item"] >= 3 * CUSTOMERS  # invoices with several lines

    report = full_sync(revenue_settings, rate=None)

    expected = _sandbox_counts(fresh_stripe_sandbox)
    got = {kind: _warehouse_count(revenue_settings, kind) for kind in (*stripe_api.LISTED_OBJECTS, *NESTED)}
    print("seeded sync counts:", dict(sorted(got.items())))
    assert got == {kind: expected[kind] for kind in got}
    assert report.objects >= sum(expected[kind] for kind in stripe_api.LISTED_OBJECTS)


def test_incremental_sync_of_old_version_events_matches_the_sandbox(fresh_stripe_sandbox: Any,
                                                                    revenue_settings: Settings) -> None:
    """The account's default API version predates 2025-03-31.basil: events carry the older shapes
    (invoice `paid`/`subscription`, subscription `current_period_*` at the top), as for an account
    that never upgraded. The events feed must still leave the warehouse equal to the sandbox."""
    sb = fresh_stripe_sandbox
    seed(sb.engine, customers=20, span_days=2)
    full_sync(revenue_settings, rate=None)

    sb.set_default_api_version("2024-06-20")
    client = sb.client()
    subs = client.v1.subscriptions.list({"limit": 3}).data
    client.v1.subscriptions.cancel(subs[0].id)
    client.v1.subscriptions.update(subs[1].id, {"metadata": {"plan": "changed"}})
    open_invoice = next(i for i in client.v1.invoices.list({"status": "open", "limit": 100}).data)
    client.v1.invoices.pay(open_invoice.id, {"paid_out_of_band": True})
    cus = client.v1.customers.create({"email": "late@example.com"})
    client.v1.subscriptions.create({"customer": cus.id, "collection_method": "send_invoice", "days_until_due": 30,
                                    "items": [{"price": "price_product_analytics_default"}]})
    client.v1.invoice_items.create({"customer": cus.id, "amount": 1234, "currency": "usd"})
    old = [e for e in client.v1.events.list({"limit": 100}).data if e.api_version == "2024-06-20"]
    assert any(e.type == "invoice.paid" and e.data.object["paid"] is True for e in old)

    report = incremental_sync(revenue_settings, rate=None)
    assert report.kind == "incremental"

    expected = _sandbox_counts(sb)
    got = {kind: _warehouse_count(revenue_settings, kind) for kind in (*stripe_api.LISTED_OBJECTS, *NESTED)}
    assert got == {kind: expected[kind] for kind in got}
    with unit_of_work(revenue_settings.database_url) as s:
        for sub in client.v1.subscriptions.list({"limit": 100, "status": "all"}).data:
            stored = s.get(StripeSubscription, sub.id)
            assert stored is not None and stored.status == sub.status, sub.id
        paid = s.get(StripeInvoice, open_invoice.id)
        assert paid is not None and paid.status == "paid"
