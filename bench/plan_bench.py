"""Plan workflow benchmark: the local stack from API call to step done, against bare SDK calls.

    .venv/bin/python bench/plan_bench.py [--plans 40] [--in-flight 100]

Stands up what `make dev` runs, in one process: the Temporal dev server, the Stripe sandbox, the
worker (its own thread and event loop) and the Flask app on a real port with a SQLite database.
Prints:
  1. p50/p95 of `POST /api/plans/{id}/actions/create_customer` and `…/create_invoice` (HTTP call
     → update done → row projected), beside p50/p95 of the same Stripe calls the activities make,
     made directly with the SDK; the ratio is the overhead of the API + Temporal + projection;
  2. plans completed per second with `--in-flight` plans driven at once through the whole upfront
     path (customer, invoice, send, credit armed, paid out of band → webhook → credit, schedule).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402

from bench._support import dev_server_args, serve, temporal_binary  # noqa: E402
from sandbox.stripe.server import start_in_thread  # noqa: E402
from settings import Settings  # noqa: E402
from store.accounts import add_user, create_token  # noqa: E402
from store.db import unit_of_work  # noqa: E402
from store.migrate import upgrade  # noqa: E402
from worker import WorkerThread  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def ms(value: float) -> str:
    return f"{value * 1000:7.1f} ms"


class Bench:
    def __init__(self, env: WorkflowEnvironment, tmp: Path) -> None:
        self.sandbox = start_in_thread()
        url = f"sqlite:///{tmp / 'bench.db'}"
        upgrade(url)
        secret = "whsec_" + secrets.token_hex(16)  # replaced by the endpoint's own below
        self.settings = Settings.load({
            "DATABASE_URL": url, "STRIPE_API_KEY": self.sandbox.api_key, "STRIPE_API_BASE": self.sandbox.url,
            "STRIPE_WEBHOOK_SECRET": secret, "SECRET_KEY": "bench", "SECURE_COOKIES": "false",
            "TEMPORAL_ADDRESS": env.client.service_client.config.target_host, "TEMPORAL_TASK_QUEUE": "bench",
            "INVOICE_POLL_SECONDS": "3600",
        }, env_file=Path("/nonexistent"))
        with unit_of_work(url) as session:
            add_user(session, "bench@example.com", "bench-password", "operator")
            self.token = create_token(session, "bench@example.com")
        from temporal_client import connect
        from web import create_app
        from web.temporal_bridge import TemporalBridge

        self.app = create_app(self.settings, temporal=TemporalBridge(lambda: connect(self.settings)))
        self.server, _, port = serve(self.app)
        self.base = f"http://127.0.0.1:{port}"
        # As a production endpoint for the plans would be: only the payment-gate events. (The sandbox
        # delivers one event at a time; with every event type, 100 plans queue ~1,500 deliveries.)
        endpoint = self.sandbox.client().v1.webhook_endpoints.create({
            "url": self.base + "/webhooks/stripe",
            "enabled_events": ["invoice.paid", "invoice.voided", "invoice.marked_uncollectible"]})
        self.settings = replace(self.settings, stripe_webhook_secret=str(endpoint.secret))
        self.app.extensions["revops.settings"] = self.settings
        self.worker = WorkerThread(self.settings)
        self.worker.start()
        self.http = threading.local()
        self.steps: list[float] = []  # plan created → credit armed (5 API calls)
        self.gates: list[float] = []  # invoice paid → webhook → credit applied on the row
        self.start = (datetime.fromtimestamp(self.sandbox.now(), UTC).date() + timedelta(days=5)).isoformat()

    def session(self) -> requests.Session:
        if not hasattr(self.http, "s"):
            self.http.s = requests.Session()
            self.http.s.headers["Authorization"] = f"Bearer {self.token}"
        return self.http.s  # type: ignore[no-any-return]

    def call(self, method: str, path: str, json: Any = None) -> dict[str, Any]:
        response = self.session().request(method, self.base + path, json=json, timeout=120)
        if response.status_code >= 300:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return dict(response.json())

    def new_plan(self, n: int) -> int:
        return int(self.call("POST", "/api/plans", {
            "company_name": f"Bench {n}", "customer_email": f"bench{n}@example.test", "credit_amount": "1200.00",
            "discount": "0", "price": "1200.00", "start_date": self.start, "term_months": 12,
            "products": ["product_analytics"]})["id"])

    def timed_action(self, plan_id: int, action: str) -> float:
        began = time.perf_counter()
        self.call("POST", f"/api/plans/{plan_id}/actions/{action}")
        return time.perf_counter() - began

    # The same Stripe requests the two activities make, without API, Temporal or database.
    def direct_customer(self, n: int) -> tuple[float, str]:
        client = self.sandbox.client(max_network_retries=2)
        email = f"direct{n}@example.test"
        began = time.perf_counter()
        list(client.v1.customers.list({"email": email, "limit": 100}).auto_paging_iter())
        customer = client.v1.customers.create({"email": email, "name": f"Direct {n}",
                                               "metadata": {"plan_id": str(n)}},
                                              {"idempotency_key": f"direct-{n}:create-customer"})
        return time.perf_counter() - began, customer.id

    def direct_invoice(self, n: int, customer_id: str) -> float:
        client = self.sandbox.client(max_network_retries=2)
        began = time.perf_counter()
        list(client.v1.invoices.list({"customer": customer_id, "limit": 100}).auto_paging_iter())
        invoice = client.v1.invoices.create(
            {"customer": customer_id, "collection_method": "send_invoice", "days_until_due": 30,
             "auto_advance": False, "currency": "usd", "metadata": {"plan_id": str(n)},
             "pending_invoice_items_behavior": "exclude"}, {"idempotency_key": f"direct-{n}:create-invoice"})
        assert invoice.id
        client.v1.invoice_items.create(
            {"customer": customer_id, "invoice": invoice.id, "currency": "usd",
             "price_data": {"currency": "usd", "product": "prod_posthog_credit", "unit_amount": 120000},
             "quantity": 1}, {"idempotency_key": f"direct-{n}:create-invoice-item"})
        client.v1.customers.retrieve(customer_id)
        try:
            client.v1.customers.tax_ids.list(customer_id, {"limit": 1})
        except Exception:  # noqa: BLE001,S110 - the activity tolerates a sandbox without tax ids too
            pass
        return time.perf_counter() - began

    def full_path(self, n: int) -> float:
        began = time.perf_counter()
        pid = self.new_plan(n)
        for action in ("create_customer", "create_invoice", "send_invoice", "apply_credit"):
            plan = self.call("POST", f"/api/plans/{pid}/actions/{action}")
        self.steps.append(time.perf_counter() - began)
        paid = time.perf_counter()
        self.sandbox.client().v1.invoices.pay(plan["invoice_id"], {"paid_out_of_band": True})
        while True:
            plan = self.call("GET", f"/api/plans/{pid}")
            if plan["credit_applied_at"]:
                break
            time.sleep(0.5)  # 100 pollers at 20/s each would starve the one-process stack
        self.gates.append(time.perf_counter() - paid)
        self.call("POST", f"/api/plans/{pid}/actions/schedule_subscription")
        return time.perf_counter() - began

    def close(self) -> None:
        self.worker.stop()
        self.server.shutdown()
        self.sandbox.stop()


async def main(plans: int, in_flight: int) -> None:
    env = await WorkflowEnvironment.start_local(dev_server_existing_path=temporal_binary(),
                                                dev_server_extra_args=dev_server_args())
    try:
        with tempfile.TemporaryDirectory() as tmp:
            bench = Bench(env, Path(tmp))
            try:
                await asyncio.to_thread(run, bench, plans, in_flight)
            finally:
                bench.close()
    finally:
        await env.shutdown()


def run(bench: Bench, plans: int, in_flight: int) -> None:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    # Warm up: connections, workflow code, the sandbox.
    for n in range(3):
        pid = bench.new_plan(10_000 + n)
        bench.timed_action(pid, "create_customer")
        bench.timed_action(pid, "create_invoice")
        bench.direct_invoice(20_000 + n, bench.direct_customer(20_000 + n)[1])

    api_customer, api_invoice, sdk_customer, sdk_invoice = [], [], [], []
    for n in range(plans):
        pid = bench.new_plan(n)
        api_customer.append(bench.timed_action(pid, "create_customer"))
        api_invoice.append(bench.timed_action(pid, "create_invoice"))
        took, customer_id = bench.direct_customer(n)
        sdk_customer.append(took)
        sdk_invoice.append(bench.direct_invoice(n, customer_id))

    print(f"Sequential, {plans} plans (time from the API call until the step is done and projected):")
    print(f"{'step':<18}{'API p50':>12}{'API p95':>12}{'SDK p50':>12}{'SDK p95':>12}{'ratio p50':>11}")
    for name, api, sdk in (("create_customer", api_customer, sdk_customer),
                           ("create_invoice", api_invoice, sdk_invoice)):
        print(f"{name:<18}{ms(pct(api, .5)):>12}{ms(pct(api, .95)):>12}{ms(pct(sdk, .5)):>12}"
              f"{ms(pct(sdk, .95)):>12}{pct(api, .5) / pct(sdk, .5):>10.1f}x")

    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=in_flight) as pool:
        durations = list(pool.map(bench.full_path, range(100_000, 100_000 + in_flight)))
    elapsed = time.perf_counter() - began
    print(f"\n{in_flight} upfront plans in flight (6 API calls + payment webhook each): "
          f"{in_flight / elapsed:.1f} plans/s, all done in {elapsed:.1f} s; "
          f"per plan p50 {statistics.median(durations):.1f} s, p95 {pct(durations, .95):.1f} s")
    with unit_of_work(bench.settings.database_url) as session:
        from sqlalchemy import select

        from store.models import InboundEvent

        rows = session.execute(
            select(InboundEvent.event_type, InboundEvent.received_at, InboundEvent.processed_at)).all()
    handled = [(done - got).total_seconds() for _, got, done in rows if done is not None and got is not None]
    print(f"  webhook deliveries received: {len(rows)} ({len(rows) / (in_flight + 2 * plans + 6):.0f} per plan), "
          f"handler p50 {ms(pct(handled, .5)).strip()} from stored to processed")
    print(f"  of which: create row → credit armed p50 {statistics.median(bench.steps):.1f} s; "
          f"paid → credit applied (payment webhook) p50 {statistics.median(bench.gates):.1f} s, "
          f"p95 {pct(bench.gates, .95):.1f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plans", type=int, default=40)
    parser.add_argument("--in-flight", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main(args.plans, args.in_flight))
