"""Issue 15: the demo `make dev` fills — rows in the promised states, revenue synced — made
against the live stack, and a second run makes nothing new."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal

import pytest
from flask import render_template_string

from cli.demo import DEMO_ORG_PREFIX, ROWS, build_demo
from sandbox.pandadoc.server import SandboxHandle
from settings import Settings
from tests.fixtures.stack import LiveStack, wait_until
from tests.plans.helpers import act, sandbox_today, upfront_plan, wait_for_plan
from web import create_app
from web.dev_tools import in_development


def _counts(s: LiveStack) -> tuple[int, int, int]:
    stripe = s.stripe()
    plans = s.api("GET", "/api/plans?limit=500", role="viewer").json()["total"]
    customers = len(stripe.v1.customers.list({"limit": 100}).data)
    invoices = len(stripe.v1.invoices.list({"limit": 100}).data)
    return plans, customers, invoices


async def test_the_demo_fills_every_promised_state_once(live_stack: LiveStack) -> None:
    s = live_stack
    today = sandbox_today(s)
    first = await asyncio.to_thread(build_demo, s.settings, "admin@example.com", today=today)
    assert first.problems == []
    assert {key: plan["state"] for key, plan in first.rows.items()} == {row.key: row.state for row in ROWS}
    assert len(first.created) == len(ROWS) and len(first.paid) == 1
    states = {plan["state"] for plan in first.rows.values()}
    assert {"new", "awaiting_payment", "step_failed", "done", "subscription_ready", "credit_applied"} <= states
    assert {plan["payment_schedule"] for plan in first.rows.values()} == {"upfront", "monthly"}
    failed = first.rows["failed"]
    assert [a for a, v in failed["actions"].items() if v["allowed"]] == ["retry_step"]
    assert "cus_DemoDoesNotExist" in (failed["workflow"]["error"]["message"])
    done = s.stripe().v1.invoices.retrieve(first.rows["done"]["invoice_id"])
    assert done.status == "paid" and done.total == 9_600_000

    # The revenue page has numbers: the paid demo invoice was synced into the warehouse.
    assert first.revenue_objects > 0
    summary = s.api("GET", "/api/revenue/summary", role="viewer").json()
    # Hooli's 96,000.00 invoice: recognised so far plus still deferred, to the cent.
    assert Decimal(summary["revenue"]["net"]) + Decimal(summary["deferred"]) == Decimal("96000.00"), summary
    assert Decimal(summary["mrr"]) > 0  # the monthly rows' subscriptions

    before = _counts(s)
    second = await asyncio.to_thread(build_demo, s.settings, "admin@example.com", today=today)
    assert (second.created, second.clicks, second.paid, second.problems) == ([], 0, [], [])
    assert {key: plan["id"] for key, plan in second.rows.items()} == {k: p["id"] for k, p in first.rows.items()}
    assert _counts(s) == before
    assert all(p["posthog_org_id"].startswith(DEMO_ORG_PREFIX) for p in second.rows.values())


# ------------------------------------------------------------------ the development-only page

@pytest.mark.parametrize(("key", "base", "expected"), [
    ("sk_test_devsandbox", "http://127.0.0.1:12111", True),
    ("sk_test_devsandbox", "http://localhost:12111", True),
    ("sk_test_devsandbox", "http://[::1]:12111", True),
    ("sk_test_devsandbox", "", False),  # the real api.stripe.com
    ("sk_test_devsandbox", "https://api.stripe.com", False),
    ("sk_test_devsandbox", "http://10.0.0.5:12111", False),
    ("sk_live_abc", "http://127.0.0.1:12111", False),
    ("rk_test_abc", "http://127.0.0.1:12111", False),
])
def test_development_is_the_loopback_sandbox_with_a_test_key(settings: Settings, key: str, base: str,
                                                             expected: bool) -> None:
    assert in_development(replace(settings, stripe_api_key=key, stripe_api_base=base)) is expected


def test_the_dev_page_does_not_exist_outside_development(settings: Settings, users: dict[str, str]) -> None:
    live = replace(settings, stripe_api_key="sk_live_abc", stripe_api_base="")
    client = create_app(live, temporal=object()).test_client()
    headers = {"Authorization": f"Bearer {users['admin']}"}
    assert client.get("/dev/", headers=headers).status_code == 404
    assert client.post("/dev/order-forms", headers=headers).status_code == 404
    assert client.post("/dev/plans/1/pay", headers=headers).status_code == 404
    sandbox = replace(settings, stripe_api_key="sk_test_x", stripe_api_base="http://127.0.0.1:9")
    dev_app = create_app(sandbox, temporal=object())
    assert dev_app.test_client().get("/dev/").status_code == 302  # to sign-in
    # The shared templates show the /dev link and "Pay this invoice" only where they exist.
    for app, shown in ((client.application, "False"), (dev_app, "True")):
        with app.test_request_context():
            assert render_template_string("{{ dev_tools_enabled() }}") == shown


async def test_sign_a_demo_order_form_and_pay_an_invoice(live_stack_factory: Callable[..., LiveStack],
                                                         pandadoc_sandbox: SandboxHandle) -> None:
    s = live_stack_factory(pandadoc_api_base=pandadoc_sandbox.url, pandadoc_api_key=pandadoc_sandbox.api_key)
    pandadoc_sandbox.configure_webhook(f"{s.base_url}/webhooks/pandadoc", s.settings.pandadoc_webhook_key)

    signed = await s.aapi("POST", "/dev/order-forms", data={"company_name": "Demo Signed Gadgets"},
                          allow_redirects=False)
    assert signed.status_code == 302, signed.text
    row = await asyncio.to_thread(wait_until, lambda: next(
        (p for p in s.api("GET", "/api/plans", role="viewer").json()["plans"]
         if p["company_name"] == "Demo Signed Gadgets"), None), 30)
    assert row["pandadoc_id"] and row["posthog_org_id"] == "org-demosignedgadgets"

    plan = upfront_plan(s)
    for action in ("create_customer", "create_invoice", "send_invoice"):
        plan = await asyncio.to_thread(act, s, plan["id"], action)
    page = await s.aapi("GET", "/dev/", role="operator")
    assert page.status_code == 200 and f"/dev/plans/{plan['id']}/pay" in page.text
    paid = await s.aapi("POST", f"/dev/plans/{plan['id']}/pay", allow_redirects=False)
    assert paid.status_code == 302
    assert s.stripe().v1.invoices.retrieve(plan["invoice_id"]).status == "paid"
    await asyncio.to_thread(wait_for_plan, s, plan["id"], lambda p: p["state"] == "paid")
    again = await s.aapi("POST", f"/dev/plans/{plan['id']}/pay", allow_redirects=False)
    assert again.status_code == 302  # nothing left to pay: refused with a message, nothing paid twice
    assert len(s.stripe().v1.invoices.list({"customer": plan["stripe_customer_id"]}).data) == 1
