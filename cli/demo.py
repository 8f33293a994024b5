"""The demo a fresh `make dev` opens on: plan rows in each state, and synced revenue.

`build_demo(settings)` drives the running stack the way an operator would — rows made through the
plan service, buttons clicked as Temporal updates, invoices paid in the Stripe sandbox so that its
webhook moves the workflow — then runs the revenue sync once so the revenue page has numbers.

Idempotent: each demo row is marked by its PostHog org id (`demo-…`). A row already there is not
made again, and only the buttons its row still allows are clicked, so a second run (every
`make dev` runs it) makes nothing new. Off with `DEV_DEMO=false` or `revops dev --no-demo`;
`revops demo` fills it by hand against a running stack.

Also here, for the development-only page (web/dev_tools.py): `sign_demo_order_form` makes the
PandaDoc sandbox complete an order form and send its signed webhook, and `pay_invoice` pays an open
invoice in the Stripe sandbox.
"""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from settings import Settings

DEMO_ORG_PREFIX = "demo-"
WAIT_SECONDS = 90.0  # a lost invoice.paid webhook is caught by polling (60 s in development)


@dataclass(frozen=True)
class DemoRow:
    """One demo row: the buttons clicked on it, in order, and the state it is left in."""

    key: str  # the row's PostHog org id is `demo-{key}`
    company: str
    state: str
    clicks: tuple[str, ...] = ()
    schedule: str = "upfront"
    pay_after: str | None = None  # pay the invoice once this button is done, then wait for "paid"
    start_days: int = 14  # start date, days from today
    existing: str | None = None  # "make": a Stripe customer for "Stripe ID - existing"; else the id itself
    price: str = "96000.00"
    credit: str = "120000.00"


ROWS: tuple[DemoRow, ...] = (
    DemoRow("new", "Northwind Traders", "new"),
    DemoRow("customer", "Globex Corporation", "customer_ready", ("create_customer",)),
    DemoRow("draft", "Initech", "invoice_draft", ("create_customer", "create_invoice")),
    DemoRow("awaiting", "Umbrella Analytics", "awaiting_payment",
            ("create_customer", "create_invoice", "send_invoice")),
    DemoRow("done", "Hooli", "done",
            ("create_customer", "create_invoice", "send_invoice", "apply_credit", "schedule_subscription"),
            pay_after="send_invoice", start_days=-10),
    DemoRow("failed", "Vandelay Industries", "step_failed", ("create_customer",),
            existing="cus_DemoDoesNotExist"),
    DemoRow("monthly-sub", "Pied Piper", "subscription_ready",
            ("create_customer", "create_monthly_subscription"), schedule="monthly", start_days=0,
            existing="make", price="24000.00", credit="30000.00"),
    DemoRow("monthly-credit", "Stark Industries", "credit_applied",
            ("create_customer", "create_monthly_subscription", "apply_credit_monthly"), schedule="monthly",
            start_days=0, existing="make", price="12000.00", credit="15000.00"),
)


@dataclass
class DemoReport:
    created: list[int] = field(default_factory=list)  # plan ids made by this run
    clicks: int = 0
    paid: list[str] = field(default_factory=list)  # invoice ids paid by this run
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)  # demo key → plan JSON
    revenue_objects: int = 0
    problems: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"  {key:<15} #{plan['id']:<4} {plan['company_name']:<20} {plan['state']}"
               for key, plan in self.rows.items()]
        out.append(f"  made {len(self.created)} rows, {self.clicks} clicks, paid {len(self.paid)} invoices; "
                   f"revenue sync: {self.revenue_objects} objects")
        return out + [f"  problem: {p}" for p in self.problems]


