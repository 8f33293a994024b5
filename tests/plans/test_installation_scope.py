"""Two deployments sharing one Stripe account (or a database reset that restarts row ids) must not
adopt each other's objects: keys and the look-before-create are scoped by INSTALLATION_ID."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from activities.plan import PlanActivities
from domain.plan_rules import PlanFacts
from settings import Settings


def test_same_row_id_in_two_installations_makes_two_customers(stripe_sandbox: Any, settings: Settings) -> None:
    base = replace(settings, stripe_api_base=stripe_sandbox.url, stripe_api_key=stripe_sandbox.api_key)
    run = uuid.uuid4().hex[:8]  # the sandbox (and its idempotency keys) is shared by the whole session
    email = f"scope-{run}@example.com"
    facts = PlanFacts(plan_id=1, company_name="Shared Co", customer_email=email)
    staging = PlanActivities(replace(base, installation_id=f"staging-{run}"))
    production = PlanActivities(replace(base, installation_id=f"production-{run}"))

    first, created_first = staging._find_or_create_customer(facts, "plan_customer", {})
    again, created_again = staging._find_or_create_customer(facts, "plan_customer", {})
    other, created_other = production._find_or_create_customer(facts, "plan_customer", {})

    assert (created_first, created_again, created_other) == (True, False, True)
    assert first == again != other
    customers = stripe_sandbox.client().v1.customers.list({"email": email}).data
    assert sorted(c.metadata["revops_installation"] for c in customers) == [f"production-{run}", f"staging-{run}"]
