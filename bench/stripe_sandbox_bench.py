"""Stripe sandbox throughput through the real SDK: objects created/s and list pages/s.

Run: .venv/bin/python bench/stripe_sandbox_bench.py [--customers N] [--threads T]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import stripe  # noqa: E402

from sandbox.stripe.server import start_in_thread  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()

    sb = start_in_thread()
    try:
        client = sb.client(max_network_retries=0)
        client.v1.customers.list({"limit": 1})  # warm up connection and schema caches

        t0 = time.perf_counter()
        for i in range(args.customers):
            client.v1.customers.create({"email": f"bench-{i}@example.com", "metadata": {"i": str(i)}})
        serial = args.customers / (time.perf_counter() - t0)

        n = args.customers
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.threads) as pool:
            list(
                pool.map(
                    lambda i: sb.client(max_network_retries=0).v1.customers.create({"email": f"p{i}@x.io"}), range(n)
                )
            )
        parallel = n / (time.perf_counter() - t0)

        # Invoices with an item each: the heavier write path (lines, totals, events).
        cus = client.v1.customers.create({"email": "inv@example.com"})
        m = max(50, args.customers // 10)
        t0 = time.perf_counter()
        for _ in range(m):
            inv = client.v1.invoices.create(
                {"customer": cus.id, "collection_method": "send_invoice", "days_until_due": 30}
            )
            client.v1.invoice_items.create({"customer": cus.id, "invoice": inv.id, "amount": 100, "currency": "usd"})
        invoice_rate = m / (time.perf_counter() - t0)

        results = {}
        for limit in (10, 100):
            pages = 0
            t0 = time.perf_counter()
            page = client.v1.customers.list({"limit": limit})
            pages += 1
            while page.has_more and pages < 200:
                page = client.v1.customers.list({"limit": limit, "starting_after": page.data[-1].id})
                pages += 1
            results[limit] = pages / (time.perf_counter() - t0)

        # The same walk over plain HTTP: what the server costs without the SDK's object building.
        import requests

        session = requests.Session()
        headers = {"Authorization": f"Bearer {sb.api_key}"}
        raw_pages = 0
        t0 = time.perf_counter()
        body = session.get(f"{sb.url}/v1/customers?limit=100", headers=headers, timeout=10).json()
        raw_pages += 1
        while body["has_more"] and raw_pages < 200:
            last = body["data"][-1]["id"]
            body = session.get(
                f"{sb.url}/v1/customers?limit=100&starting_after={last}", headers=headers, timeout=10
            ).json()
            raw_pages += 1
        raw_rate = raw_pages / (time.perf_counter() - t0)

        total = 2 * args.customers
        print(
            f"machine: {os.cpu_count()} cores ({platform.machine()}), Python {platform.python_version()}, "
            f"stripe SDK {stripe.VERSION} (requests), "
            "sandbox keep-alive HTTP/1.1 server"
        )
        print(f"customers created/s (1 client, sequential): {serial:8.0f}")
        print(f"customers created/s ({args.threads} threads):          {parallel:8.0f}")
        print(f"invoice + item pairs created/s (sequential): {invoice_rate:8.0f}")
        print(f"list pages/s, limit=10  ({total} customers):   {results[10]:8.0f}")
        print(f"list pages/s, limit=100 ({total} customers):   {results[100]:8.0f}")
        print(f"list pages/s, limit=100, raw HTTP (no SDK):   {raw_rate:8.0f}")
    finally:
        sb.stop()


if __name__ == "__main__":
    main()
