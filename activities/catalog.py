"""The Stripe catalog: read it into a `CatalogSnapshot`, check it, and the runbook's catalog
operations (bespoke prices, moving a subscription to other prices, subscription discounts).

Every write carries a deterministic idempotency key and looks before it creates, so a retried
activity or a double click makes one object. The rules themselves live in `domain/`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import stripe
from sqlalchemy import exists, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from stripe.params import (
    PriceCreateParams,
    PriceListParams,
    ProductListParams,
    SubscriptionRetrieveParams,
    SubscriptionUpdateParams,
)
from stripe.params._price_create_params import PriceCreateParamsTier
from stripe.params._subscription_update_params import SubscriptionUpdateParamsDiscount, SubscriptionUpdateParamsItem
from stripe.params.billing import MeterCreateParams, MeterListParams
from temporalio import activity

from activities.stripe_api import idempotency_key, stripe_client
from domain.billing_config import BillingConfig, load_billing_config
from domain.catalog_check import (
    FREE_PLANS,
    BespokePrice,
    BespokeRefused,
    CatalogSnapshot,
    Meter,
    Price,
    Problem,
    Product,
    StartupItem,
    StartupPlan,
    Tier,
    bespoke_price_problems,
    check_catalog,
    startup_plan,
)
from settings import Settings
from store import catalog_audit
from store.db import unit_of_work
from store.models import Claim

# Who changed the catalog or a subscription, when, with which Stripe ids: one JSON line each.
log = logging.getLogger(__name__)
# The catalog_audit action of a scheduled check's result (the table page's banner reads the newest).
CHECK_RECORDED = "catalog_check"
audit_log = logging.getLogger("revops.audit.catalog")
audit_log.setLevel(logging.INFO)


def audit(actor: str, action: str, **details: Any) -> None:
    if not audit_log.handlers and not logging.getLogger().handlers:
        # A process that configured no logging would drop INFO lines: the audit trail goes to stderr.
        audit_log.addHandler(logging.StreamHandler())
    audit_log.info(json.dumps({"actor": actor, "action": action, **details}, sort_keys=True, default=str))


def _metadata(obj: Any) -> dict[str, str]:
    meta = getattr(obj, "metadata", None)
    return {str(k): str(v) for k, v in meta.to_dict().items()} if meta is not None else {}


def _decimal_text(value: Any) -> str | None:
    return None if value is None else str(value)


def price_from_stripe(price: stripe.Price) -> Price:
    recurring = price.recurring
    tiers = tuple(
        Tier(up_to=t.up_to, unit_amount_decimal=_decimal_text(t.unit_amount_decimal),
             flat_amount_decimal=_decimal_text(t.flat_amount_decimal))
        for t in (getattr(price, "tiers", None) or [])
    )
    return Price(
        id=price.id,
        product=price.product if isinstance(price.product, str) else price.product.id,
        active=bool(price.active),
        currency=price.currency,
        nickname=price.nickname,
        metadata=_metadata(price),
        recurring=recurring is not None,
        usage_type=recurring.usage_type if recurring is not None else None,
        meter=recurring.meter if recurring is not None else None,
        billing_scheme=price.billing_scheme,
        tiers_mode=price.tiers_mode,
        tiers=tiers,
    )


def read_catalog(client: stripe.StripeClient) -> CatalogSnapshot:
    """Every product, price (tiers expanded: Stripe only returns them when asked) and meter,
    active or archived: archived targets matter to the checks."""
    product_params: ProductListParams = {"limit": 100}
    price_params: PriceListParams = {"limit": 100, "expand": ["data.tiers"]}
    meter_params: MeterListParams = {"limit": 100}
    products = tuple(
        Product(id=p.id, name=p.name, active=bool(p.active), metadata=_metadata(p))
        for p in client.v1.products.list(product_params).auto_paging_iter()
    )
    prices = tuple(price_from_stripe(p) for p in client.v1.prices.list(price_params).auto_paging_iter())
    meters = tuple(
        Meter(id=m.id, event_name=m.event_name, formula=m.default_aggregation.formula, active=m.status == "active")
        for m in client.v1.billing.meters.list(meter_params).auto_paging_iter()
    )
    return CatalogSnapshot(products=products, prices=prices, meters=meters)


@dataclass(frozen=True)
class CatalogCheckResult:
    """What the scheduled check returns and the table page shows."""

    problems: list[Problem]
    products: int
    prices: int
    meters: int


def run_catalog_check(client: stripe.StripeClient, config: BillingConfig) -> CatalogCheckResult:
    snapshot = read_catalog(client)
    return CatalogCheckResult(problems=check_catalog(snapshot, config), products=len(snapshot.products),
                              prices=len(snapshot.prices), meters=len(snapshot.meters))


# ---- bespoke prices --------------------------------------------------------------------------


@dataclass(frozen=True)
class BespokeResult:
    price_id: str
    created: bool  # False: the same request had already made it (a retry or a double click)
    meter: str
    nickname: str


def usage_meter(client: stripe.StripeClient, product_key: str) -> str:
    """The product's usage meter (`<key>_usage`, aggregation `last`), made once if missing."""
    event_name = f"{product_key}_usage"
    params: MeterListParams = {"limit": 100, "status": "active"}
    for meter in client.v1.billing.meters.list(params).auto_paging_iter():
        if meter.event_name == event_name:
            if meter.default_aggregation.formula != "last":
                raise BespokeRefused([f"the usage meter {meter.id} ({event_name}) aggregates with "
                                      f"`{meter.default_aggregation.formula}`, not `last`; fix the meter or name "
                                      "another one"])
            return meter.id
    create: MeterCreateParams = {
        "display_name": f"{product_key} usage (most recent value)",
        "event_name": event_name,
        # The billing service reports the full count every day, so the latest report is the usage.
        "default_aggregation": {"formula": "last"},
    }
    key = idempotency_key("catalog", "meter", event_name)
    return client.v1.billing.meters.create(create, {"idempotency_key": key}).id


