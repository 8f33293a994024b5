"""Subscription schedules: phases on the sandbox clock, subscription creation at start, end behaviour.

At the end of the last phase `end_behavior=release` leaves the subscription running and marks the
schedule `released` (`subscription_schedule.released`); `cancel` cancels the subscription and marks
the schedule `completed` (`subscription_schedule.completed`).
"""

from __future__ import annotations

from typing import Any

from .. import store
from ..clock import add_interval
from ..core import Sandbox, timer
from ..errors import invalid, missing_param, state_error
from ..router import Req, route
from ..store import Obj
from .common import created_filter, require, set_metadata
from .customers import get_customer
from .subscriptions import (
    _check_items,
    apply_item_changes,
    billing_mode,
    create_subscription,
    end_subscription,
    reset_anchor,
)

MAX_PHASES = 10


def _phases(sb: Sandbox, raw: list[dict[str, Any]], start: int, customer: str) -> list[Obj]:
    if not raw:
        raise missing_param("phases")
    if len(raw) > MAX_PHASES:
        raise invalid(f"A subscription schedule can have at most {MAX_PHASES} phases.", param="phases")
    phases = []
    cursor = start
    for i, ph in enumerate(raw):
        param = f"phases[{i}]"
        items = ph.get("items") or []
        prices = _check_items(sb, items, f"{param}[items]")
        if "end_date" in ph and "duration" in ph:
            raise invalid("You may only specify one of `end_date` and `duration`.", param=f"{param}[duration]")
        if "duration" in ph:
            d = ph["duration"]
            require(d, "interval")
            end = add_interval(cursor, d["interval"], d.get("interval_count", 1))
        elif "end_date" in ph:
            end = int(ph["end_date"])
        else:
            raise invalid("Every phase needs an end: pass `duration` or `end_date`.", param=f"{param}[duration]")
        if end <= cursor:
            raise invalid("A phase must end after it starts.", param=f"{param}[end_date]")
        inv_settings = ph.get("invoice_settings") or {}
        phases.append(
            {
                "add_invoice_items": [],
                "application_fee_percent": None,
                "automatic_tax": None,
                "billing_cycle_anchor": ph.get("billing_cycle_anchor"),
                "billing_thresholds": None,
                "collection_method": ph.get("collection_method"),
                "currency": prices[0]["currency"],
                "default_payment_method": None,
                "default_tax_rates": [],
                "description": ph.get("description") or None,
                "discounts": [
                    {"coupon": d.get("coupon"), "discount": d.get("discount"), "promotion_code": None}
                    for d in (ph.get("discounts") or [])
                ],
                "end_date": end,
                "invoice_settings": {
                    "account_tax_ids": None,
                    "days_until_due": inv_settings.get("days_until_due"),
                    "issuer": None,
                }
                if inv_settings
                else None,
                "items": [
                    {
                        "billing_thresholds": None,
                        "discounts": [],
                        "metadata": dict(it.get("metadata") or {}),
                        "price": it["price"],
                        "quantity": it.get("quantity", 1),
                        "tax_rates": [],
                    }
                    for it in items
                ],
                "metadata": dict(ph.get("metadata") or {}),
                "on_behalf_of": None,
                "proration_behavior": ph.get("proration_behavior", "create_prorations"),
                "start_date": cursor,
                "transfer_data": None,
                "trial_end": ph.get("trial_end"),
            }
        )
        cursor = end
    return phases


def _phase_settings(sched: Obj, phase: Obj) -> tuple[str, int | None]:
    defaults = sched["default_settings"]
    method = phase["collection_method"] or defaults["collection_method"] or "charge_automatically"
    days = (phase["invoice_settings"] or {}).get("days_until_due")
    if days is None:
        days = (defaults["invoice_settings"] or {}).get("days_until_due")
    if method == "send_invoice" and days is None:
        days = 30  # Stripe's default for send_invoice when nothing is set
    return method, days if method == "send_invoice" else None


def _current_phase_index(sched: Obj, now: int) -> int | None:
    for i, ph in enumerate(sched["phases"]):
        if ph["start_date"] <= now < ph["end_date"]:
            return i
    return None


def _start(sb: Sandbox, sched: Obj) -> None:
    phase = sched["phases"][0]
    method, days = _phase_settings(sched, phase)
    cus = sb.state.objects[sched["customer"]]
    with sb.tracking(sched, "subscription_schedule.updated"):
        sub = create_subscription(
            sb,
            cus,
            [{"price": it["price"], "quantity": it["quantity"], "metadata": it["metadata"]} for it in phase["items"]],
            collection_method=method,
            days_until_due=days,
            metadata=phase["metadata"] or sched["metadata"],
            discounts=[{"coupon": d["coupon"]} for d in phase["discounts"] if d.get("coupon")] or None,
            trial_end=phase["trial_end"],
            description=phase["description"],
            schedule=sched["id"],
            items_param="phases[0][items]",
            mode=store.public(sched["billing_mode"]),
        )
        sched["subscription"] = sub["id"]
        sched["status"] = "active"
        sched["current_phase"] = {"end_date": phase["end_date"], "start_date": phase["start_date"]}
        sched["_phase"] = 0


