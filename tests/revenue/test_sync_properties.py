"""Issue 18, "What it must show" #2, end to end: random plans, usage, payments, refunds and credit
notes made in the Stripe sandbox; their webhooks delivered shuffled and twice; an events sync that
fails half-way and runs again → per customer the revenue schedule adds up to the money received,
under both policies, and months that were over before the later activity never change."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from settings import Settings
from store import sync as stripe_sync
from store.db import unit_of_work
from store.revenue import rebuild_all
from store.sync import apply_stripe_event, full_sync, incremental_sync
from store.warehouse import RevenueScheduleEntry
from tests.revenue.conftest import CARD

DAY = 86400


class Story:
    """Random customer activity in the sandbox, remembering what money each customer paid."""

    def __init__(self, sandbox: Any, rng: random.Random, installation: str) -> None:
        self.sandbox, self.rng, self.installation = sandbox, rng, installation
        self.client = sandbox.client()
        self.customers: list[str] = []
        self.plan_ids = iter(range(1, 1000))

    def customer(self) -> str:
        c = self.client.v1.customers.create({"email": f"p{len(self.customers)}@example.com",
                                             **CARD})  # type: ignore[typeddict-item]
        self.customers.append(c.id)
        return str(c.id)

    def invoice(self, customer: str, amount: int, days: int, metadata: dict[str, str] | None = None) -> str:
        now = self.sandbox.now()
        inv = self.client.v1.invoices.create({"customer": customer, "collection_method": "send_invoice",
                                              "days_until_due": 30, "metadata": metadata or {}})
        self.client.v1.invoice_items.create({"customer": customer, "invoice": inv.id, "amount": amount,
                                             "currency": "usd", "period": {"start": now, "end": now + days * DAY},
                                             "metadata": metadata or {}})
        inv = self.client.v1.invoices.finalize_invoice(inv.id)  # the balance pays what it can
        if inv.status == "open":
            if self.rng.random() < 0.6:
                self.client.v1.invoices.pay(inv.id, {"payment_method": "pm_card_visa"})
            else:
                self.client.v1.invoices.pay(inv.id, {"paid_out_of_band": True})
        return str(inv.id)

    def plan(self, customer: str) -> str:
        plan_id = str(next(self.plan_ids))
        price = self.rng.randint(10_000, 2_000_000)
        credit = self.rng.randint(price, 2 * price)
        meta = {"plan_id": plan_id, "revops_kind": "upfront_invoice", "revops_installation": self.installation,
                "credit_amount": str(credit)}
        invoice = self.invoice(customer, price, 365, meta)
        self.client.v1.customers.balance_transactions.create(customer, {
            "amount": -credit, "currency": "usd",
            "metadata": {"plan_id": plan_id, "revops_kind": "plan_credit", "revops_installation": self.installation}})
        return invoice

    def give_back(self, invoice: str) -> None:
        inv = self.client.v1.invoices.retrieve(invoice)
        room = inv.total - (inv.post_payment_credit_notes_amount or 0)
        if room <= 0:
            return
        amount = self.rng.randint(1, room)
        how = self.rng.choice(["refund", "out_of_band", "credit"])
        charges = self.client.v1.charges.list({"customer": inv.customer, "limit": 100}).data
        if how == "refund" and any(c.amount - c.amount_refunded >= amount for c in charges):
            charge = next(c for c in charges if c.amount - c.amount_refunded >= amount)
            self.client.v1.refunds.create({"charge": charge.id, "amount": amount})
        elif how == "credit":
            self.client.v1.credit_notes.create({"invoice": invoice, "amount": amount, "credit_amount": amount})
        else:
            self.client.v1.credit_notes.create({"invoice": invoice, "amount": amount, "out_of_band_amount": amount})

    def step(self) -> None:
        """One random thing happens, then a few days pass."""
        customer = self.rng.choice(self.customers)
        roll = self.rng.random()
        if roll < 0.25:
            self.plan(customer)
        elif roll < 0.75:
            self.invoice(customer, self.rng.randint(100, 400_000), self.rng.choice([0, 30]))
        else:
            invoices = [i.id for i in self.client.v1.invoices.list({"customer": customer, "limit": 100}).data
                        if i.status == "paid"]
            if invoices:
                self.give_back(self.rng.choice(invoices))
        self.sandbox.advance(self.rng.randint(0, 3) * DAY + self.rng.randint(0, 3600))

    def money_received(self) -> dict[str, int]:
        """Per customer, from Stripe's own objects: paid in money, less refunds and money given
        back outside Stripe. Credit notes onto the balance keep the money with the customer."""
        out: dict[str, int] = defaultdict(int)
        for customer in self.customers:
            for inv in self.client.v1.invoices.list({"customer": customer, "limit": 100}).auto_paging_iter():
                out[customer] += inv.amount_paid
            for ch in self.client.v1.charges.list({"customer": customer, "limit": 100}).auto_paging_iter():
                out[customer] -= ch.amount_refunded
        for cn in self.client.v1.credit_notes.list({"limit": 100}).auto_paging_iter():
            out[str(cn.customer)] -= cn.out_of_band_amount or 0
        return dict(out)


def schedule_by_customer(settings: Settings) -> dict[str, int]:
    with unit_of_work(settings.database_url) as s:
        rows = s.execute(select(RevenueScheduleEntry.customer_id, func.sum(RevenueScheduleEntry.net))
                         .group_by(RevenueScheduleEntry.customer_id)).all()
    return {str(c): int(n) for c, n in rows if n}


def months_by_customer(settings: Settings) -> dict[tuple[str, date], int]:
    with unit_of_work(settings.database_url) as s:
        rows = s.execute(select(RevenueScheduleEntry.customer_id, RevenueScheduleEntry.month,
                                func.sum(RevenueScheduleEntry.net))
                         .group_by(RevenueScheduleEntry.customer_id, RevenueScheduleEntry.month)).all()
    return {(str(c), m): int(n) for c, m, n in rows}


def deliver_shuffled_twice(sandbox: Any, settings: Settings, rng: random.Random, since: int) -> None:
    found = [e.to_dict(for_json=True) for e in sandbox.client().v1.events.list(
        {"limit": 100, "created": {"gte": since}}).auto_paging_iter()]
    deliveries = found + rng.sample(found, len(found) // 2)
    rng.shuffle(deliveries)
    for event in deliveries:
        apply_stripe_event(settings, event)


def assert_money_once(story: Story, settings: Settings) -> None:
    received = {c: v for c, v in story.money_received().items() if v}
    assert schedule_by_customer(settings) == received


@pytest.mark.parametrize("seed", [3, 11, 2027])
def test_revenue_adds_up_to_money_received_whatever_the_order(seed: int, fresh_stripe_sandbox: Any,
                                                              revenue_settings: Settings,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    sandbox = fresh_stripe_sandbox
    story = Story(sandbox, rng, revenue_settings.installation_id)
    for _ in range(3):
        story.customer()
    full_sync(revenue_settings, rate=None)
    since = sandbox.now()
    for _ in range(10):
        story.step()
    # Webhooks, shuffled and some delivered twice, bring everything without a sync.
    deliver_shuffled_twice(sandbox, revenue_settings, rng, since)
    assert_money_once(story, revenue_settings)
    before = months_by_customer(revenue_settings)

    # Later: the next month, more activity; an events sync dies half-way and runs again.
    now = datetime.fromtimestamp(sandbox.now(), UTC)
    sandbox.advance_to(int(datetime(now.year + (now.month == 12), now.month % 12 + 1, 1, 6,
                                    tzinfo=UTC).timestamp()))
    over = datetime.fromtimestamp(sandbox.now(), UTC).date().replace(day=1)
    for _ in range(8):
        story.step()
    real, calls = stripe_sync._rebuild, []

    def dies_once(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the worker was killed")
        real(*args, **kwargs)

    monkeypatch.setattr(stripe_sync, "_rebuild", dies_once)
    with pytest.raises(RuntimeError, match="killed"):
        incremental_sync(revenue_settings, rate=None)
    incremental_sync(revenue_settings, rate=None)
    assert_money_once(story, revenue_settings)
    after = months_by_customer(revenue_settings)
    assert {k: v for k, v in after.items() if k[1] < over and v} == {
        k: v for k, v in before.items() if k[1] < over and v}

    # The other policy books the same money: only when, not how much, changes.
    with unit_of_work(revenue_settings.database_url) as s:
        rebuild_all(s, "ratable")
    assert_money_once(story, revenue_settings)
