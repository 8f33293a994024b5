"""Credits on a customer's balance: the plan's prepaid credit (at once, on a timer, or share by
share), and the renewal's held balance set aside and given back. A balance transaction's amount
is negative for a credit; Stripe applies a credit balance to the next invoice finalized."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import stripe
from temporalio import activity

from activities.plan.common import PlanActivityBase, stripe_errors
from activities.plan.identity import PlanIdentity, create_once
from domain.money import display
from domain.plan_rules import CREDIT_APPLIED, StepInput, StepOutput, credit_shares


def balance_transaction_once(client: stripe.StripeClient, ident: PlanIdentity, customer_id: str, amount: int,
                             kind: str, step_key: str, description: str, **extra: str) -> str:
    """One customer balance transaction of `amount` (negative = credit), found by its metadata if
    this row already made it, so a retry days later (key forgotten) cannot give it twice."""

    def find() -> str | None:
        listed = client.v1.customers.balance_transactions.list(customer_id, {"limit": 100})
        return next((t.id for t in listed.auto_paging_iter() if ident.made_by(t, kind, **extra)), None)

    def create() -> str:
        txn = client.v1.customers.balance_transactions.create(
            customer_id,
            {"amount": amount, "currency": ident.facts.currency, "description": description,
             "metadata": ident.metadata(kind, **extra)},
            {"idempotency_key": ident.key(step_key)},
        )
        return txn.id

    return create_once("balance transaction", ident.key(step_key), find, create)


def find_balance_transaction(client: stripe.StripeClient, ident: PlanIdentity, customer_id: str, kind: str,
                             **extra: str) -> Any | None:
    listed = client.v1.customers.balance_transactions.list(customer_id, {"limit": 100})
    return next((t for t in listed.auto_paging_iter() if ident.made_by(t, kind, **extra)), None)


def customer_balance(customer: Any, currency: str) -> int:
    """The customer's balance in `currency` (negative = credit). Stripe keeps one balance per
    currency: `balance` is the one in the customer's own currency, the others are in
    `invoice_credit_balance`."""
    own = getattr(customer, "currency", None)
    if own in (None, currency):
        return int(getattr(customer, "balance", 0) or 0)
    others = getattr(customer, "invoice_credit_balance", None) or {}
    values = others.to_dict() if hasattr(others, "to_dict") else dict(others)
    return -int(values.get(currency, 0) or 0)


class CreditActivities(PlanActivityBase):
    @activity.defn(name="plan_apply_credit")
    def apply_credit(self, step: StepInput) -> StepOutput:
        facts, p = step.facts, step.progress
        assert p.customer_id
        with stripe_errors():
            txn = balance_transaction_once(self.client, self.identity(facts, p), p.customer_id, -facts.credit_amount,
                                           "plan_credit", "apply-credit",
                                           f"Prepaid credit of the annual plan (row {facts.plan_id}).")
        return StepOutput(replace(p, credit=CREDIT_APPLIED, credit_applied_at=step.now,
                                  credit_transaction_ids=[txn], credit_released=facts.credit_amount),
                          {"balance_transaction": txn, "customer": p.customer_id,
                           "amount": display(-facts.credit_amount, facts.currency),
                           "message": f"Credit of {display(facts.credit_amount, facts.currency)} applied."})

    @activity.defn(name="plan_return_held_balance")
    def return_held_balance(self, step: StepInput) -> StepOutput:
        """Give back the credit balance set aside when the invoice was sent (it is paid or void)."""
        facts, p = step.facts, step.progress
        assert p.customer_id and p.held_balance > 0
        with stripe_errors():
            txn = balance_transaction_once(
                self.client, self.identity(facts, p), p.customer_id, -p.held_balance, "held_balance_return",
                "return-held-balance",
                f"The credit balance held while invoice {p.invoice_id} was open, given back (row {facts.plan_id}).",
                invoice=p.invoice_id or "")
        return StepOutput(replace(p, held_balance_returned_txn=txn),
                          {"balance_transaction": txn, "customer": p.customer_id,
                           "amount": display(-p.held_balance, facts.currency),
                           "message": f"The held credit balance of {display(p.held_balance, facts.currency)} "
                                      f"was given back."})

    @activity.defn(name="plan_billing_period_end")
    def billing_period_end(self, step: StepInput) -> StepOutput:
        """The end of the customer's current billing period (on subscription items since 2025)."""
        p = step.progress
        assert p.customer_id
        ends: list[int] = []
        with stripe_errors():
            for sub in self.client.v1.subscriptions.list({"customer": p.customer_id, "limit": 100}).auto_paging_iter():
                if sub.status in ("active", "trialing", "past_due"):
                    ends.extend(item.current_period_end for item in sub["items"].data)
        period_end = datetime.fromtimestamp(min(ends), UTC).isoformat() if ends else None
        return StepOutput(replace(p, credit_scheduled_for=period_end),
                          {"current_period_end": period_end or "none"})

    @activity.defn(name="plan_apply_credit_monthly")
    def apply_credit_monthly(self, step: StepInput) -> StepOutput:
        from activities.plan.customers import CustomerActivities

        facts, p = step.facts, step.progress
        existing = facts.stripe_customer_id_existing or ""
        with stripe_errors():
            CustomerActivities(self.settings)._existing_customer(existing)
            txn = balance_transaction_once(self.client, self.identity(facts, p), existing, -facts.credit_amount,
                                           "monthly_credit", "apply-credit-monthly",
                                           f"Prepaid credit of the monthly plan (row {facts.plan_id}).")
        return StepOutput(replace(p, credit=CREDIT_APPLIED, credit_applied_at=step.now,
                                  credit_transaction_ids=[txn], credit_released=facts.credit_amount),
                          {"balance_transaction": txn, "customer": existing,
                           "message": f"Credit of {display(facts.credit_amount, facts.currency)} applied to "
                                      f"{existing}."})

    @activity.defn(name="plan_release_credit_share")
    def release_credit_share(self, step: StepInput) -> StepOutput:
        facts, p = step.facts, step.progress
        existing = facts.stripe_customer_id_existing or ""
        shares = credit_shares(facts.credit_amount, facts.term_months)
        index = step.share_index
        with stripe_errors():
            txn = balance_transaction_once(self.client, self.identity(facts, p), existing, -shares[index],
                                           "monthly_credit_share", f"credit-share-{index + 1}",
                                           f"Credit share {index + 1} of {len(shares)} (row {facts.plan_id}).",
                                           share=str(index + 1))
        released = p.credit_released + shares[index]
        done = index + 1 >= len(shares)
        return StepOutput(replace(p, shares_released=index + 1, credit_released=released,
                                  credit_transaction_ids=[*p.credit_transaction_ids, txn],
                                  credit=CREDIT_APPLIED if done else p.credit,
                                  credit_applied_at=step.now if done else p.credit_applied_at),
                          {"balance_transaction": txn, "customer": existing, "share": f"{index + 1}/{len(shares)}",
                           "amount": display(shares[index], facts.currency)})