def _next_phase(sb: Sandbox, sched: Obj, index: int) -> None:
    phase = sched["phases"][index]
    sub = sb.state.objects[sched["subscription"]]
    method, days = _phase_settings(sched, phase)
    old_interval = list(sub["_interval"])
    with sb.tracking(sched, "subscription_schedule.updated"):
        with sb.tracking(sub, "customer.subscription.updated"):
            current = {sb.state.objects[i]["price"]: i for i in sub["_item_ids"]}
            wanted = {it["price"] for it in phase["items"]}
            changes: list[dict[str, Any]] = [
                {"id": si_id, "deleted": True} for price, si_id in current.items() if price not in wanted
            ]
            for it in phase["items"]:
                if it["price"] in current:
                    changes.append({"id": current[it["price"]], "quantity": it["quantity"], "metadata": it["metadata"]})
                else:
                    changes.append({"price": it["price"], "quantity": it["quantity"], "metadata": it["metadata"]})
            # Add before delete so the subscription never has zero items in between.
            changes.sort(key=lambda c: bool(c.get("deleted")))
            apply_item_changes(sb, sub, changes, f"phases[{index}][items]")
            sub["collection_method"], sub["days_until_due"] = method, days
            if phase["metadata"]:
                sub["metadata"] = dict(phase["metadata"])
        sched["current_phase"] = {"end_date": phase["end_date"], "start_date": phase["start_date"]}
        sched["_phase"] = index
    first_price = sb.state.objects[sb.state.objects[sub["_item_ids"][0]]["price"]]["recurring"]
    new_interval = [first_price["interval"], first_price["interval_count"]]
    if new_interval != old_interval or phase.get("billing_cycle_anchor") == "phase_start":
        reset_anchor(sb, sub, "subscription_update")


def finish_schedule(sb: Sandbox, sched: Obj, outcome: str, *, cancel_subscription: bool) -> None:
    """outcome: released | completed | canceled."""
    now = sb.now()
    sub = sb.state.objects.get(sched["subscription"]) if sched["subscription"] else None
    with sb.tracking(sched, None):
        sched["status"] = outcome
        sched["current_phase"] = None
        if outcome == "released":
            sched["released_at"] = now
            sched["released_subscription"] = sched["subscription"]
            sched["subscription"] = None
        elif outcome == "completed":
            sched["completed_at"] = now
        else:
            sched["canceled_at"] = now
    sb.state.watch.discard(sched["id"])
    if sub is not None and outcome == "released":
        with sb.tracking(sub, "customer.subscription.updated"):
            sub["schedule"] = None
    if sub is not None and cancel_subscription and sub["status"] not in ("canceled", "incomplete_expired"):
        end_subscription(sb, sub, reason="schedule_completed" if outcome == "completed" else "cancellation_requested")
    sb.emit(f"subscription_schedule.{outcome}", sched)


def _schedule_due(sb: Sandbox, sched: Obj) -> int | None:
    if sched["status"] == "not_started":
        return int(sched["phases"][0]["start_date"])
    if sched["status"] == "active":
        return int(sched["phases"][sched["_phase"]]["end_date"])
    return None


@timer("subscription_schedule", 10, _schedule_due)
def _schedule_tick(sb: Sandbox, sched: Obj, now: int) -> None:
    if sched["status"] == "not_started":
        _start(sb, sched)
        return
    index = sched["_phase"] + 1
    if index < len(sched["phases"]):
        _next_phase(sb, sched, index)
    elif sched["end_behavior"] == "cancel":
        finish_schedule(sb, sched, "completed", cancel_subscription=True)
    else:
        finish_schedule(sb, sched, "released", cancel_subscription=False)


# ---- routes -----------------------------------------------------------------------------------------


