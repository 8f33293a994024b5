"""A model-based test of the plan workflow: random sequences of what real customers and operators
do, against the real worker, Temporal dev server, Flask app and Stripe sandbox (issue 11).

Each example opens a few plans (upfront and monthly, new and existing customers, a credit balance
left from an earlier plan, start days 1–31, terms 1–36) and then interleaves clicks (double ones
too), edits (hostile ones too), Stripe events (paid in money, paid partly, void, uncollectible,
refund, dispute, credit note), sandbox clock advances, lost responses and 429s, and worker restarts.

After every step it checks what the person who loses money cares about:

- no 500 from the API, ever;
- no plan credit reaches Stripe before the plan's invoice was paid in money for its whole total,
  net of refunds, credit notes and disputes (per installment share for monthly plans);
- a plan's credit is given at most once, never more than the credit amount, each share once;
- no Stripe object is made twice for a plan (customer, upfront invoice, schedule, subscription,
  monthly price);
- a credit balance set aside at send time is given back exactly once;
- installments never number more than the term nor add up to more than the price, and once the
  term is over they number the term and add up to the price exactly;
- after the workflow settles, the row names the same Stripe objects Stripe has for the plan.

`make test` runs a bounded profile; `PLAN_MODEL_PROFILE=long` explores more (docs/plans.md).
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)
from temporalio.service import RPCError

from domain.plan_rules import add_months, progress_from_view
from tests.fixtures.stack import LiveStack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

PROFILES = {
    # examples, steps per example
    "smoke": (2, 6),
    "bounded": (4, 25),
    "long": (60, 40),
}
PROFILE = os.environ.get("PLAN_MODEL_PROFILE", "bounded")

ACTIONS = ("create_customer", "create_invoice", "send_invoice", "apply_credit", "schedule_subscription",
           "create_monthly_subscription", "apply_credit_monthly", "sync_billing_service", "retry_step")
CREDIT_KINDS = ("plan_credit", "monthly_credit", "monthly_credit_share")
# Answers the API may give; 502 is a failed step (shown on the row), 504 a click still running.
OK_STATUSES = {200, 201, 204, 403, 404, 409, 422, 502, 504}


@dataclass
class ModelPlan:
    id: int
    schedule: str  # upfront | monthly
    price: int
    credit: int
    term: int
    start: date
    existing_customer: str | None
    credit_start: str
    credit_release: str
    # What the model has seen Stripe do for this plan.
    credit_txns: dict[str, int] = field(default_factory=dict)
    operator_let_credit_pay: bool = False
    opened_at: int = 0  # sandbox clock


def _quietly(fn: Any) -> Any:
    """Run a rule of the model with Stripe's injected faults paused (see `PlanModel.quiet`)."""
    @functools.wraps(fn)
    def wrapper(self: PlanModel, *args: Any, **kwargs: Any) -> Any:
        with self.quiet():
            return fn(self, *args, **kwargs)
    return wrapper


def _meta(obj: Any) -> dict[str, str]:
    meta = getattr(obj, "metadata", None)
    return dict(meta.to_dict()) if meta is not None and hasattr(meta, "to_dict") else {}


