"""A plan row's identity in Stripe: the one owner of idempotency keys, metadata, lookup keys and
the "made by this installation for this row" check. Every plan activity goes through it.

Keys and metadata name this installation as well as the row: row ids restart with a new database
and two deployments may share a Stripe account; neither may adopt the other's objects. Stripe
forgets idempotency keys after about 24 hours, so every create is preceded by a look for the
object this identity already made (`create_once`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import stripe
from temporalio.exceptions import ApplicationError

from activities.stripe_api import idempotency_key, is_replayed_failure
from domain.plan_rules import PlanFacts

T = TypeVar("T")

# A write Stripe keeps answering with the same stored 500: retrying the key cannot help.
REPLAYED_500 = "StripeReplayed500"


class PlanIdentity:
    def __init__(self, installation_id: str, facts: PlanFacts, key_generation: int = 0) -> None:
        self.installation_id = installation_id
        self.facts = facts
        # "Retry step" after a replayed 500 moves to fresh keys; safe because every step looks
        # for its objects before creating them.
        self.key_generation = key_generation

    @property
    def plan_id(self) -> int:
        return self.facts.plan_id

    def key(self, step: str) -> str:
        """`{installation}:plan-42:create-invoice`, the same on every retry and replay."""
        if self.key_generation:
            return idempotency_key(self.installation_id, f"plan-{self.plan_id}", step, f"retry-{self.key_generation}")
        return idempotency_key(self.installation_id, f"plan-{self.plan_id}", step)

    def metadata(self, kind: str, **extra: str) -> dict[str, str]:
        facts = self.facts
        data = {"plan_id": str(facts.plan_id), "revops_kind": kind, "revops_installation": self.installation_id}
        if facts.posthog_org_id:
            data["posthog_org_id"] = facts.posthog_org_id
        if facts.pandadoc_id:
            data["pandadoc_id"] = facts.pandadoc_id
        data.update(extra)
        return data

    def made_by(self, obj: Any, kind: str, **extra: str) -> bool:
        """True when `obj` was made by this installation for this row as `kind` (and `extra`)."""
        meta = getattr(obj, "metadata", None)
        if meta is None:
            return False
        values = meta.to_dict() if hasattr(meta, "to_dict") else dict(meta)
        return (values.get("plan_id") == str(self.plan_id) and values.get("revops_kind") == kind
                and values.get("revops_installation") == self.installation_id
                and all(values.get(k) == v for k, v in extra.items()))

    def monthly_price_lookup_key(self) -> str:
        """Unique per installation and row; a price found under it is still checked (`made_by`,
        amount, currency, interval) before it is adopted."""
        return idempotency_key(self.installation_id, f"plan-{self.plan_id}", "monthly")


def create_once(what: str, key: str, find: Callable[[], T | None], create: Callable[[], T]) -> T:
    """Look, then create. When Stripe replays a stored 500 for the key (it saved the first
    answer, `Stripe-Should-Retry: false`), look again — the write may have happened — and
    otherwise fail the step for "Retry step" instead of retrying a key that cannot succeed."""
    found = find()
    if found is not None:
        return found
    try:
        return create()
    except stripe.StripeError as err:
        if not is_replayed_failure(err):
            raise
        found = find()
        if found is not None:
            return found
        raise ApplicationError(
            f"Stripe answered HTTP {err.http_status} to the {what} and replays that answer for the "
            f"idempotency key {key!r}, so retrying it cannot help; nothing was made. Use \"Retry step\": "
            f"it looks for the {what} again and sends a fresh key only if none exists.",
            type=REPLAYED_500, non_retryable=True) from None