@route("POST", "/v1/subscription_schedules", "SubscriptionScheduleCreateParams")
def create(sb: Sandbox, req: Req) -> Obj:
    p = req.params
    if p.get("from_subscription"):
        raise invalid("`from_subscription` is not emulated by the sandbox.", param="from_subscription")
    require(p, "customer")
    cus = get_customer(sb, p["customer"])
    now = sb.now()
    start = now if p.get("start_date", "now") == "now" else int(p["start_date"])
    phases = _phases(sb, p.get("phases") or [], start, cus["id"])
    ds = p.get("default_settings") or {}
    end_behavior = p.get("end_behavior", "release")
    if end_behavior not in ("release", "cancel"):
        raise invalid("The sandbox emulates `end_behavior` release and cancel.", param="end_behavior")
    sched = {
        "id": store.new_id("sub_sched_"),
        "object": "subscription_schedule",
        "application": None,
        "billing_mode": billing_mode(p.get("billing_mode"), now),
        "canceled_at": None,
        "completed_at": None,
        "created": now,
        "current_phase": None,
        "customer": cus["id"],
        "default_settings": {
            "application_fee_percent": None,
            "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
            "billing_cycle_anchor": ds.get("billing_cycle_anchor", "automatic"),
            "billing_thresholds": None,
            "collection_method": ds.get("collection_method"),
            "default_payment_method": None,
            "description": ds.get("description"),
            "invoice_settings": {
                "account_tax_ids": None,
                "days_until_due": (ds.get("invoice_settings") or {}).get("days_until_due"),
                "issuer": {"type": "self"},
            },
            "on_behalf_of": None,
            "transfer_data": None,
        },
        "end_behavior": end_behavior,
        "livemode": False,
        "metadata": {},
        "phases": phases,
        "released_at": None,
        "released_subscription": None,
        "status": "not_started",
        "subscription": None,
        "test_clock": None,
        "_phase": None,
    }
    set_metadata(sched, p)
    sb.state.add(sched)
    sb.watch(sched)
    sb.emit("subscription_schedule.created", sched)
    if start <= now:
        _start(sb, sched)
    return sched


@route("GET", "/v1/subscription_schedules/<id>", "SubscriptionScheduleRetrieveParams")
def retrieve(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    return sb.state.get(id, "subscription_schedule")


@route("POST", "/v1/subscription_schedules/<id>", "SubscriptionScheduleUpdateParams")
def update(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    sched = sb.state.get(id, "subscription_schedule")
    if sched["status"] not in ("not_started", "active"):
        raise state_error(f"You cannot update a subscription schedule that is {sched['status']}.")
    p = req.params
    with sb.tracking(sched, "subscription_schedule.updated"):
        set_metadata(sched, p)
        if "end_behavior" in p:
            if p["end_behavior"] not in ("release", "cancel"):
                raise invalid("The sandbox emulates `end_behavior` release and cancel.", param="end_behavior")
            sched["end_behavior"] = p["end_behavior"]
        if "phases" in p:
            raw = p["phases"]
            first = raw[0] if raw else {}
            start = first.get("start_date", sched["phases"][0]["start_date"])
            start = sb.now() if start == "now" else int(start)
            if sched["status"] == "active" and start != sched["phases"][0]["start_date"]:
                raise invalid(
                    "The start date of a started schedule's first phase can't change.", param="phases[0][start_date]"
                )
            for ph in raw:
                ph.pop("start_date", None)
            sched["phases"] = _phases(sb, raw, start, sched["customer"])
            if sched["status"] == "active":
                sched["_phase"] = _current_phase_index(sched, sb.now()) or 0
                cur = sched["phases"][sched["_phase"]]
                sched["current_phase"] = {"end_date": cur["end_date"], "start_date": cur["start_date"]}
    return sched


@route("POST", "/v1/subscription_schedules/<id>/cancel", "SubscriptionScheduleCancelParams")
def cancel(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    sched = sb.state.get(id, "subscription_schedule")
    if sched["status"] not in ("not_started", "active"):
        raise state_error(f"You cannot cancel a subscription schedule that is {sched['status']}.")
    finish_schedule(sb, sched, "canceled", cancel_subscription=True)
    return sched


@route("POST", "/v1/subscription_schedules/<id>/release", "SubscriptionScheduleReleaseParams")
def release(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    sched = sb.state.get(id, "subscription_schedule")
    if sched["status"] not in ("not_started", "active"):
        raise state_error(f"You cannot release a subscription schedule that is {sched['status']}.")
    finish_schedule(sb, sched, "released", cancel_subscription=False)
    return sched


@route("GET", "/v1/subscription_schedules", "SubscriptionScheduleListParams")
def list_(sb: Sandbox, req: Req) -> Obj:
    p = req.params
    items = sb.state.all("subscription_schedule")
    if "customer" in p:
        items = [s for s in items if s["customer"] == p["customer"]]
    if "scheduled" in p:
        items = [s for s in items if (s["status"] == "not_started") == p["scheduled"]]
    for field in ("canceled_at", "completed_at", "released_at"):
        if field in p:
            items = created_filter(items, p[field], field)
    items = created_filter(items, p.get("created"))
    return store.paginate(sb.state, items, p, "/v1/subscription_schedules", req.expand)
