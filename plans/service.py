"""Every change to a plan row, whichever door it comes through: create, edit, products, actions.

The JSON API, the table's forms, the CSV import and PandaDoc intake all call `PlanService`, so a
lock, the PandaDoc id's uniqueness or a validation rule cannot be skipped by coming in another way
(issue 11, defect 5: the row page used to change a price the API refused). No Flask here: the
service takes a unit of work (a session factory) and the Temporal bridge, wired once by each
composition root (`web.create_app`, the CLI, the worker's intake activities).

Reads used for every row on a page (`plan_json`, `row_view`) are pure functions of the stored row
and never raise: a row whose projection cannot be read shows why on itself, and the table and
the API list stay up for everyone else (issue 11, defect 9).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from functools import lru_cache, partial
from types import EllipsisType, UnionType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, Union, get_args, get_origin, get_type_hints

from sqlalchemy import String, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from domain.billing_config import load_billing_config
from domain.money import display, format_amount
from domain.plan_input import (
    INPUT_FIELDS,
    LOCALE_KEY,
    OTHER_LINES_KEY,
    PlanInput,
    stored_as_input,
    validate_plan,
)
from domain.plan_rules import (
    ACTIONS,
    STATE_LABELS,
    ActionRequest,
    ActionResult,
    PlanFacts,
    Progress,
    action_states,
    locked_fields,
    plan_state,
    progress_from_view,
)
from observability.metrics import observe_click
from settings import Settings
from store.accounts import Principal
from store.models import AuditEntry, Plan
from store.plans import (
    NEEDS_REVIEW,
    apply_values,
    audit_to_json,
    failed_fields,
    insert_plan,
    percent_text,
    plan_input_text,
    plan_input_values,
    plan_to_json,
    record,
)

if TYPE_CHECKING:  # temporalio itself is imported where a click is sent: imports and CSV stay light
    from temporalio.client import Client

log = logging.getLogger(__name__)
T = TypeVar("T")

UPDATE_TIMEOUT_SECONDS = 30.0
# Money columns are BIGINT: one more digit and the database refuses the row (or SQLite overflows).
MAX_MINOR_UNITS = 2**63 - 1

UnitOfWork = Callable[[], AbstractContextManager[Session]]


class TemporalRunner(Protocol):
    """What the service needs of `web.temporal_bridge.TemporalBridge`: run a coroutine on a client."""

    def run(self, make: Callable[[Client], Awaitable[T]], timeout: float = ...) -> T: ...


class Keep(StrEnum):
    """What a door does with a row that does not validate."""

    NOTHING = "nothing"  # a person is typing (API, form): refuse errors and unconfirmed warnings
    WARNINGS = "warnings"  # CSV import: refuse errors, keep a row with warnings for review
    EVERYTHING = "everything"  # PandaDoc intake: a signed document is never dropped; errors → review


class PlanRejected(Exception):
    """A change or a click that cannot be done: `message` for the person, `status` for HTTP,
    `errors` and `warnings` per field (the same sentences the form shows beside each field)."""

    def __init__(self, message: str, status: int = 409, *, errors: Mapping[str, str] | None = None,
                 warnings: Mapping[str, str] | None = None, plan: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.errors = dict(errors or {})
        self.warnings = dict(warnings or {})
        self.plan = plan


# The name the web layer has always used for a refused click.
ActionRejected = PlanRejected


class DocumentTaken(PlanRejected):
    """The PandaDoc order form already has a row (`existing_id`): intake and CSV import treat it
    as "already done", people get the sentence on the `pandadoc_id` field."""

    def __init__(self, document_id: str, existing_id: int) -> None:
        message = (f"Row {existing_id} already has the PandaDoc order form {document_id!r}; "
                   f"edit that row instead.")
        super().__init__(message, 422, errors={"pandadoc_id": message})
        self.document_id = document_id
        self.existing_id = existing_id


def not_found(plan_id: int) -> PlanRejected:
    return PlanRejected(f"There is no plan with id {plan_id}.", 404)


# ------------------------------------------------------------------------------------- validation

def check_input(data: Mapping[str, Any], *, existing: Mapping[str, Any] | None,
                known_products: Collection[str] | None, accept_warnings: bool = False,
                unresolved: Collection[str] = ()) -> PlanInput:
    """`validate_plan`, plus two guarantees every door relies on: an exception of any kind while
    reading a value becomes a message on the field at fault (never a 500, never a lost document),
    and a value the database cannot hold is refused here rather than at the INSERT. `unresolved`:
    fields that failed before and are stored empty (never defaulted; see `validate_plan`)."""
    try:
        checked = validate_plan(data, known_products=known_products, existing=existing,
                                accept_warnings=accept_warnings, unresolved=unresolved)
    except Exception as exc:  # noqa: BLE001 - whatever the parser tripped on, name the field
        checked = _field_by_field(data, existing, known_products, accept_warnings, exc)
    _check_storable(checked)
    return checked


def _field_by_field(data: Mapping[str, Any], existing: Mapping[str, Any] | None,
                    known_products: Collection[str] | None, accept_warnings: bool, exc: Exception) -> PlanInput:
    faulty: dict[str, str] = {}
    for name, value in data.items():
        try:
            validate_plan({name: value}, known_products=known_products, existing=existing or {})
        except Exception as field_exc:  # noqa: BLE001
            faulty[name] = (f"{_shown(value)} cannot be read as {_label(name).lower()} "
                            f"({type(field_exc).__name__}: {field_exc}); send it as text, e.g. as the form shows it.")
    if not faulty:
        log.exception("Validating a plan failed on no single field", exc_info=exc)
        return PlanInput(errors={"row": f"The row could not be checked ({type(exc).__name__}: {exc}); "
                                        f"check its values and send it again."})
    rest = {k: v for k, v in data.items() if k not in faulty}
    try:
        checked = validate_plan(rest, known_products=known_products, existing=existing,
                                accept_warnings=accept_warnings)
    except Exception:  # noqa: BLE001 - the fields still together trip it: report what we know
        checked = PlanInput()
    checked.errors.update(faulty)
    for name in faulty:
        checked.values.pop(name, None)
    return checked


def _check_storable(checked: PlanInput) -> None:
    for name in ("credit_amount", "price"):
        value = checked.values.get(name)
        if isinstance(value, int) and not -MAX_MINOR_UNITS <= value <= MAX_MINOR_UNITS:
            checked.errors[name] = (f"{_label(name)} {value} (minor units) is more than this server can store; "
                                    f"check the amount.")
            checked.values.pop(name)
    for name, value in list(checked.values.items()):
        column = Plan.__table__.c.get(name)
        if column is not None and isinstance(column.type, String) and isinstance(value, str):
            limit = column.type.length
            if "\x00" in value:  # PostgreSQL refuses NUL in text columns; SQLite would store it silently
                checked.errors[name] = f"{_label(name)} contains a NUL character; remove it."
                checked.values.pop(name)
            elif limit is not None and len(value) > limit:
                checked.errors[name] = f"{_label(name)} is longer than {limit} characters ({len(value)})."
                checked.values.pop(name)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()


# ------------------------------------------------------------------------------ reading a row

def facts_for(plan: Plan) -> PlanFacts:
    """The row's input fields as the workflow and the rules see them."""
    problems: list[str] = []
    if plan.state == NEEDS_REVIEW:
        problems = [f"{field}: {message}" for field, message in (plan.errors or {}).items()
                    if not field.startswith("_")] or ["the row needs review."]
    # A field in error is stored empty (NULL); the rules see the type's neutral value, and a row
    # with any is in review, where every action is refused with `input_errors` anyway.
    return PlanFacts(
        plan_id=plan.id,
        company_name=plan.company_name or "",
        customer_email=plan.customer_email or "",
        credit_amount=plan.credit_amount or 0,
        discount=format(plan.discount.normalize(), "f") if plan.discount is not None else "0",
        price=plan.price or 0,
        currency=plan.currency or "",
        start_date=plan.start_date.isoformat() if plan.start_date else None,
        term_months=plan.term_months or 0,
        posthog_org_id=plan.posthog_org_id,
        pandadoc_id=plan.pandadoc_id,
        payment_schedule=plan.payment_schedule or "",
        credit_start=plan.credit_start or "",
        credit_release=plan.credit_release or "",
        payment_terms_days=plan.payment_terms_days if plan.payment_terms_days is not None else 0,
        products=list(plan.products or []),
        stripe_customer_id_existing=plan.stripe_customer_id_existing,
        input_errors=problems,
    )


