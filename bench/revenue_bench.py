"""Revenue benchmarks: sync throughput from the sandbox, deferred revenue and MRR at 1M invoice
lines, and p95 of the revenue endpoints at that size.

    .venv/bin/python bench/revenue_bench.py                 # everything, 1,000,000 lines
    .venv/bin/python bench/revenue_bench.py --lines 100000  # quicker
    .venv/bin/python bench/revenue_bench.py --only sync

Prints one line per figure. The 1M-line database is generated directly (not through Stripe):
invoices of 10 lines each with month-long service periods over two years, 10% of lines with a
discount, 2% of invoices with a credit note, and one subscription per 10 lines.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert  # noqa: E402

from domain import deferred, mrr  # noqa: E402
from settings import Settings  # noqa: E402
from store.db import unit_of_work  # noqa: E402
from store.migrate import upgrade  # noqa: E402
from store.warehouse import (  # noqa: E402
    StripeCreditNote,
    StripeCustomer,
    StripeInvoice,
    StripeInvoiceLine,
    StripePrice,
    StripeSubscription,
    StripeSubscriptionItem,
)

BASE_ENV = {"STRIPE_API_KEY": "sk_test_sandbox", "STRIPE_WEBHOOK_SECRET": "whsec_bench",
            "SECRET_KEY": "bench-secret", "SECURE_COOKIES": "false"}


def settings_for(url: str, **kw: Any) -> Settings:
    return replace(Settings.load({**BASE_ENV, "DATABASE_URL": url}, env_file=Path("/nonexistent")), **kw)


def bench_sync(objects: int) -> None:
    from sandbox.stripe.server import start_in_thread
    from store.sync import full_sync

    sandbox = start_in_thread()
    try:
        client = sandbox.client()
        t = time.monotonic()
        customers = []
        for i in range(objects):
            customers.append(client.v1.customers.create({"email": f"b{i}@example.com"}).id)
        created = time.monotonic() - t
        tmp = tempfile.mkdtemp(prefix="revenue-bench-")
        url = f"sqlite:///{tmp}/sync.db"
        upgrade(url)
        settings = settings_for(url, stripe_api_base=sandbox.url, stripe_api_key=sandbox.api_key)
        t = time.monotonic()
        report = full_sync(settings, rate=None)
        seconds = time.monotonic() - t
        print(f"sync: {report.objects} objects in {seconds:.2f} s = {report.objects / seconds:.0f} objects/s "
              f"({report.requests} requests, limit off, 8 workers; sandbox in the same process; "
              f"creating them took {created:.1f} s)")
    finally:
        sandbox.stop()


def bench_pure(lines: int) -> None:
    rng = random.Random(1)
    start = date(2025, 1, 1)
    invoices = []
    for i in range(lines // 10):
        day = start + timedelta(days=rng.randrange(730))
        invoices.append([deferred.Line(f"il_{i}_{j}", rng.randrange(1000, 100000), "usd", day,
                                       day + timedelta(days=rng.choice((30, 31, 90, 365))),
                                       discount=rng.randrange(0, 500) if j == 0 else 0) for j in range(10)])
    t = time.monotonic()
    rows = 0
    for inv in invoices:
        rows += len(deferred.recognise_invoice(inv, paid_on=inv[0].period_start,
                                               reductions=500 if rng.random() < 0.02 else 0))
    seconds = time.monotonic() - t
    print(f"deferred (pure domain): {lines} lines → {rows} month rows in {seconds:.2f} s")

    subs = []
    for i in range(lines // 10):
        interval = rng.choice(("month", "month", "year"))
        subs.append(mrr.Subscription(
            f"sub_{i}", f"cus_{i % 50000}", "usd", "active", start + timedelta(days=rng.randrange(730)),
            (mrr.Item(rng.randrange(1000, 50000), rng.randrange(1, 5), interval),),
            trial_end=None, ended_at=None if rng.random() < 0.8 else start + timedelta(days=rng.randrange(730, 900))))
    days = [date(2026, m, 1) for m in range(1, 13)]
    t = time.monotonic()
    series = mrr.mrr_series(subs, days)
    moves = [mrr.movements(a, b) for a, b in zip(series, series[1:], strict=False)]
    seconds = time.monotonic() - t
    print(f"MRR (pure domain): {len(subs)} subscriptions × 12 months + movements in {seconds:.2f} s "
          f"(Dec MRR {sum(series[-1].values())}, {len(moves)} movement sets)")


def generate(url: str, lines: int) -> None:
    rng = random.Random(2)
    now = datetime.now(UTC)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    n_invoices, n_customers = lines // 10, max(lines // 20, 1)
    with unit_of_work(url) as s:
        s.execute(insert(StripeCustomer), [
            {"id": f"cus_{i}", "created": start, "raw": {"metadata": {}}, "synced_at": now,
             "person_distinct_id": f"person-{i % (n_customers // 2 or 1)}", "person_source": "customer",
             "group_key": f"org-{i % 1000}", "group_source": "customer"} for i in range(n_customers)])
        s.execute(insert(StripePrice), [
            {"id": f"price_{i}", "created": start, "raw": {}, "synced_at": now, "currency": "usd",
             "unit_amount": 1000 * (i + 1), "type": "recurring", "interval": "year" if i % 3 == 0 else "month",
             "interval_count": 1, "active": True} for i in range(10)])
    chunk = 20000
    for base in range(0, n_invoices, chunk // 10):
        invoices, items, subs, sub_items, notes = [], [], [], [], []
        for i in range(base, min(base + chunk // 10, n_invoices)):
            paid = start + timedelta(days=rng.randrange(700), seconds=rng.randrange(86400))
            customer = f"cus_{i % n_customers}"
            invoices.append({"id": f"in_{i}", "created": paid, "raw": {}, "synced_at": now, "customer_id": customer,
                             "status": "paid", "currency": "usd", "total": 0, "amount_paid": 0, "paid_at": paid})
            for j in range(10):
                begin = paid + timedelta(days=rng.randrange(5))
                items.append({"id": f"il_{i}_{j}", "created": paid, "raw": {}, "synced_at": now,
                              "invoice_id": f"in_{i}", "amount": rng.randrange(1000, 100000),
                              "discount_amount": rng.randrange(0, 900) if rng.random() < 0.1 else 0,
                              "currency": "usd", "quantity": 1, "period_start": begin,
                              "period_end": begin + timedelta(days=rng.choice((30, 31, 92, 365)))})
            if rng.random() < 0.02:
                notes.append({"id": f"cn_{i}", "created": paid, "raw": {}, "synced_at": now, "invoice_id": f"in_{i}",
                              "customer_id": customer, "total": 500, "currency": "usd", "status": "issued"})
            subs.append({"id": f"sub_{i}", "created": paid, "raw": {}, "synced_at": now, "customer_id": customer,
                         "status": "active" if rng.random() < 0.85 else "canceled", "currency": "usd",
                         "start_date": paid, "ended_at": None})
            sub_items.append({"id": f"si_{i}", "created": paid, "raw": {}, "synced_at": now,
                              "subscription_id": f"sub_{i}", "price_id": f"price_{i % 10}",
                              "quantity": rng.randrange(1, 4)})
        with unit_of_work(url) as s:
            s.execute(insert(StripeInvoice), invoices)
            s.execute(insert(StripeInvoiceLine), items)
            if notes:
                s.execute(insert(StripeCreditNote), notes)
            for sub in subs:
                if sub["status"] == "canceled":
                    sub["ended_at"] = cast(datetime, sub["start_date"]) + timedelta(days=rng.randrange(30, 400))
            s.execute(insert(StripeSubscription), subs)
            s.execute(insert(StripeSubscriptionItem), sub_items)


def bench_db(lines: int, requests: int, db: str | None, recompute: bool = True) -> None:
    from store import revenue as queries

    if db:  # a database generated by an earlier run (`--db sqlite:////tmp/…/big.db`)
        url = db
    else:
        tmp = tempfile.mkdtemp(prefix="revenue-bench-")
        url = f"sqlite:///{tmp}/big.db"
        upgrade(url)
        t = time.monotonic()
        generate(url, lines)
        print(f"generated {lines} invoice lines ({lines // 10} invoices and subscriptions) in "
              f"{time.monotonic() - t:.1f} s at {url}")

    if recompute:
        t = time.monotonic()
        with unit_of_work(url) as s:
            written = queries.recompute_invoices(s, queries.all_invoice_ids(s))
        print(f"deferred (warehouse, SQLite): {lines} lines → {written} schedule rows in "
              f"{time.monotonic() - t:.2f} s")

    t = time.monotonic()
    with unit_of_work(url) as s:
        subs = queries.subscriptions_for_mrr(s)
    loaded = time.monotonic() - t
    t = time.monotonic()
    series = mrr.mrr_series(subs, [date(2026, m, 1) for m in range(1, 13)])
    print(f"MRR (warehouse, SQLite): load {len(subs)} subscriptions {loaded:.2f} s + 12 months "
          f"{time.monotonic() - t:.2f} s (Dec MRR {sum(series[-1].values())})")

    from web import create_app

    settings = settings_for(url)
    app = create_app(settings, temporal=object())
    with unit_of_work(url) as s:
        from store.accounts import add_user, create_token

        email = f"bench-{time.time_ns()}@example.com"
        add_user(s, email, "bench-password-1", "viewer")
        token = create_token(s, email)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    for path in ("/api/revenue/summary", "/api/revenue/mrr", "/api/revenue/top-customers",
                 "/api/revenue/persons", "/api/revenue/groups", "/revenue"):
        timings = []
        for _ in range(requests):
            t = time.monotonic()
            response = client.get(path, headers=headers)
            timings.append(time.monotonic() - t)
            assert response.status_code == 200, (path, response.status_code, response.get_data()[:300])
        p95 = statistics.quantiles(timings, n=20)[-1] if len(timings) >= 2 else timings[0]
        print(f"p95 {path}: {p95 * 1000:.0f} ms (median {statistics.median(timings) * 1000:.0f} ms, "
              f"{requests} requests, {lines} lines)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--objects", type=int, default=3000, help="customers created in the sandbox for the sync")
    parser.add_argument("--requests", type=int, default=20, help="requests per endpoint for p95")
    parser.add_argument("--only", choices=("sync", "pure", "db"))
    parser.add_argument("--db", help="reuse a database generated by an earlier run")
    parser.add_argument("--no-recompute", action="store_true", help="with --db: keep its revenue schedule")
    args = parser.parse_args()
    if args.only in (None, "sync"):
        bench_sync(args.objects)
    if args.only in (None, "pure"):
        bench_pure(args.lines)
    if args.only in (None, "db"):
        bench_db(args.lines, args.requests, args.db, recompute=not args.no_recompute)


if __name__ == "__main__":
    main()
