"""Invoice items carry `date`, not `created` (issue 12): the full sync splits their windows and
stores when they were made."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from settings import Settings
from store.db import unit_of_work
from store.sync import full_sync
from store.warehouse import StripeInvoiceItem, created_of
from tests.revenue.conftest import sqlite_only


def test_invoice_items_are_dated_by_date() -> None:
    assert created_of({"object": "invoiceitem", "id": "ii_1", "date": 1_800_000_000}) == 1_800_000_000
    assert created_of({"object": "customer", "id": "cus_1", "created": 1_700_000_000}) == 1_700_000_000
    assert created_of({"object": "customer", "id": "cus_1"}) is None


def test_a_full_sync_pages_and_splits_invoice_item_windows(fresh_stripe_sandbox: Any,
                                                          revenue_settings: Settings) -> None:
    sqlite_only(revenue_settings, "Stripe-side paging of invoice items")
    client = fresh_stripe_sandbox.client()
    customer = client.v1.customers.create({"email": "items@example.com"})
    # More than one page, made over several seconds, so an idle worker is handed an older window.
    for i in range(230):
        if i % 40 == 0:
            fresh_stripe_sandbox.advance(60)
        client.v1.invoice_items.create({"customer": customer.id, "amount": 100 + i, "currency": "usd"})
    report = full_sync(revenue_settings, rate=None, workers=4, object_types=("invoiceitem",))
    assert report.by_type_objects["invoiceitem"] == 230
    with unit_of_work(revenue_settings.database_url) as s:
        assert s.scalar(select(func.count()).select_from(StripeInvoiceItem)) == 230
        # `created` holds the item's `date`; NULL before the fix.
        assert s.scalar(select(func.count()).where(StripeInvoiceItem.created.is_(None))) == 0
        first = s.scalar(select(func.min(StripeInvoiceItem.created)))
        last = s.scalar(select(func.max(StripeInvoiceItem.created)))
        assert first is not None and last is not None and (last - first).total_seconds() >= 200
