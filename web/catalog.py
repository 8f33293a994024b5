"""The billing catalog: its problems (page and `GET /api/catalog/problems`), the billing-limit
calculator (`GET /api/catalog/billing-limit`), bespoke prices (form and `POST /api/catalog/prices`),
a subscription's prices and discounts (page `/catalog/subscriptions/<id>` and
`/api/subscriptions/<id>…`), and the durable timers of startup plans and free trials
(`/catalog/startup-plans/<subscription id>`, `/catalog/free-trials/<org id>` and their `/api/…`).

Viewers read; every Stripe write is an operator's. Reads go to Stripe each time: the catalog is
small, and a cached answer would hide the fix an operator just made in the dashboard.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import stripe
from flask import Blueprint, flash, jsonify, redirect, render_template, request, url_for

from activities.catalog import (
    BespokeResult,
    CatalogCheckResult,
    CustomerView,
    SubscriptionChange,
    SubscriptionChangeRefused,
    add_subscription_discount,
    create_bespoke_price,
    move_subscription_price,
    read_catalog,
    remove_subscription_discount,
    run_catalog_check,
    suggest_customers,
    view_customer,
    view_subscription,
)
from activities.stripe_api import dashboard_url, stripe_client
from domain.billing_config import BillingConfig, load_billing_config
from domain.billing_limit import BillingLimitAnswer, BillingLimitError, usage_allowed
from domain.catalog_check import BespokePrice, BespokeRefused, CatalogSnapshot, parse_tier_rows, product_for
from domain.money import MoneyError, check_currency, parse_amount
from web.auth import current_principal, requires
from web.context import db, settings, temporal

bp = Blueprint("catalog", __name__)


class CatalogUnavailable(Exception):
    """Stripe could not be read; the message says so in a sentence."""


@bp.errorhandler(CatalogUnavailable)
def _unavailable(exc: CatalogUnavailable) -> Any:
    if request.path.startswith("/api/"):
        return jsonify({"error": str(exc)}), 502
    return render_template("error.html", title="Stripe is not answering", message=str(exc)), 502


def _client() -> stripe.StripeClient:
    return stripe_client(settings())


def _config() -> BillingConfig:
    return load_billing_config(settings().billing_config)


def _check() -> CatalogCheckResult:
    try:
        return run_catalog_check(_client(), _config())
    except stripe.StripeError as exc:
        raise CatalogUnavailable(
            f"The Stripe catalog could not be read ({exc.user_message or exc}); try again in a minute.") from None


def _billing_limit(args: Any) -> BillingLimitAnswer:
    """`limit` (major units, e.g. "200.00"), `discount` (percent, e.g. "20"), `currency` (default usd)."""
    currency = (args.get("currency") or "usd").strip().lower()
    limit_text = (args.get("limit") or "").strip()
    discount_text = (args.get("discount") or "0").strip().removesuffix("%").strip()
    if not limit_text:
        raise BillingLimitError("Give the billing limit as `limit`, e.g. limit=200.00.")
    try:
        limit = parse_amount(limit_text, currency)
    except MoneyError as exc:
        raise BillingLimitError(str(exc)) from None
    try:
        discount = Decimal(discount_text)
    except InvalidOperation:
        raise BillingLimitError(f"The discount {discount_text!r} is not a number of percent, e.g. 20.") from None
    return usage_allowed(limit, discount, currency)


@bp.get("/catalog")
@requires("viewer")
def page() -> Any:
    result = _check()
    limit_answer: BillingLimitAnswer | None = None
    limit_error: str | None = None
    if request.args.get("limit"):
        try:
            limit_answer = _billing_limit(request.args)
        except (BillingLimitError, MoneyError) as exc:
            limit_error = str(exc)
    return render_template("catalog/index.html", result=result, link=lambda i: dashboard_url(settings(), i),
                           limit_answer=limit_answer, limit_error=limit_error, form=request.args)


@bp.get("/api/catalog/problems")
@requires("viewer")
def problems() -> Any:
    result = _check()
    return jsonify({"problems": [p.to_json() for p in result.problems], "count": len(result.problems),
                    "products": result.products, "prices": result.prices, "meters": result.meters})


def last_scheduled_check() -> dict[str, Any] | None:
    """The newest finished run of the `catalog-check` Schedule: when, and its problems (None when
    there is no schedule or no finished run yet). For the table page's banner."""
    from temporalio.client import ScheduleActionExecutionStartWorkflow, WorkflowExecutionStatus
    from temporalio.service import RPCError

    from workflows.catalog import CHECK_SCHEDULE_ID, CatalogCheckWorkflow

    async def read(client: Any) -> dict[str, Any] | None:
        try:
            described = await client.get_schedule_handle(CHECK_SCHEDULE_ID).describe()
        except RPCError:
            return None
        for action in reversed(described.info.recent_actions):
            started = action.action
            if not isinstance(started, ScheduleActionExecutionStartWorkflow):
                continue
            handle = client.get_workflow_handle_for(CatalogCheckWorkflow.run, started.workflow_id,
                                                    run_id=started.first_execution_run_id)
            if (await handle.describe()).status != WorkflowExecutionStatus.COMPLETED:
                continue
            result = await handle.result()
            return {"at": action.started_at.isoformat(), "problems": [p.to_json() for p in result.problems],
                    "count": len(result.problems)}
        return None

    result: dict[str, Any] | None = temporal().run(read)
    return result


