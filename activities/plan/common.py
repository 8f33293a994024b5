"""What every plan activity shares: the Stripe client, the plan's identity, error translation."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time

import stripe
from temporalio.exceptions import ApplicationError

from activities.plan.identity import PlanIdentity
from activities.stripe_api import is_replayed_failure, is_retryable, stripe_client
from domain.plan_rules import PlanFacts, Progress
from settings import Settings

REFUSED = "StripeRefused"
PROBLEM = "PlanProblem"


@contextmanager
def stripe_errors() -> Iterator[None]:
    """A 4xx from Stripe will not get better by retrying: fail the step with Stripe's words.
    Neither will a 500 Stripe replays for the same idempotency key."""
    try:
        yield
    except stripe.StripeError as err:
        if is_retryable(err):
            raise
        message = err.user_message or str(err.error.message if err.error else err) or type(err).__name__
        if is_replayed_failure(err):
            message = (f"HTTP {err.http_status} that Stripe will replay for the same idempotency key ({message}); "
                       f"use \"Retry step\": it looks for what was made and sends fresh keys.")
        raise ApplicationError(f"Stripe refused the request: {message}", type=REFUSED, non_retryable=True) from None


def ts(day: date) -> int:
    """Midnight UTC of `day` as a Unix timestamp (Stripe's periods and anchors)."""
    return int(datetime.combine(day, time(0, 0), tzinfo=UTC).timestamp())


class PlanActivityBase:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def client(self) -> stripe.StripeClient:
        return stripe_client(self.settings)

    def identity(self, facts: PlanFacts, progress: Progress | None = None) -> PlanIdentity:
        return PlanIdentity(self.settings.installation_id, facts, progress.key_generation if progress else 0)