def _fingerprint(request: BespokePrice, meter: str) -> str:
    """Identity of a bespoke price request: the same request makes one price, however often sent."""
    body = {"product": request.product, "currency": request.currency, "interval": request.interval, "meter": meter,
            "tiers": [[t.up_to, t.unit_amount_decimal, t.flat_amount_decimal] for t in request.tiers],
            "metadata": dict(sorted(request.metadata.items()))}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:20]


def create_bespoke_price(client: stripe.StripeClient, config: BillingConfig, request: BespokePrice, *,
                         actor: str, today: date) -> BespokeResult:
    """Add a custom graduated, metered price to an existing product, or refuse with every reason."""
    snapshot = read_catalog(client)
    problems = bespoke_price_problems(snapshot, config, request)
    if problems:
        audit(actor, "bespoke_price_refused", product=request.product, problems=problems)
        raise BespokeRefused(problems)
    product = snapshot.product(request.product)
    assert product is not None and product.key is not None  # checked above
    meter = request.meter or usage_meter(client, product.key)
    fingerprint = _fingerprint(request, meter)
    nickname = f"Custom - {today.isoformat()}"
    for existing in snapshot.prices:
        if existing.product == product.id and existing.metadata.get("bespoke_request") == fingerprint:
            if not existing.active:
                raise BespokeRefused([f"the same price was made before as {existing.id} and has been archived; "
                                      "reactivate it in Stripe, or change the tiers or metadata to make a new one"])
            return BespokeResult(existing.id, False, meter, existing.nickname or nickname)
    tiers: list[PriceCreateParamsTier] = []
    for tier in request.tiers:
        row: PriceCreateParamsTier = {"up_to": "inf" if tier.up_to is None else tier.up_to,
                                      "unit_amount_decimal": Decimal(tier.unit_amount_decimal or "0")}
        if tier.flat_amount_decimal is not None:
            row["flat_amount"] = int(tier.flat_amount_decimal)
        tiers.append(row)
    params: PriceCreateParams = {
        "product": product.id,
        "currency": request.currency,
        "nickname": nickname,
        "billing_scheme": "tiered",
        "tiers_mode": "graduated",
        "tiers": tiers,
        "recurring": {"interval": "month" if request.interval == "month" else "year", "usage_type": "metered",
                      "meter": meter},
        "metadata": {**request.metadata, "posthog_product_key": product.key, "bespoke_request": fingerprint,
                     "created_by": actor},
    }
    key = idempotency_key("catalog", "bespoke-price", product.id, fingerprint, today.isoformat())
    price = client.v1.prices.create(params, {"idempotency_key": key})
    audit(actor, "bespoke_price_created", product=product.id, price=price.id, meter=meter, nickname=nickname)
    return BespokeResult(price.id, True, meter, nickname)


