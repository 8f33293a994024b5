"""The sync against the Stripe sandbox: first sync, crash and resume, events, webhooks, rate limit."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import stripe
from sqlalchemy import func, select

from activities import stripe_api
from settings import Settings
from store.db import unit_of_work
from store.sync import full_sync, incremental_sync, sync_revenue
from store.warehouse import (
    TABLES,
    RevenueScheduleEntry,
    RevenueSyncCursor,
    StripeCustomer,
    StripeInvoice,
    StripeSubscription,
)
from tests.revenue.conftest import CARD, PERSON, fill, sqlite_only


def sandbox_ids(sandbox: Any, kind: str) -> list[str]:
    """Every id the sandbox lists for `kind`, paged with the SDK."""
    client = sandbox.client()
    ids, after = [], None
    while True:
        page = stripe_api.list_page(client, kind, starting_after=after)
        ids.extend(o["id"] for o in page.objects)
        if not page.has_more:
            return ids
        after = page.objects[-1]["id"]


def warehouse_ids(settings: Settings, kind: str, *, live_only: bool = True) -> list[str]:
    model, _ = TABLES[kind]
    with unit_of_work(settings.database_url) as s:
        q = select(model.id)
        if live_only:
            q = q.where(model.deleted_at.is_(None))
        return list(s.scalars(q))


def assert_mirrors(sandbox: Any, settings: Settings) -> None:
    for kind in stripe_api.LISTED_OBJECTS:
        expected = sandbox_ids(sandbox, kind)
        got = warehouse_ids(settings, kind)
        assert len(got) == len(set(got))
        assert sorted(got) == sorted(expected), kind


def test_first_sync_mirrors_every_listed_object(fresh_stripe_sandbox: Any, revenue_settings: Settings) -> None:
    filled = fill(fresh_stripe_sandbox)
    report = full_sync(revenue_settings, rate=None)
    assert report.kind == "full" and report.objects > len(filled.customers)
    assert_mirrors(fresh_stripe_sandbox, revenue_settings)
    with unit_of_work(revenue_settings.database_url) as s:
        # Every invoice line arrived, and paid invoices have their revenue schedule.
        lines = s.scalar(select(func.count()).select_from(TABLES["line_item"][0]))
        assert lines == len(filled.paid_invoices) + len(filled.open_invoices) + len(filled.subscriptions)
        yearly = s.scalar(select(func.sum(RevenueScheduleEntry.net)).where(
            RevenueScheduleEntry.source_id.in_(filled.paid_invoices)))
        assert yearly == 120000 * len(filled.paid_invoices)
        assert s.get(RevenueSyncCursor, "events") is not None
        tagged = s.get(StripeCustomer, filled.customers[0])
        assert tagged is not None and (tagged.person_distinct_id, tagged.person_source) == ("person-0", "customer")


def test_a_crash_mid_way_resumes_with_no_duplicate_and_no_gap(fresh_stripe_sandbox: Any,
                                                              revenue_settings: Settings) -> None:
    fill(fresh_stripe_sandbox, customers=450, subscriptions=2, invoices=2)
    pages = []

    def crash_after_two_customer_pages(kind: str, count: int) -> None:
        if kind == "customer":
            pages.append(kind)
            if len(pages) == 2:
                raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        full_sync(revenue_settings, rate=None, workers=3, on_page=crash_after_two_customer_pages)
    partial = len(warehouse_ids(revenue_settings, "customer"))
    assert 0 < partial < 450  # some pages were written before the crash, not all

    report = sync_revenue(revenue_settings, rate=None)
    assert report.kind == "full" and report.resumed
    assert_mirrors(fresh_stripe_sandbox, revenue_settings)
    # Resumed, not restarted: the customers already written were not listed again.
    assert report.by_type_objects.get("customer", 0) <= 450 - partial + 100


def test_changes_to_existing_objects_arrive_by_events(fresh_stripe_sandbox: Any, revenue_settings: Settings) -> None:
    filled = fill(fresh_stripe_sandbox, customers=6, subscriptions=2, invoices=1)
    full_sync(revenue_settings, rate=None)
    client = fresh_stripe_sandbox.client()
    cancelled, invoice, gone = filled.subscriptions[0], filled.open_invoices[0], filled.customers[2]
    client.v1.subscriptions.cancel(cancelled)
    client.v1.invoices.pay(invoice, {"paid_out_of_band": True})
    client.v1.customers.delete(gone)
    # A customer tagged on a child only: the newest subscription carrying the key wins.
    client.v1.subscriptions.update(filled.subscriptions[1], {"metadata": {PERSON: "from-subscription"}})

    report = incremental_sync(revenue_settings, rate=None)
    assert report.kind == "incremental" and report.events >= 4
    with unit_of_work(revenue_settings.database_url) as s:
        sub = s.get(StripeSubscription, cancelled)
        assert sub is not None and sub.status == "canceled" and sub.ended_at is not None
        inv = s.get(StripeInvoice, invoice)
        assert inv is not None and inv.status == "paid" and inv.paid_at is not None
        assert s.scalar(select(func.sum(RevenueScheduleEntry.net)).where(
            RevenueScheduleEntry.source_id == invoice)) == 10000
        customer = s.get(StripeCustomer, gone)
        assert customer is not None and customer.deleted_at is not None
        tagged = s.get(StripeCustomer, filled.customers[1])
        assert tagged is not None
        assert (tagged.person_distinct_id, tagged.person_source) == (
            "from-subscription", f"subscription:{filled.subscriptions[1]}")


def test_a_cursor_older_than_the_events_window_runs_a_full_sync(fresh_stripe_sandbox: Any,
                                                                revenue_settings: Settings) -> None:
    fill(fresh_stripe_sandbox, customers=3, subscriptions=0, invoices=0)
    full_sync(revenue_settings, rate=None)
    with unit_of_work(revenue_settings.database_url) as s:
        for name in ("events", "events_checked"):
            cursor = s.get(RevenueSyncCursor, name)
            assert cursor is not None
            cursor.value = int(time.time()) - 31 * 86400
    assert incremental_sync(revenue_settings, rate=None).kind == "full"


def test_an_account_without_events_for_a_month_does_not_run_full_syncs(fresh_stripe_sandbox: Any,
                                                                      revenue_settings: Settings) -> None:
    """Issue 18 defect 10: the newest event is 40 days old, but the events were read just now."""
    fill(fresh_stripe_sandbox, customers=2, subscriptions=0, invoices=0)
    assert full_sync(revenue_settings, rate=None).kind == "full"
    with unit_of_work(revenue_settings.database_url) as s:
        cursor = s.get(RevenueSyncCursor, "events")
        assert cursor is not None
        cursor.value = int(time.time()) - 40 * 86400  # the newest event Stripe has
    assert incremental_sync(revenue_settings, rate=None).kind == "incremental"
    assert incremental_sync(revenue_settings, rate=None).kind == "incremental"


def _serve_sandbox(revops_cli: list[str], *args: str) -> Iterator[str]:
    import socket
    import subprocess

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([*revops_cli, "sandbox", "stripe", "--port", str(port), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "sandbox did not start"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def sandbox_process(revops_cli: list[str]) -> Iterator[str]:
    """The sandbox in its own process, as in production Stripe is: the sync's threads do not share
    a GIL with the server, so the timing measures the limiter, not the emulator."""
    yield from _serve_sandbox(revops_cli)


@pytest.fixture
def seeded_sandbox_process(revops_cli: list[str], tmp_path: Path, settings: Settings) -> Iterator[str]:
    """A sandbox in its own process holding 600 bulk-seeded customers and what they bought."""
    sqlite_only(settings, "the token bucket sets the pace")  # before seeding: skipped runs cost nothing
    from sandbox.stripe.bulk_seed import seed
    from sandbox.stripe.core import Sandbox

    state_file = tmp_path / "stripe-sandbox.sqlite3"
    engine = Sandbox(state_file=state_file)
    try:
        seed(engine, customers=600)
    finally:
        engine.close()
    for url in _serve_sandbox(revops_cli, "--state-file", str(state_file)):
        # Its first API request runs what fell due while the state loaded: start-up, not pace.
        stripe.StripeClient("sk_test_sandbox", base_addresses={"api": url}).v1.events.list({"limit": 1})
        yield url


def sandbox_requests(url: str, *, reset: bool = False) -> dict[str, Any]:
    """What the sandbox itself counted: API requests served, when the first and the last came."""
    import json
    import urllib.request

    request = urllib.request.Request(f"{url}/_sandbox/requests", method="DELETE" if reset else "GET")
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - a loopback http:// URL
        return dict(json.loads(response.read()))


def test_rate_limit_sets_the_pace(sandbox_process: str, settings: Settings) -> None:
    sqlite_only(settings, "the token bucket sets the pace")
    from concurrent.futures import ThreadPoolExecutor
    from dataclasses import replace

    import stripe

    revenue_settings = replace(settings, stripe_api_base=sandbox_process, stripe_api_key="sk_test_sandbox")
    client = stripe.StripeClient("sk_test_sandbox", base_addresses={"api": sandbox_process})
    n, rate = 1000, 2.5
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: client.v1.customers.create({"email": f"r{i}@example.com"}), range(n)))
    started = time.monotonic()
    report = full_sync(revenue_settings, rate=rate, object_types=("customer",))
    total = time.monotonic() - started
    expected = n / (100 * rate)  # pages of 100 at `rate` requests per second
    # The paging (first request to last page written) is what the limit paces; rebuilding the
    # revenue schedule and persons afterwards is local work, reported beside it.
    assert expected * 0.8 <= report.paging_seconds <= expected * 1.2, (report.paging_seconds, total, report.requests)
    assert total < expected * 2
    assert len(warehouse_ids(revenue_settings, "customer")) == n


def test_a_binding_rate_limit_is_used_to_at_least_90_percent(seeded_sandbox_process: str,
                                                             settings: Settings) -> None:
    """Invoices (payments expanded, lines stored), invoice items, charges, refunds and
    subscriptions behind a limit the sync could outrun: the sandbox, counting on its side of the
    wire, sees the configured pace (never faster), with every request the sync made."""
    from dataclasses import replace

    url, rate = seeded_sandbox_process, 12.0
    revenue_settings = replace(settings, stripe_api_base=url, stripe_api_key="sk_test_sandbox")
    sandbox_requests(url, reset=True)
    report = full_sync(revenue_settings, rate=rate,
                       object_types=("invoice", "invoiceitem", "charge", "refund", "subscription"))
    seen = sandbox_requests(url)

    n = int(seen["requests"])
    assert n == report.requests and n >= 40, (n, report.requests)
    # n requests paced 1/rate apart span (n - 1)/rate seconds from the first to the last.
    achieved = (n - 1) / (seen["last"] - seen["first"])
    assert 0.9 * rate <= achieved <= 1.05 * rate, (achieved, n, seen)
    assert report.by_type_objects["invoice"] >= 2 * 600 * 0.9


def test_every_list_parameter_the_sync_sends_is_one_the_sdk_types_accept() -> None:
    """Pages are read as raw JSON, past the typed `client.v1` methods: the parameters are checked
    here against the SDK's TypedDicts instead, so a parameter the API removed fails a test."""
    from store.sync import CHILD_LIST_PARAMS, LIST_PATHS

    assert set(stripe_api.LISTED_OBJECTS) <= set(LIST_PATHS)
    for kind, (path, params_type, fixed) in LIST_PATHS.items():
        accepted = set(params_type.__annotations__)
        sent = {"limit", "created", "starting_after", *fixed}
        assert sent <= accepted, (kind, path, sent - accepted)
    for kind, params_type in CHILD_LIST_PARAMS.items():
        extra = {"subscription"} if kind == "subscription_item" else set()
        assert {"limit", "starting_after", *extra} <= set(params_type.__annotations__), kind


