"""Subscriptions and subscription items: creation, renewal on the sandbox clock, updates, cancellation.

Billing periods live on each item (`current_period_start/end`), as in the current API. Period ends
are computed from the billing anchor (period n = anchor + n intervals) so month ends don't drift.
Item changes through `POST /v1/subscriptions/{id}` prorate as Stripe does by default
(`proration_behavior=create_prorations`): a credit for the unused time of each removed or changed
licensed item and a charge for the rest of the period on each new one, as pending invoice items
(`proration: true`) the next invoice collects; `always_invoice` bills them now and `none` makes
none. Metered prices bill usage in arrears and are never prorated.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from .. import billing, store
from ..clock import add_interval
from ..core import Sandbox, timer
from ..errors import invalid, missing_param, state_error
from ..router import Req, route
from ..store import Obj, State
from .catalog import make_discounts
from .common import INVALID_FUTURE_TIMESTAMP, created_filter, future_timestamp, require, set_fields, set_metadata
from .customers import check_default_payment_method, get_customer
from .invoices import add_line, attach_item, finalize, include_pending_items, new_invoice, recalc, void

LIVE_STATUSES = ("active", "trialing", "past_due", "unpaid", "incomplete")
# A new subscription whose first invoice is not paid within 23 hours expires (`incomplete_expired`).
INCOMPLETE_EXPIRY = 23 * 3600


def billing_mode(value: Any, now: int) -> Obj:
    """`billing_mode` as Stripe shows it: API-made subscriptions and schedules are `flexible` unless
    `{type: classic}` is asked for (the default since 2025-09-30.clover)."""
    value = value if isinstance(value, dict) else {}
    if value.get("type", "flexible") == "classic":
        return {"flexible": None, "type": "classic", "updated_at": None}
    flexible = value.get("flexible") or {}
    return {
        "flexible": {"proration_discounts": flexible.get("proration_discounts", "included")},
        "type": "flexible",
        "updated_at": now,
    }


@store.renderer("subscription")
def _render_subscription(state: State, sub: Obj) -> Obj:
    out = store.public(sub)
    items = [store.render(state, state.objects[i]) for i in sub["_item_ids"] if i in state.objects]
    out["items"] = store.list_object(items, f"/v1/subscription_items?subscription={sub['id']}")
    return out


@store.renderer("subscription_item")
def _render_item(state: State, si: Obj) -> Obj:
    out = store.public(si)
    price = store.render(state, state.objects[si["price"]])
    out["price"] = price
    out["plan"] = _plan_view(price)
    return out


def _plan_view(price: Obj) -> Obj:
    """The legacy `plan` mirror Stripe still returns on subscription items."""
    rec = price.get("recurring") or {}
    return {
        "id": price["id"],
        "object": "plan",
        "active": price["active"],
        "amount": price["unit_amount"],
        "amount_decimal": price["unit_amount_decimal"],
        "billing_scheme": price["billing_scheme"],
        "created": price["created"],
        "currency": price["currency"],
        "interval": rec.get("interval"),
        "interval_count": rec.get("interval_count"),
        "livemode": False,
        "metadata": price["metadata"],
        "meter": rec.get("meter"),
        "nickname": price["nickname"],
        "product": price["product"],
        "tiers_mode": price["tiers_mode"],
        "transform_usage": None,
        "trial_period_days": rec.get("trial_period_days"),
        "usage_type": rec.get("usage_type", "licensed"),
    }


# ---- creation ---------------------------------------------------------------------------------------


def _recurring_price(sb: Sandbox, price_id: Any, param: str) -> Obj:
    price = sb.state.get(price_id, "price", param=param)
    if price["type"] != "recurring":
        raise invalid(
            f"The price specified ({price['id']}) is not recurring. Use invoice items for one-time prices.",
            param=param,
        )
    return price


def _check_items(sb: Sandbox, items: list[dict[str, Any]], param: str) -> list[Obj]:
    if not items:
        raise missing_param(param)
    prices = []
    for i, it in enumerate(items):
        if not it.get("price"):
            raise missing_param(f"{param}[{i}][price]")
        prices.append(_recurring_price(sb, it["price"], f"{param}[{i}][price]"))
    first = prices[0]
    for i, price in enumerate(prices):
        if price["currency"] != first["currency"]:
            raise invalid("All prices on a subscription must have the same currency.", param=f"{param}[{i}][price]")
        a, b = price["recurring"], first["recurring"]
        if (a["interval"], a["interval_count"]) != (b["interval"], b["interval_count"]):
            raise invalid(
                "All prices on a subscription must have the same `recurring.interval` and "
                "`recurring.interval_count` in the sandbox.",
                param=f"{param}[{i}][price]",
            )
    return prices


def _new_item(sb: Sandbox, sub: Obj, spec: dict[str, Any], start: int, end: int, param: str) -> Obj:
    si = sb.state.add(
        {
            "id": store.new_id("si_", 14),
            "object": "subscription_item",
            "billing_thresholds": None,
            "created": sb.now(),
            "current_period_end": end,
            "current_period_start": start,
            "discounts": make_discounts(
                sb, spec.get("discounts"), f"{param}[discounts]", customer=sub["customer"], subscription=sub["id"]
            ),
            "metadata": dict(spec.get("metadata") or {}),
            "price": spec["price"],
            "quantity": spec.get("quantity", 1),
            "subscription": sub["id"],
            "tax_rates": [],
        }
    )
    return si


def create_subscription(
    sb: Sandbox,
    cus: Obj,
    items: list[dict[str, Any]],
    *,
    collection_method: str = "charge_automatically",
    days_until_due: int | None = None,
    metadata: dict[str, str] | None = None,
    discounts: Any = None,
    trial_end: int | None = None,
    cancel_at: int | None = None,
    cancel_at_period_end: bool = False,
    description: str | None = None,
    schedule: str | None = None,
    items_param: str = "items",
    mode: Obj | None = None,
    default_payment_method: str | None = None,
    payment_behavior: str = "allow_incomplete",
) -> Obj:
    prices = _check_items(sb, items, items_param)
    now = sb.now()
    if collection_method == "send_invoice" and days_until_due is None:
        raise missing_param("days_until_due")
    if collection_method != "send_invoice" and days_until_due is not None:
        raise invalid("`days_until_due` is only for `collection_method=send_invoice`.", param="days_until_due")
    if cancel_at is not None and cancel_at <= now:
        raise invalid(INVALID_FUTURE_TIMESTAMP, param="cancel_at")
    rec = prices[0]["recurring"]
    trialing = trial_end is not None and trial_end > now
    sub_id = store.new_id("sub_")
    sub: Obj = {
        "id": sub_id,
        "object": "subscription",
        "application": None,
        "application_fee_percent": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": trial_end if trialing else now,
        "billing_cycle_anchor_config": None,
        "billing_mode": mode or billing_mode(None, now),
        "billing_thresholds": None,
        "cancel_at": cancel_at,
        "cancel_at_period_end": cancel_at_period_end,
        "canceled_at": None,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": collection_method,
        "created": now,
        "currency": prices[0]["currency"],
        "customer": cus["id"],
        "days_until_due": days_until_due,
        "default_payment_method": default_payment_method,
        "default_source": None,
        "default_tax_rates": [],
        "description": description,
        "discounts": [],
        "ended_at": None,
        "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
        "latest_invoice": None,
        "livemode": False,
        "metadata": dict(metadata or {}),
        "next_pending_invoice_item_invoice": None,
        "on_behalf_of": None,
        "pause_collection": None,
        "payment_settings": {
            "payment_method_options": None,
            "payment_method_types": None,
            "save_default_payment_method": "off",
        },
        "pending_invoice_item_interval": None,
        "pending_setup_intent": None,
        "pending_update": None,
        "schedule": schedule,
        "start_date": now,
        "status": "trialing" if trialing else "active",
        "test_clock": None,
        "transfer_data": None,
        "trial_end": trial_end if trialing else None,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": now if trialing else None,
        "_item_ids": [],
        "_anchor": trial_end if trialing else now,
        "_interval": [rec["interval"], rec["interval_count"]],
        "_period_index": 0,
        "_creating": True,
    }
    sb.state.add(sub)
    start = now
    end = trial_end if trialing and trial_end is not None else add_interval(now, rec["interval"], rec["interval_count"])
    for i, spec in enumerate(items):
        si = _new_item(sb, sub, spec, start, end, f"{items_param}[{i}]")
        sub["_item_ids"].append(si["id"])
    sub["discounts"] = make_discounts(sb, discounts, "discounts", customer=cus["id"], subscription=sub_id)
    sb.watch(sub)
    first = invoice_subscription(
        sb,
        sub,
        "subscription_create",
        start,
        end,
        immediate=True,
        zero=trialing,
        collect=payment_behavior != "default_incomplete",
    )
    # A subscription charged automatically is `incomplete` until its first invoice is paid (no card,
    # a declining card); the created event shows the status the first payment attempt left.
    if collection_method == "charge_automatically" and first["status"] != "paid":
        sub["status"] = "incomplete"
    del sub["_creating"]
    sb.emit("customer.subscription.created", sub)
    return sub


def invoice_subscription(
    sb: Sandbox,
    sub: Obj,
    reason: str,
    start: int,
    end: int,
    *,
    immediate: bool,
    zero: bool = False,
    collect: bool = True,
) -> Obj:
    """Bill the subscription's items for [start, end). `zero`: a trial's $0 invoice. `collect=False`
    finalizes without a payment attempt (`payment_behavior=default_incomplete`)."""
    cus = sb.state.objects[sub["customer"]]
    inv = new_invoice(
        sb,
        cus,
        cur=sub["currency"],
        collection_method=sub["collection_method"],
        days_until_due=sub["days_until_due"],
        auto_advance=True,
        billing_reason=reason,
        subscription=sub,
        period=(start, end),
    )
    for si_id in sub["_item_ids"]:
        si = sb.state.objects[si_id]
        price = sb.state.objects[si["price"]]
        product = sb.state.objects.get(price["product"], {})
        qty = si["quantity"]
        amount = 0 if zero else billing.price_amount(price, qty)
        add_line(
            sb,
            inv,
            amount=amount,
            quantity=qty,
            price=price,
            unit_amount_decimal=billing.unit_amount_decimal(price) if not zero else None,
            description=f"{'Trial period for ' if zero else ''}{qty} × {product.get('name', price['id'])}",
            period={"start": si["current_period_start"], "end": si["current_period_end"]},
            discounts=si["discounts"],
            metadata=si["metadata"],
            subscription=sub["id"],
            subscription_item=si["id"],
        )
    if not zero:
        include_pending_items(sb, inv, sub["id"])
        inv["discounts"] = _active_discounts(sb, sub, start)
    recalc(sb, inv)
    sub["latest_invoice"] = inv["id"]
    sb.emit("invoice.created", inv)
    if immediate:
        finalize(sb, inv, collect=collect)
    return inv


def _active_discounts(sb: Sandbox, sub: Obj, period_start: int) -> list[str]:
    out = []
    for did in sub["discounts"]:
        disc = sb.state.objects.get(did)
        coupon = sb.state.objects.get(disc["source"]["coupon"]) if disc else None
        if disc is None or coupon is None:
            continue
        if coupon["duration"] == "once" and disc["_uses"] > 0:
            continue
        if disc["end"] is not None and period_start >= disc["end"]:
            continue
        disc["_uses"] += 1
        out.append(did)
    return out


def end_subscription(sb: Sandbox, sub: Obj, *, reason: str = "cancellation_requested") -> None:
    now = sb.now()
    with sb.tracking(sub, None):
        sub["status"] = "canceled"
        sub["canceled_at"] = sub["canceled_at"] or now
        sub["ended_at"] = now
        sub["cancellation_details"]["reason"] = reason
    sb.state.watch.discard(sub["id"])
    sb.emit("customer.subscription.deleted", sub)
    sched = sb.state.objects.get(sub["schedule"]) if sub.get("schedule") else None
    if sched is not None and sched["status"] == "active" and reason != "schedule_completed":
        from .schedules import finish_schedule

        finish_schedule(sb, sched, "canceled", cancel_subscription=False)


def on_invoice_paid(sb: Sandbox, inv: Obj) -> None:
    sub = sb.state.objects.get(inv["_subscription"])
    if sub is None or sub.get("_creating"):
        return  # create_subscription sets the first status itself
    if sub["status"] in ("past_due", "incomplete", "unpaid"):
        with sb.tracking(sub, "customer.subscription.updated"):
            sub["status"] = "active"


def on_payment_failed(sb: Sandbox, inv: Obj, *, final: bool) -> None:
    """A declined payment: a new subscription stays `incomplete`, a renewal goes `past_due`, and
    after the last automatic retry the subscription is `unpaid`."""
    sub = sb.state.objects.get(inv["_subscription"])
    if sub is None or sub.get("_creating") or sub["status"] in ("canceled", "incomplete_expired"):
        return
    if inv["billing_reason"] == "subscription_create":
        status = "incomplete"
    else:
        status = "unpaid" if final else "past_due"
    if sub["status"] != status:
        with sb.tracking(sub, "customer.subscription.updated"):
            sub["status"] = status


def on_invoice_overdue(sb: Sandbox, inv: Obj) -> None:
    sub = sb.state.objects.get(inv["_subscription"])
    if sub is not None and sub["status"] == "active":
        with sb.tracking(sub, "customer.subscription.updated"):
            sub["status"] = "past_due"


# ---- the clock -----------------------------------------------------------------------------------------


def _period_end(sb: Sandbox, sub: Obj) -> int | None:
    ends = [sb.state.objects[i]["current_period_end"] for i in sub["_item_ids"] if i in sb.state.objects]
    return min(ends) if ends else None


def _subscription_due(sb: Sandbox, sub: Obj) -> int | None:
    if sub["status"] == "incomplete":
        return int(sub["created"]) + INCOMPLETE_EXPIRY
    if sub["status"] not in LIVE_STATUSES:
        return None
    candidates = [sub["cancel_at"], _period_end(sb, sub)]
    return min((c for c in candidates if c is not None), default=None)


@timer("subscription", 20, _subscription_due)
def _subscription_tick(sb: Sandbox, sub: Obj, now: int) -> None:
    if sub["status"] == "incomplete":
        _expire_incomplete(sb, sub)
        return
    if sub["cancel_at"] is not None and sub["cancel_at"] <= now:
        end_subscription(sb, sub, reason="cancellation_requested")
        return
    end = _period_end(sb, sub)
    if end is None or end > now:
        return
    if sub["cancel_at_period_end"]:
        end_subscription(sb, sub, reason="cancellation_requested")
        return
    with sb.tracking(sub, "customer.subscription.updated"):
        if sub["status"] == "trialing":
            sub["status"] = "active"
            sub["_anchor"] = sub["trial_end"]
            sub["_period_index"] = 0
        else:
            sub["_period_index"] += 1
        interval, count = sub["_interval"]
        start = add_interval(sub["_anchor"], interval, count, periods=sub["_period_index"])
        new_end = add_interval(sub["_anchor"], interval, count, periods=sub["_period_index"] + 1)
        for si_id in sub["_item_ids"]:
            si = sb.state.objects[si_id]
            si["current_period_start"], si["current_period_end"] = start, new_end
    # Renewal invoices start as drafts and finalize about an hour later, like Stripe's.
    invoice_subscription(sb, sub, "subscription_cycle", start, new_end, immediate=False)


def _expire_incomplete(sb: Sandbox, sub: Obj) -> None:
    """23 hours without a paid first invoice: the subscription ends `incomplete_expired` and its open
    first invoice is voided (it will never bill)."""
    with sb.tracking(sub, None):
        sub["status"] = "incomplete_expired"
        sub["ended_at"] = sb.now()
    sb.state.watch.discard(sub["id"])
    inv = sb.state.objects.get(sub["latest_invoice"] or "")
    if inv is not None and inv["status"] == "open":
        void(sb, inv)
    sb.emit("customer.subscription.deleted", sub)


# ---- routes ------------------------------------------------------------------------------------------


def _cancel_at(value: Any) -> int | None:
    if isinstance(value, str) and value:
        raise invalid(f"`cancel_at={value}` is not emulated by the sandbox; pass a Unix timestamp.", param="cancel_at")
    return int(value) if value else None


def _trial_end(p: dict[str, Any], now: int) -> int | None:
    value = p.get("trial_end")
    future_timestamp(value, now, "trial_end")
    if value is None:
        if p.get("trial_period_days"):
            return now + int(p["trial_period_days"]) * 86400
        return None
    return now if value == "now" else int(value)


@route("POST", "/v1/subscriptions", "SubscriptionCreateParams")
def create(sb: Sandbox, req: Req) -> Obj:
    p = req.params
    require(p, "customer")
    cus = get_customer(sb, p["customer"])
    now = sb.now()
    future_timestamp(p.get("billing_cycle_anchor"), now, "billing_cycle_anchor")
    pm = p.get("default_payment_method")
    behavior = p.get("payment_behavior", "allow_incomplete")
    if behavior not in ("allow_incomplete", "default_incomplete"):
        # Stripe would refuse to create the subscription when its first payment fails; the sandbox
        # cannot undo a half-made subscription, so it says so instead of pretending.
        raise invalid(
            f"`payment_behavior={behavior}` is not emulated by the sandbox; use allow_incomplete or "
            "default_incomplete.",
            param="payment_behavior",
        )
    return create_subscription(
        sb,
        cus,
        p.get("items") or [],
        mode=billing_mode(p.get("billing_mode"), now),
        payment_behavior=behavior,
        default_payment_method=check_default_payment_method(sb, cus, pm, "default_payment_method") if pm else None,
        collection_method=p.get("collection_method", "charge_automatically"),
        days_until_due=p.get("days_until_due"),
        metadata=p.get("metadata") or {},
        discounts=p.get("discounts"),
        trial_end=_trial_end(p, sb.now()),
        cancel_at=_cancel_at(p.get("cancel_at")),
        cancel_at_period_end=p.get("cancel_at_period_end", False),
        description=p.get("description"),
    )


@route("GET", "/v1/subscriptions/<id>", "SubscriptionRetrieveParams")
def retrieve(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    return sb.state.get(id, "subscription")


@route("POST", "/v1/subscriptions/<id>", "SubscriptionUpdateParams")
def update(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    sub = sb.state.get(id, "subscription")
    if sub["status"] in ("canceled", "incomplete_expired"):
        raise state_error("A canceled subscription can only update its cancellation_details and metadata.")
    p = req.params
    now = sb.now()
    prorations: list[Obj] = []
    behavior = "none"
    with sb.tracking(sub, "customer.subscription.updated"):
        set_fields(sub, p, ("description",))
        set_metadata(sub, p)
        if "cancel_at" in p:
            value = p["cancel_at"] or None
            future_timestamp(value, now, "cancel_at")
            sub["cancel_at"] = value
            if value is not None:
                sub["cancel_at_period_end"] = False
        if "cancel_at_period_end" in p:
            sub["cancel_at_period_end"] = p["cancel_at_period_end"]
            if p["cancel_at_period_end"]:
                sub["cancel_at"] = None
        if "collection_method" in p:
            sub["collection_method"] = p["collection_method"]
            if p["collection_method"] == "charge_automatically":
                sub["days_until_due"] = None
        if "days_until_due" in p:
            sub["days_until_due"] = p["days_until_due"]
        if sub["collection_method"] == "send_invoice" and sub["days_until_due"] is None:
            raise missing_param("days_until_due")
        if "discounts" in p:
            sub["discounts"] = make_discounts(
                sb, p["discounts"], "discounts", customer=sub["customer"], subscription=id
            )
        if "default_payment_method" in p:
            cus = sb.state.objects[sub["customer"]]
            sub["default_payment_method"] = check_default_payment_method(
                sb, cus, p["default_payment_method"], "default_payment_method"
            )
        if "trial_end" in p:
            future_timestamp(p["trial_end"], now, "trial_end")
            te = now if p["trial_end"] == "now" else p["trial_end"]
            if sub["status"] == "trialing":
                sub["trial_end"] = te
                for si_id in sub["_item_ids"]:
                    sb.state.objects[si_id]["current_period_end"] = te
        if "items" in p:
            before = _licensed_items(sb, sub)
            apply_item_changes(sb, sub, p["items"], "items")
            behavior = p.get("proration_behavior", "create_prorations")
            prorations = [] if behavior == "none" else _prorate(sb, sub, before, _licensed_items(sb, sub))
    if "items" in p and prorations and behavior == "always_invoice":
        _invoice_prorations(sb, sub, prorations)
    if sub["status"] == "trialing" and sub["trial_end"] is not None and sub["trial_end"] <= now:
        _subscription_tick(sb, sub, now)  # `trial_end=now` ends the trial in this request, as on Stripe
    if "billing_cycle_anchor" in p and p["billing_cycle_anchor"] == "now":
        reset_anchor(sb, sub, "subscription_update")
    return sub


def apply_item_changes(sb: Sandbox, sub: Obj, changes: list[dict[str, Any]], param: str) -> None:
    current = [sb.state.objects[i] for i in sub["_item_ids"]]
    start = current[0]["current_period_start"] if current else sb.now()
    end = current[0]["current_period_end"] if current else sb.now()
    for i, ch in enumerate(changes):
        if ch.get("id"):
            si = sb.state.get(ch["id"], "subscription_item", param=f"{param}[{i}][id]")
            if si["subscription"] != sub["id"]:
                raise invalid("That subscription item belongs to another subscription.", param=f"{param}[{i}][id]")
            if ch.get("deleted"):
                sub["_item_ids"].remove(si["id"])
                sb.state.remove(si["id"])
                continue
            if ch.get("price"):
                _recurring_price(sb, ch["price"], f"{param}[{i}][price]")
                si["price"] = ch["price"]
            if "quantity" in ch:
                si["quantity"] = ch["quantity"]
            if "metadata" in ch:
                store.apply_metadata(si, ch["metadata"])
        else:
            if not ch.get("price"):
                raise missing_param(f"{param}[{i}][price]")
            _recurring_price(sb, ch["price"], f"{param}[{i}][price]")
            si = _new_item(sb, sub, ch, start, end, f"{param}[{i}]")
            sub["_item_ids"].append(si["id"])
    if not sub["_item_ids"]:
        raise invalid("A subscription needs at least one item.", param=param)
    _check_items(sb, [{"price": sb.state.objects[i]["price"]} for i in sub["_item_ids"]], param)


def _licensed_items(sb: Sandbox, sub: Obj) -> dict[str, tuple[str, int]]:
    """item id → (price id, quantity) of the items proration looks at (metered ones bill usage)."""
    out = {}
    for si_id in sub["_item_ids"]:
        si = sb.state.objects[si_id]
        price = sb.state.objects[si["price"]]
        if (price.get("recurring") or {}).get("usage_type") != "metered":
            out[si_id] = (si["price"], si["quantity"])
    return out


def _prorate(sb: Sandbox, sub: Obj, before: dict[str, tuple[str, int]], after: dict[str, tuple[str, int]]) -> list[Obj]:
    """Pending proration items for what changed, over the unused part of the current period."""
    if sub["status"] == "trialing" or not sub["_item_ids"]:
        return []
    now = sb.now()
    first = sb.state.objects[sub["_item_ids"][0]]
    start, end = first["current_period_start"], first["current_period_end"]
    if not start <= now < end:
        return []
    share = Fraction(end - now, end - start)
    made = []
    for si_id, (price_id, qty) in before.items():
        if after.get(si_id) != (price_id, qty):
            made += _proration_item(sb, sub, si_id, price_id, qty, share, -1, now, end)
    for si_id, (price_id, qty) in after.items():
        if before.get(si_id) != (price_id, qty):
            made += _proration_item(sb, sub, si_id, price_id, qty, share, 1, now, end)
    return made


def _proration_item(sb: Sandbox, sub: Obj, si_id: str, price_id: str, qty: int, share: Fraction, sign: int,
                    now: int, end: int) -> list[Obj]:
    price = sb.state.objects[price_id]
    exact = billing.price_amount(price, qty) * share
    amount = sign * int(exact + Fraction(1, 2))  # half up, on the magnitude
    if amount == 0:
        return []
    product = sb.state.objects.get(price["product"], {})
    name = f"{qty} × {product.get('name', price_id)}"
    ii = sb.state.add(
        {
            "id": store.new_id("ii_"),
            "object": "invoiceitem",
            "amount": amount,
            "currency": price["currency"],
            "customer": sub["customer"],
            "date": now,
            "description": f"{'Unused' if sign < 0 else 'Remaining'} time on {name} after the update",
            "discountable": False,
            "discounts": [],
            "invoice": None,
            "livemode": False,
            "metadata": {},
            "net_amount": amount,
            "parent": {
                "subscription_details": {"subscription": sub["id"], "subscription_item": si_id},
                "type": "subscription_details",
            },
            "period": {"start": now, "end": end},
            "pricing": {
                "price_details": {"price": price_id, "product": price["product"]},
                "type": "price_details",
                "unit_amount_decimal": None,
            },
            "proration": True,
            "proration_details": {"credited_items": None},
            "quantity": qty,
            "tax_rates": [],
            "test_clock": None,
        }
    )
    sb.emit("invoiceitem.created", ii)
    return [ii]


def _invoice_prorations(sb: Sandbox, sub: Obj, items: list[Obj]) -> None:
    """`proration_behavior=always_invoice`: the prorations are billed now, on their own invoice."""
    cus = sb.state.objects[sub["customer"]]
    inv = new_invoice(sb, cus, cur=sub["currency"], collection_method=sub["collection_method"],
                      days_until_due=sub["days_until_due"], auto_advance=True, billing_reason="subscription_update",
                      subscription=sub)
    for ii in items:
        attach_item(sb, inv, ii)
    recalc(sb, inv)
    sub["latest_invoice"] = inv["id"]
    sb.emit("invoice.created", inv)
    finalize(sb, inv)


def reset_anchor(sb: Sandbox, sub: Obj, reason: str) -> None:
    """Start a new billing period now (interval change or `billing_cycle_anchor=now`) and bill it."""
    now = sb.now()
    first = sb.state.objects[sb.state.objects[sub["_item_ids"][0]]["price"]]["recurring"]
    with sb.tracking(sub, "customer.subscription.updated"):
        sub["_interval"] = [first["interval"], first["interval_count"]]
        sub["_anchor"] = now
        sub["_period_index"] = 0
        sub["billing_cycle_anchor"] = now
        end = add_interval(now, first["interval"], first["interval_count"])
        for si_id in sub["_item_ids"]:
            si = sb.state.objects[si_id]
            si["current_period_start"], si["current_period_end"] = now, end
    invoice_subscription(sb, sub, reason, now, end, immediate=True)


@route("DELETE", "/v1/subscriptions/<id>", "SubscriptionCancelParams")
def cancel(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    sub = sb.state.get(id, "subscription")
    if sub["status"] == "canceled":
        raise state_error(f"No such subscription: '{id}' is already canceled.")
    if req.params.get("cancellation_details"):
        sub["cancellation_details"].update(req.params["cancellation_details"])
    end_subscription(sb, sub, reason="cancellation_requested")
    return sub


@route("GET", "/v1/subscriptions", "SubscriptionListParams")
def list_(sb: Sandbox, req: Req) -> Obj:
    p = req.params
    items = sb.state.all("subscription")
    status = p.get("status")
    if status is None:
        items = [s for s in items if s["status"] not in ("canceled", "incomplete_expired")]
    elif status == "ended":
        items = [s for s in items if s["status"] in ("canceled", "incomplete_expired")]
    elif status != "all":
        items = [s for s in items if s["status"] == status]
    if "customer" in p:
        items = [s for s in items if s["customer"] == p["customer"]]
    if "price" in p:
        items = [s for s in items if any(sb.state.objects[i]["price"] == p["price"] for i in s["_item_ids"])]
    if "collection_method" in p:
        items = [s for s in items if s["collection_method"] == p["collection_method"]]
    items = created_filter(items, p.get("created"))
    return store.paginate(sb.state, items, p, "/v1/subscriptions", req.expand)


@route("GET", "/v1/subscription_items", "SubscriptionItemListParams")
def list_items(sb: Sandbox, req: Req) -> Obj:
    require(req.params, "subscription")
    sub = sb.state.get(req.params["subscription"], "subscription", param="subscription")
    items = [sb.state.objects[i] for i in sub["_item_ids"]]
    url = f"/v1/subscription_items?subscription={sub['id']}"
    return store.paginate(sb.state, items, req.params, url, req.expand, newest_first=False)


@route("GET", "/v1/subscription_items/<id>", "SubscriptionItemRetrieveParams")
def retrieve_item(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    return sb.state.get(id, "subscription_item")
