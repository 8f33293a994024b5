"""Issue 6, acceptance 1 end to end: in headless Chromium, an operator adds a row and clicks the
upfront path to "Credit applied" against the running stack (Temporal dev server, worker, Stripe
sandbox delivering webhooks to the app on a real port); the invoice is paid in the sandbox."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from store.db import unit_of_work
from store.models import AuditEntry, Plan
from tests.fixtures.stack import LiveStack
from tests.web.browser import chromium, needs_chromium, screenshot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow, needs_chromium]


def _badge(page: Any, text: str) -> None:
    page.locator("#live .badge").filter(has_text=text).wait_for(timeout=30_000)


def _click(page: Any, label: str) -> None:
    page.locator("#live").get_by_role("button", name=label, exact=True).click()
    page.wait_for_load_state()
    assert page.locator(".flash-error").count() == 0, page.locator(".flash-error").inner_text()


def _drive(stack: LiveStack) -> int:
    start = datetime.fromtimestamp(stack.sandbox.now(), UTC).date() + timedelta(days=5)
    with chromium() as browser:
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.set_default_timeout(30_000)
        sign_in(page, stack.base_url, "operator")

        page.get_by_role("link", name="Add a row").first.click()
        page.get_by_label("Company name").fill("Initech")
        page.get_by_label("Customer email").fill("billing@initech.example")
        page.get_by_label("Credit amount").fill("120000.00")
        page.get_by_label("Discount (%)").fill("20")
        page.get_by_label("Price", exact=True).fill("96000.00")
        page.get_by_label("Start date").fill(start.isoformat())
        page.get_by_label("Term", exact=True).fill("12 months")
        page.get_by_label("Product analytics").check()
        page.get_by_role("button", name="Add row").click()
        page.wait_for_url(f"{stack.base_url}/plans/*")
        plan_id = int(page.url.rsplit("/", 1)[1])
        _badge(page, "New")

        _click(page, "Create Stripe Customer")
        _badge(page, "Customer ready")
        _click(page, "Create Invoice - Upfront")
        _badge(page, "Invoice drafted")
        _click(page, "Send invoice")
        _badge(page, "awaiting payment")

        # Not paid yet: scheduling the subscription is disabled and says why, on focus.
        waiting = page.locator('#live button[data-action="schedule_subscription"]')
        assert waiting.get_attribute("aria-disabled") == "true"
        waiting.focus()
        tip = page.locator(f"#why-{plan_id}-schedule_subscription")
        assert tip.is_visible() and "paid" in tip.inner_text()

        # "Apply Credit" before payment arms the credit, and the message says so in the workflow's own
        # words, never a generic "done" (issue 17 #12); keyboard focus comes back to the row's buttons.
        _click(page, "Apply Credit")
        flash = page.locator(".flash-ok").inner_text()
        assert "The credit is armed: it is applied once the invoice is paid." in flash, flash
        assert "done" not in flash.lower()
        assert page.evaluate("document.activeElement.closest('#live') !== null && "
                             "document.activeElement.tagName === 'BUTTON'")
        _badge(page, "awaiting payment")

        with unit_of_work(stack.settings.database_url) as s:
            plan = s.get(Plan, plan_id)
            assert plan is not None and plan.invoice_id
            invoice_id = plan.invoice_id
        assert page.locator(f'#live a[href$="/invoices/{invoice_id}"]').count() == 1
        stack.stripe().v1.invoices.pay(invoice_id, {"paid_out_of_band": True})
        # The webhook reaches the workflow; the page shows it without a reload.
        # The armed credit is applied by the workflow on payment, with no second click.
        page.evaluate("window.__same_page = true")
        _badge(page, "Credit applied")
        assert page.evaluate("window.__same_page") is True
        assert "Credit applied" in page.locator("#live").inner_text()
        assert "apply credit" in page.locator("table.timeline").inner_text()
        screenshot(page, "row-page-credit-applied.png")

        page.get_by_role("link", name="Table").first.click()
        row = page.locator(f"#plan-{plan_id}")
        assert "Credit applied" in row.locator(".badge").inner_text()
        assert invoice_id in row.inner_text()
        screenshot(page, "table-credit-applied.png")

        # A viewer on the same row: every button disabled, and none posts anything.
        viewer = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        sign_in(viewer, stack.base_url, "viewer")
        viewer.goto(f"{stack.base_url}/plans/{plan_id}")
        buttons = viewer.locator("#live .actions button")
        assert buttons.count() == 5
        assert all(buttons.nth(i).get_attribute("aria-disabled") == "true" for i in range(buttons.count()))
        assert viewer.locator("#live .actions form").count() == 0
        assert viewer.locator('button:has-text("Save changes")').count() == 0
    return plan_id


async def test_operator_clicks_the_upfront_path_to_credit_applied(live_stack: LiveStack) -> None:
    plan_id = await asyncio.to_thread(_drive, live_stack)
    with unit_of_work(live_stack.settings.database_url) as s:
        plan = s.get(Plan, plan_id)
        assert plan is not None and plan.state == "credit_applied" and plan.credit_applied_at is not None
        actors = {(e.actor, e.action) for e in s.query(AuditEntry).filter(AuditEntry.plan_id == plan_id)}
    assert {("operator@example.com", a) for a in ("create_row", "create_customer", "create_invoice",
                                                  "send_invoice", "apply_credit")} <= actors
    balance = live_stack.stripe().v1.customers.balance_transactions.list(plan.stripe_customer_id).data
    assert [t.amount for t in balance] == [-12_000_000]
