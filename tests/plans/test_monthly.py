"""Issue 5 end to end: monthly installment plans through the API, the worker, the Stripe sandbox
(with its clock) and webhooks; the billing-service mapping delivered to a local HTTP receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from domain.plan_rules import add_months, credit_shares, monthly_window
from tests.fixtures.stack import LiveStack, wait_until
from tests.plans.helpers import (
    act,
    balance_transactions,
    get_plan,
    sandbox_today,
    save_history,
    timeline,
    wait_for_plan,
)

SECRET = "billing-service-test-secret"


def verify_billing_signature(header: str, body: bytes) -> tuple[bool, int | None]:
    """What the billing service checks: `t=<unix>,v1=<hex HMAC-SHA256(secret, "{t}.{body}")>`,
    the timestamp recent (a replayed post is refused)."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    if not parts.get("t", "").isdigit() or "v1" not in parts:
        return False, None
    t = int(parts["t"])
    expected = hmac.new(SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    fresh = abs(time.time() - t) <= 300
    return hmac.compare_digest(expected, parts["v1"]) and fresh, t


class Receiver:
    """A billing service that checks the signature and fails the first `failures` deliveries."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts: list[dict[str, Any]] = []
        self.accepted: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                signed, timestamp = verify_billing_signature(self.headers.get("X-Revops-Signature", ""), body)
                receiver.attempts.append({"signed": signed, "key": self.headers.get("Idempotency-Key"),
                                          "t": timestamp})
                if not signed:
                    self.send_response(401)
                elif len(receiver.attempts) <= receiver.failures:
                    self.send_response(503)
                else:
                    receiver.accepted.append(json.loads(body))
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/mapping"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(failures=2)
    yield r
    r.server.shutdown()


def monthly_plan(s: LiveStack, existing_id: str, **kw: Any) -> dict[str, Any]:
    body = {
        "company_name": "Installments Inc", "customer_email": "billing@installments.test",
        "credit_amount": "12500.00", "discount": "20", "price": "10000.00",
        "start_date": sandbox_today(s).isoformat(), "term_months": 12, "posthog_org_id": "org_inst",
        "payment_schedule": "monthly", "stripe_customer_id_existing": existing_id,
    }
    body.update(kw)
    response = s.api("POST", "/api/plans", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_monthly_path_end_to_end(live_stack_factory, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    s: LiveStack = live_stack_factory(billing_service_url=receiver.url, billing_service_secret=SECRET,
                                      monthly_finalize_delay_seconds=3600)
    stripe = s.stripe()
    existing = stripe.v1.customers.create({"email": "billing@installments.test", "name": "Installments Inc"})
    plan = monthly_plan(s, existing.id)
    pid = plan["id"]
    assert plan["actions"]["create_invoice"]["allowed"] is False

    plan = act(s, pid, "create_customer")
    new_id = plan["stripe_customer_id"]
    assert new_id and new_id != existing.id
    new_customer = stripe.v1.customers.retrieve(new_id)
    assert new_customer.metadata["existing_customer_id"] == existing.id
    assert new_customer.metadata["plan_id"] == str(pid)

    plan = act(s, pid, "create_monthly_subscription")
    price = stripe.v1.prices.retrieve(plan["monthly_price_id"])
    assert price.unit_amount == 83_333 and price.recurring.interval == "month"
    assert price.product == "prod_posthog_credit"
    assert price.nickname == f"Custom - {sandbox_today(s).isoformat()}"
    subscription = stripe.v1.subscriptions.retrieve(plan["subscription_id"])
    start = datetime.fromisoformat(plan["start_date"]).date()
    assert subscription.customer == new_id
    assert datetime.fromtimestamp(subscription.cancel_at, UTC).date() == add_months(start, 12)
    first_id = plan["workflow"]["progress"]["first_invoice_id"]
    first = stripe.v1.invoices.retrieve(first_id)
    assert first.status == "draft" and first.customer == new_id
    assert sorted(line.amount for line in first.lines.data) == [4, 83_333]  # remainder on its own line
    assert first.total == 83_337
    # Eleven subscription months of 833.33 plus the first invoice make the price to the cent.
    assert first.total + 11 * price.unit_amount == 1_000_000

    s.sandbox.advance(3500)
    assert stripe.v1.invoices.retrieve(first_id).status == "draft"
    s.sandbox.advance(200)
    assert stripe.v1.invoices.retrieve(first_id).status == "open"

    plan = act(s, pid, "apply_credit_monthly")
    [credit] = balance_transactions(s, existing.id)
    assert credit.amount == -1_250_000
    assert balance_transactions(s, new_id) == []
    assert plan["state"] == "credit_applied"

    plan = act(s, pid, "sync_billing_service")
    assert receiver.accepted == [{
        "existing_stripe_customer_id": existing.id, "plan_id": str(pid), "posthog_org_id": "org_inst",
        "stripe_customer_id": new_id, "stripe_subscription_id": subscription.id}]
    assert len(receiver.attempts) == 3 and all(a["signed"] for a in receiver.attempts)
    assert {a["key"] for a in receiver.attempts} == {f"{s.settings.installation_id}:plan-{pid}:sync-billing-service"}
    assert plan["workflow"]["billing_mapping"]["stripe_subscription_id"] == subscription.id
    assert plan["state"] == "done"

    # The subscription ends with the term.
    s.sandbox.advance(int(timedelta(days=370).total_seconds()))
    assert stripe.v1.subscriptions.retrieve(subscription.id).status == "canceled"
    steps = [(e["action"], e["outcome"]) for e in timeline(s, pid)]
    for step in ("create_customer", "create_monthly_subscription", "apply_credit_monthly", "sync_billing_service"):
        assert (step, "ok") in steps
    await save_history(s, pid, "monthly_all_at_once")


async def test_credit_released_per_paid_installment(live_stack: LiveStack) -> None:
    s = live_stack
    stripe = s.stripe()
    existing = stripe.v1.customers.create({"email": "billing@installments.test", "name": "Installments Inc"})
    pid = monthly_plan(s, existing.id, credit_release="per_installment", credit_amount="12000.00",
                       price="9600.00")["id"]
    plan = act(s, pid, "create_customer")
    new_id = plan["stripe_customer_id"]
    act(s, pid, "create_monthly_subscription")
    plan = act(s, pid, "apply_credit_monthly")
    assert plan["state"] == "credit_releasing"
    assert balance_transactions(s, existing.id) == []

    shares = credit_shares(1_200_000, 12)
    assert sum(shares) == 1_200_000
    paid: list[str] = []
    for month in range(3):
        if month:
            s.sandbox.advance(int(timedelta(days=31).total_seconds()))
        s.sandbox.advance(3700)  # drafts finalize about an hour after they are made
        [invoice] = [i for i in stripe.v1.invoices.list({"customer": new_id, "status": "open"}).data]
        stripe.v1.invoices.pay(invoice.id, {"paid_out_of_band": True})
        paid.append(invoice.id)
        wait_for_plan(s, pid, lambda p, n=month + 1: p["workflow"]["progress"]["shares_released"] == n)
    credits = balance_transactions(s, existing.id)
    assert len(credits) == 3
    assert sum(c.amount for c in credits) == -sum(shares[:3]) == -(1_200_000 * 3 // 12)
    assert balance_transactions(s, new_id) == []
    assert get_plan(s, pid)["workflow"]["progress"]["installments_paid"] == paid
    await save_history(s, pid, "monthly_per_installment")


async def test_monthly_with_a_deleted_existing_customer_is_refused(live_stack: LiveStack) -> None:
    s = live_stack
    stripe = s.stripe()
    gone = stripe.v1.customers.create({"email": "gone@installments.test"})
    stripe.v1.customers.delete(gone.id)
    pid = monthly_plan(s, gone.id)["id"]
    response = s.api("POST", f"/api/plans/{pid}/actions/create_customer")
    assert response.status_code == 502
    assert (f"The existing Stripe customer {gone.id} was deleted in Stripe; put the customer's current id in "
            f"\"Stripe ID - existing\" and use \"Retry step\".") in response.json()["error"]
    assert customers_made_for(s, "billing@installments.test") == []
    no_existing = s.api("POST", "/api/plans", json={
        "company_name": "X", "customer_email": "x@x.test", "credit_amount": "100.00", "price": "100.00",
        "start_date": sandbox_today(s).isoformat(), "term_months": 12, "payment_schedule": "monthly"})
    assert no_existing.status_code == 422
    assert no_existing.json()["errors"]["stripe_customer_id_existing"].startswith(
        "A monthly plan needs \"Stripe ID - existing\"")


def customers_made_for(s: LiveStack, email: str) -> list[Any]:
    return list(s.stripe().v1.customers.list({"email": email}).data)


_ = wait_until


async def test_a_future_start_has_a_first_installment_draft_and_a_schedule_for_the_rest(
        live_stack: LiveStack) -> None:
    """Issue 11 #8 and #6: a future start's first installment is a draft to verify too (monthly
    amount + remainder as its own line, finalizing on the start date), the schedule bills months
    2..N, and the remainder is a line found again on a retry, never a loose pending item."""
    s = live_stack
    stripe = s.stripe()
    existing = stripe.v1.customers.create({"email": "billing@installments.test", "name": "Installments Inc"})
    start = sandbox_today(s) + timedelta(days=20)
    pid = monthly_plan(s, existing.id, start_date=start.isoformat(), credit_amount="1250.01",
                       price="1000.01", discount="20")["id"]
    new_id = act(s, pid, "create_customer")["stripe_customer_id"]
    plan = act(s, pid, "create_monthly_subscription")
    schedule = stripe.v1.subscription_schedules.retrieve(plan["subscription_schedule_id"])
    assert schedule.customer == new_id and schedule.end_behavior == "cancel"
    assert schedule.status == "not_started"
    second, cancel = monthly_window(start, 12)
    assert datetime.fromtimestamp(schedule.phases[0].start_date, UTC).date() == second == add_months(start, 1)
    assert datetime.fromtimestamp(schedule.phases[0].end_date, UTC).date() == cancel
    price = stripe.v1.prices.retrieve(plan["monthly_price_id"])
    assert price.unit_amount == 8_333
    first = stripe.v1.invoices.retrieve(plan["workflow"]["progress"]["first_invoice_id"])
    assert first.status == "draft" and first.auto_advance is True
    assert datetime.fromtimestamp(first.automatically_finalizes_at, UTC).date() == start
    assert sorted(line.amount for line in first.lines.data) == [5, 8_333]  # 83.33 × 12 + 0.05 = 1,000.01
    assert [i for i in stripe.v1.invoice_items.list({"customer": new_id}).data if i.invoice is None] == []
    assert plan["subscription_id"] is None  # a schedule id is no subscription id
    assert plan["state"] == "subscription_ready"
    await save_history(s, pid, "monthly_future_start")


async def test_a_monthly_setup_failing_half_way_keeps_its_ids_on_the_row(live_stack: LiveStack) -> None:
    """Issue 11 #8: the subscription is refused after the price and the draft were made: the row
    shows both, the draft never finalizes, and "Retry step" finishes with the same objects."""
    s = live_stack
    stripe = s.stripe()
    existing = stripe.v1.customers.create({"email": "billing@installments.test", "name": "Installments Inc"})
    pid = monthly_plan(s, existing.id)["id"]
    new_id = act(s, pid, "create_customer")["stripe_customer_id"]
    s.sandbox.set_faults({"rules": [{"method": "POST", "path": "/v1/subscriptions", "error_rate": 1.0, "status": 400,
                                     "error": {"type": "invalid_request_error", "message": "Refused by a test."}}]})
    failed = s.api("POST", f"/api/plans/{pid}/actions/create_monthly_subscription")
    s.sandbox.clear_faults()
    assert failed.status_code == 502 and "Made so far" in failed.json()["error"]
    plan = get_plan(s, pid)
    partial = plan["workflow"]["partial"]
    assert partial["monthly_price"].startswith("price_") and partial["first_invoice"].startswith("in_")
    assert plan["subscription_id"] is None and plan["state"] == "step_failed"
    draft = stripe.v1.invoices.retrieve(partial["first_invoice"])
    assert draft.status == "draft" and not draft.auto_advance  # it will not finalize or go out by itself
    plan = act(s, pid, "retry_step")
    assert plan["workflow"]["progress"]["first_invoice_id"] == partial["first_invoice"]
    assert plan["monthly_price_id"] == partial["monthly_price"] and plan["subscription_id"].startswith("sub_")
    assert plan["workflow"]["partial"] is None
    assert [i.id for i in stripe.v1.invoices.list({"customer": new_id}).data if i.total] == [partial["first_invoice"]]