# ---- subscriptions: moving to other prices, discounts ------------------------------------------

LIVE = ("active", "trialing", "past_due")
# A counter in the subscription's metadata, raised by every change made here: it is part of each
# change's idempotency key, so a double click (same counter) changes once, while the same change
# made again later (move A→B, back, A→B again) gets a fresh key instead of Stripe's stored reply.
CHANGES = "revops_changes"


class SubscriptionChangeRefused(ValueError):
    """A move or discount that cannot be made; the message is a sentence naming the ids."""


@dataclass(frozen=True)
class SubscriptionView:
    id: str
    customer: str
    status: str
    currency: str
    items: list[dict[str, Any]]  # {id, price, product, nickname, quantity, usage_type}
    discounts: list[dict[str, Any]]  # {id, coupon, name, percent_off, amount_off, duration}

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "customer": self.customer, "status": self.status, "currency": self.currency,
                "items": self.items, "discounts": self.discounts}


@dataclass(frozen=True)
class SubscriptionChange:
    subscription: SubscriptionView
    changed: bool  # False: it was already so (a retry or a double click)
    detail: dict[str, Any]


def _retrieve(client: stripe.StripeClient, subscription_id: str) -> stripe.Subscription:
    params: SubscriptionRetrieveParams = {"expand": ["discounts"]}
    try:
        return client.v1.subscriptions.retrieve(subscription_id, params)
    except stripe.InvalidRequestError as exc:
        if exc.http_status == 404:
            raise SubscriptionChangeRefused(f"Stripe has no subscription {subscription_id}.") from None
        raise


def _coupon_id(discount: Any) -> str | None:
    source = getattr(discount, "source", None)
    coupon = getattr(source, "coupon", None)
    return coupon if isinstance(coupon, str) or coupon is None else str(coupon.id)


def view_subscription(client: stripe.StripeClient, subscription_id: str) -> SubscriptionView:
    return _view(client, _retrieve(client, subscription_id))


def _view(client: stripe.StripeClient, sub: stripe.Subscription) -> SubscriptionView:
    items = []
    for item in sub["items"].data:
        price = item.price
        items.append({"id": item.id, "price": price.id, "product": price.product if isinstance(price.product, str)
                      else price.product.id, "nickname": price.nickname,
                      "quantity": getattr(item, "quantity", None),
                      "usage_type": price.recurring.usage_type if price.recurring else None})
    discounts: list[dict[str, Any]] = []
    for discount in sub.discounts:
        if isinstance(discount, str):  # not expanded: only its id is known
            discounts.append({"id": discount, "coupon": None, "name": None, "percent_off": None, "amount_off": None,
                              "duration": None})
            continue
        coupon_id = _coupon_id(discount)
        coupon = client.v1.coupons.retrieve(coupon_id) if coupon_id else None
        discounts.append({"id": discount.id, "coupon": coupon_id, "name": coupon.name if coupon else None,
                          "percent_off": None if coupon is None or coupon.percent_off is None
                          else format(Decimal(str(coupon.percent_off)).normalize(), "f"),
                          "amount_off": coupon.amount_off if coupon else None,
                          "duration": coupon.duration if coupon else None})
    customer = sub.customer if isinstance(sub.customer, str) else sub.customer.id
    return SubscriptionView(sub.id, customer, sub.status, sub.currency, items, discounts)


def _changes(sub: stripe.Subscription) -> int:
    raw = _metadata(sub).get(CHANGES, "0")
    return int(raw) if raw.isdigit() else 0


def _update(client: stripe.StripeClient, sub: stripe.Subscription, params: SubscriptionUpdateParams, action: str,
            actor: str, *key_parts: str) -> stripe.Subscription:
    count = _changes(sub)
    params["metadata"] = {CHANGES: str(count + 1), "revops_last_change": f"{action} by {actor}"}
    key = idempotency_key("catalog", action, sub.id, f"change-{count}", *key_parts)
    client.v1.subscriptions.update(sub.id, params, {"idempotency_key": key})
    return _retrieve(client, sub.id)


