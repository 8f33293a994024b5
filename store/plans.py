"""Plan rows in the database: store them, append to their timeline, show them as the plan JSON
of SPEC §9. Deciding whether a change is allowed (validation, locks, uniqueness) is
`plans.service`'s job; every door into a row goes through it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import null, select
from sqlalchemy.orm import Session

from domain.money import format_amount
from domain.plan_input import INPUT_FIELDS, PlanInput
from store.models import AuditEntry, Plan

NEEDS_REVIEW = "needs_review"
NEW = "new"
# `errors[FAILED_KEY]`: the input fields that failed and are stored empty (NULL) until a person
# fills them; an edit passes them to `validate_plan(unresolved=…)` so none is ever defaulted.
FAILED_KEY = "_failed"


def plan_to_json(plan: Plan) -> dict[str, Any]:
    view = plan.workflow_view or {}
    return {
        "id": plan.id,
        "pandadoc_id": plan.pandadoc_id,
        "company_name": plan.company_name,
        "customer_email": plan.customer_email,
        "credit_amount": _money(plan.credit_amount, plan.currency),
        "discount": percent_text(plan.discount) if plan.discount is not None else None,
        "price": _money(plan.price, plan.currency),
        "currency": plan.currency,
        "start_date": plan.start_date.isoformat() if plan.start_date else None,
        "term_months": plan.term_months,
        "posthog_org_id": plan.posthog_org_id,
        "payment_schedule": plan.payment_schedule,
        "credit_start": plan.credit_start,
        "credit_release": plan.credit_release,
        "payment_terms_days": plan.payment_terms_days,
        "products": list(plan.products) if plan.products is not None else None,
        "stripe_customer_id_existing": plan.stripe_customer_id_existing,
        "state": plan.state,
        "stripe_customer_id": plan.stripe_customer_id,
        "invoice_id": plan.invoice_id,
        "subscription_schedule_id": plan.subscription_schedule_id,
        "monthly_price_id": plan.monthly_price_id,
        "subscription_id": plan.subscription_id,
        "credit_applied_at": _iso(plan.credit_applied_at),
        "credit_scheduled_for": _iso(plan.credit_scheduled_for),
        "errors": dict(plan.errors or {}),
        "warnings": dict(plan.warnings or {}),
        "failed": failed_fields(plan),
        "document_change": plan.document_change,
        "source": plan.source,
        "created_at": _iso(plan.created_at),
        "updated_at": _iso(plan.updated_at),
        "workflow": view,
    }


def _money(minor: int | None, currency: str | None) -> str | None:
    # An amount is stored only once its currency is known; either may be empty on a review row.
    if minor is None or not currency:
        return None
    return format_amount(minor, currency)


def failed_fields(plan: Plan) -> list[str]:
    """Input fields that failed and are still empty, as stored on the row."""
    errors = plan.errors if isinstance(plan.errors, dict) else {}
    listed = errors.get(FAILED_KEY)
    if isinstance(listed, list):
        return [name for name in listed if isinstance(name, str) and name in INPUT_FIELDS]
    # Rows stored before the list was kept: a field with an error (not a warning) on a review row failed.
    if plan.state == NEEDS_REVIEW:
        warned = plan.warnings if isinstance(plan.warnings, dict) else {}
        return [name for name in errors if name in INPUT_FIELDS and name not in warned]
    return []


def plan_input_values(plan: Plan) -> dict[str, Any]:
    """The row's current input fields as typed values, for validating a change against it."""
    return {name: getattr(plan, name) for name in INPUT_FIELDS}


def plan_input_text(plan: Plan) -> dict[str, Any]:
    """The row's input fields as the text a person types (money in major units, ISO dates): what
    the form shows, and what re-validating a stored row reads."""
    values: dict[str, Any] = {}
    for name in INPUT_FIELDS:
        value = getattr(plan, name)
        if name in ("credit_amount", "price"):
            values[name] = _money(value, plan.currency) or ""
        elif name == "discount":
            values[name] = percent_text(value) if value is not None else ""
        elif name == "start_date":
            values[name] = value.isoformat() if value else ""
        elif name == "products":
            values[name] = sorted(value or [])
        else:
            values[name] = "" if value is None else str(value)
    return values


