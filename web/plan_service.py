"""Moved to `plans.service`: every change to a plan row goes through `PlanService` there. These
names stay importable for code that still reads them from here (tests/plans/test_next_billing_cycle.py)."""

from plans.service import (  # noqa: F401
    ActionRejected,
    PlanRejected,
    actions_for,
    current_state,
    facts_for,
    plan_json,
    state_label,
)