def progress_for(plan: Plan) -> Progress:
    """What the workflow last projected onto the row. Raises `ValueError` naming the part at
    fault when the projection has another shape than `Progress` (damaged, or from code that
    wrote it differently), rather than let a wrong type surface later as a 500."""
    view = plan.workflow_view
    if view is not None and not isinstance(view, dict):
        raise ValueError(f"the stored workflow view is a {type(view).__name__}, not an object")
    raw = (view or {}).get("progress")
    if raw is not None and not isinstance(raw, dict):
        raise ValueError(f"the stored workflow progress is a {type(raw).__name__}, not an object")
    hints = _progress_hints()
    for name, value in (raw or {}).items():
        if name in hints and not _conforms(value, hints[name]):
            raise ValueError(f"the stored workflow progress has {name} = {_shown(value)}")
    return progress_from_view(view)


@lru_cache(maxsize=1)
def _progress_hints() -> dict[str, Any]:
    return get_type_hints(Progress)


def _conforms(value: Any, hint: Any) -> bool:
    if hint is type(None):
        return value is None
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint in (str, bool, float):
        return isinstance(value, hint)
    origin = get_origin(hint)
    if origin in (Union, UnionType):
        return any(_conforms(value, arg) for arg in get_args(hint))
    if origin in (list, dict):
        return isinstance(value, origin)
    return True  # a type this check does not know: the rules read it as they will


