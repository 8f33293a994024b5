"""Revenue test helpers: settings pointed at a sandbox, and a sandbox filled with objects."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import pytest
import stripe

from settings import Settings

PERSON = "posthog_person_distinct_id"
# A test card as the customer's default payment method (without one a subscription stays incomplete).
CARD: dict[str, Any] = {"payment_method": "pm_card_visa",
                        "invoice_settings": {"default_payment_method": "pm_card_visa"}}


def sqlite_only(settings: Settings, why: str) -> None:
    """Tests of pacing, retries and process wiring run once: the database is not what they test
    (tests/conftest.py runs every revenue test on SQLite and PostgreSQL), and /tests/revenue must
    stay fast."""
    if settings.database_url.startswith("postgresql"):
        pytest.skip(f"Runs on SQLite only: {why}")


@pytest.fixture
def revenue_settings(settings: Settings, fresh_stripe_sandbox: Any) -> Settings:
    return replace(settings, stripe_api_base=fresh_stripe_sandbox.url, stripe_api_key=fresh_stripe_sandbox.api_key,
                   stripe_max_network_retries=0)


@dataclass
class Filled:
    customers: list[str]
    subscriptions: list[str]
    paid_invoices: list[str]
    open_invoices: list[str]


def paid_invoice(client: stripe.StripeClient, customer: str, amount: int, start: int, end: int, *,
                 pay: bool = True, metadata: dict[str, str] | None = None) -> str:
    invoice = client.v1.invoices.create({"customer": customer, "collection_method": "send_invoice",
                                         "days_until_due": 30, "metadata": metadata or {}})
    assert invoice.id is not None
    client.v1.invoice_items.create({"customer": customer, "invoice": invoice.id, "amount": amount,
                                    "currency": "usd", "period": {"start": start, "end": end}})
    client.v1.invoices.finalize_invoice(invoice.id)
    if pay:
        client.v1.invoices.pay(invoice.id, {"paid_out_of_band": True})
    return invoice.id


def fill(sandbox: Any, *, customers: int = 40, subscriptions: int = 4, invoices: int = 4) -> Filled:
    """Customers (every other one tagged with a person), monthly subscriptions, paid and open invoices."""
    client = sandbox.client()
    now = sandbox.now()
    ids = []
    for i in range(customers):
        metadata = {PERSON: f"person-{i}"} if i % 2 == 0 else {}
        params: dict[str, Any] = {"email": f"c{i}@example.com", "name": f"Customer {i}", "metadata": metadata}
        if i < subscriptions:
            params.update(CARD)  # Stripe charges a subscription's first invoice only to a card on file
        c = client.v1.customers.create(params)  # type: ignore[arg-type]
        ids.append(c.id)
    subs = []
    for i in range(subscriptions):
        s = client.v1.subscriptions.create({"customer": ids[i], "items": [{"price": "price_product_analytics_default",
                                                                            "quantity": 1}]})
        subs.append(s.id)
    paid, open_ = [], []
    for i in range(invoices):
        paid.append(paid_invoice(client, ids[-1 - i], 120000, now, now + 365 * 86400))
        open_.append(paid_invoice(client, ids[-1 - i], 10000, now, now + 3 * 86400, pay=False))
    return Filled(ids, subs, paid, open_)


def app_after_a_sync(sandbox: Any, settings: Settings, *, customers: int, subscriptions: int,
                     invoices: int) -> Any:
    """The web app over a warehouse just brought up to date: a full sync of a filled sandbox,
    then an incremental one after the first subscription was cancelled; every report cache cold."""
    from reports import cache
    from store.sync import full_sync, incremental_sync
    from web import create_app

    filled = fill(sandbox, customers=customers, subscriptions=subscriptions, invoices=invoices)
    full_sync(settings, rate=None)
    sandbox.client().v1.subscriptions.cancel(filled.subscriptions[0])
    incremental_sync(settings, rate=None)
    cache.clear()
    app = create_app(replace(settings), temporal=object())
    app.testing = True
    return app


@contextmanager
def statements_run(settings: Settings) -> Iterator[list[tuple[str, Any]]]:
    """Every (statement, parameters) the app's engine runs inside the block."""
    from sqlalchemy import event

    from store.db import engine_for

    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        seen.append((statement, parameters))

    engine = engine_for(settings.database_url)
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)
