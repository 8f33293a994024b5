"""Runbook step 6 ("Update Django Admin"): the org → installment customer → subscription mapping,
stored on the row and POSTed, signed, to BILLING_SERVICE_URL."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import replace

import requests
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.plan.common import PROBLEM, PlanActivityBase, stripe_errors
from domain.plan_rules import PlanFacts, Progress, StepInput, StepOutput


def billing_mapping(facts: PlanFacts, p: Progress) -> dict[str, str]:
    # Only a real subscription id: a schedule id (sub_sched_…) is not one, and the billing
    # service would store an id Stripe never bills under.
    return {"posthog_org_id": facts.posthog_org_id or "", "stripe_customer_id": p.customer_id or "",
            "stripe_subscription_id": p.subscription_id or "",
            "existing_stripe_customer_id": facts.stripe_customer_id_existing or "",
            "plan_id": str(facts.plan_id)}


def signature_header(secret: str, body: bytes, timestamp: int) -> str:
    """`t=<unix>,v1=<hex HMAC-SHA256(secret, "{t}.{body}")>`: the timestamp is signed too, so the
    receiver can refuse a replayed post (the same scheme as Stripe's webhooks)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class BillingServiceActivities(PlanActivityBase):
    @activity.defn(name="plan_sync_billing_service")
    def sync_billing_service(self, step: StepInput) -> StepOutput:
        facts, p = step.facts, step.progress
        if not facts.posthog_org_id:
            raise ApplicationError(
                f"Row {facts.plan_id} has no PostHog org id; the billing service maps an org to its customer, "
                f"so fill in \"PostHog Org ID\" and use \"Retry step\".", type=PROBLEM, non_retryable=True)
        if not p.subscription_id and p.subscription_schedule_id:
            with stripe_errors():
                schedule = self.client.v1.subscription_schedules.retrieve(p.subscription_schedule_id)
            sub = schedule.subscription
            if not sub:
                # The workflow calls this at the schedule's start: Stripe makes the subscription
                # then, so a moment later it exists. Retried with backoff.
                raise ApplicationError(
                    f"The schedule {p.subscription_schedule_id} has not made its subscription yet; the mapping "
                    f"is sent once Stripe has made it.", type="SubscriptionNotYetMade")
            p = replace(p, subscription_id=sub if isinstance(sub, str) else sub.id)
        mapping = billing_mapping(facts, p)
        url = self.settings.billing_service_url
        if not url:
            # Not "done": the billing service still bills the org the old way until it has the mapping.
            raise ApplicationError(
                f"Nothing was sent to the billing service: BILLING_SERVICE_URL is not set. The mapping is org "
                f"{mapping['posthog_org_id']} → customer {mapping['stripe_customer_id']} → subscription "
                f"{mapping['stripe_subscription_id'] or '(not made yet)'}; set BILLING_SERVICE_URL (and its secret) "
                f"and use \"Retry step\", or enter it in the billing service by hand.",
                type=PROBLEM, non_retryable=True)
        body = json.dumps(mapping, sort_keys=True).encode()
        response = requests.post(url, data=body, timeout=10, headers={
            "Content-Type": "application/json",
            "X-Revops-Signature": signature_header(self.settings.billing_service_secret, body, int(time.time())),
            "Idempotency-Key": self.identity(facts).key("sync-billing-service"),
        })
        if 400 <= response.status_code < 500 and response.status_code not in (408, 409, 429):
            raise ApplicationError(
                f"The billing service at {url} refused the mapping with HTTP {response.status_code}: "
                f"{response.text[:200]}", type=PROBLEM, non_retryable=True)
        response.raise_for_status()  # 5xx and timeouts: Temporal retries with backoff
        return StepOutput(replace(p, billing_synced=True),
                          {**mapping, "delivered": f"yes: HTTP {response.status_code}"})
