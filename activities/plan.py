"""The plan workflow's side effects: Stripe steps, the billing-service post, the row projection.

Each activity does one step. Every Stripe write carries an idempotency key from the plan and the
step (`plan-42:create-invoice`), and before creating anything it looks for the object this plan
already made (metadata `plan_id`), because Stripe forgets keys after about 24 hours.
A Stripe refusal (4xx) becomes a non-retryable `ApplicationError` with Stripe's message; network
trouble, 429 and 5xx are raised as they are so Temporal retries them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from datetime import UTC, date, datetime, time
from typing import Any

import requests
import stripe
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.stripe_api import dashboard_url, idempotency_key, is_retryable, stripe_client
from domain.billing_config import load_billing_config
from domain.money import display
from domain.plan_rules import (
    CREDIT_APPLIED,
    CUSTOMER_CHECKS,
    PlanFacts,
    Progress,
    Projection,
    StepInput,
    StepOutput,
    action_states,
    add_months,
    credit_shares,
    end_of_day,
    installments,
    invoice_due_date,
    plan_state,
    term_end,
)
from settings import Settings

REFUSED = "StripeRefused"
PROBLEM = "PlanProblem"


@contextmanager
def stripe_errors() -> Iterator[None]:
    """A 4xx from Stripe will not get better by retrying: fail the step with Stripe's words."""
    try:
        yield
    except stripe.StripeError as err:
        if is_retryable(err):
            raise
        message = err.user_message or str(err.error.message if err.error else err) or type(err).__name__
        raise ApplicationError(f"Stripe refused the request: {message}", type=REFUSED, non_retryable=True) from None


def _ts(day: date) -> int:
    return int(datetime.combine(day, time(0, 0), tzinfo=UTC).timestamp())