@dataclass(frozen=True)
class RowView:
    """What a page shows of a row: its state, each action with `allowed` and `reason`, and, when
    the stored projection cannot be read, `problem` (shown on the row; every button says it)."""

    state: str
    actions: dict[str, dict[str, Any]]
    problem: str | None = None

    @property
    def label(self) -> str:
        return state_label(self.state)


def row_view(plan: Plan, today: date | None = None) -> RowView:
    """The row as of today, by the same rule the workflow's validators use. Never raises."""
    today = today or datetime.now(UTC).date()
    stored = plan.state if isinstance(plan.state, str) else "unknown"
    try:
        facts, progress = facts_for(plan), progress_for(plan)
        states = action_states(facts, progress, today)
        actions = {action: {"allowed": ok, "reason": why} for action, (ok, why) in states.items()}
        # The stored state, except that an unpaid invoice past its due date reads "overdue"
        # without waiting for the workflow to write again.
        state = stored if not plan.workflow_view or stored == NEEDS_REVIEW else plan_state(facts, progress, today)
    except Exception as exc:  # noqa: BLE001 - one bad row must not take the page down for everyone
        log.warning("Plan row %s cannot be projected: %r", plan.id, exc)
        problem = (f"Row {plan.id} cannot be shown as stored ({type(exc).__name__}: {exc}); fix its fields, "
                   f"or ask an engineer to look at workflow plan-{plan.id} in the Temporal UI.")
        return RowView(stored, {action: {"allowed": False, "reason": problem} for action in ACTIONS}, problem)
    if state not in STATE_LABELS:
        problem = (f"Row {plan.id} is in the state {state!r}, which this server does not know; ask an "
                   f"engineer to look at workflow plan-{plan.id} in the Temporal UI.")
        return RowView(state, {action: {"allowed": False, "reason": problem} for action in ACTIONS}, problem)
    return RowView(state, actions)


def actions_for(plan: Plan) -> dict[str, dict[str, Any]]:
    """Each action with `allowed` and `reason`, by the same rule the workflow's validators use."""
    return row_view(plan).actions


def state_label(state: str) -> str:
    return STATE_LABELS.get(state, state.replace("_", " ").capitalize())


def current_state(plan: Plan) -> str:
    return row_view(plan).state


# ------------------------------------------------------------------ possible duplicates (issue 17 #8)

@dataclass(frozen=True)
class Duplicate:
    """Another row for what may be the same company: the same PostHog org id or customer email."""

    plan_id: int
    reason: str  # "the same PostHog org id org-x"


def possible_duplicates(session: Session, plans: Collection[Plan]) -> dict[int, list[Duplicate]]:
    """For each row, the other rows with its org id or its email (two order forms for one company
    would make two Stripe customers). One query for a whole page of rows."""
    orgs = {p.posthog_org_id.strip() for p in plans if p.posthog_org_id and p.posthog_org_id.strip()}
    emails = {p.customer_email.strip().lower() for p in plans if p.customer_email and p.customer_email.strip()}
    if not orgs and not emails:
        return {}
    conditions = []
    if orgs:
        conditions.append(Plan.posthog_org_id.in_(orgs))
    if emails:
        conditions.append(func.lower(Plan.customer_email).in_(emails))
    others = session.execute(select(Plan.id, Plan.posthog_org_id, Plan.customer_email)
                             .where(or_(*conditions)).order_by(Plan.id)).all()
    found: dict[int, list[Duplicate]] = {}
    for plan in plans:
        org = (plan.posthog_org_id or "").strip()
        email = (plan.customer_email or "").strip().lower()
        for other_id, other_org, other_email in others:
            if other_id == plan.id:
                continue
            if org and (other_org or "").strip() == org:
                found.setdefault(plan.id, []).append(Duplicate(other_id, f"the same PostHog org id {org}"))
            elif email and (other_email or "").strip().lower() == email:
                found.setdefault(plan.id, []).append(Duplicate(other_id, f"the same customer email {email}"))
    return found


