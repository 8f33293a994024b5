"""The Annual Plan Table RevOps works in: the table, a row page, adding and editing rows, buttons.

Everything shown comes from the `plans` rows (the workflow projects its state into them), so
rendering never waits on Temporal. Every change — a new row, the row form, the product
checkboxes, a button — is one call of `plans.service.PlanService`, the same door the JSON API
uses, so the table cannot skip a lock the API enforces. Whether a button is enabled, and why not,
comes from `plans.service.row_view`, which reads the same rule the workflow's validators use and
never raises: a row that cannot be projected shows its error and the page still renders.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import defer

from activities.stripe_api import dashboard_url
from domain.billing_config import BillingConfig, load_billing_config
from domain.money import MoneyError, display, format_amount
from domain.plan_input import (
    CREDIT_RELEASES,
    CREDIT_STARTS,
    DOCUMENT_ERROR_KEY,
    INPUT_FIELDS,
    LOCALE_KEY,
    OTHER_LINES_KEY,
    PAYMENT_SCHEDULES,
)
from domain.plan_rules import ACTION_LABELS, MONTHLY_ACTIONS, STATE_LABELS, UPFRONT_ACTIONS
from plans.service import (
    DOCUMENT_CHANGE_KEY,
    Duplicate,
    PlanRejected,
    RowView,
    audit_to_json,
    duplicate_warning,
    locks_for,
    percent_text,
    plan_input_text,
    possible_duplicates,
    row_view,
    stored_projection_error,
)
from store.accounts import Principal
from store.models import AuditEntry, Plan
from store.plans import failed_fields
from temporal_client import workflow_url
from web.auth import current_principal, requires
from web.context import db, plans, settings
from web.redirects import local_path

bp = Blueprint("table", __name__)

PAGE_SIZE = 50
MAX_LIVE_ROWS = 200
# New rows the live refresh adds at the top of the first page per poll.
MAX_NEW_ROWS = 20
# Where a person opens a PandaDoc document by its id.
PANDADOC_APP_URL = "https://app.pandadoc.com/a/#/documents/{id}"

# The runbook's buttons per payment schedule, in the order a person clicks them.
SCHEDULE_ACTIONS = {"upfront": UPFRONT_ACTIONS, "monthly": MONTHLY_ACTIONS}

FIELD_LABELS = {
    "pandadoc_id": "PandaDoc order form",
    "company_name": "Company name",
    "customer_email": "Customer email",
    "credit_amount": "Credit amount",
    "discount": "Discount (%)",
    "price": "Price",
    "currency": "Currency",
    "start_date": "Start date",
    "term_months": "Term",
    "posthog_org_id": "PostHog org ID",
    "payment_schedule": "Payment schedule",
    "credit_start": "Credit start",
    "credit_release": "Credit release (monthly)",
    "payment_terms_days": "Payment terms (days)",
    "products": "Products to subscribe",
    "stripe_customer_id_existing": "Stripe ID – existing",
}
FIELD_HINTS = {
    "credit_amount": "In major units, e.g. 120000.00",
    "price": "What the customer pays for the whole term, e.g. 96000.00",
    "term_months": "e.g. 12 months, 1 year, 24",
    "stripe_customer_id_existing": "cus_… when the customer already has a Stripe account",
}
CHOICES = {
    "payment_schedule": PAYMENT_SCHEDULES,
    "credit_start": CREDIT_STARTS,
    "credit_release": CREDIT_RELEASES,
}
ID_LABELS = {
    "stripe_customer_id_existing": "Existing Stripe customer",
    "stripe_customer_id": "Stripe customer",
    "invoice_id": "Invoice",
    "subscription_schedule_id": "Subscription schedule",
    "monthly_price_id": "Monthly price",
    "subscription_id": "Subscription",
}


@dataclass(frozen=True)
class Button:
    action: str
    label: str
    allowed: bool
    reason: str
    is_next: bool = False


def buttons_for(plan: Plan, principal: Principal | None, view: RowView | None = None) -> list[Button]:
    """The row's buttons in runbook order; a viewer's are all disabled, saying why."""
    actions = (view or row_view(plan)).actions
    names = list(SCHEDULE_ACTIONS.get(plan.payment_schedule or "upfront", SCHEDULE_ACTIONS["upfront"]))
    if actions.get("retry_step", {}).get("allowed"):
        names.insert(0, "retry_step")
    may_act = principal is not None and principal.can("operator")
    buttons: list[Button] = []
    next_found = False
    for name in names:
        info = actions.get(name, {"allowed": False, "reason": "This step does not apply to this row."})
        allowed = bool(info.get("allowed"))
        reason = str(info.get("reason") or "")
        if allowed and not may_act:
            allowed, reason = False, f"Viewers cannot run actions; ask an operator. (For an operator: {reason})"
        is_next = allowed and not next_found
        next_found = next_found or is_next
        buttons.append(Button(name, ACTION_LABELS.get(name, name), allowed, reason, is_next))
    return buttons


# --- the table ----------------------------------------------------------------------------------

def billing_config() -> BillingConfig:
    return load_billing_config(settings().billing_config)


def _filtered(q: str, state: str, schedule: str) -> Select[Any]:
    stmt = select(Plan)
    if q:
        # Typed text matches literally: % and _ are not wildcards here.
        escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        stmt = stmt.where(or_(*(func.lower(column).like(pattern, escape="\\") for column in SEARCHED)))
    if state:
        stmt = stmt.where(Plan.state == state)
    if schedule:
        stmt = stmt.where(Plan.payment_schedule == schedule)
    return stmt


# What the search box looks in: a person pastes whatever id they have at hand (an org id from the
# product, a PandaDoc id from an email, a Stripe id from the dashboard).
SEARCHED = (Plan.company_name, Plan.customer_email, Plan.posthog_org_id, Plan.pandadoc_id,
            Plan.stripe_customer_id, Plan.stripe_customer_id_existing, Plan.invoice_id,
            Plan.subscription_schedule_id, Plan.subscription_id, Plan.monthly_price_id)


def version(plan: Plan) -> str:
    """Changes whenever the row does: the live refresh compares it."""
    stamp = plan.updated_at or plan.created_at
    return f"{stamp.timestamp():.6f}" if isinstance(stamp, datetime) else "0"


def row_context(plan: Plan, principal: Principal | None, duplicates: list[Duplicate] | None = None) -> dict[str, Any]:
    view = row_view(plan)
    return {"plan": plan, "buttons": buttons_for(plan, principal, view), "version": version(plan),
            "row_error": row_error(plan, view), "products_locked": _products_lock(plan),
            "duplicates": duplicates or [], "duplicate_warning": duplicate_warning(duplicates or []),
            "duplicate_note": _duplicate_note(duplicates or [])}


def _duplicate_note(duplicates: list[Duplicate]) -> str:
    """The table's short form of the warning (the row page and the confirm dialog say it in full)."""
    if not duplicates:
        return ""
    rows = ", ".join(f"#{d.plan_id}" for d in duplicates[:3]) + (" …" if len(duplicates) > 3 else "")
    return f"Possible duplicate of {rows}"