def catalog_banner() -> dict[str, Any] | None:
    """The table page's one line: the newest scheduled check's result as its activity recorded it
    (`{"at", "count"}`), read from the database so the page never waits on Temporal; None when no
    scheduled check has run."""
    from activities.catalog import CHECK_RECORDED
    from store.catalog_audit import newest

    with db() as session:
        entry = newest(session, CHECK_RECORDED)
        if entry is None:
            return None
        return {"at": entry.at, "count": int(entry.detail.get("count", 0))}


@bp.get("/api/catalog/last-check")
@requires("viewer")
def last_check_api() -> Any:
    found = last_scheduled_check()
    if found is None:
        return jsonify({"error": "The scheduled catalog check has not finished a run yet "
                                 "(create it with `revops catalog schedule`)."}), 404
    return jsonify(found)


@bp.get("/api/catalog/billing-limit")
@requires("viewer")
def billing_limit() -> Any:
    try:
        answer = _billing_limit(request.args)
    except (BillingLimitError, MoneyError) as exc:
        return jsonify({"error": str(exc)}), 400
    return jsonify(answer.to_json())


# ---- bespoke prices --------------------------------------------------------------------------

FORM_TIER_ROWS = 8


def _actor() -> str:
    principal = current_principal()
    assert principal is not None  # guaranteed by @requires
    return principal.email


def _audit_row(action: str, **fields: Any) -> None:
    """The change on the catalog audit table, shown on the customer page (made outside a row or not)."""
    from store.catalog_audit import record

    record(settings().database_url, _actor(), action, **fields)


def _bespoke_request(data: Mapping[str, Any]) -> BespokePrice:
    """Build the request from JSON or form fields; every problem with the input is listed."""
    problems: list[str] = []
    product = str(data.get("product") or "").strip()
    if not product:
        problems.append("choose the product the price goes on")
    currency = str(data.get("currency") or "usd").strip().lower()
    try:
        currency = check_currency(currency)
    except MoneyError as exc:
        problems.append(str(exc))
        currency = "usd"
    rows = data.get("tiers")
    if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
        problems.append("`tiers` must be a list of rows with up_to, unit_amount and optional flat_amount")
        rows = []
    tiers, tier_problems = parse_tier_rows(
        [{k: ("" if v is None else str(v)) for k, v in r.items()} for r in rows], currency)
    problems.extend(tier_problems)
    metadata = data.get("metadata") or {}
    if not isinstance(metadata, Mapping) or not all(isinstance(v, str) for v in metadata.values()):
        problems.append("`metadata` must map names to text")
        metadata = {}
    meter = str(data.get("meter") or "").strip() or None
    if problems:
        raise BespokeRefused(problems)
    return BespokePrice(product=product, tiers=tiers, currency=currency,
                        interval=str(data.get("interval") or "month"), meter=meter, metadata=dict(metadata))


def _create_bespoke(data: Mapping[str, Any]) -> BespokeResult:
    bespoke = _bespoke_request(data)
    try:
        result = create_bespoke_price(_client(), _config(), bespoke, actor=_actor(), today=datetime.now(UTC).date())
    except stripe.StripeError as exc:
        raise BespokeRefused([f"Stripe answered with an error ({exc.user_message or exc}); sending the same "
                              "request again is safe, it makes the price at most once"]) from None
    if result.created:
        _audit_row("bespoke_price_created", price=result.price_id, customer=bespoke.metadata.get("customer"),
                   detail={"product": bespoke.product, "meter": result.meter, "nickname": result.nickname})
    return result