def duplicate_warning(duplicates: Collection[Duplicate]) -> str:
    """The sentence shown on the row and before "Create Stripe Customer"."""
    if not duplicates:
        return ""
    named = "; ".join(f"row {d.plan_id} ({d.reason})" for d in list(duplicates)[:5])
    more = f" and {len(duplicates) - 5} more" if len(duplicates) > 5 else ""
    return (f"Possible duplicate of {named}{more}. Check it is not the same contract before creating a "
            f"Stripe customer; a renewal of that row is fine.")


def plan_json(plan: Plan, duplicates: Collection[Duplicate] | None = None) -> dict[str, Any]:
    """The plan JSON of SPEC §9, with `actions`, a readable state label and, for a row that cannot
    be projected, `projection_error`. Never raises: the API list answers for every other row.
    `duplicates` (from `possible_duplicates`) adds `possible_duplicates` and `duplicate_warning`."""
    view = row_view(plan)
    try:
        data = plan_to_json(plan)
    except Exception as exc:  # noqa: BLE001
        log.warning("Plan row %s cannot be serialized: %r", plan.id, exc)
        unreadable = f"Row {plan.id} cannot be shown as stored ({type(exc).__name__}: {exc})."
        data = {"id": plan.id, "pandadoc_id": plan.pandadoc_id, "company_name": str(plan.company_name),
                "errors": {}, "workflow": {}}
        view = RowView(view.state, view.actions, view.problem or unreadable)
    data["state"] = view.state
    data["actions"] = view.actions
    if duplicates is not None:
        data["possible_duplicates"] = [d.plan_id for d in duplicates]
        data["duplicate_warning"] = duplicate_warning(duplicates) or None
    data["state_label"] = view.label
    problem = view.problem or stored_projection_error(plan)
    if problem:
        data["projection_error"] = problem
    return data


def _full_json(session: Session, plan: Plan) -> dict[str, Any]:
    return plan_json(plan, possible_duplicates(session, [plan]).get(plan.id, []))


def stored_projection_error(plan: Plan) -> str | None:
    """What the plan workflow recorded when it could not write its state onto the row: the row
    shows the last state it could write, so a person must know it may be behind."""
    view = plan.workflow_view
    message = view.get("projection_error") if isinstance(view, dict) else None
    return message if isinstance(message, str) and message else None


def locks_for(plan: Plan) -> dict[str, str]:
    """Fields that may no longer change, with the reason, from what Stripe already holds."""
    try:
        return locked_fields(facts_for(plan), progress_for(plan))
    except Exception as exc:  # noqa: BLE001
        # Without a readable projection we cannot tell what Stripe holds: lock all it could hold.
        why = f"the row's workflow record cannot be read ({exc}), so it may already be in Stripe"
        return {name: why for name in locked_fields(PlanFacts(plan_id=plan.id), _everything_made())}


def _everything_made() -> Progress:
    return Progress(customer_id="?", invoice_id="?", credit="applied", schedule_id="?")


# ------------------------------------------------------------------------- changing rows

