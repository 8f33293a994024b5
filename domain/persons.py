"""Which PostHog person and group a Stripe customer's revenue belongs to (seed 000).

Person: `posthog_person_distinct_id` in the customer's metadata wins; otherwise the value on the
most recently created subscription, charge or invoice of that customer that carries it. Group:
the same rule with `posthog_group_key`, falling back to `posthog_org_id` (what the plan workflows
put on every customer they create, SPEC §5), so contracts made here land on their organisation
without extra tagging. The source of each answer is kept, e.g. `customer` or `subscription:sub_1`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

PERSON_KEY = "posthog_person_distinct_id"
GROUP_KEYS = ("posthog_group_key", "posthog_org_id")
CHILD_KINDS = frozenset({"subscription", "charge", "invoice"})


@dataclass(frozen=True)
class Child:
    """A subscription, charge or invoice of the customer, with what resolution needs of it."""

    kind: str
    id: str
    created: int  # unix seconds, as Stripe gives it
    metadata: Mapping[str, str]


@dataclass(frozen=True)
class Resolution:
    value: str | None
    source: str | None  # "customer", "subscription:sub_…", … or None when nothing carries it


def _value(metadata: Mapping[str, str] | None, keys: Sequence[str]) -> str | None:
    for key in keys:
        value = (metadata or {}).get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def resolve(customer_metadata: Mapping[str, str] | None, children: Iterable[Child],
            keys: Sequence[str]) -> Resolution:
    found = _value(customer_metadata, keys)
    if found is not None:
        return Resolution(found, "customer")
    # Newest first; equal timestamps broken by id so the answer never depends on input order.
    tagged = sorted((c for c in children if c.kind in CHILD_KINDS and _value(c.metadata, keys)),
                    key=lambda c: (c.created, c.id), reverse=True)
    if not tagged:
        return Resolution(None, None)
    newest = tagged[0]
    return Resolution(_value(newest.metadata, keys), f"{newest.kind}:{newest.id}")


def resolve_person(customer_metadata: Mapping[str, str] | None, children: Iterable[Child]) -> Resolution:
    return resolve(customer_metadata, children, (PERSON_KEY,))


def resolve_group(customer_metadata: Mapping[str, str] | None, children: Iterable[Child]) -> Resolution:
    return resolve(customer_metadata, children, GROUP_KEYS)