def _result_json(result: BespokeResult) -> dict[str, Any]:
    return {"price": result.price_id, "created": result.created, "meter": result.meter, "nickname": result.nickname,
            "dashboard_url": dashboard_url(settings(), result.price_id)}


@bp.post("/api/catalog/prices")
@requires("operator")
def create_price_api() -> Any:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        return jsonify({"error": "Send the price as a JSON object (product, tiers, …)."}), 400
    try:
        result = _create_bespoke(data)
    except BespokeRefused as refused:
        return jsonify({"error": str(refused), "problems": refused.problems}), 422
    return jsonify(_result_json(result)), 201 if result.created else 200


def _products(snapshot: CatalogSnapshot, config: BillingConfig) -> list[dict[str, str]]:
    out = []
    for key, product_config in sorted(config.products.items()):
        product = product_for(snapshot, config, key)
        if product is not None:
            out.append({"id": product.id, "name": product.name, "key": key,
                        "addon_of": product_config.addon_of or ""})
    return out


def _form_rows(snapshot: CatalogSnapshot, config: BillingConfig, product_id: str) -> list[dict[str, str]]:
    """Spare rows, with the volumes of the product's family filled in (they must match anyway)."""
    from domain.catalog_check import reference_price

    rows = [{"up_to": "", "unit_amount": "", "flat_amount": ""} for _ in range(FORM_TIER_ROWS)]
    product = snapshot.product(product_id)
    if product is None or product.key not in config.products:
        return rows
    main_key = config.products[product.key].addon_of if product.key else None
    main = product_for(snapshot, config, main_key) if main_key else product
    reference = reference_price(snapshot.tiered_prices(main.id)) if main else None
    for row, volume in zip(rows, reference.volumes if reference else (), strict=False):
        row["up_to"] = "" if volume is None else str(volume)
    return rows


def _render_form(form: Mapping[str, Any], rows: list[dict[str, str]], problems: list[str], status: int = 200) -> Any:
    try:
        snapshot = read_catalog(_client())
    except stripe.StripeError as exc:
        raise CatalogUnavailable(f"The Stripe catalog could not be read ({exc.user_message or exc}).") from None
    return render_template("catalog/new_price.html", products=_products(snapshot, _config()), form=form, rows=rows,
                           problems=problems), status


@bp.get("/catalog/prices/new")
@requires("operator")
def new_price() -> Any:
    product = request.args.get("product", "")
    try:
        snapshot = read_catalog(_client())
    except stripe.StripeError as exc:
        raise CatalogUnavailable(f"The Stripe catalog could not be read ({exc.user_message or exc}).") from None
    rows = _form_rows(snapshot, _config(), product)
    return render_template("catalog/new_price.html", products=_products(snapshot, _config()),
                           form={"product": product, "currency": "usd", "interval": "month"}, rows=rows, problems=[])


def _metadata_lines(text: str) -> tuple[dict[str, str], list[str]]:
    metadata: dict[str, str] = {}
    problems = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            problems.append(f"metadata line {n} ({line.strip()!r}) must read name=value")
        else:
            metadata[name.strip()] = value.strip()
    return metadata, problems


@bp.post("/catalog/prices")
@requires("operator")
def create_price_form() -> Any:
    form = request.form
    rows = [{"up_to": form.get(f"up_to_{i}", ""), "unit_amount": form.get(f"unit_amount_{i}", ""),
             "flat_amount": form.get(f"flat_amount_{i}", "")} for i in range(FORM_TIER_ROWS)]
    metadata, problems = _metadata_lines(form.get("metadata", ""))
    if problems:
        return _render_form(form, rows, problems, 422)
    data = {"product": form.get("product"), "currency": form.get("currency"), "interval": form.get("interval"),
            "meter": form.get("meter"), "tiers": rows, "metadata": metadata}
    try:
        result = _create_bespoke(data)
    except BespokeRefused as refused:
        return _render_form(form, rows, refused.problems, 422)
    verb = "Created" if result.created else "Already made earlier:"
    flash(f"{verb} price {result.price_id} ({result.nickname}) on meter {result.meter}.", "ok")
    return redirect(url_for("catalog.page"))


# ---- a subscription's prices and discounts ---------------------------------------------------


class PlanNotFound(SubscriptionChangeRefused):
    pass


