"""The plan's Stripe customer: the existing one (retrieved, never duplicated) or the one this row
made (found by metadata before anything is created)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import stripe
from stripe.params import CustomerFundingInstructionsCreateParams
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.plan.common import PROBLEM, PlanActivityBase, stripe_errors
from activities.plan.identity import create_once
from domain.plan_rules import (
    BANK_TRANSFER_CHECK,
    BANK_TRANSFER_TO_SEND,
    BANK_TRANSFER_TYPES,
    PlanFacts,
    Progress,
    StepInput,
    StepOutput,
)


class CustomerActivities(PlanActivityBase):
    def _existing_customer(self, customer_id: str) -> stripe.Customer:
        try:
            customer = self.client.v1.customers.retrieve(customer_id)
        except stripe.InvalidRequestError as err:
            if err.http_status == 404:
                raise ApplicationError(
                    f"The existing Stripe customer {customer_id} does not exist in Stripe; put the right id in "
                    f"\"Stripe ID - existing\" and use \"Retry step\".", type=PROBLEM, non_retryable=True) from None
            raise
        if getattr(customer, "deleted", False):
            raise ApplicationError(
                f"The existing Stripe customer {customer_id} was deleted in Stripe; put the customer's current id "
                f"in \"Stripe ID - existing\" and use \"Retry step\".", type=PROBLEM, non_retryable=True)
        return customer

    def _find_or_create_customer(self, facts: PlanFacts, kind: str, extra: dict[str, str],
                                 progress: Progress | None = None) -> tuple[str, bool]:
        ident = self.identity(facts, progress)
        created: list[bool] = []

        def find() -> str | None:
            listed = self.client.v1.customers.list({"email": facts.customer_email, "limit": 100})
            return next((c.id for c in listed.auto_paging_iter() if ident.made_by(c, kind)), None)

        def create() -> str:
            customer = self.client.v1.customers.create(
                {"email": facts.customer_email, "name": facts.company_name,
                 "metadata": ident.metadata(kind, **extra)},
                {"idempotency_key": ident.key("create-customer")},
            )
            created.append(True)
            return customer.id

        customer_id = create_once("customer", ident.key("create-customer"), find, create)
        return customer_id, bool(created)

    def _bank_transfer_check(self, facts: PlanFacts, customer_id: str, progress: Progress) -> dict[str, str]:
        """The row's checklist line for the installment customer's new virtual bank account: its
        details when Stripe has them (asking makes them once per customer and currency), else a
        sentence saying where to find them. Never fails the step: the customer exists already."""
        currency = (facts.currency or "usd").lower()
        kind = BANK_TRANSFER_TYPES.get(currency)
        line = {"check": BANK_TRANSFER_CHECK, "status": "unknown"}
        if kind is None:
            return {**line, "label": f"Bank transfer details for {customer_id}: the server does not ask Stripe for "
                                     f"{currency.upper()} accounts; send the customer the ones in the Stripe "
                                     "dashboard (Customer → Cash balance)"}
        params: CustomerFundingInstructionsCreateParams = {
            "currency": currency, "funding_type": "bank_transfer", "bank_transfer": {"type": kind}}
        key = self.identity(facts, progress).key("funding-instructions")
        try:
            found = self.client.v1.customers.funding_instructions.create(customer_id, params, {"idempotency_key": key})
        except stripe.InvalidRequestError as err:
            return {**line, "label": f"Bank transfer details for {customer_id}: Stripe has none "
                                     f"({err.user_message or err}); turn on bank transfers for the account, then "
                                     "send the customer the ones in the Stripe dashboard"}
        accounts = [_account_text(a) for a in found.bank_transfer.financial_addresses]
        return {**line, "status": BANK_TRANSFER_TO_SEND,
                "label": f"Send the customer the new bank transfer details of {customer_id} (its old ones pay the "
                         f"old customer): {'; '.join(a for a in accounts if a)}"}

    @activity.defn(name="plan_create_customer")
    def create_customer(self, step: StepInput) -> StepOutput:
        facts, p = step.facts, step.progress
        with stripe_errors():
            if facts.payment_schedule == "monthly":
                existing = self._existing_customer(facts.stripe_customer_id_existing or "")
                customer_id, created = self._find_or_create_customer(
                    facts, "installment_customer", {"existing_customer_id": existing.id}, p)
                bank = self._bank_transfer_check(facts, customer_id, p)
                progress = replace(p, customer_id=customer_id, customer_is_existing=False,
                                   checks=[c for c in p.checks if c.get("check") != BANK_TRANSFER_CHECK] + [bank])
                return StepOutput(progress, {"customer": customer_id, "existing_customer": existing.id,
                                             "created": str(created).lower(),
                                             "message": f"Installment customer {customer_id} is ready."})
            if facts.stripe_customer_id_existing:
                existing = self._existing_customer(facts.stripe_customer_id_existing)
                return StepOutput(replace(p, customer_id=existing.id, customer_is_existing=True),
                                  {"customer": existing.id, "created": "false",
                                   "message": f"Uses the existing customer {existing.id}."})
            customer_id, created = self._find_or_create_customer(facts, "plan_customer", {}, p)
            return StepOutput(replace(p, customer_id=customer_id, customer_is_existing=False),
                              {"customer": customer_id, "created": str(created).lower(),
                               "message": f"Customer {customer_id} is ready."})


def _account_text(address: Any) -> str:
    """One financial address as a person copies it into an email."""
    kind = address.type
    detail = getattr(address, kind, None)
    if detail is None:
        return ""
    fields = {"aba": ("bank_name", "routing_number", "account_number"),
              "swift": ("bank_name", "swift_code", "account_number"),
              "sort_code": ("sort_code", "account_number"),
              "iban": ("bic", "iban"),
              "zengin": ("bank_name", "branch_code", "account_number"),
              "spei": ("bank_name", "clabe")}.get(kind, ())
    parts = [f"{name.replace('_', ' ')} {getattr(detail, name)}" for name in fields if getattr(detail, name, None)]
    return f"{kind.upper().replace('_', ' ')}: {', '.join(parts)}"