def move_subscription_price(client: stripe.StripeClient, subscription_id: str, from_price: str, to_price: str, *,
                            actor: str) -> SubscriptionChange:
    """Runbook "Updating subscriptions": remove the item on `from_price`, add one on `to_price`,
    applied now and never prorated. Removing a metered item resets its usage for the period; the
    billing service reports it again at its next sync."""
    sub = _retrieve(client, subscription_id)
    if sub.status not in LIVE:
        raise SubscriptionChangeRefused(f"Subscription {sub.id} is {sub.status}; only a live subscription "
                                        f"({', '.join(LIVE)}) can move to other prices.")
    items = list(sub["items"].data)
    old = next((i for i in items if i.price.id == from_price), None)
    if old is None:
        if any(i.price.id == to_price for i in items):
            return SubscriptionChange(_view(client, sub), False, {"from_price": from_price, "to_price": to_price})
        held = ", ".join(i.price.id for i in items)
        raise SubscriptionChangeRefused(f"Subscription {sub.id} has no item on price {from_price} (its prices: "
                                        f"{held}).")
    if from_price == to_price:
        raise SubscriptionChangeRefused(f"Subscription {sub.id} is already on price {to_price}.")
    try:
        target = client.v1.prices.retrieve(to_price)
    except stripe.InvalidRequestError:
        raise SubscriptionChangeRefused(f"Stripe has no price {to_price}.") from None
    problems = []
    if not target.active:
        problems.append(f"price {to_price} is archived")
    if target.recurring is None:
        problems.append(f"price {to_price} is one-time, not recurring")
    if target.currency != sub.currency:
        problems.append(f"price {to_price} is in {target.currency.upper()}, the subscription in "
                        f"{sub.currency.upper()}")
    if problems:
        raise SubscriptionChangeRefused(f"Subscription {sub.id} cannot move to {to_price}: {'; '.join(problems)}.")
    new_item: SubscriptionUpdateParamsItem = {"price": to_price}
    metered = target.recurring is not None and target.recurring.usage_type == "metered"
    if not metered and getattr(old, "quantity", None):
        new_item["quantity"] = old.quantity
    params: SubscriptionUpdateParams = {
        "items": [{"id": old.id, "deleted": True}, new_item],
        # Runbook: apply now, never schedule for later, never prorate.
        "proration_behavior": "none",
    }
    updated = _update(client, sub, params, "move-price", actor, from_price, to_price)
    detail = {"from_price": from_price, "to_price": to_price, "removed_item": old.id,
              "usage_reset": bool(old.price.recurring and old.price.recurring.usage_type == "metered")}
    audit(actor, "subscription_price_moved", subscription=sub.id, **detail)
    return SubscriptionChange(_view(client, updated), True, detail)


def _kept(sub: stripe.Subscription, drop: str | None = None) -> list[SubscriptionUpdateParamsDiscount]:
    return [{"discount": d if isinstance(d, str) else d.id} for d in sub.discounts
            if (d if isinstance(d, str) else d.id) != drop]


def add_subscription_discount(client: stripe.StripeClient, subscription_id: str, coupon_id: str, *,
                              actor: str) -> SubscriptionChange:
    """Apply a coupon to the subscription (`discounts: [{coupon}]`; customer coupons are gone from
    the API), keeping its other discounts."""
    sub = _retrieve(client, subscription_id)
    if sub.status not in LIVE:
        raise SubscriptionChangeRefused(f"Subscription {sub.id} is {sub.status}; discounts go on live subscriptions.")
    if any(_coupon_id(d) == coupon_id for d in sub.discounts if not isinstance(d, str)):
        return SubscriptionChange(_view(client, sub), False, {"coupon": coupon_id})
    try:
        coupon = client.v1.coupons.retrieve(coupon_id)
    except stripe.InvalidRequestError:
        raise SubscriptionChangeRefused(f"Stripe has no coupon {coupon_id}.") from None
    if not coupon.valid:
        raise SubscriptionChangeRefused(f"Coupon {coupon_id} is no longer valid (expired or fully redeemed).")
    if coupon.amount_off is not None and coupon.currency != sub.currency:
        raise SubscriptionChangeRefused(f"Coupon {coupon_id} takes {coupon.amount_off} off in "
                                        f"{(coupon.currency or '').upper()}; the subscription bills in "
                                        f"{sub.currency.upper()}.")
    params: SubscriptionUpdateParams = {"discounts": [*_kept(sub), {"coupon": coupon_id}]}
    updated = _update(client, sub, params, "add-discount", actor, coupon_id)
    audit(actor, "subscription_discount_added", subscription=sub.id, coupon=coupon_id)
    return SubscriptionChange(_view(client, updated), True, {"coupon": coupon_id})