def _plan_id(raw: Any) -> int | None:
    """The plan row a change is made from (its timeline records it), if any."""
    if raw in (None, ""):
        return None
    text = str(raw).strip()
    if not text.isdigit():
        raise SubscriptionChangeRefused(f"plan_id {text!r} must be a plan row's number.")
    from store.models import Plan

    with db() as session:
        if session.get(Plan, int(text)) is None:
            raise PlanNotFound(f"There is no plan row {text}.")
    return int(text)


def _record(plan_id: int | None, action: str, change: SubscriptionChange, subscription_id: str) -> None:
    if plan_id is None or not change.changed:
        return
    from store.plans import record

    with db() as session:
        record(session, plan_id, actor=_actor(), action=action, outcome="ok",
               input={"subscription": subscription_id,
                      **{k: v for k, v in change.detail.items() if k != "usage_reset"}},
               result={"subscription": subscription_id, **change.detail})


def _change(action: str, subscription_id: str, plan_raw: Any, run: Any) -> tuple[SubscriptionChange, int | None]:
    plan_id = _plan_id(plan_raw)
    try:
        change: SubscriptionChange = run(_client())
    except stripe.StripeError as exc:
        raise SubscriptionChangeRefused(
            f"Stripe answered with an error ({exc.user_message or exc}); the same request again is safe.") from None
    _record(plan_id, action, change, subscription_id)
    if change.changed:
        _audit_row(action, customer=change.subscription.customer, subscription=subscription_id,
                   price=change.detail.get("to_price"), plan_id=plan_id, detail=change.detail)
    return change, plan_id


def _change_json(change: SubscriptionChange) -> dict[str, Any]:
    return {"subscription": change.subscription.to_json(), "changed": change.changed, **change.detail}


def _refused_json(exc: SubscriptionChangeRefused) -> Any:
    return jsonify({"error": str(exc)}), 404 if isinstance(exc, PlanNotFound) else 409


@bp.get("/api/subscriptions/<subscription_id>")
@requires("viewer")
def subscription_api(subscription_id: str) -> Any:
    try:
        return jsonify(view_subscription(_client(), subscription_id).to_json())
    except SubscriptionChangeRefused as exc:
        return jsonify({"error": str(exc)}), 404


@bp.post("/api/subscriptions/<subscription_id>/move")
@requires("operator")
def move_api(subscription_id: str) -> Any:
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or not data.get("from_price") or not data.get("to_price"):
        return jsonify({"error": "Send {\"from_price\": \"price_…\", \"to_price\": \"price_…\"} as JSON."}), 400
    try:
        change, _ = _change("move_subscription_price", subscription_id, data.get("plan_id"), lambda c: (
            move_subscription_price(c, subscription_id, str(data["from_price"]), str(data["to_price"]),
                                    actor=_actor())))
    except SubscriptionChangeRefused as exc:
        return _refused_json(exc)
    return jsonify(_change_json(change))


@bp.post("/api/subscriptions/<subscription_id>/discounts")
@requires("operator")
def add_discount_api(subscription_id: str) -> Any:
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or not data.get("coupon"):
        return jsonify({"error": "Send {\"coupon\": \"<coupon id>\"} as JSON."}), 400
    try:
        change, _ = _change("add_subscription_discount", subscription_id, data.get("plan_id"), lambda c: (
            add_subscription_discount(c, subscription_id, str(data["coupon"]), actor=_actor())))
    except SubscriptionChangeRefused as exc:
        return _refused_json(exc)
    return jsonify(_change_json(change)), 201 if change.changed else 200


@bp.delete("/api/subscriptions/<subscription_id>/discounts/<discount_id>")
@requires("operator")
def remove_discount_api(subscription_id: str, discount_id: str) -> Any:
    try:
        change, _ = _change("remove_subscription_discount", subscription_id, request.args.get("plan_id"),
                            lambda c: remove_subscription_discount(c, subscription_id, discount_id, actor=_actor()))
    except SubscriptionChangeRefused as exc:
        return _refused_json(exc)
    return jsonify(_change_json(change))


def _price_choices(snapshot: CatalogSnapshot, currency: str) -> list[dict[str, str]]:
    """Prices a subscription may move to: active, recurring, same currency (enterprise, startup,
    bespoke and default prices alike), grouped by product name."""
    names = {p.id: p.name for p in snapshot.products}
    choices = [{"id": p.id, "product": names.get(p.product, p.product), "nickname": p.nickname or p.id,
                "plan": p.metadata.get("plan", "")}
               for p in snapshot.prices if p.active and p.recurring and p.currency == currency]
    return sorted(choices, key=lambda c: (c["product"], c["nickname"], c["id"]))