def build_demo(settings: Settings, actor_email: str, *, today: date | None = None,
               rows: tuple[DemoRow, ...] = ROWS, sync_revenue: bool = True) -> DemoReport:
    """Make (or finish) the demo rows against the running stack; see the module docstring."""
    from activities.stripe_api import stripe_client
    from plans.service import PlanService
    from temporal_client import connect
    from web.temporal_bridge import TemporalBridge

    today = today or datetime.now(UTC).date()
    principal = _principal(settings, actor_email)
    bridge = TemporalBridge(lambda: connect(settings))
    report = DemoReport()
    try:
        service = PlanService.for_settings(settings, bridge)
        stripe = stripe_client(settings)
        existing = _demo_rows(service)
        for row in rows:
            plan = existing.get(DEMO_ORG_PREFIX + row.key)
            if plan is None:
                plan = service.create(_body(row, today, stripe, settings), actor=actor_email, source="demo")
                report.created.append(int(plan["id"]))
            plan = _click_through(service, stripe, row, plan, principal, report)
            report.rows[row.key] = plan
            if plan["state"] != row.state:
                report.problems.append(f"demo row {row.key!r} (plan {plan['id']}) is {plan['state']!r}, "
                                       f"not {row.state!r}")
    finally:
        bridge.close()
    if sync_revenue:
        from store.sync import sync_revenue as run_sync

        report.revenue_objects = run_sync(settings).objects
    return report


def _principal(settings: Settings, email: str) -> Any:
    from sqlalchemy import select

    from store.accounts import Principal
    from store.db import unit_of_work
    from store.models import User

    with unit_of_work(settings.database_url) as session:
        user = session.scalar(select(User).where(User.email == email))
        if user is None:
            raise ValueError(f"The demo acts as {email!r}, but no such user exists; add it first.")
        return Principal(user.id, user.email, user.role)


def _demo_rows(service: Any) -> dict[str, dict[str, Any]]:
    """The demo rows already made, by org id (the oldest wins should there be two)."""
    found: dict[str, dict[str, Any]] = {}
    offset = 0
    while True:
        page, total = service.list_page(state=None, limit=500, offset=offset)
        for plan in page:
            org = plan.get("posthog_org_id") or ""
            if org.startswith(DEMO_ORG_PREFIX):
                found[org] = plan  # newest first: the last seen is the oldest
        offset += len(page)
        if not page or offset >= total:
            return found


def _body(row: DemoRow, today: date, stripe: Any, settings: Settings) -> dict[str, Any]:
    slug = row.key.replace("-", "")
    body: dict[str, Any] = {
        "company_name": row.company, "customer_email": f"billing+{slug}@{row.company.split()[0].lower()}.example",
        "credit_amount": row.credit, "discount": "20", "price": row.price, "currency": "usd",
        "start_date": (today + timedelta(days=row.start_days)).isoformat(), "term_months": 12,
        "posthog_org_id": DEMO_ORG_PREFIX + row.key, "payment_schedule": row.schedule,
        "products": ["product_analytics", "session_replay"],
    }
    if row.existing == "make":
        body["stripe_customer_id_existing"] = _existing_customer(stripe, row, settings)
    elif row.existing:
        body["stripe_customer_id_existing"] = row.existing
    return body


def _existing_customer(stripe: Any, row: DemoRow, settings: Settings) -> str:
    """The customer a monthly demo row's credits go to: found by its metadata, else made once."""
    marker = f"{settings.installation_id}:demo-existing:{row.key}"
    email = f"accounts@{row.company.split()[0].lower()}.example"
    for customer in stripe.v1.customers.list({"email": email, "limit": 100}).data:
        if (customer.metadata or {}).get("revops_demo") == marker:
            return str(customer.id)
    customer = stripe.v1.customers.create(
        {"email": email, "name": row.company, "metadata": {"revops_demo": marker}},
        {"idempotency_key": marker})
    return str(customer.id)