def remove_subscription_discount(client: stripe.StripeClient, subscription_id: str, discount_id: str, *,
                                 actor: str) -> SubscriptionChange:
    """Remove one discount (by its `di_` id, or by coupon id) from the subscription."""
    sub = _retrieve(client, subscription_id)
    found = next((d for d in sub.discounts if not isinstance(d, str)
                  and discount_id in (d.id, _coupon_id(d))), None)
    if found is None:
        return SubscriptionChange(_view(client, sub), False, {"discount": discount_id})
    kept = _kept(sub, drop=found.id)
    params: SubscriptionUpdateParams = {"discounts": kept if kept else ""}
    updated = _update(client, sub, params, "remove-discount", actor, found.id)
    audit(actor, "subscription_discount_removed", subscription=sub.id, discount=found.id, coupon=_coupon_id(found))
    return SubscriptionChange(_view(client, updated), True, {"discount": found.id, "coupon": _coupon_id(found)})


# ---- customers: the customer page and finding the existing customer ----------------------------


@dataclass(frozen=True)
class CustomerView:
    id: str
    email: str | None
    name: str | None
    org: str | None  # metadata posthog_org_id
    balances: dict[str, int]  # currency → minor units; negative is credit the customer holds
    subscriptions: list[SubscriptionView]

    def to_json(self) -> dict[str, Any]:
        from domain.money import format_amount

        return {"id": self.id, "email": self.email, "name": self.name, "posthog_org_id": self.org,
                "balances": {c: format_amount(a, c) for c, a in sorted(self.balances.items())},
                "subscriptions": [s.to_json() for s in self.subscriptions]}


def view_customer(client: stripe.StripeClient, customer_id: str, *, with_subscriptions: bool = True) -> CustomerView:
    try:
        customer = client.v1.customers.retrieve(customer_id, {"expand": ["invoice_credit_balance"]})
    except stripe.InvalidRequestError as exc:
        if exc.http_status == 404:
            raise SubscriptionChangeRefused(f"Stripe has no customer {customer_id}.") from None
        raise
    if getattr(customer, "deleted", False):
        raise SubscriptionChangeRefused(f"Customer {customer_id} was deleted in Stripe.")
    balances: dict[str, int] = {}
    per_currency = getattr(customer, "invoice_credit_balance", None)
    if per_currency is not None:
        # `invoice_credit_balance` counts credit as positive; shown here with `balance`'s sign (and
        # the balance transactions'), where a credit the customer holds is negative.
        balances = {str(c): -int(a) for c, a in per_currency.to_dict().items() if a}
    if customer.balance and customer.currency and customer.currency not in balances:
        balances[customer.currency] = int(customer.balance)
    subscriptions = []
    if with_subscriptions:
        for sub in client.v1.subscriptions.list({"customer": customer.id, "status": "all", "limit": 100,
                                                 "expand": ["data.discounts"]}).auto_paging_iter():
            subscriptions.append(_view(client, sub))
    return CustomerView(customer.id, customer.email, customer.name, _metadata(customer).get("posthog_org_id"),
                        balances, subscriptions)


def suggest_customers(client: stripe.StripeClient, *, email: str | None, known_ids: list[str]) -> list[CustomerView]:
    """Stripe customers that may be the row's existing customer: those other rows of the same
    organisation used, and those with the row's email. Search is not read-after-write on Stripe,
    so exact list filters are used instead."""
    ids: list[str] = list(dict.fromkeys(known_ids))
    if email:
        ids += [c.id for c in client.v1.customers.list({"email": email, "limit": 20}).auto_paging_iter()
                if c.id not in ids]
    found = []
    for customer_id in ids:
        try:
            found.append(view_customer(client, customer_id))
        except SubscriptionChangeRefused:
            continue  # deleted or gone: not a suggestion
    return found


