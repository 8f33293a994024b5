"""A full revenue sync of a sandbox seeded with thousands of each object mirrors it exactly."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from sqlalchemy import func, select

from activities import stripe_api
from activities.stripe_sync import full_sync
from sandbox.stripe.bulk_seed import seed
from settings import Settings
from store.db import unit_of_work
from store.warehouse import TABLES

# 1,000 customers make 1,000 to 8,000 of most object types (500 credit notes and disputes). The
# sync's time goes mostly into the SDK turning JSON into StripeObjects (~2-5 ms per subscription or
# invoice on a 2-core machine): 2,000 customers take about 110 s, 1,000 about half of that.
CUSTOMERS = 1000
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
    assert got == {kind: expected[kind] for kind in got}
    assert report.objects >= sum(expected[kind] for kind in stripe_api.LISTED_OBJECTS)