@bp.get("/catalog/subscriptions/<subscription_id>")
@requires("viewer")
def subscription_page(subscription_id: str) -> Any:
    client = _client()
    try:
        view = view_subscription(client, subscription_id)
        snapshot = read_catalog(client)
        coupons = [c for c in client.v1.coupons.list({"limit": 100}).auto_paging_iter() if c.valid]
    except SubscriptionChangeRefused as exc:
        return render_template("error.html", title="No such subscription", message=str(exc)), 404
    except stripe.StripeError as exc:
        raise CatalogUnavailable(f"Stripe could not be read ({exc.user_message or exc}).") from None
    return render_template("catalog/subscription.html", sub=view, prices=_price_choices(snapshot, view.currency),
                           coupons=coupons, plan_id=request.args.get("plan_id", ""),
                           link=lambda i: dashboard_url(settings(), i))


def _form_change(subscription_id: str, action: str, run: Any) -> Any:
    plan = request.form.get("plan_id", "")
    try:
        change, _ = _change(action, subscription_id, plan, run)
        flash(f"{'Done' if change.changed else 'Nothing to do: it was already so'}: "
              f"{action.replace('_', ' ')} on {subscription_id}.", "ok")
    except SubscriptionChangeRefused as exc:
        flash(str(exc), "error")
    target = url_for("catalog.subscription_page", subscription_id=subscription_id)
    return redirect(f"{target}?plan_id={plan}" if plan.isdigit() else target)


@bp.post("/catalog/subscriptions/<subscription_id>/move")
@requires("operator")
def move_form(subscription_id: str) -> Any:
    form = request.form
    return _form_change(subscription_id, "move_subscription_price", lambda c: move_subscription_price(
        c, subscription_id, form.get("from_price", ""), form.get("to_price", ""), actor=_actor()))


@bp.post("/catalog/subscriptions/<subscription_id>/discounts")
@requires("operator")
def add_discount_form(subscription_id: str) -> Any:
    return _form_change(subscription_id, "add_subscription_discount", lambda c: add_subscription_discount(
        c, subscription_id, request.form.get("coupon", ""), actor=_actor()))


@bp.post("/catalog/subscriptions/<subscription_id>/discounts/<discount_id>/remove")
@requires("operator")
def remove_discount_form(subscription_id: str, discount_id: str) -> Any:
    return _form_change(subscription_id, "remove_subscription_discount", lambda c: remove_subscription_discount(
        c, subscription_id, discount_id, actor=_actor()))


# ---- timers: startup plans and free trials ---------------------------------------------------