def rows_context(session: Any, plans: list[Plan], principal: Principal | None) -> list[dict[str, Any]]:
    duplicates = possible_duplicates(session, plans)
    return [row_context(plan, principal, duplicates.get(plan.id)) for plan in plans]


def row_error(plan: Plan, view: RowView) -> str:
    """The one line of trouble the table shows under the row's state (empty when there is none)."""
    problem = view.problem or stored_projection_error(plan)
    if problem:
        return problem
    workflow = plan.workflow_view if isinstance(plan.workflow_view, dict) else {}
    failure = workflow.get("error")
    if isinstance(failure, dict) and failure.get("message"):
        return str(failure["message"])
    if isinstance(plan.document_change, dict) and plan.document_change.get("message"):
        return str(plan.document_change["message"])
    if plan.state == "needs_review" and isinstance(plan.errors, dict):
        problems = [name for name in plan.errors if not name.startswith("_")]
        if problems:
            first = str(plan.errors[problems[0]])
            return first if len(problems) == 1 else f"{first} (and {len(problems) - 1} more to fix)"
    return ""


def _products_lock(plan: Plan) -> str:
    why = locks_for(plan).get("products")
    return f"Locked: {why}." if why else ""


@bp.get("/")
@requires("viewer")
def index() -> Any:
    q = request.args.get("q", "").strip()
    state = request.args.get("state", "").strip()
    schedule = request.args.get("schedule", "").strip()
    try:
        page = max(1, int(request.args.get("page", "1")))
    except ValueError:
        page = 1
    principal = current_principal()
    filtered = _filtered(q, state, schedule)
    with db() as s:
        total = s.scalar(select(func.count()).select_from(filtered.subquery())) or 0
        pages = max(1, -(-total // PAGE_SIZE))
        page = min(page, pages)
        plans = list(s.scalars(
            filtered.options(defer(Plan.pandadoc_details))
            .order_by(Plan.id.desc()).offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE)
        ))
        rows = rows_context(s, plans, principal)
        newest = s.scalar(select(func.max(Plan.id))) or 0
    args = {k: v for k, v in (("q", q), ("state", state), ("schedule", schedule)) if v}
    from web.catalog import catalog_banner

    return render_template(
        "table/index.html", rows=rows, total=total, page=page, pages=pages, args=args,
        q=q, state=state, schedule=schedule, newest=newest, catalog_check=catalog_banner(), **_shared_context(),
    )


@bp.get("/table/rows")
@requires("viewer")
def live_rows() -> Any:
    """Rows of the page whose version changed: `?rows=12:1763740000.123456,13:…` → their new `<tr>`s;
    with `?after=N` (the first page) also rows made since row N that match the page's filters.

    Answers `{"versions": {id: version}, "html": "<tr …>…", "new_html": …, "newest": N}`; nothing
    changed is a few primary-key lookups, so the table can poll it every few seconds."""
    known: dict[int, str] = {}
    for part in request.args.get("rows", "").split(",")[:MAX_LIVE_ROWS]:
        plan_id, _, seen = part.partition(":")
        if plan_id.isdigit():
            known[int(plan_id)] = seen
    principal = current_principal()
    versions: dict[str, str] = {}
    html = new_html = ""
    back = local_path(request.args.get("back")) or url_for("table.index")
    after = request.args.get("after", "")
    newest: int | None = None
    if after.isdigit():
        filtered = _filtered(request.args.get("q", "").strip(), request.args.get("state", "").strip(),
                             request.args.get("schedule", "").strip())
        with db() as s:
            fresh = list(s.scalars(filtered.options(defer(Plan.pandadoc_details)).where(Plan.id > int(after))
                                   .order_by(Plan.id.desc()).limit(MAX_NEW_ROWS)))
            newest = max([int(after), *(plan.id for plan in fresh)])
            if fresh:
                rows = rows_context(s, fresh, principal)
                versions.update({str(r["plan"].id): r["version"] for r in rows})
                new_html = render_template("table/_rows.html", rows=rows, back=back, **_shared_context())
    if known:
        with db() as s:
            stamps = s.execute(select(Plan.id, Plan.updated_at).where(Plan.id.in_(known))).all()
            stale = [pid for pid, stamp in stamps if stamp is None or f"{stamp.timestamp():.6f}" != known[pid]]
            if stale:
                plans = list(s.scalars(select(Plan).options(defer(Plan.pandadoc_details))
                                       .where(Plan.id.in_(stale)).order_by(Plan.id.desc())))
                rows = rows_context(s, plans, principal)
                versions.update({str(r["plan"].id): r["version"] for r in rows})
                html = render_template("table/_rows.html", rows=rows, back=back, **_shared_context())
    return jsonify({"versions": versions, "html": html, "new_html": new_html, "newest": newest})


def amount(minor: int | None, currency: str | None) -> str:
    """An amount as people read it: "96,000.00 USD"; "—" for an empty one (a field in review)."""
    if minor is None or not currency:
        return "—"
    try:
        return display(minor, currency)
    except MoneyError:
        return f"{minor} ({currency})"


def _shared_context() -> dict[str, Any]:
    return {
        "labels": STATE_LABELS,
        "products": billing_config().products,
        "money": format_amount,
        "amount": amount,
        "percent": percent_text,
        "dashboard": lambda object_id: dashboard_url(settings(), object_id),
        "schedules": PAYMENT_SCHEDULES,
    }


# --- buttons ------------------------------------------------------------------------------------

@bp.post("/plans/<int:plan_id>/actions/<action>")
@requires("operator")
def run_action(plan_id: int, action: str) -> Any:
    principal = current_principal()
    assert principal is not None  # guaranteed by @requires
    params = {k: v for k, v in request.form.items() if k not in ("csrf_token", "next")}
    label = ACTION_LABELS.get(action, action)
    try:
        body = plans().perform_action(plan_id, action, principal, params)
    except PlanRejected as exc:
        if exc.status == 502:
            # The step ran and Stripe refused it: the reason is on the row (once), not repeated here.
            flash(f"{label} failed on row {plan_id}; the reason is shown on the row. Fix the row, then use "
                  f"\"Retry step\".", "error")
        else:
            flash(f"{label} was not done on row {plan_id}: {exc.message}", "error")
    else:
        # The workflow's own words ("The credit is armed: …"), never a generic "done".
        result = body.get("result") or {}
        message = str(result.get("message") or "").strip()
        flash(f"{label} (row {plan_id}): {message}" if message else f"{label} (row {plan_id}) ran.", "ok")
    return redirect(_back(plan_id, to_row=True))


@bp.post("/plans/<int:plan_id>/products")
@requires("operator")
def save_products(plan_id: int) -> Any:
    chosen = request.form.getlist("products")
    principal = current_principal()
    assert principal is not None
    # The table's script saves each box as it changes, without reloading the page (issue 17 #14).
    in_place = request.headers.get("X-Revops-Inline") == "1"
    try:
        saved = plans().set_products(plan_id, chosen, actor=principal.email)
    except PlanRejected as exc:
        if exc.status == 404:
            abort(404)
        problem = exc.errors.get("products") or "; ".join(exc.errors.values()) or exc.message
        message = f"Products of row {plan_id} were not saved: {problem}"
        if in_place:
            return jsonify({"ok": False, "message": message}), exc.status
        flash(message, "error")
    else:
        names = [billing_config().products[k].name if k in billing_config().products else k
                 for k in saved.get("products") or []]
        message = f"Products of row {plan_id} saved: {', '.join(names) or 'none'}."
        if in_place:
            return jsonify({"ok": True, "message": message, "products": saved.get("products") or []})
        flash(message, "ok")
    return redirect(_back(plan_id, to_row=True))


def _back(plan_id: int, *, to_row: bool = False) -> str:
    """Where the form came from (checked to stay on this site), else the row page. `to_row`: back
    on the table, scrolled to the row that was acted on."""
    back = local_path(request.form.get("next"))
    if not back:
        return url_for("table.show_plan", plan_id=plan_id)
    return f"{back}#plan-{plan_id}" if to_row and "#" not in back else back


# --- adding and editing rows --------------------------------------------------------------------

def form_values(plan: Plan) -> dict[str, Any]:
    """The row's input fields as the text a person typed (money in major units)."""
    return plan_input_text(plan)


def submitted_values(form: Mapping[str, Any], fallback: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The form's fields as typed; a field the form did not carry keeps its `fallback` value."""
    fallback = fallback or {}
    values: dict[str, Any] = {
        name: str(form[name]).strip() if name in form else fallback.get(name, "") for name in INPUT_FIELDS
    }
    # Unchecked boxes send nothing: the hidden `_products` marker says the checkboxes were on the form.
    if "products" in form or "_products" in form:
        values["products"] = sorted(request.form.getlist("products"))
    else:
        values["products"] = list(fallback.get("products", []))
    return values


def form_locale(form: Mapping[str, Any]) -> dict[str, str]:
    """The browser's language (`navigator.language`, sent by the form's script as `_locale`): it
    settles how a typed amount ("96.000,00") or date ("01/12/2026") is read."""
    locale = str(form.get(LOCALE_KEY) or "").strip()
    return {LOCALE_KEY: locale[:35]} if locale else {}


def _form_context(values: Mapping[str, Any], errors: Mapping[str, str], warnings: Mapping[str, str],
                  locked: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {
        "values": values, "errors": errors, "warnings": warnings, "labels_for": FIELD_LABELS,
        "hints": FIELD_HINTS, "choices": CHOICES, "products": billing_config().products,
        "fields": INPUT_FIELDS, "locked": locked or {},
    }


@bp.route("/plans/new", methods=["GET", "POST"])
@requires("operator")
def new_plan() -> Any:
    if request.method == "GET":
        blank: dict[str, Any] = {name: "" for name in INPUT_FIELDS}
        blank.update(currency="usd", discount="0", payment_schedule="upfront", credit_start="immediately",
                     credit_release="all", payment_terms_days="30", term_months="12 months", products=[])
        return render_template("table/new.html", **_form_context(blank, {}, {}))
    principal = current_principal()
    assert principal is not None
    values = submitted_values(request.form)
    data: dict[str, Any] = {k: v for k, v in values.items() if v not in ("", [])}
    data.update(form_locale(request.form))
    if request.form.get("accept_warnings"):
        data["accept_warnings"] = True
    try:
        plan_id = plans().create(data, actor=principal.email, source="manual")["id"]
    except PlanRejected as exc:
        return render_template("table/new.html", **_form_context(values, exc.errors, exc.warnings)), 422
    flash(f"Row {plan_id} added.", "ok")
    return redirect(url_for("table.show_plan", plan_id=plan_id))


@bp.get("/plans/<int:plan_id>")
@requires("viewer")
def show_plan(plan_id: int) -> Any:
    with db() as s:
        plan = s.get(Plan, plan_id)
        if plan is None:
            abort(404)
        values, errors, warnings = review_form(plan)
        return render_template("table/plan.html", **_plan_page(s, plan, values, errors, warnings), submitted=False)


# A failed step's message names the field at fault in words Stripe or the rules use; the row form
# highlights that field so the fix before "Retry step" is where the eye lands (issue 17 #12).
FAULT_WORDS = (
    (("no such customer", "customer has been deleted", "deleted customer"), ("stripe_customer_id_existing",)),
    (("email",), ("customer_email",)),
    (("due date", "due_date", "in the past"), ("start_date", "payment_terms_days")),
    (("currency",), ("currency",)),
    (("org id", "posthog_org_id"), ("posthog_org_id",)),
    (("product", "no price for"), ("products",)),
)


def fields_at_fault(plan: Plan) -> dict[str, str]:
    workflow = plan.workflow_view if isinstance(plan.workflow_view, dict) else {}
    failure = workflow.get("error")
    message = str(failure.get("message") or "") if isinstance(failure, dict) else ""
    if not message:
        return {}
    lowered = message.lower()
    step = ACTION_LABELS.get(str(failure.get("action") or ""), "The failed step") if isinstance(failure, dict) else ""
    found: dict[str, str] = {}
    for words, names in FAULT_WORDS:
        if not any(word in lowered for word in words):
            continue
        for name in names:
            value = getattr(plan, name, None)
            if name == "stripe_customer_id_existing" and not (value and str(value).lower() in lowered):
                continue  # the customer the message names is not the one typed here
            # The message itself is shown once, in the status panel; here only where to fix it.
            found.setdefault(name, f"\"{step}\" failed on this field (see the reason above); fix it, then use "
                                   f"\"Retry step\".")
    return found


def review_form(plan: Plan) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """The row form of a row in review (issue 17 #11): each stored error beside its field, and in
    a field that failed (stored empty) the text the order form had, to correct rather than retype.
    For a failed step, the field its message names is marked."""
    values = form_values(plan)
    if plan.state != "needs_review" or not isinstance(plan.errors, dict):
        locked = locks_for(plan)
        return values, {k: v for k, v in fields_at_fault(plan).items() if k not in locked}, {}
    found = plan.errors.get("_raw")
    raw: dict[str, Any] = found if isinstance(found, dict) else {}
    for name in failed_fields(plan):
        text = raw.get(name)
        if isinstance(text, (str, int, float)) and not isinstance(text, bool) and name != "products":
            values[name] = str(text)
    stored_warnings = plan.warnings if isinstance(plan.warnings, dict) else {}
    errors = {k: str(v) for k, v in plan.errors.items()
              if k in INPUT_FIELDS and v != stored_warnings.get(k)}
    warnings = {k: str(v) for k, v in stored_warnings.items() if k in INPUT_FIELDS}
    return values, errors, warnings


@bp.post("/plans/<int:plan_id>")
@requires("operator")
def edit_plan(plan_id: int) -> Any:
    principal = current_principal()
    assert principal is not None
    with db() as s:
        plan = s.get(Plan, plan_id)
        if plan is None:
            abort(404)
        # What the page showed: in a failed field, the order form's text; sent back unchanged it is
        # not a change (the field stays empty and flagged), so other fields can be fixed one by one.
        before, _, _ = review_form(plan)
        before_state = plan.state
    values = submitted_values(request.form, before)
    changed: dict[str, Any] = {k: v for k, v in values.items() if v != before[k]}
    if "currency" in changed:
        # Amounts are typed in the currency's units: re-read them in the new one.
        changed.update(credit_amount=values["credit_amount"], price=values["price"])
    confirming = bool(request.form.get("accept_warnings"))
    if not changed and not confirming:
        flash("Nothing changed.", "ok")
        return redirect(url_for("table.show_plan", plan_id=plan_id))
    changed.update(form_locale(request.form))
    if confirming:
        # Also how a row in review with only warnings is confirmed as it is (issue 17 #11).
        changed["accept_warnings"] = True
    try:
        saved = plans().edit(plan_id, changed, actor=principal.email)
    except PlanRejected as exc:
        if exc.status == 404:
            abort(404)
        with db() as s:
            plan = s.get(Plan, plan_id)
            assert plan is not None
            page = _plan_page(s, plan, values, exc.errors, exc.warnings)
            return render_template("table/plan.html", **page, submitted=True), 422
    if saved.get("state") == "needs_review":
        flash(f"Row {plan_id} saved; it still needs review: fix the fields marked below.", "ok")
    elif before_state == "needs_review":
        flash(f"Row {plan_id} saved and out of review: its buttons can be used now.", "ok")
    else:
        flash(f"Row {plan_id} saved.", "ok")
    return redirect(url_for("table.show_plan", plan_id=plan_id))


@bp.post("/plans/<int:plan_id>/document-change")
@requires("operator")
def settle_document_change(plan_id: int) -> Any:
    """The signed document changed (issue 17 #6): apply its new values, or keep the row."""
    principal = current_principal()
    assert principal is not None
    apply = request.form.get("decision") == "apply"
    try:
        plans().settle_document_change(plan_id, apply=apply, actor=principal.email)
    except PlanRejected as exc:
        if exc.status == 404:
            abort(404)
        problem = "; ".join(f"{FIELD_LABELS.get(k, k)}: {v}" for k, v in exc.errors.items()) or exc.message
        flash(f"The document's new values were not applied to row {plan_id}: {problem}", "error")
    else:
        flash(f"Row {plan_id}: the document's new values are applied." if apply else
              f"Row {plan_id}: kept as it was; the note about the changed document is dismissed.", "ok")
    return redirect(url_for("table.show_plan", plan_id=plan_id))


def _plan_page(s: Any, plan: Plan, values: Mapping[str, Any], errors: Mapping[str, str],
               warnings: Mapping[str, str]) -> dict[str, Any]:
    # Fields Stripe already holds are shown read-only with the reason: the same sentence the
    # service answers (and the form shows beside the field) when a change is sent anyway.
    return {
        **_form_context(values, errors, warnings, locks_for(plan)),
        **_live_context(s, plan),
        **_shared_context(),
        "review": _review_context(s, plan),
    }


def _review_context(s: Any, plan: Plan) -> dict[str, Any]:
    """What helps a person fix or confirm a row (issue 17 #11), and the notes on any row: the
    changed document, possible duplicates."""
    stored = plan.errors if isinstance(plan.errors, dict) else {}
    details = plan.pandadoc_details if isinstance(plan.pandadoc_details, dict) else {}
    found = stored.get("_raw")
    raw: dict[str, Any] = found if isinstance(found, dict) else {}
    other_lines = raw.get(OTHER_LINES_KEY) or []
    in_review = plan.state == "needs_review"
    warned = plan.warnings if isinstance(plan.warnings, dict) else {}
    field_problems = [k for k, v in stored.items() if k in INPUT_FIELDS and v != warned.get(k)]
    row_problems = {k: str(v) for k, v in stored.items()
                    if not k.startswith("_") and k not in INPUT_FIELDS and k != DOCUMENT_CHANGE_KEY}
    return {
        "in_review": in_review,
        "document_error": str(stored.get(DOCUMENT_ERROR_KEY) or ""),
        "row_problems": row_problems,
        "original_details": details.get("original_details"),
        "details": details or None,
        "other_lines": other_lines if isinstance(other_lines, list) else [other_lines],
        "document_url": PANDADOC_APP_URL.format(id=plan.pandadoc_id) if plan.pandadoc_id else None,
        "failed": failed_fields(plan),
        "only_warnings": in_review and not field_problems and not row_problems and not failed_fields(plan),
        "document_change": plan.document_change if isinstance(plan.document_change, dict) else None,
        "duplicate_warning": duplicate_warning(possible_duplicates(s, [plan]).get(plan.id, [])),
    }


def _live_context(s: Any, plan: Plan) -> dict[str, Any]:
    principal = current_principal()
    timeline = s.scalars(select(AuditEntry).where(AuditEntry.plan_id == plan.id).order_by(AuditEntry.id.desc())).all()
    links = [(ID_LABELS[name], value, dashboard_url(settings(), value))
             for name in ID_LABELS if (value := getattr(plan, name))]
    view = row_view(plan)
    return {
        "plan": plan, "buttons": buttons_for(plan, principal, view), "version": version(plan),
        "timeline": [audit_to_json(entry) for entry in timeline], "stripe_links": links,
        "workflow_link": workflow_url(settings(), plan.workflow_id),
        "view": _readable_view(plan.workflow_view), "projection_error": view.problem,
    }


# The shape the status panel reads from the workflow's projection; a part of another shape (a
# projection from another version of the code, or damaged) is left out rather than break the page.
_VIEW_SHAPES: dict[str, type] = {"progress": dict, "error": dict, "checks": list, "billing_mapping": dict}


def _readable_view(workflow: Any) -> dict[str, Any]:
    if not isinstance(workflow, dict):
        return {}
    view = {k: v for k, v in workflow.items() if k != "actions"}
    for key, shape in _VIEW_SHAPES.items():
        if key in view and not isinstance(view[key], shape):
            del view[key]
    if isinstance(view.get("checks"), list):
        view["checks"] = [c for c in view["checks"] if isinstance(c, dict)]
    return view


@bp.get("/plans/<int:plan_id>/live")
@requires("viewer")
def live_plan(plan_id: int) -> Any:
    """The row page's status panel when the row changed since `?version=`; 204 when it did not."""
    with db() as s:
        plan = s.get(Plan, plan_id)
        if plan is None:
            abort(404)
        if request.args.get("version") == version(plan):
            return "", 204
        html = render_template("table/_status.html", **_live_context(s, plan), **_shared_context())
        return jsonify({"version": version(plan), "html": html})