def _click_through(service: Any, stripe: Any, row: DemoRow, plan: dict[str, Any], principal: Any,
                   report: DemoReport) -> dict[str, Any]:
    from plans.service import PlanRejected

    pid = int(plan["id"])
    for action in row.clicks:
        plan = service.get(pid)
        if row.pay_after and plan.get("invoice_id") and plan["state"] in ("awaiting_payment", "overdue"):
            _pay_and_wait(service, stripe, plan, report)
            plan = service.get(pid)
        if not plan["actions"].get(action, {}).get("allowed"):
            continue  # done by an earlier run, or not possible any more (a failed step waits for a person)
        try:
            plan = service.perform_action(pid, action, principal)
        except PlanRejected as err:
            # The failing demo row fails here on purpose; any other refusal is reported.
            if row.state != "step_failed":
                report.problems.append(f"demo row {row.key!r}: {action} was refused: {err}")
        report.clicks += 1
        if row.pay_after == action and plan.get("invoice_id"):
            _pay_and_wait(service, stripe, service.get(pid), report)
    return dict(_wait(lambda: service.get(pid), lambda p: p["state"] == row.state, timeout=10) or service.get(pid))


def _pay_and_wait(service: Any, stripe: Any, plan: dict[str, Any], report: DemoReport) -> None:
    if pay_invoice(stripe, str(plan["invoice_id"])):
        report.paid.append(str(plan["invoice_id"]))
    # The invoice.paid webhook signals the workflow; the row says "paid" (or more) once it has.
    _wait(lambda: service.get(int(plan["id"])),
          lambda p: p["state"] not in ("awaiting_payment", "overdue", "invoice_draft"), WAIT_SECONDS)


def pay_invoice(stripe: Any, invoice_id: str) -> bool:
    """Pay an open invoice in the Stripe sandbox (out of band, as a bank transfer would be); False
    when it was not open (already paid, say). Development only: callers check where they run."""
    invoice = stripe.v1.invoices.retrieve(invoice_id)
    if invoice.status != "open":
        return False
    stripe.v1.invoices.pay(invoice_id, {"paid_out_of_band": True}, {"idempotency_key": f"demo-pay:{invoice_id}"})
    return True


def _wait(read: Callable[[], dict[str, Any]], done: Callable[[dict[str, Any]], bool],
          timeout: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(0.3)


def sign_demo_order_form(settings: Settings, company: str | None = None) -> str:
    """Have the PandaDoc sandbox make an order form and complete it: the sandbox then posts the
    signed `document_state_changed` webhook to this server, whose intake makes the row. Returns
    the document id."""
    base = (settings.pandadoc_api_base or "").rstrip("/")
    if not base:
        raise ValueError("PANDADOC_API_BASE is not set: there is no PandaDoc sandbox to sign an order form in.")
    name = company or f"Demo Signed {secrets.token_hex(2).upper()}"
    slug = "".join(c for c in name.lower() if c.isalnum())
    overrides = {"name": f"Order Form - {name}", "company_name": name, "customer_email": f"billing@{slug}.example",
                 "posthog_org_id": f"org-{slug}"}
    document = _post(settings, f"{base}/_sandbox/documents", overrides)
    document_id = str(document["id"])
    _post(settings, f"{base}/_sandbox/documents/{document_id}/complete", {"send_webhook": True})
    return document_id


def _post(settings: Settings, url: str, body: dict[str, Any]) -> dict[str, Any]:
    import requests

    response = requests.post(url, json=body, timeout=30,
                             headers={"Authorization": f"API-Key {settings.pandadoc_api_key or ''}"})
    if response.status_code >= 300:
        raise RuntimeError(f"The PandaDoc sandbox answered {response.status_code} to POST {url}: "
                           f"{response.text[:300]}")
    answer: dict[str, Any] = response.json()
    return answer


def main() -> int:
    """`revops demo`, which `revops dev` runs in the background once the stack answers."""
    from cli.dev import DEMO_EMAIL

    settings = Settings.load()
    try:
        report = build_demo(settings, DEMO_EMAIL)
    except Exception as exc:  # noqa: BLE001 - the stack runs on without its demo; say why in one line
        print(f"revops dev: the demo could not be filled: {exc}", file=sys.stderr, flush=True)
        return 1
    print("Demo ready:\n" + "\n".join(report.lines()), flush=True)
    return 0 if not report.problems else 1


__all__ = ["DEMO_ORG_PREFIX", "ROWS", "DemoReport", "DemoRow", "build_demo", "pay_invoice", "sign_demo_order_form"]