class PlanRows:
    """The service's rules on one open session: what `PlanService` runs inside a unit of work,
    and what a batch (the CSV import: one transaction for the file) calls row by row."""

    def __init__(self, session: Session, known_products: Collection[str] | None) -> None:
        self.session = session
        self.known_products = known_products

    def create(self, data: Mapping[str, Any], *, actor: str, source: str = "manual",
               keep: Keep = Keep.NOTHING, pandadoc_details: dict[str, Any] | None = None) -> Plan:
        """Validate and insert a row; raises `PlanRejected` (422) or `DocumentTaken`."""
        raw = dict(data)
        accept = _truthy(raw.pop("accept_warnings", False))
        checked = check_input(raw, existing=None, known_products=self.known_products, accept_warnings=accept)
        if checked.errors and keep is not Keep.EVERYTHING:
            raise PlanRejected("The plan has errors; fix the fields named in `errors`.", 422,
                               errors=checked.errors, warnings=checked.warnings)
        if checked.warnings and keep is Keep.NOTHING:
            raise PlanRejected("Check the fields named in `warnings`, then send the plan again with "
                               "`accept_warnings`.", 422, errors=checked.errors, warnings=checked.warnings)
        # Intake keys the row on its document even when the id itself failed validation.
        document_id = checked.values.get("pandadoc_id")
        if keep is Keep.EVERYTHING and not document_id and isinstance(raw.get("pandadoc_id"), str):
            document_id = raw["pandadoc_id"].strip()[:64] or None
        if document_id:
            self._claim_document(document_id, None)
        # A concurrent door storing the same document between this check and the INSERT trips the
        # unique column: `PlanService.create` turns that IntegrityError into `DocumentTaken`.
        return insert_plan(self.session, checked.values, errors=checked.errors, warnings=checked.warnings,
                           raw=raw, source=source, actor=actor, pandadoc_details=pandadoc_details,
                           pandadoc_id=document_id)

    def edit(self, plan: Plan, data: Mapping[str, Any], *, actor: str) -> Plan:
        """Change fields after checking locks, uniqueness and validation; nothing is written on error."""
        raw = dict(data)
        accept = _truthy(raw.pop("accept_warnings", False))
        current = plan_input_values(plan)
        unresolved = failed_fields(plan) if plan.state == NEEDS_REVIEW else []
        checked = check_input(raw, existing=current, known_products=self.known_products, accept_warnings=accept,
                              unresolved=unresolved)
        locked = locks_for(plan)
        errors = dict(checked.errors)
        for name, value in checked.values.items():
            if name in locked and value != current.get(name):
                errors[name] = locked_message(name, locked[name])
        document_id = checked.values.get("pandadoc_id")
        if document_id and document_id != plan.pandadoc_id and "pandadoc_id" not in errors:
            try:
                self._claim_document(document_id, plan.id)
            except DocumentTaken as taken:
                errors["pandadoc_id"] = taken.message
        if errors:
            raise PlanRejected("The change has errors; fix the fields named in `errors`.", 422,
                               errors=errors, warnings=checked.warnings)
        if checked.warnings and not accept:
            raise PlanRejected("Check the fields named in `warnings`, then send the change again with "
                               "`accept_warnings`.", 422, warnings=checked.warnings)
        leaves_review = False
        if plan.state == NEEDS_REVIEW:
            # Re-read the whole row as the text a person would type (never the minor units back as
            # input), so the check is the one every new row passes; fields that failed and are
            # still empty keep it in review (`complete`), whatever their defaults would be.
            given = {k: v for k, v in raw.items() if k in INPUT_FIELDS}
            stored = {k: v for k, v in stored_as_input(current).items() if v is not None}
            merged = {**stored, **given}
            if LOCALE_KEY in raw:
                merged[LOCALE_KEY] = raw[LOCALE_KEY]
            still_open = [name for name in unresolved if name not in given]
            full = check_input(merged, existing=None, known_products=self.known_products, accept_warnings=True,
                               unresolved=still_open)
            leaves_review = full.complete and checked.complete
        apply_values(self.session, plan, checked.values, actor=actor, raw=raw, leaves_review=leaves_review)
        return plan

    def note_document_change(self, plan: Plan, before: Mapping[str, Any], after: Mapping[str, Any], *,
                             details: dict[str, Any], actor: str = "pandadoc") -> dict[str, Any] | None:
        """The row's order form was edited and completed again (issue 17 #6): `before` and `after`
        are the plan input read from the old and the new document. A difference is never ignored
        and never applied by itself: a row no workflow has touched goes back to review with the
        difference; a row Stripe already holds values of keeps them and carries the note. Returns
        the note, or None when nothing the row reads changed."""
        changes = document_differences(before, after, self.known_products)
        # The row keeps the latest signed version; the next one is compared with it.
        plan.pandadoc_details = details
        if not changes:
            record(self.session, plan.id, actor=actor, action="document_completed_again", outcome="info",
                   result={"date_modified": str(details.get("date_modified") or ""), "changes": 0})
            return None
        started = bool(plan.workflow_view) or plan.state not in (NEEDS_REVIEW, "new")
        held = sorted(set(changes) & set(locks_for(plan))) if started else []
        summary = "; ".join(f"{_change_label(name)} {change['from']} → {change['to']}"
                            for name, change in changes.items())
        message = f"The signed document changed: {summary}."
        if started:
            what = ", ".join(_change_label(name) for name in held) if held else "this row's earlier values"
            message += (f" Stripe already holds {what}, so nothing on the row was changed: agree the change with "
                        f"the customer, correct Stripe by hand if needed, then dismiss this note.")
        else:
            message += " Apply the new values or keep the row as it is."
        note = {"message": message, "changes": changes, "held_by_stripe": started,
                "values": {k: v for k, v in after.items() if k in INPUT_FIELDS or k == LOCALE_KEY},
                "date_modified": str(details.get("date_modified") or ""), "at": datetime.now(UTC).isoformat()}
        plan.document_change = note
        if not started:
            plan.state = NEEDS_REVIEW
            plan.errors = {**(plan.errors or {}), DOCUMENT_CHANGE_KEY: message}
        record(self.session, plan.id, actor=actor, action="document_changed", outcome="info",
               result={"changes": changes, "held_by_stripe": started}, error=message)
        return note

    def settle_document_change(self, plan: Plan, *, apply: bool, actor: str) -> Plan:
        """A person applies the changed document's values (checked like any edit) or keeps the row."""
        note = plan.document_change
        if not isinstance(note, dict):
            raise PlanRejected(f"Row {plan.id} has no change of its signed document to settle.", 409)
        if apply and note.get("held_by_stripe"):
            raise PlanRejected(f"Row {plan.id}'s document changed after Stripe took its values; change the row "
                               f"field by field where it is still allowed, then dismiss the note.", 409)
        plan.document_change = None
        plan.errors = {k: v for k, v in (plan.errors or {}).items() if k != DOCUMENT_CHANGE_KEY}
        values = note.get("values") if apply else None
        changed = {k: v for k, v in (values or {}).items()
                   if k in (note.get("changes") or {}) or k == LOCALE_KEY}
        self.edit(plan, {**changed, "accept_warnings": True}, actor=actor)
        record(self.session, plan.id, actor=actor, action="document_change_applied" if apply else
               "document_change_dismissed", outcome="ok", result={"changes": note.get("changes") or {}})
        return plan

    def _claim_document(self, document_id: str, own_id: int | None) -> None:
        other = self.session.scalar(select(Plan.id).where(Plan.pandadoc_id == document_id))
        if other is not None and other != own_id:
            raise DocumentTaken(document_id, other)