class PlanActivities:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    # Keys and metadata name this installation as well as the row: row ids restart with a new
    # database, and two deployments may share a Stripe account; neither may adopt the other's objects.
    def _key(self, facts: PlanFacts, step: str) -> str:
        return idempotency_key(self.settings.installation_id, f"plan-{facts.plan_id}", step)

    def _metadata(self, facts: PlanFacts, kind: str, **extra: str) -> dict[str, str]:
        data = {"plan_id": str(facts.plan_id), "revops_kind": kind,
                "revops_installation": self.settings.installation_id}
        if facts.posthog_org_id:
            data["posthog_org_id"] = facts.posthog_org_id
        if facts.pandadoc_id:
            data["pandadoc_id"] = facts.pandadoc_id
        data.update(extra)
        return data

    def _made_by(self, obj: Any, facts: PlanFacts, kind: str) -> bool:
        meta = getattr(obj, "metadata", None)
        if meta is None:
            return False
        values = meta.to_dict() if hasattr(meta, "to_dict") else dict(meta)
        return (values.get("plan_id") == str(facts.plan_id) and values.get("revops_kind") == kind
                and values.get("revops_installation") == self.settings.installation_id)

    @property
    def client(self) -> stripe.StripeClient:
        return stripe_client(self.settings)

    # ------------------------------------------------------------------ customer
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

    def _find_or_create_customer(self, facts: PlanFacts, kind: str, extra: dict[str, str]) -> tuple[str, bool]:
        for found in self.client.v1.customers.list({"email": facts.customer_email, "limit": 100}).auto_paging_iter():
            if self._made_by(found, facts, kind):
                return found.id, False
        created = self.client.v1.customers.create(
            {"email": facts.customer_email, "name": facts.company_name,
             "metadata": self._metadata(facts, kind, **extra)},
            {"idempotency_key": self._key(facts, "create-customer")},
        )
        return created.id, True

    @activity.defn(name="plan_create_customer")
    def create_customer(self, step: StepInput) -> StepOutput:
        facts, p = step.facts, step.progress
        with stripe_errors():
            if facts.payment_schedule == "monthly":
                existing = self._existing_customer(facts.stripe_customer_id_existing or "")
                customer_id, created = self._find_or_create_customer(
                    facts, "installment_customer", {"existing_customer_id": existing.id})
                progress = replace(p, customer_id=customer_id, customer_is_existing=False)
                return StepOutput(progress, {"customer": customer_id, "existing_customer": existing.id,
                                             "created": str(created).lower(),
                                             "message": f"Installment customer {customer_id} is ready."})
            if facts.stripe_customer_id_existing:
                existing = self._existing_customer(facts.stripe_customer_id_existing)
                return StepOutput(replace(p, customer_id=existing.id, customer_is_existing=True),
                                  {"customer": existing.id, "created": "false",
                                   "message": f"Uses the existing customer {existing.id}."})
            customer_id, created = self._find_or_create_customer(facts, "plan_customer", {})
            return StepOutput(replace(p, customer_id=customer_id, customer_is_existing=False),
                              {"customer": customer_id, "created": str(created).lower(),
                               "message": f"Customer {customer_id} is ready."})

    # ------------------------------------------------------------------ upfront invoice
    @activity.defn(name="plan_create_invoice")
    def create_invoice(self, step: StepInput) -> StepOutput:
        facts, p = step.facts, step.progress
        assert p.customer_id and facts.start is not None  # the rule allows this step only then
        config = load_billing_config(self.settings.billing_config)
        due = invoice_due_date(facts.start, facts.payment_terms_days)
        end = term_end(facts.start, facts.term_months)
        description = (f"Annual plan: {facts.term_months} months of credits from {facts.start.isoformat()}; credit "
                       f"{display(facts.credit_amount, facts.currency)}, discount {facts.discount}%.")
        meta = self._metadata(facts, "upfront_invoice", credit_amount=str(facts.credit_amount),
                         discount_percent=facts.discount)
        with stripe_errors():
            invoice = next((inv for inv in self.client.v1.invoices.list(
                {"customer": p.customer_id, "limit": 100}).auto_paging_iter()
                if self._made_by(inv, facts, "upfront_invoice") and inv.status != "void"), None)
            if invoice is None:
                invoice = self.client.v1.invoices.create(
                    {"customer": p.customer_id, "collection_method": "send_invoice",
                     "due_date": int(end_of_day(due).timestamp()), "auto_advance": False,
                     "currency": facts.currency, "description": description, "metadata": meta,
                     "pending_invoice_items_behavior": "exclude"},
                    {"idempotency_key": self._key(facts, "create-invoice")},
                )
            assert invoice.id is not None
            lines = invoice.lines.data if invoice.lines else []
            if not any(self._made_by(line, facts, "upfront_invoice") for line in lines):
                self.client.v1.invoice_items.create(
                    {"customer": p.customer_id, "invoice": invoice.id, "currency": facts.currency,
                     "price_data": {"currency": facts.currency, "product": config.credit_product,
                                    "unit_amount": facts.price},
                     "quantity": 1,
                     "period": {"start": _ts(facts.start), "end": _ts(end)},
                     "description": description, "metadata": meta},
                    {"idempotency_key": self._key(facts, "create-invoice-item")},
                )
            checks = self._customer_checks(p.customer_id)
        progress = replace(p, invoice_id=invoice.id, invoice_status="draft", invoice_due_date=due.isoformat(),
                           checks=checks)
        return StepOutput(progress, {"invoice": invoice.id, "due_date": due.isoformat(),
                                     "amount": display(facts.price, facts.currency),
                                     "message": f"Draft invoice {invoice.id} is ready to verify."})

    def _customer_checks(self, customer_id: str) -> list[dict[str, str]]:
        customer = self.client.v1.customers.retrieve(customer_id)
        present: dict[str, bool | None] = {
            "address": bool(getattr(customer, "address", None)),
            "shipping": bool(getattr(customer, "shipping", None)),
            "tax_ids": self._has_tax_ids(customer_id),
        }
        return [{"check": key, "label": label,
                 "status": "unknown" if present[key] is None else "present" if present[key] else "missing"}
                for key, label in CUSTOMER_CHECKS]

    def _has_tax_ids(self, customer_id: str) -> bool | None:
        try:
            return bool(self.client.v1.customers.tax_ids.list(customer_id, {"limit": 1}).data)
        except stripe.InvalidRequestError:
            return None  # a person checks it in the dashboard; the row says "unknown"

    @activity.defn(name="plan_send_invoice")
    def send_invoice(self, step: StepInput) -> StepOutput:
        facts, p = step.facts, step.progress
        assert p.invoice_id
        with stripe_errors():
            invoice = self.client.v1.invoices.retrieve(p.invoice_id)
            if invoice.status == "draft":
                invoice = self.client.v1.invoices.finalize_invoice(
                    p.invoice_id, {"auto_advance": False}, {"idempotency_key": self._key(facts, "finalize-invoice")})
            if invoice.status == "open":
                invoice = self.client.v1.invoices.send_invoice(
                    p.invoice_id, {}, {"idempotency_key": self._key(facts, "send-invoice")})
        return StepOutput(replace(p, invoice_status=invoice.status),
                          {"invoice": p.invoice_id, "status": str(invoice.status),
                           "message": f"Invoice {p.invoice_id} was sent."})

    @activity.defn(name="plan_read_invoice")
    def read_invoice(self, step: StepInput) -> StepOutput:
        assert step.progress.invoice_id
        with stripe_errors():
            invoice = self.client.v1.invoices.retrieve(step.progress.invoice_id)
        return StepOutput(replace(step.progress, invoice_status=invoice.status), {"status": str(invoice.status)})

    # ------------------------------------------------------------------ credits
    def _credit_once(self, facts: PlanFacts, customer_id: str, amount: int, kind: str, step_key: str,
                     description: str, **extra: str) -> str:
        """One balance transaction of −amount (a credit), found by metadata if already made."""
        for txn in self.client.v1.customers.balance_transactions.list(customer_id, {"limit": 100}).auto_paging_iter():
            if self._made_by(txn, facts, kind) and all(
                    getattr(txn.metadata, k, None) == v for k, v in extra.items()):
                return txn.id
        txn = self.client.v1.customers.balance_transactions.create(
            customer_id,
            {"amount": -amount, "currency": facts.currency, "description": description,
             "metadata": self._metadata(facts, kind, **extra)},
            {"idempotency_key": self._key(facts, step_key)},
        )
        return txn.id

    @activity.defn(name="plan_apply_credit")
    def apply_credit(self, step: StepInput) -> StepOutput:
        facts, p = step.facts, step.progress
        assert p.customer_id
        with stripe_errors():
            txn = self._credit_once(facts, p.customer_id, facts.credit_amount, "plan_credit", "apply-credit",
                                    f"Prepaid credit of the annual plan (row {facts.plan_id}).")
        return StepOutput(replace(p, credit=CREDIT_APPLIED, credit_applied_at=step.now,
                                  credit_transaction_ids=[txn], credit_released=facts.credit_amount),
                          {"balance_transaction": txn, "customer": p.customer_id,
                           "amount": display(-facts.credit_amount, facts.currency),
                           "message": f"Credit of {display(facts.credit_amount, facts.currency)} applied."})

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
        facts, p = step.facts, step.progress
        existing = facts.stripe_customer_id_existing or ""
        with stripe_errors():
            self._existing_customer(existing)
            txn = self._credit_once(facts, existing, facts.credit_amount, "monthly_credit", "apply-credit-monthly",
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
            txn = self._credit_once(facts, existing, shares[index], "monthly_credit_share",
                                    f"credit-share-{index + 1}",
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

    # ------------------------------------------------------------------ subscriptions
    @activity.defn(name="plan_schedule_subscription")
    def schedule_subscription(self, step: StepInput) -> StepOutput:
        facts, p = step.facts, step.progress
        assert p.customer_id and facts.start is not None
        with stripe_errors():
            for sub in self.client.v1.subscriptions.list({"customer": p.customer_id, "limit": 100}).auto_paging_iter():
                if sub.status in ("active", "trialing", "past_due"):
                    reason = (f"customer {p.customer_id} already has the active subscription {sub.id}, "
                              f"so no schedule is needed.")
                    return StepOutput(replace(p, schedule_skipped=reason), {"skipped": reason,
                                                                           "subscription": sub.id})
            for found in self.client.v1.subscription_schedules.list(
                    {"customer": p.customer_id, "limit": 100}).auto_paging_iter():
                if self._made_by(found, facts, "plan_schedule"):
                    return StepOutput(replace(p, schedule_id=found.id), {"subscription_schedule": found.id})
            prices = load_billing_config(self.settings.billing_config).prices_for(facts.products)
            years, rest = divmod(facts.term_months, 12)
            duration: dict[str, Any] = (
                {"interval": "year", "interval_count": years} if rest == 0 else
                {"interval": "month", "interval_count": facts.term_months})
            today = datetime.fromisoformat(step.now).date()
            schedule = self.client.v1.subscription_schedules.create(
                {"customer": p.customer_id,
                 "start_date": _ts(facts.start) if facts.start > today else "now",
                 "end_behavior": "release",
                 "phases": [{"items": [{"price": price} for price in prices],
                             "duration": {"interval": duration["interval"],
                                          "interval_count": duration["interval_count"]},
                             "metadata": self._metadata(facts, "plan_schedule")}],
                 "metadata": self._metadata(facts, "plan_schedule")},
                {"idempotency_key": self._key(facts, "schedule-subscription")},
            )
        return StepOutput(replace(p, schedule_id=schedule.id),
                          {"subscription_schedule": schedule.id, "prices": ",".join(prices),
                           "message": f"Subscription schedule {schedule.id} created."})

    @activity.defn(name="plan_create_monthly_subscription")
    def create_monthly_subscription(self, step: StepInput) -> StepOutput:
        """Runbook "Create and Add - Monthly Sub", with installments that add up to the price.

        Stripe finalizes a subscription's first invoice at once, but the runbook wants the first
        installment as a draft a person can check for an hour. So the first month is our own draft
        invoice (monthly amount + the remainder cents as their own line, finalizing by itself after
        MONTHLY_FINALIZE_DELAY_SECONDS), and the subscription's first paid period starts a month in
        (`trial_end`), cancelling at the end of the term. A start in the future: a schedule instead,
        with the remainder as a pending item its first invoice picks up.
        """
        facts, p = step.facts, step.progress
        assert p.customer_id and facts.start is not None
        config = load_billing_config(self.settings.billing_config)
        split = installments(facts.price, facts.term_months)
        today = datetime.fromisoformat(step.now).date()
        lookup_key = f"plan-{facts.plan_id}-monthly"
        meta = self._metadata(facts, "monthly_subscription")
        end = term_end(facts.start, facts.term_months)
        result: dict[str, str] = {"monthly_amount": display(split.monthly, facts.currency),
                                  "remainder_on_first_invoice": display(split.remainder, facts.currency)}
        with stripe_errors():
            found_price = next(iter(self.client.v1.prices.list(
                {"product": config.credit_product, "lookup_keys": [lookup_key], "limit": 1}).data), None)
            price = found_price or self.client.v1.prices.create(
                {"product": config.credit_product, "currency": facts.currency, "unit_amount": split.monthly,
                 "recurring": {"interval": "month"}, "nickname": f"Custom - {today.isoformat()}",
                 "lookup_key": lookup_key, "metadata": self._metadata(facts, "monthly_price")},
                {"idempotency_key": self._key(facts, "monthly-price")},
            )
            progress = replace(p, monthly_price_id=price.id)
            result["price"] = price.id
            if facts.start > today:
                schedule_id = self._future_monthly_schedule(facts, p.customer_id, price.id, split.remainder, meta)
                result["subscription_schedule"] = schedule_id
                return StepOutput(replace(progress, subscription_schedule_id=schedule_id),
                                  {**result, "message": f"Monthly schedule {schedule_id} starts on {facts.start}."})
            first_id = self._first_installment(facts, p.customer_id, split.monthly, split.remainder, result)
            subscription = next((s for s in self.client.v1.subscriptions.list(
                {"customer": p.customer_id, "status": "all", "limit": 100}).auto_paging_iter()
                if self._made_by(s, facts, "monthly_subscription")), None)
            if subscription is None and facts.term_months > 1:
                subscription = self.client.v1.subscriptions.create(
                    {"customer": p.customer_id, "items": [{"price": price.id}],
                     "collection_method": "send_invoice", "days_until_due": facts.payment_terms_days,
                     # month 1 is the first installment invoice above; Stripe bills months 2..N
                     "trial_end": _ts(add_months(facts.start, 1)), "cancel_at": _ts(end), "metadata": meta},
                    {"idempotency_key": self._key(facts, "monthly-subscription")},
                )
            sub_id = subscription.id if subscription is not None else None
            if sub_id:
                result["subscription"] = sub_id
        return StepOutput(replace(progress, subscription_id=sub_id or first_id, first_invoice_id=first_id),
                          {**result, "message": f"Monthly subscription {sub_id} created; the first installment "
                                                f"invoice {first_id} is a draft until it finalizes by itself."})

    def _first_installment(self, facts: PlanFacts, customer_id: str, monthly: int, remainder: int,
                           result: dict[str, str]) -> str:
        config = load_billing_config(self.settings.billing_config)
        assert facts.start is not None
        invoice = next((inv for inv in self.client.v1.invoices.list(
            {"customer": customer_id, "limit": 100}).auto_paging_iter()
            if self._made_by(inv, facts, "first_installment")), None)
        if invoice is None:
            invoice = self.client.v1.invoices.create(
                {"customer": customer_id, "collection_method": "send_invoice",
                 "days_until_due": facts.payment_terms_days, "auto_advance": True, "currency": facts.currency,
                 "pending_invoice_items_behavior": "exclude",
                 "description": f"Installment 1 of {facts.term_months} (row {facts.plan_id}).",
                 "metadata": self._metadata(facts, "first_installment")},
                {"idempotency_key": self._key(facts, "first-installment")},
            )
        assert invoice.id is not None
        period = {"start": _ts(facts.start), "end": _ts(add_months(facts.start, 1))}
        have = {getattr(line.metadata, "revops_kind", None) for line in (invoice.lines.data if invoice.lines else [])}
        lines = [("installment", monthly, f"Installment 1 of {facts.term_months}")]
        if remainder:
            lines.append(("installment_remainder", remainder,
                          "Rounding remainder, so the installments add up to the price exactly"))
        for kind, amount, text in lines:
            if kind in have:
                continue
            self.client.v1.invoice_items.create(
                {"customer": customer_id, "invoice": invoice.id, "currency": facts.currency,
                 "price_data": {"currency": facts.currency, "product": config.credit_product, "unit_amount": amount},
                 "quantity": 1, "period": {"start": period["start"], "end": period["end"]},
                 "description": text, "metadata": self._metadata(facts, kind)},
                {"idempotency_key": self._key(facts, f"first-installment-{kind}")},
            )
        finalize_at = invoice.created + self.settings.monthly_finalize_delay_seconds
        if invoice.status == "draft" and invoice.automatically_finalizes_at != finalize_at:
            self.client.v1.invoices.update(
                invoice.id, {"auto_advance": True, "automatically_finalizes_at": finalize_at},
                {"idempotency_key": self._key(facts, "first-installment-delay")})
        result["first_invoice"] = invoice.id
        result["first_invoice_finalizes_at"] = datetime.fromtimestamp(finalize_at, UTC).isoformat()
        return invoice.id

    def _future_monthly_schedule(self, facts: PlanFacts, customer_id: str, price_id: str, remainder: int,
                                 meta: dict[str, str]) -> str:
        config = load_billing_config(self.settings.billing_config)
        assert facts.start is not None
        found = next((s for s in self.client.v1.subscription_schedules.list(
            {"customer": customer_id, "limit": 100}).auto_paging_iter()
            if self._made_by(s, facts, "monthly_subscription")), None)
        if found is not None:
            return found.id
        if remainder:
            self.client.v1.invoice_items.create(
                {"customer": customer_id, "currency": facts.currency,
                 "price_data": {"currency": facts.currency, "product": config.credit_product,
                                "unit_amount": remainder},
                 "quantity": 1, "description": "Rounding remainder, so the installments add up to the price exactly",
                 "metadata": self._metadata(facts, "installment_remainder")},
                {"idempotency_key": self._key(facts, "installment-remainder")},
            )
        schedule = self.client.v1.subscription_schedules.create(
            {"customer": customer_id, "start_date": _ts(facts.start), "end_behavior": "cancel",
             "default_settings": {"collection_method": "send_invoice",
                                  "invoice_settings": {"days_until_due": facts.payment_terms_days}},
             "phases": [{"items": [{"price": price_id}],
                         "duration": {"interval": "month", "interval_count": facts.term_months},
                         "metadata": meta}],
             "metadata": meta},
            {"idempotency_key": self._key(facts, "monthly-schedule")},
        )
        return schedule.id

    @activity.defn(name="plan_list_paid_installments")
    def list_paid_installments(self, step: StepInput) -> StepOutput:
        p = step.progress
        assert p.customer_id
        with stripe_errors():
            # A $0 invoice (the subscription's first, covered month) is no installment.
            paid = [inv.id for inv in self.client.v1.invoices.list(
                {"customer": p.customer_id, "status": "paid", "limit": 100}).auto_paging_iter()
                if inv.id and inv.total > 0]
        known = [i for i in p.installments_paid]
        return StepOutput(replace(p, installments_paid=known + [i for i in reversed(paid) if i not in known]))

    # ------------------------------------------------------------------ billing service
    @activity.defn(name="plan_sync_billing_service")
    def sync_billing_service(self, step: StepInput) -> StepOutput:
        """Runbook step 6 ("Update Django Admin"): org → new customer → subscription."""
        facts, p = step.facts, step.progress
        mapping = billing_mapping(facts, p)
        url = self.settings.billing_service_url
        if not url:
            return StepOutput(replace(p, billing_synced=True),
                              {**mapping, "delivered": "no: BILLING_SERVICE_URL is not set; stored on the row"})
        body = json.dumps(mapping, sort_keys=True).encode()
        signature = hmac.new(self.settings.billing_service_secret.encode(), body, hashlib.sha256).hexdigest()
        response = requests.post(url, data=body, timeout=10, headers={
            "Content-Type": "application/json",
            "X-Revops-Signature": f"sha256={signature}",
            "Idempotency-Key": self._key(facts, "sync-billing-service"),
        })
        if 400 <= response.status_code < 500 and response.status_code not in (408, 409, 429):
            raise ApplicationError(
                f"The billing service at {url} refused the mapping with HTTP {response.status_code}: "
                f"{response.text[:200]}", type=PROBLEM, non_retryable=True)
        response.raise_for_status()  # 5xx and timeouts: Temporal retries with backoff
        return StepOutput(replace(p, billing_synced=True),
                          {**mapping, "delivered": f"yes: HTTP {response.status_code}"})

    # ------------------------------------------------------------------ projection
    @activity.defn(name="plan_project")
    def project(self, projection: Projection) -> None:
        from store.db import unit_of_work
        from store.models import Plan
        from store.plans import record
        from temporal_client import workflow_url

        facts, p = projection.facts, projection.progress
        now = datetime.fromisoformat(projection.now)
        with unit_of_work(self.settings.database_url) as session:
            plan = session.get(Plan, facts.plan_id, with_for_update=True)
            if plan is None:
                return
            view = dict(plan.workflow_view or {})
            if int(view.get("seq", 0)) < projection.seq:
                plan.stripe_customer_id = p.customer_id
                plan.invoice_id = p.invoice_id
                plan.subscription_schedule_id = p.schedule_id or p.subscription_schedule_id
                plan.monthly_price_id = p.monthly_price_id
                plan.subscription_id = p.subscription_id
                plan.credit_applied_at = datetime.fromisoformat(p.credit_applied_at) if p.credit_applied_at else None
                plan.credit_scheduled_for = (datetime.fromisoformat(p.credit_scheduled_for)
                                             if p.credit_scheduled_for and p.credit != "none" else None)
                plan.state = plan_state(facts, p, now.date())
                plan.workflow_view = {
                    "seq": projection.seq,
                    "progress": asdict(p),
                    "actions": {a: {"allowed": ok, "reason": why}
                                for a, (ok, why) in action_states(facts, p, now.date()).items()},
                    "checks": p.checks,
                    "error": ({"action": p.failed_action, "message": p.failed_message}
                              if p.failed_action else None),
                    "billing_mapping": billing_mapping(facts, p) if p.billing_synced else None,
                    "temporal_url": workflow_url(self.settings, f"plan-{facts.plan_id}"),
                    "links": {obj: dashboard_url(self.settings, obj) for obj in _stripe_ids(p)},
                    "projected_at": projection.now,
                }
            note = projection.audit
            if note is not None:
                result: dict[str, Any] = dict(note.result)
                links = {v: dashboard_url(self.settings, v) for v in note.result.values()
                         if isinstance(v, str) and v.split("_", 1)[0] in {"cus", "in", "sub", "price", "cbtxn"}}
                if links:
                    result["links"] = links
                result["workflow"] = workflow_url(self.settings, f"plan-{facts.plan_id}")
                record(session, facts.plan_id, actor=note.actor, action=note.action, outcome=note.outcome,
                       input=note.input, result=result, error=note.error, dedupe_key=note.key)


def billing_mapping(facts: PlanFacts, p: Progress) -> dict[str, str]:
    return {"posthog_org_id": facts.posthog_org_id or "", "stripe_customer_id": p.customer_id or "",
            "stripe_subscription_id": p.subscription_id or p.subscription_schedule_id or "",
            "existing_stripe_customer_id": facts.stripe_customer_id_existing or "",
            "plan_id": str(facts.plan_id)}


def _stripe_ids(p: Progress) -> list[str]:
    ids = [p.customer_id, p.invoice_id, p.schedule_id, p.monthly_price_id, p.subscription_id,
           p.subscription_schedule_id, p.first_invoice_id]
    return [i for i in ids if i]


def build(settings: Settings) -> list[Callable[..., Any]]:
    acts = PlanActivities(settings)
    return [acts.create_customer, acts.create_invoice, acts.send_invoice, acts.read_invoice, acts.apply_credit,
            acts.billing_period_end, acts.apply_credit_monthly, acts.release_credit_share,
            acts.schedule_subscription, acts.create_monthly_subscription, acts.list_paid_installments,
            acts.sync_billing_service, acts.project]