class TimerRefused(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _timer_call(make: Any) -> Any:
    """Run a Temporal call; a validator's refusal is a 409 with its sentence, a missing workflow 404."""
    from temporalio.client import WorkflowUpdateFailedError
    from temporalio.exceptions import WorkflowAlreadyStartedError
    from temporalio.service import RPCError, RPCStatusCode

    try:
        return temporal().run(make)
    except WorkflowAlreadyStartedError:
        raise TimerRefused("That timer is already running: change its date instead.", 409) from None
    except WorkflowUpdateFailedError as err:
        message = getattr(err.cause, "message", None) or str(err)
        raise TimerRefused(str(message), 409) from None
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise TimerRefused("There is no such timer (it was never started, or it finished long ago).",
                               404) from None
        if err.status == RPCStatusCode.ALREADY_EXISTS:
            raise TimerRefused("That timer is already running: change its date instead.", 409) from None
        raise


def _status_json(status: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(status)


def _startup_status(subscription_id: str) -> Any:
    from workflows.catalog import StartupPlanWorkflow, startup_workflow_id

    async def query(client: Any) -> Any:
        handle = client.get_workflow_handle_for(StartupPlanWorkflow.run, startup_workflow_id(subscription_id))
        return await handle.query(StartupPlanWorkflow.status)

    return _timer_call(query)


def _startup_action(subscription_id: str, action: str, value: str | None = None) -> Any:
    from workflows.catalog import StartupPlanWorkflow, ensure_startup_timer, startup_workflow_id

    queue = settings().temporal_task_queue

    async def act(client: Any) -> Any:
        if action == "start":
            handle = await ensure_startup_timer(client, queue, subscription_id)
            return await handle.query(StartupPlanWorkflow.status)
        handle = client.get_workflow_handle_for(StartupPlanWorkflow.run, startup_workflow_id(subscription_id))
        if action == "date":
            return await handle.execute_update(StartupPlanWorkflow.move_date, value or "")
        return await handle.execute_update(StartupPlanWorkflow.cancel)

    status = _timer_call(act)
    audit_action = {"start": "startup_timer_started", "date": "startup_timer_moved",
                    "cancel": "startup_timer_cancelled"}
    from activities.catalog import audit

    audit(_actor(), audit_action[action], subscription=subscription_id, expires_at=status.expires_at)
    _audit_row(audit_action[action], subscription=subscription_id,
               detail={"expires_at": status.expires_at, "state": status.state})
    return status


def _timer_error(exc: TimerRefused) -> Any:
    return jsonify({"error": str(exc)}), exc.status


@bp.get("/api/startup-plans/<subscription_id>")
@requires("viewer")
def startup_plan_api(subscription_id: str) -> Any:
    try:
        return jsonify(_status_json(_startup_status(subscription_id)))
    except TimerRefused as exc:
        return _timer_error(exc)


@bp.post("/api/startup-plans/<subscription_id>")
@requires("operator")
def startup_plan_start_api(subscription_id: str) -> Any:
    try:
        return jsonify(_status_json(_startup_action(subscription_id, "start")))
    except TimerRefused as exc:
        return _timer_error(exc)


@bp.post("/api/startup-plans/<subscription_id>/date")
@requires("operator")
def startup_plan_date_api(subscription_id: str) -> Any:
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or not isinstance(data.get("expires_at"), str):
        return jsonify({"error": "Send {\"expires_at\": \"2027-01-31\"} as JSON."}), 400
    try:
        return jsonify(_status_json(_startup_action(subscription_id, "date", data["expires_at"])))
    except TimerRefused as exc:
        return _timer_error(exc)


@bp.post("/api/startup-plans/<subscription_id>/cancel")
@requires("operator")
def startup_plan_cancel_api(subscription_id: str) -> Any:
    try:
        return jsonify(_status_json(_startup_action(subscription_id, "cancel")))
    except TimerRefused as exc:
        return _timer_error(exc)


def _trial_status(org: str) -> Any:
    from workflows.catalog import FreeTrialWorkflow, free_trial_workflow_id

    async def query(client: Any) -> Any:
        return await client.get_workflow_handle_for(FreeTrialWorkflow.run, free_trial_workflow_id(org)).query(
            FreeTrialWorkflow.status)

    return _timer_call(query)


def _trial_action(org: str, action: str, value: str | None = None) -> Any:
    from workflows.catalog import FreeTrialWorkflow, free_trial_workflow_id

    async def act(client: Any) -> Any:
        handle = client.get_workflow_handle_for(FreeTrialWorkflow.run, free_trial_workflow_id(org))
        if action == "until":
            return await handle.execute_update(FreeTrialWorkflow.set_until, value or "")
        return await handle.execute_update(FreeTrialWorkflow.cancel)

    status = _timer_call(act)
    from activities.catalog import audit

    audit(_actor(), f"free_trial_{action}", org=org, until=status.until)
    _audit_row(f"free_trial_{action}", customer=status.customer, detail={"org": org, "until": status.until})
    return status


@bp.post("/api/free-trials")
@requires("operator")
def free_trial_start_api() -> Any:
    import time

    from temporalio.common import WorkflowIDConflictPolicy

    from workflows.catalog import FreeTrialInput, FreeTrialWorkflow, free_trial_workflow_id

    data = request.get_json(silent=True)
    if not isinstance(data, dict) or not str(data.get("org") or "").strip() or not data.get("until"):
        return jsonify({"error": "Send {\"org\": \"<PostHog org id>\", \"until\": \"2027-01-31\", "
                                 "\"customer\": \"cus_… (optional)\"} as JSON."}), 400
    org, until = str(data["org"]).strip(), str(data["until"]).strip()
    try:
        when = datetime.fromisoformat(until)
    except ValueError:
        return jsonify({"error": f"until {until!r} is not an ISO date (2027-01-31)."}), 422
    if (when if when.tzinfo else when.replace(tzinfo=UTC)) <= datetime.now(UTC):
        return jsonify({"error": f"until {until} is not in the future."}), 422
    trial = FreeTrialInput(org, until, str(data.get("customer") or "") or None, granted_at=int(time.time()))

    async def start(client: Any) -> Any:
        handle = await client.start_workflow(FreeTrialWorkflow.run, trial, id=free_trial_workflow_id(org),
                                             task_queue=settings().temporal_task_queue,
                                             id_conflict_policy=WorkflowIDConflictPolicy.FAIL)
        return await handle.query(FreeTrialWorkflow.status)

    try:
        status = _timer_call(start)
    except TimerRefused as exc:
        return _timer_error(exc)
    from activities.catalog import audit

    audit(_actor(), "free_trial_started", org=org, until=until, customer=trial.customer)
    _audit_row("free_trial_started", customer=trial.customer, detail={"org": org, "until": until})
    return jsonify(_status_json(status)), 201


@bp.get("/api/free-trials/<org>")
@requires("viewer")
def free_trial_api(org: str) -> Any:
    try:
        return jsonify(_status_json(_trial_status(org)))
    except TimerRefused as exc:
        return _timer_error(exc)


@bp.post("/api/free-trials/<org>/until")
@requires("operator")
def free_trial_until_api(org: str) -> Any:
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or not isinstance(data.get("until"), str):
        return jsonify({"error": "Send {\"until\": \"2027-01-31\"} as JSON."}), 400
    try:
        return jsonify(_status_json(_trial_action(org, "until", data["until"])))
    except TimerRefused as exc:
        return _timer_error(exc)


@bp.post("/api/free-trials/<org>/cancel")
@requires("operator")
def free_trial_cancel_api(org: str) -> Any:
    try:
        return jsonify(_status_json(_trial_action(org, "cancel")))
    except TimerRefused as exc:
        return _timer_error(exc)


@bp.get("/catalog/startup-plans/<subscription_id>")
@requires("viewer")
def startup_plan_page(subscription_id: str) -> Any:
    try:
        status, error = _startup_status(subscription_id), None
    except TimerRefused as exc:
        status, error = None, str(exc)
    return render_template("catalog/timer.html", kind="startup", key=subscription_id, status=status, error=error)


@bp.post("/catalog/startup-plans/<subscription_id>")
@requires("operator")
def startup_plan_form(subscription_id: str) -> Any:
    action = request.form.get("action", "")
    if action not in ("start", "date", "cancel"):
        flash(f"Unknown action {action!r}.", "error")
    else:
        try:
            _startup_action(subscription_id, action, request.form.get("expires_at"))
            flash({"start": "Timer started.", "date": "Date moved.", "cancel": "Timer cancelled."}[action], "ok")
        except TimerRefused as exc:
            flash(str(exc), "error")
    return redirect(url_for("catalog.startup_plan_page", subscription_id=subscription_id))


@bp.get("/catalog/free-trials/<org>")
@requires("viewer")
def free_trial_page(org: str) -> Any:
    try:
        status, error = _trial_status(org), None
    except TimerRefused as exc:
        status, error = None, str(exc)
    return render_template("catalog/timer.html", kind="trial", key=org, status=status, error=error)


@bp.post("/catalog/free-trials/<org>")
@requires("operator")
def free_trial_form(org: str) -> Any:
    action = request.form.get("action", "")
    if action not in ("until", "cancel"):
        flash(f"Unknown action {action!r}.", "error")
    else:
        try:
            _trial_action(org, action, request.form.get("until"))
            flash("Date changed." if action == "until" else "Trial cancelled.", "ok")
        except TimerRefused as exc:
            flash(str(exc), "error")
    return redirect(url_for("catalog.free_trial_page", org=org))


# ---- customers -------------------------------------------------------------------------------


def _plans_of(customer_id: str) -> list[dict[str, Any]]:
    from sqlalchemy import or_, select

    from store.models import Plan

    with db() as session:
        rows = session.scalars(select(Plan).where(or_(Plan.stripe_customer_id == customer_id,
                                                      Plan.stripe_customer_id_existing == customer_id))
                               .order_by(Plan.id))
        return [{"id": p.id, "company_name": p.company_name, "state": p.state,
                 "payment_schedule": p.payment_schedule,
                 "role": "installments" if p.stripe_customer_id == customer_id and p.payment_schedule == "monthly"
                 else "customer"} for p in rows]


def _changes_of(view: CustomerView) -> list[dict[str, Any]]:
    """The catalog audit trail of the customer and its subscriptions, newest first."""
    from store.catalog_audit import for_customer

    with db() as session:
        return [e.to_json() for e in for_customer(session, view.id, [s.id for s in view.subscriptions])]


def _customer_json(view: CustomerView) -> dict[str, Any]:
    return {**view.to_json(), "plans": _plans_of(view.id), "changes": _changes_of(view),
            "dashboard_url": dashboard_url(settings(), view.id)}


@bp.get("/api/customers/<customer_id>")
@requires("viewer")
def customer_api(customer_id: str) -> Any:
    try:
        return jsonify(_customer_json(view_customer(_client(), customer_id)))
    except SubscriptionChangeRefused as exc:
        return jsonify({"error": str(exc)}), 404


@bp.get("/catalog/customers/<customer_id>")
@requires("viewer")
def customer_page(customer_id: str) -> Any:
    try:
        view = view_customer(_client(), customer_id)
    except SubscriptionChangeRefused as exc:
        return render_template("error.html", title="No such customer", message=str(exc)), 404
    except stripe.StripeError as exc:
        raise CatalogUnavailable(f"Stripe could not be read ({exc.user_message or exc}).") from None
    return render_template("catalog/customer.html", customer=_customer_json(view),
                           link=lambda i: dashboard_url(settings(), i))


def _suggestions(plan_id: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The row, and the Stripe customers that may be its existing one (same org on other rows, or
    the same email), each with its balances and subscriptions."""
    from sqlalchemy import select

    from store.models import Plan

    with db() as session:
        plan = session.get(Plan, plan_id)
        if plan is None:
            raise SubscriptionChangeRefused(f"There is no plan row {plan_id}.")
        row = {"id": plan.id, "company_name": plan.company_name, "customer_email": plan.customer_email,
               "posthog_org_id": plan.posthog_org_id, "stripe_customer_id_existing": plan.stripe_customer_id_existing}
        known: list[str] = []
        if plan.posthog_org_id:
            for other in session.scalars(select(Plan).where(Plan.posthog_org_id == plan.posthog_org_id,
                                                            Plan.id != plan.id).order_by(Plan.id)):
                if other.stripe_customer_id_existing:
                    known.append(other.stripe_customer_id_existing)
                if other.stripe_customer_id and other.payment_schedule != "monthly":
                    known.append(other.stripe_customer_id)
    found = suggest_customers(_client(), email=str(row["customer_email"] or "") or None, known_ids=known)
    out = []
    for view in found:
        why = []
        if view.id in known:
            why.append(f"used by another row of organisation {row['posthog_org_id']}")
        if row["customer_email"] and (view.email or "").lower() == str(row["customer_email"]).lower():
            why.append(f"same email {view.email}")
        if view.org and view.org == row["posthog_org_id"]:
            why.append("its metadata names the organisation")
        out.append({**view.to_json(), "why": why})
    return row, out


@bp.get("/api/customer-suggestions")
@requires("viewer")
def suggestions_api() -> Any:
    raw = request.args.get("plan_id", "")
    if not raw.isdigit():
        return jsonify({"error": "Give the row as plan_id=<number>."}), 400
    try:
        row, found = _suggestions(int(raw))
    except SubscriptionChangeRefused as exc:
        return jsonify({"error": str(exc)}), 404
    return jsonify({"plan": row, "suggestions": found})


@bp.get("/catalog/plans/<int:plan_id>/customers")
@requires("viewer")
def suggestions_page(plan_id: int) -> Any:
    try:
        row, found = _suggestions(plan_id)
    except SubscriptionChangeRefused as exc:
        return render_template("error.html", title="No such row", message=str(exc)), 404
    return render_template("catalog/suggestions.html", row=row, suggestions=found)


@bp.post("/catalog/plans/<int:plan_id>/customers")
@requires("operator")
def use_customer(plan_id: int) -> Any:
    from plans.service import PlanRejected
    from web.context import plans

    customer_id = request.form.get("customer", "").strip()
    try:
        plans().edit(plan_id, {"stripe_customer_id_existing": customer_id}, actor=_actor())
    except PlanRejected as exc:
        flash(" ".join([exc.message, *exc.errors.values()]), "error")
        return redirect(url_for("catalog.suggestions_page", plan_id=plan_id))
    flash(f"Row {plan_id} now uses the existing Stripe customer {customer_id}.", "ok")
    return redirect(url_for("table.show_plan", plan_id=plan_id))