DOCUMENT_CHANGE_KEY = "document_change"


def document_differences(before: Mapping[str, Any], after: Mapping[str, Any],
                         known_products: Collection[str] | None = None) -> dict[str, dict[str, str]]:
    """Field → {"from", "to"} as people read them ("96,000.00 USD"), for every plan field or other
    pricing line the two readings of a document disagree on."""
    old = check_input(before, existing=None, known_products=known_products, accept_warnings=True)
    new = check_input(after, existing=None, known_products=known_products, accept_warnings=True)
    changes: dict[str, dict[str, str]] = {}
    for name in INPUT_FIELDS:
        if name == "pandadoc_id":
            continue
        read_before, read_after = old.values.get(name), new.values.get(name)
        if read_before == read_after and (name not in old.errors and name not in new.errors):
            continue
        if read_before == read_after and before.get(name) == after.get(name):
            continue
        changes[name] = {"from": _readable(name, read_before, before.get(name), old.values.get("currency")),
                         "to": _readable(name, read_after, after.get(name), new.values.get("currency"))}
    if (before.get(OTHER_LINES_KEY) or []) != (after.get(OTHER_LINES_KEY) or []):
        changes[OTHER_LINES_KEY] = {"from": _lines(before.get(OTHER_LINES_KEY)),
                                    "to": _lines(after.get(OTHER_LINES_KEY))}
    return changes


def _change_label(name: str) -> str:
    return "other pricing lines" if name == OTHER_LINES_KEY else _label(name).lower()


def _readable(name: str, value: Any, raw: Any, currency: Any) -> str:
    if value is None:
        return f"{raw!r} (unreadable)" if raw not in (None, "") else "(empty)"
    if name in ("credit_amount", "price") and isinstance(value, int) and isinstance(currency, str):
        return display(value, currency)
    if name == "discount":
        return f"{percent_text(value)}%"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "(none)"
    return str(value)


def _lines(lines: Any) -> str:
    if not lines:
        return "(none)"
    items = lines if isinstance(lines, list) else [lines]
    return ", ".join(f"{item.get('name') or item.get('sku') or 'a line'} ({item.get('total') or item.get('price')})"
                     if isinstance(item, Mapping) else str(item) for item in items[:10])


def locked_message(name: str, why: str) -> str:
    """The one sentence for a locked field: the API's 422, the form beside the field, the products form."""
    return f"{_label(name)} cannot change any more: {why}."


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"))


