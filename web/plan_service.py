"""The one way into plan actions, for the JSON API and the web table alike.

`actions_for(plan)` answers "which buttons, and why not" from the row's projection with
`domain.plan_rules` — cheap, no Temporal call, fine for thousands of rows. `perform_action` sends
a click to the plan's workflow as an update (starting the workflow on the row's first click) and
returns the updated plan JSON; a refused click raises `ActionRejected` with the rule's sentence.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from temporalio.client import Client, WithStartWorkflowOperation, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from domain.billing_config import load_billing_config
from domain.plan_input import validate_plan
from domain.plan_rules import (
    ACTIONS,
    STATE_LABELS,
    ActionRequest,
    ActionResult,
    PlanFacts,
    action_states,
    locked_fields,
    plan_state,
    progress_from_view,
)
from store.accounts import Principal
from store.models import Plan
from store.plans import NEEDS_REVIEW, create_plan, plan_input_values, plan_to_json, record, update_plan
from web.context import db, settings, temporal
from workflows.plan import PlanStart, PlanWorkflow

UPDATE_TIMEOUT_SECONDS = 30.0


class ActionRejected(Exception):
    """A click or an edit that cannot be done: `message` for the person, `status` for HTTP."""

    def __init__(self, message: str, status: int = 409, *, errors: dict[str, str] | None = None,
                 plan: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.errors = errors or {}
        self.plan = plan


def facts_for(plan: Plan) -> PlanFacts:
    """The row's input fields as the workflow and the rules see them."""
    problems: list[str] = []
    if plan.state == NEEDS_REVIEW:
        problems = [f"{field}: {message}" for field, message in (plan.errors or {}).items()
                    if not field.startswith("_")] or ["the row needs review."]
    return PlanFacts(
        plan_id=plan.id,
        company_name=plan.company_name,
        customer_email=plan.customer_email,
        credit_amount=plan.credit_amount,
        discount=format(plan.discount.normalize(), "f") if plan.discount is not None else "0",
        price=plan.price,
        currency=plan.currency,
        start_date=plan.start_date.isoformat() if plan.start_date else None,
        term_months=plan.term_months,
        posthog_org_id=plan.posthog_org_id,
        pandadoc_id=plan.pandadoc_id,
        payment_schedule=plan.payment_schedule,
        credit_start=plan.credit_start,
        credit_release=plan.credit_release,
        payment_terms_days=plan.payment_terms_days,
        products=list(plan.products or []),
        stripe_customer_id_existing=plan.stripe_customer_id_existing,
        input_errors=problems,
    )


def actions_for(plan: Plan) -> dict[str, dict[str, Any]]:
    """Each action with `allowed` and `reason`, by the same rule the workflow's validators use."""
    today = datetime.now(UTC).date()
    states = action_states(facts_for(plan), progress_from_view(plan.workflow_view), today)
    return {action: {"allowed": ok, "reason": why} for action, (ok, why) in states.items()}


def state_label(state: str) -> str:
    return STATE_LABELS.get(state, state.replace("_", " ").capitalize())


def current_state(plan: Plan) -> str:
    """The row's state as of today: the stored one, except that an unpaid invoice past its due
    date reads "overdue" without waiting for the workflow to write again."""
    if not plan.workflow_view or plan.state == NEEDS_REVIEW:
        return plan.state
    return plan_state(facts_for(plan), progress_from_view(plan.workflow_view), datetime.now(UTC).date())


def plan_json(plan: Plan) -> dict[str, Any]:
    """The plan JSON of SPEC §9, with `actions` and a readable state label."""
    data = plan_to_json(plan)
    data["state"] = current_state(plan)
    data["actions"] = actions_for(plan)
    data["state_label"] = state_label(data["state"])
    return data


