"""The plan workflow's side effects, one module per Stripe object family (docs/plans.md).

Each activity does one step. Every Stripe write carries an idempotency key and metadata from the
plan's identity (`identity.PlanIdentity`), and before creating anything it looks for the object
this row already made, because Stripe forgets keys after about 24 hours. A Stripe refusal (4xx)
becomes a non-retryable `ApplicationError` with Stripe's message; network trouble, 429 and 5xx
are raised as they are so Temporal retries them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from activities.plan.billing_service import BillingServiceActivities, billing_mapping
from activities.plan.common import PROBLEM, REFUSED, stripe_errors
from activities.plan.credits import CreditActivities
from activities.plan.customers import CustomerActivities
from activities.plan.identity import REPLAYED_500, PlanIdentity
from activities.plan.invoices import InvoiceActivities
from activities.plan.projection import ProjectionActivities
from activities.plan.subscriptions import SubscriptionActivities
from settings import Settings

__all__ = ["PROBLEM", "REFUSED", "REPLAYED_500", "PlanActivities", "PlanIdentity", "billing_mapping", "build",
           "stripe_errors"]


class PlanActivities(CustomerActivities, InvoiceActivities, CreditActivities, SubscriptionActivities,
                     BillingServiceActivities, ProjectionActivities):
    """Every plan activity on one object holding the settings (the workflow calls them by
    reference, `PlanActivities.create_invoice`)."""


def build(settings: Settings) -> list[Callable[..., Any]]:
    acts = PlanActivities(settings)
    return [acts.create_customer, acts.create_invoice, acts.send_invoice, acts.read_invoice, acts.verify_payment,
            acts.apply_credit, acts.return_held_balance, acts.billing_period_end, acts.apply_credit_monthly,
            acts.release_credit_share, acts.schedule_subscription, acts.create_monthly_subscription,
            acts.list_paid_installments, acts.sync_billing_service, acts.project]