@dataclass(frozen=True)
class PlanService:
    """The one door into plan rows. Wired once per process: `PlanService.for_settings(...)`."""

    settings: Settings
    unit_of_work: UnitOfWork
    temporal: TemporalRunner | None = None

    @classmethod
    def for_settings(cls, settings: Settings, temporal: TemporalRunner | None = None) -> PlanService:
        from store.db import unit_of_work

        return cls(settings, partial(unit_of_work, settings.database_url), temporal)

    def known_products(self) -> set[str]:
        return set(load_billing_config(self.settings.billing_config).products)

    @contextmanager
    def batch(self, known_products: Collection[str] | None | EllipsisType = ...) -> Iterator[PlanRows]:
        """Several changes in one transaction (a CSV file): each row is still checked on its own.
        Products are checked against the billing config (`...`), the keys given, or not at all (None)."""
        known = self.known_products() if known_products is ... else known_products
        with self.unit_of_work() as session:
            yield PlanRows(session, known)

    # --- reads

    def get(self, plan_id: int) -> dict[str, Any]:
        with self.unit_of_work() as session:
            plan = session.get(Plan, plan_id)
            if plan is None:
                raise not_found(plan_id)
            return _full_json(session, plan)

    def list_page(self, *, state: str | None, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        """A page of rows, newest first, and how many there are."""
        query = select(Plan).order_by(Plan.id.desc())
        if state:
            query = query.where(Plan.state == state)
        with self.unit_of_work() as session:
            total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = list(session.scalars(query.limit(limit).offset(offset)))
            duplicates = possible_duplicates(session, rows)
            # plan_json never raises: a row that cannot be projected carries `projection_error`.
            return [plan_json(p, duplicates.get(p.id, [])) for p in rows], total

    def find_document(self, document_id: str) -> dict[str, Any] | None:
        with self.unit_of_work() as session:
            plan = session.scalar(select(Plan).where(Plan.pandadoc_id == document_id))
            return plan_json(plan) if plan is not None else None

    def timeline(self, plan_id: int) -> list[dict[str, Any]]:
        with self.unit_of_work() as session:
            if session.get(Plan, plan_id) is None:
                raise not_found(plan_id)
            entries = session.scalars(select(AuditEntry).where(AuditEntry.plan_id == plan_id).order_by(AuditEntry.id))
            return [audit_to_json(entry) for entry in entries]

    # --- changes

    def create(self, data: Mapping[str, Any], *, actor: str, source: str = "manual", keep: Keep = Keep.NOTHING,
               pandadoc_details: dict[str, Any] | None = None) -> dict[str, Any]:
        """A new row; the plan JSON back. Raises `PlanRejected` (422) or `DocumentTaken`."""
        try:
            with self.batch() as rows:
                plan = rows.create(data, actor=actor, source=source, keep=keep, pandadoc_details=pandadoc_details)
                return _full_json(rows.session, plan)
        except IntegrityError:
            document_id = str(data.get("pandadoc_id") or "").strip()
            found = self.find_document(document_id) if document_id else None
            if found is None:
                raise
            raise DocumentTaken(document_id, int(found["id"])) from None

    def edit(self, plan_id: int, data: Mapping[str, Any], *, actor: str) -> dict[str, Any]:
        """Change a row's fields (e.g. before "Retry step"); the plan JSON back."""
        with self.batch() as rows:
            plan = rows.session.get(Plan, plan_id)
            if plan is None:
                raise not_found(plan_id)
            rows.edit(plan, data, actor=actor)
            rows.session.flush()
            return _full_json(rows.session, plan)

    def document_changed(self, document_id: str, before: Mapping[str, Any], after: Mapping[str, Any], *,
                         details: dict[str, Any]) -> dict[str, Any] | None:
        """The document's row notes a new signed version (see `PlanRows.note_document_change`)."""
        with self.batch() as rows:
            plan = rows.session.scalar(select(Plan).where(Plan.pandadoc_id == document_id))
            if plan is None:
                raise PlanRejected(f"No row has the PandaDoc order form {document_id!r}.", 404)
            return rows.note_document_change(plan, before, after, details=details)

    def settle_document_change(self, plan_id: int, *, apply: bool, actor: str) -> dict[str, Any]:
        """Apply the changed document's values to the row, or keep the row and drop the note."""
        with self.batch() as rows:
            plan = rows.session.get(Plan, plan_id)
            if plan is None:
                raise not_found(plan_id)
            rows.settle_document_change(plan, apply=apply, actor=actor)
            rows.session.flush()
            return _full_json(rows.session, plan)

    def set_products(self, plan_id: int, products: list[str], *, actor: str) -> dict[str, Any]:
        """The table's product checkboxes: an edit of one field, under the same locks."""
        return self.edit(plan_id, {"products": products}, actor=actor)

    @observe_click(ACTIONS)  # clicks by action and outcome, step durations (/metrics)
    def perform_action(self, plan_id: int, action: str, principal: Principal,
                       params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Send one click to the plan's workflow as an update (starting the workflow on the row's
        first click) and return the updated plan JSON; a refused click raises with the rule's sentence."""
        if action not in ACTIONS:
            raise PlanRejected(f"{action!r} is not an action; use one of {', '.join(ACTIONS)}.", 404)
        if not principal.can("operator"):
            raise PlanRejected(f"Buttons need the operator role; you are a {principal.role}.", 403)
        with self.unit_of_work() as session:
            plan = session.get(Plan, plan_id)
            if plan is None:
                raise not_found(plan_id)
            reason, start = self._may_click(plan, action)
            if start is None:
                record(session, plan_id, actor=principal.email, action=action, outcome="rejected", error=reason)
        if start is None:
            raise PlanRejected(reason, 409)
        facts, resume, seq = start
        request = ActionRequest(actor=principal.email, facts=facts,
                                params={k: str(v) for k, v in (params or {}).items()})
        result = self._click(plan_id, action, request, facts, resume, seq, principal)
        body = self.get(plan_id)
        # What the step itself said ("The credit is armed: …"), so no door reports a generic "done".
        body["result"] = {"ok": result.ok, "action": result.action, "message": result.message,
                          "state": result.state}
        if not result.ok:
            raise PlanRejected(f"The step failed: {result.message} Fix the row, then use \"Retry step\".",
                               502, plan=body)
        return body

    @staticmethod
    def _may_click(plan: Plan, action: str) -> tuple[str, tuple[PlanFacts, Progress | None, int] | None]:
        """(why not, None) for a click refused without asking the workflow; else ("", what starts it)."""
        view = row_view(plan)
        if view.problem:
            return view.problem, None
        facts = facts_for(plan)
        # The projection can lag the workflow by a moment, so only the workflow's validator may
        # refuse a click for its progress; input problems are refused here without a round trip.
        if facts.input_errors:
            return "Fix the row first: " + " ".join(facts.input_errors), None
        if plan.state == "done":  # the workflow has finished; a click must not start a blank one
            return str(view.actions[action]["reason"]), None
        # Should the workflow be gone (finished, or terminated in the Temporal UI), a new one
        # resumes from what the row shows rather than from nothing.
        resume = progress_for(plan) if plan.workflow_view else None
        try:
            seq = int((plan.workflow_view or {}).get("seq", 0))
        except (TypeError, ValueError):
            seq = 0  # a later projection still wins; a junk counter must not block the click
        return "", (facts, resume, seq)

    def _click(self, plan_id: int, action: str, request: ActionRequest, facts: PlanFacts,
               resume: Progress | None, seq: int, principal: Principal) -> ActionResult:
        from temporalio.client import WithStartWorkflowOperation, WorkflowUpdateFailedError
        from temporalio.common import WorkflowIDConflictPolicy
        from temporalio.exceptions import ApplicationError
        from temporalio.service import RPCError

        from workflows.plan import PlanStart, PlanWorkflow

        if self.temporal is None:
            raise PlanRejected("This process has no connection to Temporal, so buttons cannot run here.", 503)
        cfg = self.settings

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
            return self.temporal.run(click, timeout=UPDATE_TIMEOUT_SECONDS)
        except WorkflowUpdateFailedError as err:
            message = err.cause.message if isinstance(err.cause, ApplicationError) else str(err.cause or err)
            with self.unit_of_work() as session:
                record(session, plan_id, actor=principal.email, action=action, outcome="rejected", error=message)
            raise PlanRejected(message, 409) from None
        except TimeoutError:
            raise PlanRejected(
                f"\"{action}\" is still running after {UPDATE_TIMEOUT_SECONDS:.0f} s (Stripe may be slow); it "
                f"will finish on its own — reload the row to see it.", 504) from None
        except RPCError as err:
            raise PlanRejected(f"Temporal could not take the click: {err.message}", 503) from None


__all__ = [
    "ActionRejected", "DocumentTaken", "Keep", "PlanRejected", "PlanRows", "PlanService", "RowView",
    "actions_for", "audit_to_json", "check_input", "current_state", "facts_for", "format_amount",
    "locked_message", "locks_for", "percent_text", "plan_input_text", "plan_json", "row_view", "state_label",
    "stored_projection_error",
]