def test_429s_slow_the_sync_without_failing_it(fresh_stripe_sandbox: Any, revenue_settings: Settings) -> None:
    sqlite_only(revenue_settings, "Retry-After handling")
    fill(fresh_stripe_sandbox, customers=250, subscriptions=1, invoices=1)
    fresh_stripe_sandbox.set_faults({"seed": 7, "rules": [
        {"method": "GET", "path": "/v1/", "rate_limit": True, "retry_after": 0.2, "rate": 0.4}]})
    started = time.monotonic()
    report = full_sync(revenue_settings, rate=None)
    assert report.rate_limited > 0
    assert time.monotonic() - started >= 0.2  # Retry-After was honoured, at least once
    fresh_stripe_sandbox.clear_faults()
    assert_mirrors(fresh_stripe_sandbox, revenue_settings)


def test_subscription_discounts_reach_mrr_from_the_list_and_from_events(fresh_stripe_sandbox: Any,
                                                                        revenue_settings: Settings) -> None:
    from datetime import date, timedelta

    from domain.mrr import mrr_by_customer
    from store.revenue import subscriptions_for_mrr

    client = fresh_stripe_sandbox.client()
    customer = client.v1.customers.create({"email": "d@example.com", **CARD})  # type: ignore[typeddict-item]
    coupon = client.v1.coupons.create({"percent_off": 20, "duration": "forever"})
    sub = client.v1.subscriptions.create({"customer": customer.id, "discounts": [{"coupon": coupon.id}],
                                          "items": [{"price": "price_product_analytics_default"}]})
    full_sync(revenue_settings, rate=None)
    tomorrow = date.today() + timedelta(days=1)
    with unit_of_work(revenue_settings.database_url) as s:
        assert mrr_by_customer(subscriptions_for_mrr(s), tomorrow) == {customer.id: 36000}  # 450.00 − 20%
    client.v1.subscriptions.update(sub.id, {"items": [{"id": sub.items.data[0].id, "quantity": 2}]})
    incremental_sync(revenue_settings, rate=None)
    with unit_of_work(revenue_settings.database_url) as s:
        assert mrr_by_customer(subscriptions_for_mrr(s), tomorrow) == {customer.id: 72000}