# ---- startup plans and free trials ------------------------------------------------------------


def read_startup_plan(client: stripe.StripeClient, config: BillingConfig, subscription_id: str) -> StartupPlan | None:
    """What the subscription's `valid_days` prices say will happen, and when (None: no such price)."""
    sub = _retrieve(client, subscription_id)
    snapshot = read_catalog(client)
    items = []
    for item in sub["items"].data:
        price = snapshot.price(item.price.id) or price_from_stripe(item.price)
        items.append(StartupItem(item=item.id, price=price, since=int(item.created)))
    return startup_plan(sub.id, items, snapshot, config)


@dataclass(frozen=True)
class StartupOutcome:
    outcome: str  # moved | free_plans | already_done | ended
    detail: str


def expire_startup_plan(client: stripe.StripeClient, plan: StartupPlan, *, actor: str = "workflow") -> StartupOutcome:
    """Apply the plan now: move each startup item (removed and re-added, no proration), or end the
    subscription so the customer is on the free plans. Safe to run twice."""
    sub = _retrieve(client, plan.subscription)
    if sub.status not in LIVE:
        return StartupOutcome("ended", f"Subscription {sub.id} is {sub.status}; nothing to move.")
    if plan.outcome == FREE_PLANS:
        client.v1.subscriptions.cancel(sub.id, {"prorate": False}, {
            "idempotency_key": idempotency_key("catalog", "startup-free-plans", sub.id, plan.expires_at)})
        audit(actor, "startup_plan_free_plans", subscription=sub.id, reason=plan.reason)
        return StartupOutcome(FREE_PLANS, f"Subscription {sub.id} ended: {plan.reason}.")
    held = {i.id: i for i in sub["items"].data}
    items: list[SubscriptionUpdateParamsItem] = []
    done = []
    for move in plan.moves:
        if move.item not in held or held[move.item].price.id != move.from_price:
            continue  # moved already (a retry), or changed by hand since: leave it
        items.append({"id": move.item, "deleted": True})
        new_item: SubscriptionUpdateParamsItem = {"price": move.to_price}
        if held[move.item].price.recurring and held[move.item].price.recurring.usage_type != "metered":
            new_item["quantity"] = held[move.item].quantity or 1
        items.append(new_item)
        done.append(f"{move.from_price} → {move.to_price}")
    if not items:
        return StartupOutcome("already_done", f"Subscription {sub.id} no longer holds the startup prices.")
    params: SubscriptionUpdateParams = {"items": items, "proration_behavior": "none"}
    _update(client, sub, params, "startup-move", actor, str(plan.expires_at))
    audit(actor, "startup_plan_moved", subscription=sub.id, moves=done)
    return StartupOutcome("moved", f"Subscription {sub.id} moved: {', '.join(done)}.")


@dataclass(frozen=True)
class FreeTrialEnd:
    org: str
    customer: str | None  # the org's Stripe customer, to see whether it subscribed meanwhile
    trial_started_at: int  # unix seconds


@dataclass(frozen=True)
class FreeTrialOutcome:
    outcome: str  # subscribed | back_to_free
    subscription: str | None
    delivered: str


def end_free_trial(client: stripe.StripeClient, settings: Settings, trial: FreeTrialEnd) -> FreeTrialOutcome:
    """At the trial's end: if the org's customer began a subscription during the trial it keeps
    it; otherwise the org goes back to the free plan and the billing service is told (signed)."""
    if trial.customer:
        for sub in client.v1.subscriptions.list({"customer": trial.customer, "limit": 100}).auto_paging_iter():
            if sub.status in LIVE and int(sub.created) >= trial.trial_started_at:
                audit("workflow", "free_trial_ended_subscribed", org=trial.org, subscription=sub.id)
                return FreeTrialOutcome("subscribed", sub.id, "no: nothing changes")
    delivered = notify_billing_service(settings, {"posthog_org_id": trial.org, "plan": "free",
                                                  "free_trial_until": None},
                                       idempotency=f"free-trial-{trial.org}:{trial.trial_started_at}:ended")
    audit("workflow", "free_trial_ended_back_to_free", org=trial.org, delivered=delivered)
    return FreeTrialOutcome("back_to_free", None, delivered)


