"""Subscriptions: the upfront plan's schedule over the term, and the monthly plan's installments
(a price, the first installment as a draft to verify, and the subscription or schedule that bills
months 2..N)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Literal

from stripe.params import SubscriptionScheduleCreateParams
from stripe.params._subscription_schedule_create_params import SubscriptionScheduleCreateParamsDefaultSettings
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.plan.common import PROBLEM, PlanActivityBase, stripe_errors, ts
from activities.plan.identity import PlanIdentity, create_once
from domain.billing_config import load_billing_config
from domain.money import display
from domain.plan_rules import (
    Installments,
    StepInput,
    StepOutput,
    add_months,
    installments,
    monthly_start_problem,
    monthly_window,
)


class SubscriptionActivities(PlanActivityBase):
    def _billing_settings(self, customer_id: str, payment_terms_days: int) -> dict[str, Any]:
        """Bill the way the contract says: an invoice with the row's payment terms, unless the
        customer has a default payment method to charge (Stripe cannot charge a customer made
        through the API without one: the invoice would stay open and the subscription go
        `incomplete` or `past_due`)."""
        customer = self.client.v1.customers.retrieve(customer_id)
        settings = getattr(customer, "invoice_settings", None)
        if getattr(settings, "default_payment_method", None) or getattr(customer, "default_source", None):
            return {"collection_method": "charge_automatically"}
        return {"collection_method": "send_invoice", "days_until_due": payment_terms_days}

    @activity.defn(name="plan_schedule_subscription")
    def schedule_subscription(self, step: StepInput) -> StepOutput:
        facts, p = step.facts, step.progress
        assert p.customer_id and facts.start is not None
        customer_id = p.customer_id
        ident = self.identity(facts, p)
        with stripe_errors():
            for sub in self.client.v1.subscriptions.list({"customer": customer_id, "limit": 100}).auto_paging_iter():
                if sub.status in ("active", "trialing", "past_due"):
                    reason = (f"customer {customer_id} already has the active subscription {sub.id}, "
                              f"so no schedule is needed.")
                    return StepOutput(replace(p, schedule_skipped=reason), {"skipped": reason,
                                                                           "subscription": sub.id})
            prices = load_billing_config(self.settings.billing_config).prices_for(facts.products)
            years, rest = divmod(facts.term_months, 12)
            duration: dict[str, Any] = (
                {"interval": "year", "interval_count": years} if rest == 0 else
                {"interval": "month", "interval_count": facts.term_months})
            today = datetime.fromisoformat(step.now).date()
            billing = self._billing_settings(customer_id, facts.payment_terms_days)
            default_settings: SubscriptionScheduleCreateParamsDefaultSettings = {
                "collection_method": billing["collection_method"]}
            if "days_until_due" in billing:
                default_settings["invoice_settings"] = {"days_until_due": billing["days_until_due"]}
            start: int | Literal["now"] = ts(facts.start) if facts.start > today else "now"
            params: SubscriptionScheduleCreateParams = {
                "customer": customer_id, "start_date": start, "end_behavior": "release",
                "default_settings": default_settings,
                "phases": [{"items": [{"price": price} for price in prices],
                            "duration": {"interval": duration["interval"],
                                         "interval_count": duration["interval_count"]},
                            "metadata": ident.metadata("plan_schedule")}],
                "metadata": ident.metadata("plan_schedule")}

            def find() -> Any | None:
                listed = self.client.v1.subscription_schedules.list({"customer": customer_id, "limit": 100})
                return next((s for s in listed.auto_paging_iter() if ident.made_by(s, "plan_schedule")), None)

            schedule = create_once("subscription schedule", ident.key("schedule-subscription"), find, lambda: (
                self.client.v1.subscription_schedules.create(
                    params, {"idempotency_key": ident.key("schedule-subscription")})))
        return StepOutput(replace(p, schedule_id=schedule.id),
                          {"subscription_schedule": schedule.id, "prices": ",".join(prices),
                           "collection_method": billing["collection_method"],
                           "message": f"Subscription schedule {schedule.id} created."})

    @activity.defn(name="plan_create_monthly_subscription")
    def create_monthly_subscription(self, step: StepInput) -> StepOutput:
        """Runbook "Create and Add - Monthly Sub", with installments that add up to the price.

        Month 1 is our own invoice (the monthly amount + the remainder cents as their own line),
        a draft a person can check, finalizing by itself after MONTHLY_FINALIZE_DELAY_SECONDS (or
        on the start date, when that is later). Months 2..N are billed by Stripe: a subscription
        whose first paid period begins a month after the start (`trial_end`), or, for a start
        in the future, a schedule beginning then. The writes are ordered so a failure half-way
        sends nothing: the draft does not finalize until the subscription exists; the ids made so
        far are kept on the row (`partial`) and "Retry step" finds them again.
        """
        facts, p = step.facts, step.progress
        assert p.customer_id and facts.start is not None
        today = datetime.fromisoformat(step.now).date()
        problem = monthly_start_problem(facts, today)
        if problem:
            raise ApplicationError(problem, type=PROBLEM, non_retryable=True)
        ident = self.identity(facts, p)
        split = installments(facts.price, facts.term_months)
        result: dict[str, str] = {"monthly_amount": display(split.monthly, facts.currency),
                                  "remainder_on_first_invoice": display(split.remainder, facts.currency)}
        partial: dict[str, str] = {}
        try:
            with stripe_errors():
                price_id = self._monthly_price(ident, split, today)
                partial["monthly_price"] = result["price"] = price_id
                first_id = self._first_installment_draft(ident, p.customer_id, split)
                partial["first_invoice"] = result["first_invoice"] = first_id
                sub_id = schedule_id = None
                if facts.term_months > 1:
                    if facts.start > today:
                        schedule_id = self._future_monthly_schedule(ident, p.customer_id, price_id)
                        partial["subscription_schedule"] = result["subscription_schedule"] = schedule_id
                    else:
                        sub_id = self._monthly_subscription(ident, p.customer_id, price_id)
                        partial["subscription"] = result["subscription"] = sub_id
                finalizes_at = self._arm_first_installment(ident, first_id, datetime.fromisoformat(step.now))
                result["first_invoice_finalizes_at"] = datetime.fromtimestamp(finalizes_at, UTC).isoformat()
        except ApplicationError as err:
            # The row keeps what was made, so a person can see it; "Retry step" finds it again.
            raise ApplicationError(f"{err.message} Made so far: "
                                   f"{', '.join(f'{k} {v}' for k, v in partial.items()) or 'nothing'}.",
                                   partial, type=err.type, non_retryable=True) from None
        progress = replace(p, monthly_price_id=price_id, subscription_id=sub_id, subscription_schedule_id=schedule_id,
                           first_invoice_id=first_id, partial={})
        billed_by = sub_id or schedule_id
        message = (f"The first installment {first_id} is a draft until it finalizes by itself"
                   + (f"; {billed_by} bills months 2 to {facts.term_months}." if billed_by else
                      "; it is the only installment."))
        return StepOutput(progress, {**result, "message": message})

    def _monthly_price(self, ident: PlanIdentity, split: Installments, today: Any) -> str:
        """The plan's monthly price. One found under the lookup key is adopted only if this
        installation made it for this row and it bills exactly the installment; otherwise a new
        price takes the key over (`transfer_lookup_key`), so the row never bills another amount."""
        facts = ident.facts
        config = load_billing_config(self.settings.billing_config)
        lookup_key = ident.monthly_price_lookup_key()
        found = next(iter(self.client.v1.prices.list(
            {"product": config.credit_product, "lookup_keys": [lookup_key], "limit": 1}).data), None)
        step = "monthly-price"
        if found is not None:
            recurring = found.recurring
            if (ident.made_by(found, "monthly_price") and found.unit_amount == split.monthly
                    and found.currency == facts.currency and recurring is not None
                    and recurring.interval == "month" and recurring.interval_count == 1 and found.active):
                return found.id
            # Not ours, or not this installment: a new price, under a key that names its amount.
            step = f"monthly-price-{facts.currency}-{split.monthly}"
        price = self.client.v1.prices.create(
            {"product": config.credit_product, "currency": facts.currency, "unit_amount": split.monthly,
             "recurring": {"interval": "month"}, "nickname": f"Custom - {today.isoformat()}",
             "lookup_key": lookup_key, "transfer_lookup_key": found is not None,
             "metadata": ident.metadata("monthly_price", unit_amount=str(split.monthly))},
            {"idempotency_key": ident.key(step)},
        )
        return price.id

    def _first_installment_draft(self, ident: PlanIdentity, customer_id: str, split: Installments) -> str:
        facts = ident.facts
        assert facts.start is not None
        config = load_billing_config(self.settings.billing_config)

        def find() -> Any | None:
            listed = self.client.v1.invoices.list({"customer": customer_id, "limit": 100})
            return next((inv for inv in listed.auto_paging_iter()
                         if ident.made_by(inv, "first_installment") and inv.status != "void"), None)

        # auto_advance stays off until the subscription exists (`_arm_first_installment`).
        invoice = create_once("first installment invoice", ident.key("first-installment"), find, lambda: (
            self.client.v1.invoices.create(
                {"customer": customer_id, "collection_method": "send_invoice",
                 "days_until_due": facts.payment_terms_days, "auto_advance": False, "currency": facts.currency,
                 "pending_invoice_items_behavior": "exclude",
                 "description": f"Installment 1 of {facts.term_months} (row {facts.plan_id}).",
                 "metadata": ident.metadata("first_installment")},
                {"idempotency_key": ident.key("first-installment")})))
        assert invoice.id is not None
        invoice_id = invoice.id
        period = {"start": ts(facts.start), "end": ts(add_months(facts.start, 1))}
        lines = [("installment", split.monthly, f"Installment 1 of {facts.term_months}")]
        if split.remainder:
            lines.append(("installment_remainder", split.remainder,
                          "Rounding remainder, so the installments add up to the price exactly"))
        for kind, amount, text in lines:
            def find_line(kind: str = kind) -> Any | None:
                fresh = self.client.v1.invoices.retrieve(invoice_id)
                return next((ln for ln in (fresh.lines.data if fresh.lines else []) if ident.made_by(ln, kind)), None)

            def create_line(kind: str = kind, amount: int = amount, text: str = text) -> Any:
                return self.client.v1.invoice_items.create(
                    {"customer": customer_id, "invoice": invoice_id, "currency": facts.currency,
                     "price_data": {"currency": facts.currency, "product": config.credit_product,
                                    "unit_amount": amount},
                     "quantity": 1, "period": {"start": period["start"], "end": period["end"]},
                     "description": text, "metadata": ident.metadata(kind)},
                    {"idempotency_key": ident.key(f"first-installment-{kind}")})

            create_once("installment line", ident.key(f"first-installment-{kind}"), find_line, create_line)
        return str(invoice_id)

    def _arm_first_installment(self, ident: PlanIdentity, invoice_id: str, now: datetime) -> int:
        """Let the draft finalize by itself: after the delay a person has to check it (counted
        from now when a retry arms it later), and not before the contract starts."""
        facts = ident.facts
        assert facts.start is not None
        invoice = self.client.v1.invoices.retrieve(invoice_id)
        delay = self.settings.monthly_finalize_delay_seconds
        finalize_at = max(invoice.created + delay, int(now.timestamp()) + delay, ts(facts.start))
        armed = invoice.auto_advance and invoice.automatically_finalizes_at == finalize_at
        if invoice.status == "draft" and not armed:
            self.client.v1.invoices.update(
                invoice_id, {"auto_advance": True, "automatically_finalizes_at": finalize_at},
                {"idempotency_key": ident.key(f"first-installment-arm-{finalize_at}")})
        return finalize_at

    def _monthly_subscription(self, ident: PlanIdentity, customer_id: str, price_id: str) -> str:
        facts = ident.facts
        assert facts.start is not None
        trial_end, cancel_at = monthly_window(facts.start, facts.term_months)

        def find() -> Any | None:
            listed = self.client.v1.subscriptions.list({"customer": customer_id, "status": "all", "limit": 100})
            return next((s for s in listed.auto_paging_iter() if ident.made_by(s, "monthly_subscription")), None)

        subscription: Any = create_once("monthly subscription", ident.key("monthly-subscription"), find, lambda: (
            self.client.v1.subscriptions.create(
                {"customer": customer_id, "items": [{"price": price_id}],
                 "collection_method": "send_invoice", "days_until_due": facts.payment_terms_days,
                 # month 1 is the first installment invoice; Stripe bills months 2..N
                 "trial_end": ts(trial_end), "cancel_at": ts(cancel_at),
                 "metadata": ident.metadata("monthly_subscription")},
                {"idempotency_key": ident.key("monthly-subscription")})))
        return str(subscription.id)

    def _future_monthly_schedule(self, ident: PlanIdentity, customer_id: str, price_id: str) -> str:
        facts = ident.facts
        assert facts.start is not None
        second_month, _ = monthly_window(facts.start, facts.term_months)
        meta = ident.metadata("monthly_subscription")

        def find() -> Any | None:
            listed = self.client.v1.subscription_schedules.list({"customer": customer_id, "limit": 100})
            return next((s for s in listed.auto_paging_iter() if ident.made_by(s, "monthly_subscription")), None)

        schedule = create_once("monthly schedule", ident.key("monthly-schedule"), find, lambda: (
            self.client.v1.subscription_schedules.create(
                {"customer": customer_id, "start_date": ts(second_month), "end_behavior": "cancel",
                 "default_settings": {"collection_method": "send_invoice",
                                      "invoice_settings": {"days_until_due": facts.payment_terms_days}},
                 "phases": [{"items": [{"price": price_id}],
                             "duration": {"interval": "month", "interval_count": facts.term_months - 1},
                             "metadata": meta}],
                 "metadata": meta},
                {"idempotency_key": ident.key("monthly-schedule")})))
        return str(schedule.id)