class PlanModel(RuleBasedStateMachine):
    """The machine; `STACK` is set by the test before Hypothesis runs it."""

    STACK: LiveStack | None = None
    LOOP: asyncio.AbstractEventLoop | None = None  # the test's loop, where the Temporal client lives
    FOUND: list[str] = []  # noqa: RUF012 - collected across examples for the report
    STEPS = 0
    SEEN: Counter[str] = Counter()  # noqa: RUF012 - what the run explored, for the report

    plans = Bundle("plans")

    def __init__(self) -> None:
        super().__init__()
        assert self.STACK is not None
        self.s = self.STACK
        self.stripe = self.s.stripe()
        self.installation = self.s.settings.installation_id
        self.all: dict[int, ModelPlan] = {}
        self.faults_on = False
        self.fault_rules: list[dict[str, Any]] = []
        self.restarted = False
        self.statuses: list[tuple[str, int, str]] = []

    # ------------------------------------------------------------------ helpers
    def api(self, method: str, path: str, json: Any = None) -> Any:
        response = self.s.api(method, path, json=json, timeout=90)
        self.statuses.append((f"{method} {path}", response.status_code, response.text[:300]))
        verb = path.rsplit("/", 1)[-1] if "/actions/" in path else method
        PlanModel.SEEN[f"api {verb} → {response.status_code}"] += 1
        return response

    @contextmanager
    def quiet(self) -> Iterator[None]:
        """The model's own Stripe calls (the customer paying, the checks) see no injected faults:
        only the server under test does."""
        if self.faults_on:
            self.s.sandbox.clear_faults()
        try:
            yield
        finally:
            if self.faults_on:
                self.s.sandbox.set_faults({"seed": self.STEPS, "rules": self.fault_rules})

    def today(self) -> date:
        return datetime.fromtimestamp(self.s.sandbox.now(), UTC).date()

    def existing_customer(self, balance: int, currency: str) -> str:
        customer = self.stripe.v1.customers.create({"email": "existing@model.test", "name": "Existing Co"})
        if balance:
            self.stripe.v1.customers.balance_transactions.create(
                customer.id, {"amount": -balance, "currency": currency, "description": "Left from an earlier plan"})
        return str(customer.id)

    def row(self, plan: ModelPlan) -> dict[str, Any]:
        response = self.s.api("GET", f"/api/plans/{plan.id}", role="viewer")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def settle(self, timeout: float = 20.0) -> None:
        """Wait until webhooks are delivered and no plan has a step running."""
        self.s.sandbox.wait_for_webhooks(10)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = [p for p in self.all.values()
                    if ((self.row(p).get("workflow") or {}).get("progress") or {}).get("running")]
            if not busy:
                time.sleep(0.3)  # a signal may still be on its way from the receiver to the workflow
                return
            time.sleep(0.2)

    def stripe_customers(self, plan: ModelPlan) -> list[str]:
        """Customers that may hold this plan's credit or its invoices."""
        row = self.row(plan)
        ids = {plan.existing_customer, row.get("stripe_customer_id")}
        return [i for i in ids if i]

    def objects_of(self, plan: ModelPlan) -> dict[str, list[Any]]:
        """Every Stripe object this installation made for the plan, by `revops_kind`."""
        found: dict[str, list[Any]] = {}

        def mine(obj: Any) -> None:
            meta = _meta(obj)
            if meta.get("plan_id") == str(plan.id) and meta.get("revops_installation") == self.installation:
                kind = meta.get("revops_kind", "?")
                # A schedule's subscription inherits the schedule's metadata: count them apart.
                if getattr(obj, "object", "") == "subscription_schedule":
                    kind = f"schedule:{kind}"
                found.setdefault(kind, []).append(obj)

        for customer_id in self.stripe_customers(plan):
            for txn in self.stripe.v1.customers.balance_transactions.list(customer_id, {"limit": 100}).data:
                mine(txn)
            for inv in self.stripe.v1.invoices.list({"customer": customer_id, "limit": 100}).data:
                mine(inv)
            for sub in self.stripe.v1.subscriptions.list({"customer": customer_id, "status": "all",
                                                          "limit": 100}).data:
                mine(sub)
            for sched in self.stripe.v1.subscription_schedules.list({"customer": customer_id, "limit": 100}).data:
                mine(sched)
        for cus in self.stripe.v1.customers.list({"limit": 100}).auto_paging_iter():
            mine(cus)
        for price in self.stripe.v1.prices.list({"limit": 100}).auto_paging_iter():
            mine(price)
        return found

    def invoice_money(self, invoice: Any) -> int:
        """Money the customer paid for the invoice and kept paid: not its credit balance, net of
        refunds, post-payment credit notes and disputes."""
        invoice = self.stripe.v1.invoices.retrieve(invoice.id, {"expand": ["payments"]})
        paid = int(invoice.amount_paid or 0)
        paid -= int(getattr(invoice, "post_payment_credit_notes_amount", 0) or 0)
        if invoice.customer:
            for charge in self.stripe.v1.charges.list({"customer": invoice.customer, "limit": 100}).data:
                if _charge_for(charge, invoice):
                    paid -= int(charge.amount_refunded or 0)
                    if charge.disputed:
                        paid -= int(charge.amount)
        return paid

    # ------------------------------------------------------------------ plans
    @initialize(target=plans, n=st.integers(1, 2), data=st.data())
    def open_plans(self, n: int, data: st.DataObject) -> Any:
        if self.s.sandbox.now() - time.time() > 3600:
            # An earlier example ran Stripe's clock ahead: start this one from today again (the
            # workflows' clock is the real one), with the webhook endpoint registered anew.
            self.s.sandbox.reset()
            self.s.sandbox.register_webhook(self.s.base_url + "/webhooks/stripe", self.s.settings.stripe_webhook_secret)
        made = [self._open(data) for _ in range(n)]
        return multiple(*[p for p in made if p is not None])

    @rule(target=plans, data=st.data(), now=st.sampled_from([False, False, True]))
    def another_plan(self, data: st.DataObject, now: bool) -> Any:
        plan = self._open(data) if now else None
        return multiple(plan) if plan is not None else multiple()

    @_quietly
    def _open(self, data: st.DataObject) -> ModelPlan | None:
        schedule = data.draw(st.sampled_from(["upfront", "monthly"]), label="schedule")
        term = data.draw(st.integers(1, 36), label="term")
        day = data.draw(st.integers(1, 31), label="start day")
        months_ahead = data.draw(st.integers(0, 2), label="months ahead")
        today = self.today()
        first = add_months(today.replace(day=1), months_ahead)
        start = first.replace(day=min(day, _days_in(first)))
        if start < today:
            start = add_months(start, 1)
        price = data.draw(st.integers(100, 5_000_000), label="price (minor units)")
        credit = data.draw(st.integers(price, price * 2), label="credit (minor units)")
        balance = data.draw(st.sampled_from([0, 0, 1_000, price // 2, price * 2]), label="existing balance")
        PlanModel.SEEN[f"opened {schedule} plan, existing balance {'yes' if balance else 'no'}"] += 1
        existing = None
        if schedule == "monthly" or data.draw(st.booleans(), label="existing customer"):
            existing = self.existing_customer(balance, "usd")
        credit_start = data.draw(st.sampled_from(["immediately", "next_billing_cycle"]), label="credit start")
        release = data.draw(st.sampled_from(["all", "per_installment"]), label="credit release")
        body = {
            "company_name": "Model Co", "customer_email": f"model+{len(self.all)}@model.test",
            "credit_amount": _major(credit),
            "price": _major(price), "discount": "0", "currency": "usd",
            "start_date": start.isoformat(), "term_months": term, "posthog_org_id": "org_model",
            "payment_schedule": schedule, "credit_start": credit_start, "credit_release": release,
            "products": ["product_analytics"], "stripe_customer_id_existing": existing,
            "accept_warnings": True,
        }
        response = self.api("POST", "/api/plans", json={k: v for k, v in body.items() if v is not None})
        if response.status_code != 201:
            return None
        plan = ModelPlan(response.json()["id"], schedule, price, credit, term, start, existing,
                         credit_start, release, opened_at=self.s.sandbox.now())
        self.all[plan.id] = plan
        return plan

    # ------------------------------------------------------------------ operators
    @rule(plan=plans, action=st.sampled_from(ACTIONS), double=st.booleans())
    def click(self, plan: ModelPlan, action: str, double: bool) -> None:
        if self.clocks_disagree(plan):
            return
        path = f"/api/plans/{plan.id}/actions/{action}"
        if not double:
            self.api("POST", path)
            return
        threads = [threading.Thread(target=self.api, args=("POST", path)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def clocks_disagree(self, plan: ModelPlan) -> bool:
        """Only Stripe's clock moves in this test; the workflows keep real time. Once Stripe's clock
        has run far past the day a plan was opened, that plan's start date lies in Stripe's past
        but the workflow's future, which production never sees: its set-up clicks are skipped (its
        payments and refunds still happen)."""
        if self.s.sandbox.now() - plan.opened_at < 20 * 86400:
            return False
        row = self.row(plan)
        return not (row["invoice_id"] or row["subscription_id"] or row["subscription_schedule_id"])

    def _next_button(self, plan: ModelPlan) -> None:
        """What an operator mostly does: the next allowed button."""
        if self.clocks_disagree(plan):
            return
        actions = self.row(plan)["actions"]
        allowed = [a for a in ACTIONS if actions.get(a, {}).get("allowed")]
        if allowed:
            self.api("POST", f"/api/plans/{plan.id}/actions/{allowed[0]}")

    # Rules are drawn about evenly: the same rule under several names makes it the common case.
    @rule(plan=plans, clicks=st.integers(1, 3))
    def click_next(self, plan: ModelPlan, clicks: int) -> None:
        for _ in range(clicks):
            self._next_button(plan)

    @rule(plan=plans, clicks=st.integers(1, 3))
    def click_next_again(self, plan: ModelPlan, clicks: int) -> None:
        for _ in range(clicks):
            self._next_button(plan)

    @rule(plan=plans)
    def click_next_once_more(self, plan: ModelPlan) -> None:
        self._next_button(plan)

    @rule(plan=plans, change=st.sampled_from([
        {"price": "1.00"}, {"company_name": "Renamed Co"}, {"currency": "jpy"}, {"term_months": 7},
        {"start_date": "9999-12-25"}, {"price": 96000.0}, {"discount": "NaN"}, {"products": 5},
        {"company_name": {"x": 1}}, {"price": True}, {"credit_amount": "99999999999999999999999"},
    ]))
    def edit(self, plan: ModelPlan, change: dict[str, Any]) -> None:
        before = self.row(plan)
        response = self.api("PATCH", f"/api/plans/{plan.id}", json={**change, "accept_warnings": True})
        if response.status_code == 200:
            after = response.json()
            # A value Stripe already holds never changes on the row.
            billed = before["invoice_id"] or before["monthly_price_id"] or before["subscription_id"]
            for name in ("price", "currency", "credit_amount", "term_months", "start_date"):
                if billed:
                    assert after[name] == before[name], f"{name} changed after Stripe held it"
            new = self.all[plan.id]
            if "price" in change or "currency" in change or "term_months" in change:
                # Keep the model's money in step with the row for the installment invariant.
                if not (before["invoice_id"] or before["monthly_price_id"] or before["subscription_id"]):
                    new.price = _minor(after["price"], after["currency"])
                    new.term = int(after["term_months"])
                    new.credit = _minor(after["credit_amount"], after["currency"])

    # ------------------------------------------------------------------ Stripe
    def _open_invoices(self, plan: ModelPlan) -> list[Any]:
        row = self.row(plan)
        out = []
        if row.get("invoice_id"):
            out.append(self.stripe.v1.invoices.retrieve(row["invoice_id"]))
        if plan.schedule == "monthly" and row.get("stripe_customer_id"):
            out.extend(self.stripe.v1.invoices.list({"customer": row["stripe_customer_id"], "limit": 100}).data)
        return [i for i in out if i.status == "open"]

    def _pick_open(self, data: st.DataObject) -> tuple[ModelPlan, Any] | None:
        """A plan with an open invoice, and that invoice: a customer pays what it was sent."""
        open_ = [(p, i) for p in self.all.values() for i in self._open_invoices(p)[:1]]
        return data.draw(st.sampled_from(open_), label="open invoice") if open_ else None

    @rule(data=st.data(), how=st.sampled_from(["out_of_band", "card", "partly"]))
    def customer_pays_again(self, data: st.DataObject, how: str) -> None:
        self.customer_pays(data, how)

    @rule(data=st.data(), how=st.sampled_from(["out_of_band", "out_of_band", "card", "card", "partly"]))
    @_quietly
    def customer_pays(self, data: st.DataObject, how: str) -> None:
        picked = self._pick_open(data)
        if picked is None:
            return
        plan, invoice = picked
        PlanModel.SEEN[f"stripe: {plan.schedule} invoice paid {how}"] += 1
        if how == "partly" and invoice.amount_remaining > 1:
            # Part of it forgiven by a credit note, the rest paid: not paid in money in full.
            self.stripe.v1.credit_notes.create({"invoice": invoice.id, "amount": invoice.amount_remaining // 2})
            self.stripe.v1.invoices.pay(invoice.id, {"paid_out_of_band": True})
        elif how == "card":
            method = self.stripe.v1.payment_methods.attach("pm_card_visa", {"customer": invoice.customer})
            self.stripe.v1.invoices.pay(invoice.id, {"payment_method": method.id})
        else:
            self.stripe.v1.invoices.pay(invoice.id, {"paid_out_of_band": True})
        self.settle()

    @rule(data=st.data(), what=st.sampled_from(["void", "uncollectible"]))
    @_quietly
    def invoice_goes_bad(self, data: st.DataObject, what: str) -> None:
        picked = self._pick_open(data)
        if picked is None:
            return
        plan, invoice = picked
        if plan.schedule == "monthly" and what == "void":
            return  # a voided installment is a month forgiven: the term would not add up by design
        PlanModel.SEEN[f"stripe: {plan.schedule} invoice {what}"] += 1
        if what == "void":
            self.stripe.v1.invoices.void_invoice(invoice.id)
        else:
            self.stripe.v1.invoices.mark_uncollectible(invoice.id)
        self.settle()

    @rule(plan=plans, what=st.sampled_from(["refund", "dispute", "credit_note"]))
    @_quietly
    def money_goes_back(self, plan: ModelPlan, what: str) -> None:
        for customer_id in self.stripe_customers(plan):
            for charge in self.stripe.v1.charges.list({"customer": customer_id, "limit": 10}).data:
                if charge.status != "succeeded" or charge.refunded or charge.disputed:
                    continue
                PlanModel.SEEN[f"stripe: {plan.schedule} charge {what}"] += 1
                if what == "refund":
                    self.stripe.v1.refunds.create({"charge": charge.id})
                elif what == "dispute":
                    import requests

                    requests.post(f"{self.s.sandbox.url}/_sandbox/disputes", json={"charge": charge.id}, timeout=10)
                self.settle()
                return
        if what == "credit_note":
            row = self.row(plan)
            if row.get("invoice_id"):
                invoice = self.stripe.v1.invoices.retrieve(row["invoice_id"])
                if invoice.status == "paid" and invoice.total > 1:
                    PlanModel.SEEN["stripe: upfront credit note after payment"] += 1
                    self.stripe.v1.credit_notes.create(
                        {"invoice": invoice.id, "amount": invoice.total // 2,
                         "out_of_band_amount": invoice.total // 2})
        self.settle()

    @rule(days=st.sampled_from([1, 1, 3, 3, 31, 95]))
    def time_passes(self, days: int) -> None:
        PlanModel.SEEN[f"clock +{days} days"] += 1
        self.s.sandbox.advance(days * 86400)
        self.settle()

    @precondition(lambda self: any(p.schedule == "monthly" for p in self.all.values()))
    @rule(now=st.sampled_from([False] * 3 + [True]))
    @_quietly
    def term_runs_out(self, now: bool) -> None:
        """Run the clock past every monthly plan's term: its installments are then all billed."""
        if not now:
            return
        PlanModel.SEEN["clock past every monthly term"] += 1
        ends = [add_months(p.start, p.term) for p in self.all.values() if p.schedule == "monthly"]
        target = datetime.combine(max(ends) + timedelta(days=40), datetime.min.time(), tzinfo=UTC)
        now = self.s.sandbox.now()
        while now < target.timestamp():
            now = self.s.sandbox.advance(min(int(target.timestamp()) - now, 31 * 86400))
            self.pay_open_installments()
        self.settle()
        self.check_installments(complete=True)

    def pay_open_installments(self) -> None:
        for plan in self.all.values():
            if plan.schedule != "monthly":
                continue
            for invoice in self._open_invoices(plan):
                self.stripe.v1.invoices.pay(invoice.id, {"paid_out_of_band": True})

    # ------------------------------------------------------------------ infrastructure
    @rule(kind=st.sampled_from(["lost_response", "rate_limit", "", "", ""]))
    def stripe_misbehaves(self, kind: str) -> None:
        if not kind:
            return
        rules = ([{"method": "POST", "path": "/v1/", "lost_response": 0.3, "mode": "drop"}]
                 if kind == "lost_response" else
                 [{"path": "/v1/", "rate_limit": True, "retry_after": 0.2, "rate": 0.3}])
        PlanModel.SEEN[f"fault: {kind}"] += 1
        self.fault_rules = rules
        self.s.sandbox.set_faults({"seed": self.STEPS, "rules": rules})
        self.faults_on = True

    @precondition(lambda self: self.faults_on)
    @rule()
    def stripe_recovers(self) -> None:
        self.s.sandbox.clear_faults()
        self.faults_on = False

    @rule(now=st.sampled_from([False] * 4 + [True]))
    def worker_restarts(self, now: bool) -> None:
        if not now:
            return
        PlanModel.SEEN["worker restart"] += 1
        self.s.worker.stop()
        self.s.worker.start()
        self.restarted = True

    @_quietly
    def teardown(self) -> None:
        for plan in self.all.values():
            PlanModel.SEEN[f"plan {plan.schedule} ended {self.row(plan)['state']}"] += 1
        self.faults_on = False  # the next example starts with a well-behaved Stripe
        # Stop this example's workflows: the next one may reset Stripe under them.
        assert self.LOOP is not None
        for plan in self.all.values():
            handle = self.s.client.get_workflow_handle(f"plan-{plan.id}")
            try:
                asyncio.run_coroutine_threadsafe(handle.terminate("model example over"), self.LOOP).result(30)
            except RPCError:
                pass  # never clicked, or already finished

    # ------------------------------------------------------------------ invariants
    @invariant()
    def no_server_error(self) -> None:
        PlanModel.STEPS += 1
        bad = [(what, code, text) for what, code, text in self.statuses if code not in OK_STATUSES]
        self.statuses.clear()
        assert not bad, f"the API answered {bad}"

    @invariant()
    @_quietly
    def money_is_safe(self) -> None:
        if not self.faults_on:
            self.settle()
        for plan in self.all.values():
            self.check_plan(plan)
        self.check_installments(complete=False)

    def check_plan(self, plan: ModelPlan) -> None:
        made = self.objects_of(plan)
        for kind in ("plan_customer", "installment_customer", "schedule:plan_schedule", "monthly_subscription",
                     "schedule:monthly_subscription", "monthly_price"):
            assert len(made.get(kind, [])) <= 1, f"plan {plan.id}: {len(made[kind])} × {kind}"
        invoices = [i for i in made.get("upfront_invoice", []) if i.status != "void"]
        assert len(invoices) <= 1, f"plan {plan.id}: {len(invoices)} live upfront invoices"

        credits = [t for kind in CREDIT_KINDS for t in made.get(kind, [])]
        total_credit = -sum(int(t.amount) for t in credits)
        assert total_credit <= plan.credit, f"plan {plan.id}: {total_credit} credited of {plan.credit}"
        shares = [_meta(t).get("share") for t in made.get("monthly_credit_share", [])]
        assert len(shares) == len(set(shares)), f"plan {plan.id}: a credit share given twice: {shares}"
        assert len(made.get("plan_credit", [])) <= 1 and len(made.get("monthly_credit", [])) <= 1

        new = [t for t in credits if t.id not in plan.credit_txns]
        for txn in new:
            plan.credit_txns[txn.id] = int(txn.amount)
        if new and plan.schedule == "upfront" and not plan.operator_let_credit_pay:
            assert invoices, f"plan {plan.id}: credit {new[0].id} without an upfront invoice"
            invoice = invoices[0]
            assert invoice.status == "paid", f"plan {plan.id}: credit given while invoice is {invoice.status}"
            money = self.invoice_money(invoice)
            assert money >= invoice.total, (
                f"plan {plan.id}: credit given for invoice {invoice.id} of {invoice.total} paid {money} in money")
        if new and plan.schedule == "monthly" and plan.credit_release == "per_installment":
            paid = [i for i in self.installments_of(plan) if i.status == "paid"
                    and self.invoice_money(i) >= i.total]
            released = len(made.get("monthly_credit_share", []))
            assert released <= len(paid), f"plan {plan.id}: {released} shares for {len(paid)} paid installments"

        held = -sum(int(t.amount) for t in made.get("held_balance", []))
        returned = -sum(int(t.amount) for t in made.get("held_balance_return", []))
        assert len(made.get("held_balance", [])) <= 1 and len(made.get("held_balance_return", [])) <= 1
        if invoices and invoices[0].status in ("paid", "void") and not self.faults_on:
            assert held + returned == 0, f"plan {plan.id}: held {-held}, given back {returned}"

    def installments_of(self, plan: ModelPlan) -> list[Any]:
        row = self.row(plan)
        customer = row.get("stripe_customer_id")
        if plan.schedule != "monthly" or not customer:
            return []
        return [i for i in self.stripe.v1.invoices.list({"customer": customer, "limit": 100}).auto_paging_iter()
                if i.status != "void" and i.status != "draft" and i.total > 0]

    def check_installments(self, complete: bool) -> None:
        for plan in self.all.values():
            if plan.schedule != "monthly":
                continue
            row = self.row(plan)
            if not (row.get("subscription_id") or row.get("subscription_schedule_id")):
                continue
            bills = self.installments_of(plan)
            total = sum(int(i.total) for i in bills)
            assert len(bills) <= plan.term, f"plan {plan.id}: {len(bills)} installments for a {plan.term}-month term"
            assert total <= plan.price, f"plan {plan.id}: installments add up to {total} > price {plan.price}"
            if complete and (len(bills) != plan.term or total != plan.price):
                customer = row["stripe_customer_id"]
                subs = [(x.id, x.status, x.cancel_at, getattr(x, "canceled_at", None)) for x in
                        self.stripe.v1.subscriptions.list({"customer": customer, "status": "all"}).data]
                invoices = [(i.id, i.status, i.total, i.billing_reason, i.period_start, i.period_end) for i in
                            self.stripe.v1.invoices.list({"customer": customer, "limit": 100}).auto_paging_iter()]
                raise AssertionError(
                    f"plan {plan.id} (start {plan.start}, {plan.term} months): {len(bills)} installments adding "
                    f"up to {total}, price {plan.price}; subscriptions {subs}; invoices {invoices}; "
                    f"row {row['state']} {row['workflow'].get('progress')}")

    @invariant()
    @_quietly
    def row_agrees_with_stripe(self) -> None:
        if self.faults_on:
            return
        for plan in self.all.values():
            row = self.row(plan)
            made = self.objects_of(plan)
            if plan.schedule == "upfront" and not plan.existing_customer:
                customers = made.get("plan_customer", [])
                if customers:
                    # The row may lag a click by a moment, never name another customer.
                    assert row["stripe_customer_id"] in (None, customers[0].id)
            live = [i for i in made.get("upfront_invoice", []) if i.status != "void"]
            if row.get("invoice_id") and live:
                assert row["invoice_id"] == live[0].id
            if row.get("subscription_id"):
                assert str(row["subscription_id"]).startswith("sub_"), row["subscription_id"]
            self.check_row_follows_workflow(plan)

    FOLLOWED = ("customer_id", "invoice_id", "invoice_status", "credit", "subscription_id",
                "subscription_schedule_id", "monthly_price_id", "shares_released", "billing_synced",
                "failed_action")

    def check_row_follows_workflow(self, plan: ModelPlan) -> None:
        """The row is the workflow's projection: once the workflow is idle, the row shows its progress."""
        from workflows.plan import PlanWorkflow

        assert self.LOOP is not None
        handle = self.s.client.get_workflow_handle(f"plan-{plan.id}")
        deadline = time.monotonic() + 10
        while True:
            try:
                truth = asyncio.run_coroutine_threadsafe(handle.query(PlanWorkflow.progress), self.LOOP).result(30)
            except Exception:  # noqa: BLE001 - never clicked, or finished: nothing to compare
                return
            if truth.running:
                return  # a step is under way; the next check compares again
            # A row the workflow never wrote to (a refused first click starts the workflow) shows the
            # starting progress.
            shown = progress_from_view(self.row(plan).get("workflow"))
            differ = {k: (getattr(shown, k), getattr(truth, k)) for k in self.FOLLOWED
                      if getattr(shown, k) != getattr(truth, k)}
            if not differ:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"plan {plan.id}: the row shows other progress than its workflow: {differ}")
            time.sleep(0.3)


def _charge_for(charge: Any, invoice: Any) -> bool:
    """Charges no longer name their invoice: match on the invoice's payments."""
    intent = getattr(charge, "payment_intent", None)
    payments = getattr(invoice, "payments", None)
    if payments is not None and getattr(payments, "data", None):
        for payment in payments.data:
            ref = payment.payment
            if getattr(ref, "charge", None) == charge.id or (intent and getattr(ref, "payment_intent", None) == intent):
                return True
        return False
    return bool(charge.amount == invoice.amount_paid and charge.customer == invoice.customer)


def _days_in(day: date) -> int:
    import calendar

    return calendar.monthrange(day.year, day.month)[1]


def _major(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


def _minor(text: str, currency: str) -> int:
    from domain.money import parse_amount

    return int(parse_amount(text, currency))


async def test_plans_under_random_sequences(live_stack_factory: Any) -> None:
    stack = live_stack_factory(invoice_poll_seconds=5, monthly_finalize_delay_seconds=60)
    examples, steps = PROFILES[PROFILE]
    examples = int(os.environ.get("PLAN_MODEL_EXAMPLES", examples))
    steps = int(os.environ.get("PLAN_MODEL_STEPS", steps))
    PlanModel.STACK = stack
    PlanModel.LOOP = asyncio.get_running_loop()
    PlanModel.STEPS = 0
    started = time.monotonic()
    try:
        await asyncio.to_thread(
            run_state_machine_as_test, PlanModel,
            settings=settings(max_examples=examples, stateful_step_count=steps, deadline=None,
                              derandomize=PROFILE == "bounded", database=None,
                              phases=[Phase.explicit, Phase.generate],
                              suppress_health_check=list(HealthCheck)))
    finally:
        stack.sandbox.clear_faults()
        print(f"plan model: {examples} examples, {PlanModel.STEPS} steps checked in "
              f"{time.monotonic() - started:.0f} s")
        for what, count in sorted(PlanModel.SEEN.items()):
            print(f"  {count:4d}  {what}")