def notify_billing_service(settings: Settings, body: dict[str, Any], *, idempotency: str) -> str:
    """A signed POST to BILLING_SERVICE_URL, as the monthly mapping is sent; 5xx raise (retried)."""
    import time

    import requests

    from activities.plan.billing_service import signature_header

    if not settings.billing_service_url:
        return "no: BILLING_SERVICE_URL is not set"
    raw = json.dumps(body, sort_keys=True).encode()
    response = requests.post(settings.billing_service_url, data=raw, timeout=10, headers={
        "Content-Type": "application/json", "Idempotency-Key": idempotency,
        "X-Revops-Signature": signature_header(settings.billing_service_secret, raw, int(time.time()))})
    response.raise_for_status()
    return f"yes: HTTP {response.status_code}"


class CatalogActivities:
    """Activities over the Stripe catalog; one instance per worker, holding its settings."""

    def __init__(self, settings: Settings, client: stripe.StripeClient | None = None) -> None:
        self.settings = settings
        self.client = client or stripe_client(settings)

    def config(self) -> BillingConfig:
        return load_billing_config(self.settings.billing_config)

    @activity.defn(name="catalog_check")
    def check(self) -> CatalogCheckResult:
        result = run_catalog_check(self.client, self.config())
        # The table page's banner reads the newest run from here: no Temporal call per page view.
        catalog_audit.record(self.settings.database_url, "schedule", CHECK_RECORDED,
                             detail={"count": len(result.problems), "problems": [p.to_json() for p in result.problems]})
        return result

    @activity.defn(name="catalog_startup_plan_read")
    def startup_plan_read(self, subscription_id: str) -> StartupPlan | None:
        return read_startup_plan(self.client, self.config(), subscription_id)

    @activity.defn(name="catalog_startup_plan_expire")
    def startup_plan_expire(self, plan: StartupPlan) -> StartupOutcome:
        outcome = expire_startup_plan(self.client, plan)
        if outcome.outcome in ("moved", FREE_PLANS):  # a change made; already_done/ended changed nothing
            catalog_audit.record(self.settings.database_url, "workflow", f"startup_plan_{outcome.outcome}",
                                 subscription=plan.subscription, detail={"detail": outcome.detail})
        return outcome

    @activity.defn(name="catalog_free_trial_end")
    def free_trial_end(self, trial: FreeTrialEnd) -> FreeTrialOutcome:
        outcome = end_free_trial(self.client, self.settings, trial)
        catalog_audit.record(self.settings.database_url, "workflow", f"free_trial_ended_{outcome.outcome}",
                             customer=trial.customer, subscription=outcome.subscription,
                             detail={"org": trial.org, "billing_service_told": outcome.delivered})
        return outcome


def build(settings: Settings) -> list[Any]:
    """The catalog activities for the worker (`worker.AREAS` convention)."""
    activities = CatalogActivities(settings)
    return [activities.check, activities.startup_plan_read, activities.startup_plan_expire, activities.free_trial_end]


# ---- finding startup subscriptions: the revenue sync and the Stripe webhook --------------------

# One claim per subscription item whose price carries `valid_days`, written once its timer was
# started: the sync and the webhook start a timer only for items not seen before, so a timer an
# operator cancelled is not started again by the next event, while an item added later (a move
# to another startup price) gets its timer.
STARTUP_TIMER_CLAIM = "startup_timer"

TemporalRun = Callable[[Callable[[Any], Awaitable[Any]]], Any]


def startup_items_of(subscription: Mapping[str, Any]) -> list[str]:
    """Ids of a live subscription's items (Stripe JSON, as a webhook carries it) whose price has
    `valid_days` in its metadata."""
    if subscription.get("status") not in LIVE:
        return []
    items = (subscription.get("items") or {}).get("data") or []
    return [str(i["id"]) for i in items if isinstance(i, Mapping) and i.get("id")
            and ((i.get("price") or {}).get("metadata") or {}).get("valid_days") not in (None, "")]