def perform_action(
    plan_id: int, action: str, principal: Principal, params: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Send one click to the plan's workflow and return the updated plan JSON."""
    if action not in ACTIONS:
        raise ActionRejected(f"{action!r} is not an action; use one of {', '.join(ACTIONS)}.", 404)
    if not principal.can("operator"):
        raise ActionRejected(f"Buttons need the operator role; you are a {principal.role}.", 403)
    with db() as session:
        plan = session.get(Plan, plan_id)
        if plan is None:
            raise ActionRejected(f"There is no plan with id {plan_id}.", 404)
        facts = facts_for(plan)
        # The projection can lag the workflow by a moment, so only the workflow's validator may
        # refuse a click for its progress; input problems are refused here without a round trip.
        if facts.input_errors:
            allowed, reason = False, "Fix the row first: " + " ".join(facts.input_errors)
        elif plan.state == "done":  # the workflow has finished; a click must not start a blank one
            allowed, reason = False, str(actions_for(plan)[action]["reason"])
        else:
            allowed, reason = True, ""
        # Should the workflow be gone (finished, or terminated in the Temporal UI), a new one
        # resumes from what the row shows rather than from nothing.
        resume = progress_from_view(plan.workflow_view) if plan.workflow_view else None
        seq = int((plan.workflow_view or {}).get("seq", 0))
        if not allowed:
            record(session, plan_id, actor=principal.email, action=action, outcome="rejected", error=reason)
    if not allowed:
        raise ActionRejected(reason, 409)

    request = ActionRequest(actor=principal.email, facts=facts,
                            params={k: str(v) for k, v in (params or {}).items()})
    cfg = settings()

    async def click(client: Client) -> ActionResult:
        start = WithStartWorkflowOperation(
            PlanWorkflow.run, PlanStart(plan_id, cfg.invoice_poll_seconds, facts, resume, seq),
            id=f"plan-{plan_id}", task_queue=cfg.temporal_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        result: ActionResult = await client.execute_update_with_start_workflow(
            action, request, start_workflow_operation=start, result_type=ActionResult)
        return result

    try:
        result = temporal().run(click, timeout=UPDATE_TIMEOUT_SECONDS)
    except WorkflowUpdateFailedError as err:
        message = err.cause.message if isinstance(err.cause, ApplicationError) else str(err.cause or err)
        with db() as session:
            record(session, plan_id, actor=principal.email, action=action, outcome="rejected", error=message)
        raise ActionRejected(message, 409) from None
    except TimeoutError:
        raise ActionRejected(
            f"\"{action}\" is still running after {UPDATE_TIMEOUT_SECONDS:.0f} s (Stripe may be slow); it will "
            f"finish on its own — reload the row to see it.", 504) from None
    except RPCError as err:
        raise ActionRejected(f"Temporal could not take the click: {err.message}", 503) from None
    with db() as session:
        plan = session.get(Plan, plan_id)
        assert plan is not None
        body = plan_json(plan)
    if not result.ok:
        raise ActionRejected(f"The step failed: {result.message} Fix the row, then use \"Retry step\".",
                             502, plan=body)
    return body


def known_products() -> set[str]:
    return set(load_billing_config(settings().billing_config).products)


def create(data: dict[str, Any], principal: Principal) -> dict[str, Any]:
    """A new row from the API or the table's form; 422 with per-field errors on bad input."""
    with db() as session:
        plan, checked = create_plan(session, data, actor=principal.email, known_products=known_products())
        if plan is None:
            raise ActionRejected("The plan has errors; fix the fields named in `errors`.", 422,
                                 errors={**checked.errors, **checked.warnings})
        return plan_json(plan)


def edit(plan_id: int, data: dict[str, Any], principal: Principal) -> dict[str, Any]:
    """Change a row's fields (e.g. before "Retry step"); 422 with per-field errors on bad input."""
    with db() as session:
        plan = session.get(Plan, plan_id)
        if plan is None:
            raise ActionRejected(f"There is no plan with id {plan_id}.", 404)
        locked = locked_fields(facts_for(plan), progress_from_view(plan.workflow_view))
        parsed = validate_plan(data, existing=plan_input_values(plan), accept_warnings=True).values
        refused = {name: f"{name} cannot change any more: {locked[name]}."
                   for name, value in parsed.items() if name in locked and value != getattr(plan, name)}
        if refused:
            raise ActionRejected("Some fields cannot change any more; see `errors`.", 422, errors=refused)
        checked = update_plan(session, plan, data, actor=principal.email, known_products=known_products())
        if checked.errors or (checked.warnings and not data.get("accept_warnings")):
            raise ActionRejected("The change has errors; fix the fields named in `errors`.", 422,
                                 errors={**checked.errors, **checked.warnings})
        session.flush()
        return plan_json(plan)