def insert_plan(
    session: Session,
    values: Mapping[str, Any],
    *,
    errors: Mapping[str, str],
    warnings: Mapping[str, str],
    raw: Mapping[str, Any],
    source: str,
    actor: str,
    pandadoc_details: dict[str, Any] | None = None,
    pandadoc_id: str | None = None,
) -> Plan:
    """Store a row that `plans.service` has checked: with problems it waits in "needs_review",
    keeping the raw input beside them so nothing a user or a webhook sent is lost."""
    plan = Plan(source=source, pandadoc_details=pandadoc_details)
    _assign(plan, values)
    failed = sorted(name for name in errors if name in INPUT_FIELDS)
    for name in failed:
        # Empty, not the column default (see FAILED_KEY); a plain None would let the ORM use it.
        setattr(plan, name, null())
    if pandadoc_id:
        plan.pandadoc_id = pandadoc_id
    # An error outranks a warning on the same field (a price that cannot be read and other pricing lines).
    problems = {**warnings, **errors}
    plan.errors = {**problems, **({"_raw": _jsonable(dict(raw)), FAILED_KEY: failed} if problems else {})}
    plan.warnings = dict(warnings)
    plan.state = NEEDS_REVIEW if problems else NEW
    session.add(plan)
    session.flush()
    record(session, plan.id, actor=actor, action="create_row", outcome="ok",
           input=_jsonable(dict(raw)), result={"state": plan.state, "source": source})
    return plan


def apply_values(session: Session, plan: Plan, values: Mapping[str, Any], *, actor: str,
                 raw: Mapping[str, Any], leaves_review: bool = False) -> None:
    """Write a checked change and its timeline entry; `leaves_review` when the whole row now validates.

    On a row still in review, the errors of the fields this change filled go, the others stay."""
    _assign(plan, values)
    plan.warnings = {}
    if plan.state == NEEDS_REVIEW and leaves_review:
        plan.errors = {}
        plan.state = NEW
    elif plan.state == NEEDS_REVIEW:
        errors = {k: v for k, v in (plan.errors or {}).items() if k not in values}
        still = [name for name in failed_fields(plan) if name not in values]
        errors[FAILED_KEY] = still
        plan.errors = errors
    record(session, plan.id, actor=actor, action="edit_row", outcome="ok",
           input=_jsonable(dict(raw)), result={"state": plan.state})


def create_plan(
    session: Session,
    data: Mapping[str, Any],
    *,
    actor: str,
    source: str = "manual",
    known_products: Collection[str] | None = None,
    keep_invalid: bool = False,
    pandadoc_details: dict[str, Any] | None = None,
) -> tuple[Plan | None, PlanInput]:
    """For tests and scripts that seed rows inside their own session: `plans.service` on it, so
    the rules are the service's. Returns (row or None, what was refused)."""
    from plans.service import Keep, PlanRejected, PlanRows

    try:
        plan = PlanRows(session, known_products).create(
            data, actor=actor, source=source, keep=Keep.EVERYTHING if keep_invalid else Keep.NOTHING,
            pandadoc_details=pandadoc_details)
    except PlanRejected as refused:
        return None, PlanInput(errors=refused.errors, warnings=refused.warnings)
    return plan, PlanInput(errors=dict(plan.errors or {}), warnings=dict(plan.warnings or {}))


def update_plan(
    session: Session,
    plan: Plan,
    data: Mapping[str, Any],
    *,
    actor: str,
    known_products: Collection[str] | None = None,
) -> PlanInput:
    """For tests and scripts, like `create_plan`: the service's edit on this session."""
    from plans.service import PlanRejected, PlanRows

    try:
        PlanRows(session, known_products).edit(plan, data, actor=actor)
    except PlanRejected as refused:
        return PlanInput(errors=refused.errors, warnings=refused.warnings)
    return PlanInput()


def record(
    session: Session,
    plan_id: int,
    *,
    actor: str,
    action: str,
    outcome: str,
    input: Mapping[str, Any] | None = None,
    result: Mapping[str, Any] | None = None,
    error: str | None = None,
    dedupe_key: str | None = None,
) -> AuditEntry | None:
    """Append to the row's timeline. With a `dedupe_key`, a second write of the same entry
    (an activity retried after a crash) is skipped."""
    if dedupe_key is not None:
        if session.scalar(select(AuditEntry.id).where(AuditEntry.dedupe_key == dedupe_key)):
            return None
    entry = AuditEntry(plan_id=plan_id, actor=actor, action=action, outcome=outcome,
                       input=dict(input or {}), result=dict(result or {}), error=error,
                       dedupe_key=dedupe_key)
    session.add(entry)
    session.flush()
    return entry


def audit_to_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id, "at": _iso(entry.at), "actor": entry.actor, "action": entry.action,
        "outcome": entry.outcome, "input": entry.input, "result": entry.result, "error": entry.error,
    }


def _assign(plan: Plan, values: Mapping[str, Any]) -> None:
    for name, value in values.items():
        setattr(plan, name, value)


def percent_text(value: Decimal | None) -> str:
    if value is None:
        return "0"
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _iso(value: datetime | date | None) -> str | None:
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # SQLite hands back naive datetimes; we only ever store UTC
    return value.isoformat() if value is not None else None


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if isinstance(v, (str, int, float, bool, list, dict, type(None))) else str(v))
            for k, v in data.items()}
