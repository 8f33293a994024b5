"""Revenue at scale (issue 13): full recompute, incremental rebuild, the first request to every
revenue endpoint after a warehouse write, and sync throughput; each figure beside its goal, with the
machine's load average, then one summary line:

    revenue-scale: lines=N recompute_s=… incremental_s=… endpoint_cold_p95_ms=… sync_objects_per_s=…

    .venv/bin/python bench/revenue_bench.py                          # SQLite, 1,000,000 lines
    .venv/bin/python bench/revenue_bench.py --db postgresql+psycopg://user@host/db   # PostgreSQL
    .venv/bin/python bench/revenue_bench.py --lines 100000 --only db # quicker
    .venv/bin/python bench/revenue_bench.py --only pure              # the domain rules alone

The warehouse is generated directly (not through Stripe): see `generate`. Run it alone on the
machine: figures taken while test suites ran were up to nine times slower.
"""

from __future__ import annotations

import argparse
import os
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

from sqlalchemy import func, insert, select, update  # noqa: E402

from domain import deferred, mrr  # noqa: E402
from settings import Settings  # noqa: E402
from store.db import unit_of_work  # noqa: E402
from store.migrate import upgrade  # noqa: E402
from store.warehouse import (  # noqa: E402
    StripeCreditNote,
    StripeCustomer,
    StripeCustomerBalanceTransaction,
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


PLAN_EVERY = 50  # one customer in 50 holds a prepaid plan and pays its usage from the credit


def generate(url: str, lines: int) -> None:
    """`lines` invoice lines as a sync would have written them: 10 lines per paid invoice, service
    periods of 30/31/92/365 days over two years, 10% of lines discounted, 10% of invoices taxed, 2%
    with a credit note after payment; one customer in 50 holds a prepaid plan (an upfront invoice of
    12,000.00 for 15,000.00 of credit, granted on the balance) and pays its usage invoices from that
    credit — the books the ledger handles; one subscription per invoice on 10 recurring prices."""
    rng = random.Random(2)
    now = datetime.now(UTC)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    n_invoices, n_customers = lines // 10, max(lines // 20, 1)
    plan_customers = range(0, n_customers, PLAN_EVERY)
    with unit_of_work(url) as s:
        s.execute(insert(StripeCustomer), [
            {"id": f"cus_{i}", "created": start, "raw": {"metadata": {}, "balance": 0}, "synced_at": now,
             "person_distinct_id": f"person-{i % (n_customers // 2 or 1)}", "person_source": "customer",
             "group_key": f"org-{i % 1000}", "group_source": "customer"} for i in range(n_customers)])
        prices = []
        for i in range(10):
            interval = "year" if i % 3 == 0 else "month"
            raw = {"id": f"price_{i}", "object": "price", "currency": "usd", "unit_amount": 1000 * (i + 1),
                   "billing_scheme": "per_unit", "type": "recurring",
                   "recurring": {"interval": interval, "interval_count": 1, "usage_type": "licensed"}}
            prices.append({"id": f"price_{i}", "created": start, "raw": raw, "synced_at": now, "currency": "usd",
                           "unit_amount": 1000 * (i + 1), "type": "recurring", "interval": interval,
                           "interval_count": 1, "active": True})
        s.execute(insert(StripePrice), prices)
        plan_invoices, plan_lines, grants = [], [], []
        for c in plan_customers:
            paid = start + timedelta(days=rng.randrange(300), seconds=rng.randrange(86400))
            key = f"bench:plan-{c}"
            plan_invoices.append({"id": f"in_plan_{c}", "created": paid, "raw": {}, "synced_at": now,
                                  "customer_id": f"cus_{c}", "status": "paid", "currency": "usd",
                                  "total": 1_200_000, "amount_paid": 1_200_000, "paid_at": paid, "plan_key": key})
            plan_lines.append({"id": f"il_plan_{c}", "created": paid, "raw": {}, "synced_at": now,
                               "invoice_id": f"in_plan_{c}", "amount": 1_200_000, "currency": "usd", "quantity": 1,
                               "period_start": paid, "period_end": paid + timedelta(days=365)})
            grants.append({"id": f"cbtxn_plan_{c}", "created": paid + timedelta(minutes=5), "raw": {},
                           "synced_at": now, "customer_id": f"cus_{c}", "amount": -1_500_000, "currency": "usd",
                           "type": "adjustment", "plan_key": key})
        s.execute(insert(StripeInvoice), plan_invoices)
        s.execute(insert(StripeInvoiceLine), plan_lines)
        s.execute(insert(StripeCustomerBalanceTransaction), grants)
    chunk = 20000
    for base in range(0, n_invoices, chunk // 10):
        invoices, items, subs, sub_items, notes = [], [], [], [], []
        for i in range(base, min(base + chunk // 10, n_invoices)):
            paid = start + timedelta(days=rng.randrange(700), seconds=rng.randrange(86400))
            c = i % n_customers
            customer = f"cus_{c}"
            net = 0
            for j in range(10):
                begin = paid + timedelta(days=rng.randrange(5))
                amount = rng.randrange(1000, 100000)
                discount = rng.randrange(0, 900) if rng.random() < 0.1 else 0
                net += amount - discount
                items.append({"id": f"il_{i}_{j}", "created": paid, "raw": {}, "synced_at": now,
                              "invoice_id": f"in_{i}", "amount": amount, "discount_amount": discount,
                              "currency": "usd", "quantity": 1, "period_start": begin,
                              "period_end": begin + timedelta(days=rng.choice((30, 31, 92, 365)))})
            tax = net // 5 if rng.random() < 0.1 else 0
            on_plan = c % PLAN_EVERY == 0
            invoices.append({"id": f"in_{i}", "created": paid, "raw": {}, "synced_at": now, "customer_id": customer,
                             "status": "paid", "currency": "usd", "total": net + tax, "tax": tax,
                             "amount_paid": 0 if on_plan else net + tax,
                             "balance_applied": net + tax if on_plan else 0, "paid_at": paid, "finalized_at": paid})
            if rng.random() < 0.02:
                notes.append({"id": f"cn_{i}", "created": paid + timedelta(days=20), "raw": {"type": "post_payment"},
                              "synced_at": now, "invoice_id": f"in_{i}", "customer_id": customer, "total": 500,
                              "currency": "usd", "status": "issued"})
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


ENDPOINTS = ("/api/revenue/summary", "/api/revenue/mrr", "/api/revenue/top-customers", "/api/revenue/bridge",
             "/api/revenue/cohorts", "/api/revenue/committed", "/api/revenue/one-off", "/api/revenue/persons",
             "/api/revenue/groups", "/api/revenue/customers/cus_1", "/revenue")
GOALS = {"recompute_s": 10.0, "incremental_s": 2.0, "endpoint_cold_p95_ms": 200.0, "sync_objects_per_s": 5000.0}


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


def _figure(name: str, value: float, unit: str, detail: str = "") -> None:
    goal = GOALS[name]
    ok = value <= goal if name != "sync_objects_per_s" else value >= goal
    print(f"{name}: {value:,.2f} {unit} (goal {'≥' if name == 'sync_objects_per_s' else '≤'} {goal:,.0f} {unit}: "
          f"{'met' if ok else 'NOT met'}; {_load()}){' — ' + detail if detail else ''}", flush=True)


def _has_data(url: str) -> bool:
    with unit_of_work(url) as s:
        return bool(s.scalar(select(func.count()).select_from(StripeInvoice)))


def bench_db(lines: int, requests: int, db: str | None, recompute: bool = True) -> dict[str, float]:
    """Recompute, incremental rebuild and cold endpoint latency on a warehouse of `lines` lines."""
    from store import revenue as queries

    url = db or f"sqlite:///{tempfile.mkdtemp(prefix='revenue-bench-')}/big.db"
    upgrade(url)
    if not _has_data(url):
        t = time.monotonic()
        generate(url, lines)
        print(f"generated {lines:,} invoice lines ({lines // 10:,} invoices and subscriptions, "
              f"{max(lines // 20, 1):,} customers) in {time.monotonic() - t:.1f} s at {url} ({_load()})", flush=True)
    out: dict[str, float] = {}
    if recompute:
        from store import mrr_aggregates

        refresh, spent = mrr_aggregates.refresh, [0.0]

        def timed_refresh(*args: Any) -> None:
            started = time.monotonic()
            refresh(*args)
            spent[0] += time.monotonic() - started

        mrr_aggregates.refresh = timed_refresh  # type: ignore[assignment]
        try:
            t = time.monotonic()
            with unit_of_work(url) as s:
                written = queries.rebuild_all(s)
            total = time.monotonic() - t
        finally:
            mrr_aggregates.refresh = refresh
        out["recompute_s"] = total - spent[0]
        _figure("recompute_s", out["recompute_s"], "s",
                f"{written:,} schedule rows and the revenue pre-aggregates written and committed; the MRR "
                f"pre-aggregates' full refresh in the same transaction took {spent[0]:.2f} s more "
                f"(total {total:.2f} s)")

    # A sync that changed 1,000 invoices (a line's amount, and what was paid with it): the rebuild
    # of their customers brings the schedule, its totals and MRR up to date.
    rng = random.Random(3)
    with unit_of_work(url) as s:
        ids = sorted(s.scalars(select(StripeInvoice.id).where(StripeInvoice.plan_key.is_(None))
                               .order_by(StripeInvoice.id).limit(200_000)))
    changed = rng.sample(ids, min(1000, len(ids)))
    with unit_of_work(url) as s:
        for iid in changed:
            s.execute(update(StripeInvoiceLine).where(StripeInvoiceLine.id == f"il_{iid[3:]}_0")
                      .values(amount=StripeInvoiceLine.amount + 100))
            s.execute(update(StripeInvoice).where(StripeInvoice.id == iid, StripeInvoice.amount_paid > 0)
                      .values(total=StripeInvoice.total + 100, amount_paid=StripeInvoice.amount_paid + 100))
    t = time.monotonic()
    with unit_of_work(url) as s:
        queries.rebuild(s, invoices=changed, charges=(), customers=())
    out["incremental_s"] = time.monotonic() - t
    _figure("incremental_s", out["incremental_s"], "s", f"{len(changed):,} invoices changed, their customers rebuilt, "
            "committed")

    from web import create_app, serving_from_here

    app = create_app(settings_for(url), temporal=object())
    serving_from_here()  # as `revops web` does before it serves
    with unit_of_work(url) as s:
        from store.accounts import add_user, create_token

        email = f"bench-{time.time_ns()}@example.com"
        add_user(s, email, "bench-password-1", "viewer")
        token = create_token(s, email)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    timings: dict[str, list[float]] = {path: [] for path in ENDPOINTS}
    for _ in range(requests):
        # Every round after a warehouse write (5 invoices' customers rebuilt): each request is the
        # first one after a sync, so no report comes from the cache.
        with unit_of_work(url) as s:
            queries.rebuild(s, invoices=rng.sample(ids, 5), charges=(), customers=())
        for path in ENDPOINTS:
            t = time.monotonic()
            response = client.get(path, headers=headers)
            timings[path].append(time.monotonic() - t)
            assert response.status_code == 200, (path, response.status_code, response.get_data()[:300])
    worst = 0.0
    for path, found in timings.items():
        p95 = statistics.quantiles(found, n=20)[-1] if len(found) >= 2 else found[0]
        worst = max(worst, p95)
        print(f"  cold {path}: p95 {p95 * 1000:.0f} ms, median {statistics.median(found) * 1000:.0f} ms "
              f"({len(found)} requests, each the first after a warehouse write)", flush=True)
    out["endpoint_cold_p95_ms"] = worst * 1000
    _figure("endpoint_cold_p95_ms", out["endpoint_cold_p95_ms"], "ms", "the slowest endpoint's p95")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--objects", type=int, default=50_000, help="objects in the sandbox for the sync")
    parser.add_argument("--requests", type=int, default=20, help="cold requests per endpoint for p95")
    parser.add_argument("--only", choices=("sync", "pure", "db"))
    parser.add_argument("--db", help="a database URL (PostgreSQL: postgresql+psycopg://…); generated when empty")
    parser.add_argument("--no-recompute", action="store_true", help="with --db: keep its revenue schedule")
    args = parser.parse_args()
    figures: dict[str, float] = {}
    print(f"revenue bench: {args.lines:,} lines, {os.cpu_count()} cores, {_load()}", flush=True)
    if args.only == "pure":
        bench_pure(args.lines)
        return
    if args.only in (None, "db"):
        figures.update(bench_db(args.lines, args.requests, args.db, recompute=not args.no_recompute))
    if args.only in (None, "sync"):
        from bench.sync_bench import measure_sync

        found = measure_sync(args.objects, args.db if args.db and args.db.startswith("postgresql") else None)
        figures["sync_objects_per_s"] = found["objects_per_s"]
        _figure("sync_objects_per_s", found["objects_per_s"], "objects/s",
                f"{found['objects']:,.0f} objects, sandbox in its own process; rate-limited run kept "
                f"{found['rate_limited_ratio'] * 100:.0f}% of the configured rate (goal ≥ 90%)")

    def shown(name: str, digits: int) -> str:
        return f"{figures[name]:.{digits}f}" if name in figures else "-"

    print(f"revenue-scale: lines={args.lines} recompute_s={shown('recompute_s', 2)} "
          f"incremental_s={shown('incremental_s', 2)} endpoint_cold_p95_ms={shown('endpoint_cold_p95_ms', 0)} "
          f"sync_objects_per_s={shown('sync_objects_per_s', 0)}", flush=True)


if __name__ == "__main__":
    main()