@pytest.mark.postgres
def test_sync_and_the_seed_query_on_postgres(fresh_stripe_sandbox: Any, postgres_url: str) -> None:
    from dataclasses import replace
    from decimal import Decimal

    from sqlalchemy import text

    from store.db import engine_for
    from store.migrate import upgrade
    from tests.fixtures.app import make_settings

    upgrade(postgres_url)
    settings = replace(make_settings(postgres_url), stripe_api_base=fresh_stripe_sandbox.url,
                       stripe_api_key=fresh_stripe_sandbox.api_key)
    filled = fill(fresh_stripe_sandbox, customers=12, subscriptions=2, invoices=2)
    full_sync(settings, rate=None)
    assert_mirrors(fresh_stripe_sandbox, settings)
    fresh_stripe_sandbox.client().v1.subscriptions.cancel(filled.subscriptions[0])
    incremental_sync(settings, rate=None)
    with engine_for(postgres_url).connect() as conn:
        seed = "SELECT COUNT(*) FROM persons_revenue_analytics WHERE amount > 1000000"
        assert conn.execute(text(seed)).scalar() == 0
        # Customers 10 (tagged) and 11 (untagged) each paid a 1,200.00 invoice; 0 (tagged) a subscription.
        rows = conn.execute(text("SELECT person_id, amount FROM persons_revenue_analytics ORDER BY person_id")).all()
        assert [(p, Decimal(a)) for p, a in rows] == [("person-0", Decimal(450)), ("person-10", Decimal(1200))]
        status = conn.execute(text("SELECT status FROM stripe_subscriptions WHERE id = :id"),
                              {"id": filled.subscriptions[0]}).scalar()
        assert status == "canceled"


def test_new_balance_transactions_arrive_incrementally(fresh_stripe_sandbox: Any, revenue_settings: Settings) -> None:
    filled = fill(fresh_stripe_sandbox, customers=3, subscriptions=0, invoices=1)
    full_sync(revenue_settings, rate=None)
    before = len(warehouse_ids(revenue_settings, "balance_transaction"))
    client = fresh_stripe_sandbox.client()
    client.v1.invoices.pay(filled.open_invoices[0], {"paid_out_of_band": True})
    carded = client.v1.customers.create({"email": "card@example.com", **CARD})  # type: ignore[typeddict-item]
    client.v1.subscriptions.create({"customer": carded.id, "items": [{"price": "price_product_analytics_default"}]})
    assert len(sandbox_ids(fresh_stripe_sandbox, "balance_transaction")) > before
    incremental_sync(revenue_settings, rate=None)
    assert sorted(warehouse_ids(revenue_settings, "balance_transaction")) == sorted(
        sandbox_ids(fresh_stripe_sandbox, "balance_transaction"))
    assert sorted(warehouse_ids(revenue_settings, "charge")) == sorted(sandbox_ids(fresh_stripe_sandbox, "charge"))
