"""Web table benchmark: server time to render the Annual Plan Table with 2,000 rows.

    .venv/bin/python bench/table_bench.py               # 2,000 rows, 50 renders per figure
    .venv/bin/python bench/table_bench.py --rows 10000 --repeat 30

Builds a migrated SQLite database in a temp folder with N plan rows spread over the workflow's
states (each with a realistic `workflow_view.progress`, so every row's buttons and reasons are
computed by `plans.service.actions_for` exactly as in production), signs in an operator through
the login form, and times full requests through the Flask test client (routing, auth, CSRF hooks,
SQL, Jinja). Prints p50/p95/max in milliseconds per figure. No Temporal is involved: the table
never calls it while rendering (the bench's Temporal stand-in raises if anything tries).
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from domain.plan_rules import CREDIT_APPLIED, CREDIT_ARMED, Progress  # noqa: E402
from settings import Settings  # noqa: E402
from store.accounts import add_user  # noqa: E402
from store.db import unit_of_work  # noqa: E402
from store.migrate import upgrade  # noqa: E402
from store.models import Plan  # noqa: E402

# (state, progress) pairs a row can be in; weights roughly like a live table (most rows finished).
STAGES: list[tuple[str, dict[str, Any], int]] = [
    ("new", {}, 10),
    ("customer_ready", {"customer_id": "cus_B{n}"}, 5),
    ("invoice_draft", {"customer_id": "cus_B{n}", "invoice_id": "in_B{n}", "invoice_status": "draft",
                       "checks": [{"check": "address", "label": "Billing address", "status": "missing"}]}, 5),
    ("awaiting_payment", {"customer_id": "cus_B{n}", "invoice_id": "in_B{n}", "invoice_status": "open",
                          "credit": CREDIT_ARMED}, 10),
    ("credit_applied", {"customer_id": "cus_B{n}", "invoice_id": "in_B{n}", "invoice_status": "paid",
                        "credit": CREDIT_APPLIED, "credit_applied_at": "2026-01-05T10:00:00+00:00"}, 20),
    ("done", {"customer_id": "cus_B{n}", "invoice_id": "in_B{n}", "invoice_status": "paid",
              "credit": CREDIT_APPLIED, "schedule_id": "sub_sched_B{n}"}, 50),
]


class NoTemporal:
    def run(self, *_a: Any, **_k: Any) -> Any:
        raise AssertionError("The table called Temporal while rendering.")


def seed(url: str, rows: int) -> None:
    rng = random.Random(42)
    weights = [w for *_, w in STAGES]
    with unit_of_work(url) as s:
        add_user(s, "operator@example.com", "password-operator", "operator")
        for n in range(rows):
            state, progress, _ = rng.choices(STAGES, weights)[0]
            filled: dict[str, Any] = {k: (v.format(n=n) if isinstance(v, str) else v) for k, v in progress.items()}
            monthly = rng.random() < 0.3
            plan = Plan(
                pandadoc_id=f"pd-{n:06d}", company_name=f"Company {n:05d} {rng.choice(['Inc', 'GmbH', 'Ltd'])}",
                customer_email=f"billing{n}@customer{n % 97}.example", credit_amount=12_000_000,
                discount=Decimal(20), price=9_600_000, currency="usd",
                start_date=date(2026, 1, 1) + timedelta(days=n % 365), term_months=12,
                posthog_org_id=f"org-{n}", payment_schedule="monthly" if monthly else "upfront",
                stripe_customer_id_existing=f"cus_Existing{n}" if monthly else None,
                products=["product_analytics", "session_replay"][: 1 + n % 2], state=state,
                stripe_customer_id=filled.get("customer_id"), invoice_id=filled.get("invoice_id"),
                subscription_schedule_id=filled.get("schedule_id"),
                workflow_view={"progress": asdict(Progress(**filled)), "checks": filled.get("checks", []),
                               "error": None},
                created_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=n),
            )
            s.add(plan)


def timed(client: Any, path: str, repeat: int, **kw: Any) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        response = client.get(path, **kw)
        samples.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    return samples


def report(name: str, samples: list[float]) -> None:
    ordered = sorted(samples)
    p95 = ordered[max(0, int(round(0.95 * len(ordered))) - 1)]
    print(f"{name:<58} p50 {statistics.median(ordered):7.1f} ms   p95 {p95:7.1f} ms   max {ordered[-1]:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()

    import web.table as table
    from bench._support import settings_for
    from web import create_app

    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/bench.db"
        upgrade(url)
        t0 = time.perf_counter()
        seed(url, args.rows)
        print(f"seeded {args.rows} rows in {time.perf_counter() - t0:.1f} s (SQLite, {folder})")
        settings: Settings = settings_for({"DATABASE_URL": url})
        app = create_app(settings, temporal=NoTemporal())
        client = app.test_client()
        page = client.get("/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token
        client.post("/login", data={"email": "operator@example.com", "password": "password-operator",
                                    "csrf_token": token.group(1)})
        timed(client, "/", 5)  # warm-up: template compilation, connection pool

        report(f"table, first page ({table.PAGE_SIZE} of {args.rows} rows)", timed(client, "/", args.repeat))
        last = -(-args.rows // table.PAGE_SIZE)
        report(f"table, last page (page {last})", timed(client, f"/?page={last}", args.repeat))
        report("table, search 'customer7' (company or email)", timed(client, "/?q=customer7", args.repeat))
        report("table, filter state=awaiting_payment&schedule=upfront",
               timed(client, "/?state=awaiting_payment&schedule=upfront", args.repeat))
        html = client.get("/").get_data(as_text=True)
        rows = ",".join(f"{k}:{v}" for k, v in re.findall(r'data-plan="(\d+)" data-version="([^"]+)"', html))
        report("live refresh poll, 50 rows unchanged", timed(client, f"/table/rows?rows={rows}", args.repeat,
                                                             headers={"X-Revops-Poll": "1"}))
        stale = ",".join(f"{part.split(':')[0]}:0" for part in rows.split(","))
        report("live refresh poll, 50 rows all changed", timed(client, f"/table/rows?rows={stale}", args.repeat,
                                                               headers={"X-Revops-Poll": "1"}))
        table.PAGE_SIZE = args.rows  # every row on one page: the worst case, not what users get
        report(f"table, all {args.rows} rows on one page (worst case)",
               timed(client, "/", max(5, args.repeat // 5)))


if __name__ == "__main__":
    main()