def unclaimed(session: Session, item_ids: list[str]) -> list[str]:
    if not item_ids:
        return []
    seen = set(session.scalars(select(Claim.key).where(Claim.scope == STARTUP_TIMER_CLAIM,
                                                       Claim.key.in_(item_ids))))
    return [i for i in item_ids if i not in seen]


def pending_startup_timers(session: Session) -> dict[str, list[str]]:
    """Subscription id → its items that need a startup timer: live subscriptions in the warehouse
    whose items' prices carry `valid_days` (in the price table or as embedded in the item) and
    whose timer was not started yet. One query, so the sync's hook stays cheap."""
    from store.warehouse import StripePrice, StripeSubscription, StripeSubscriptionItem

    item = StripeSubscriptionItem
    valid_days = or_(item.raw["price"]["metadata"]["valid_days"].as_string().is_not(None),
                     StripePrice.raw["metadata"]["valid_days"].as_string().is_not(None))
    rows = session.execute(
        select(item.subscription_id, item.id)
        .join(StripeSubscription, StripeSubscription.id == item.subscription_id)
        .outerjoin(StripePrice, StripePrice.id == item.price_id)
        .where(item.deleted_at.is_(None), StripeSubscription.deleted_at.is_(None),
               StripeSubscription.status.in_(LIVE), valid_days,
               ~exists().where(Claim.scope == STARTUP_TIMER_CLAIM, Claim.key == item.id))
        .order_by(item.subscription_id, item.id))
    found: dict[str, list[str]] = {}
    for subscription_id, item_id in rows:
        found.setdefault(str(subscription_id), []).append(str(item_id))
    return found


def claim_startup_items(session: Session, found: Mapping[str, list[str]]) -> None:
    for subscription_id, item_ids in found.items():
        for item_id in unclaimed(session, item_ids):
            try:
                with session.begin_nested():  # the webhook and the sync may claim the same item at once
                    session.add(Claim(scope=STARTUP_TIMER_CLAIM, key=item_id, value=subscription_id))
            except IntegrityError:
                continue


def connected_run(settings: Settings) -> TemporalRun:
    """Run a Temporal call from synchronous code with no event loop of its own (the sync's thread,
    the CLI): connect, call, close."""
    import asyncio

    from temporal_client import connect

    def run(make: Callable[[Any], Awaitable[Any]]) -> Any:
        async def call() -> Any:
            return await make(await connect(settings))

        return asyncio.run(call())

    return run


def start_startup_timers(settings: Settings, found: Mapping[str, list[str]], run: TemporalRun, *,
                         found_by: str) -> list[str]:
    """Start (or find running) the startup timer of each subscription, then claim its items so the
    next sync or event does not start it again. Returns the subscriptions handled."""
    from workflows.catalog import ensure_startup_timer

    if not found:
        return []
    queue = settings.temporal_task_queue

    async def start(client: Any) -> list[str]:
        started = []
        for subscription_id in found:
            await ensure_startup_timer(client, queue, subscription_id)
            started.append(subscription_id)
        return started

    started: list[str] = run(start)
    with unit_of_work(settings.database_url) as session:
        claim_startup_items(session, {s: found[s] for s in started})
    for subscription_id in started:
        audit(found_by, "startup_timer_found", subscription=subscription_id, items=found[subscription_id])
        catalog_audit.record(settings.database_url, found_by, "startup_timer_started", subscription=subscription_id,
                             detail={"items": found[subscription_id]})
    return started


def start_timers_after_sync(settings: Settings, run: TemporalRun | None = None) -> list[str]:
    """The revenue sync's hook: timers for the startup subscriptions it wrote. Temporal being
    unreachable costs nothing but a log line: nothing is claimed, so the next run tries again."""
    with unit_of_work(settings.database_url) as session:
        found = pending_startup_timers(session)
    if not found:
        return []
    try:
        return start_startup_timers(settings, found, run or connected_run(settings), found_by="revenue-sync")
    except Exception:
        log.warning("Startup timers for %s could not be started; the next sync tries again.",
                    ", ".join(found), exc_info=True)
        return []
