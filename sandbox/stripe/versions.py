"""Stripe API versions: which `Stripe-Version` values are versions at all, and older payload shapes.

Requests: Stripe answers every published version. The sandbox accepts every version the installed
SDK lists as published (its webhook endpoint `api_version` values, 2011-01-01 to the pinned one,
optionally with preview flags `; feature=v1`), and serves it in the one shape it emulates
(`API_VERSION`): clients that pin an older version get answers, in the current shape.

Events: Stripe renders an event in the account's default API version at the time of the event (a
webhook endpoint with its own `api_version` gets that one instead). The sandbox stores each event's
object in the current shape and rewrites it for older versions here. Modelled shapes:

- before `2025-03-31.basil` (the release that moved invoices to `parent`/`payments`):
  - invoice: `paid` (status is `paid`), `subscription`, `subscription_details` (from `parent`),
    `charge` and `payment_intent` (from its first invoice payment); no `parent`;
  - invoice line item: `type` (`subscription` | `invoiceitem`), `price` (the full price object),
    `subscription`, `subscription_item`, `invoice_item`, `proration`; no `parent`, no `pricing`;
  - invoice item: `price` (the full price object), `unit_amount`, `unit_amount_decimal`,
    `subscription`, `subscription_item`; no `pricing`, no `parent`;
  - subscription: `current_period_start` / `current_period_end` at the top level (from its first
    item); items without them.
- before `2025-09-30.clover`: subscriptions and schedules without `billing_mode`.

Everything else renders in the current shape whatever the version: a change that is not listed here
is not modelled.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import stripe

from . import store
from .errors import invalid

API_VERSION: str = stripe.api_version
BASIL = "2025-03-31.basil"
CLOVER = "2025-09-30.clover"

# A date, an optional release name (`.basil`), and optional preview flags (`; feature=v1`).
_VERSION = re.compile(r"^(\d{4}-\d{2}-\d{2})(\.[a-z]+)?(;\s*[a-z0-9_]+=v\d+)*$")

Lookup = Callable[[str], dict[str, Any] | None]


def version_date(version: str) -> str:
    return version.split(".", 1)[0].split(";", 1)[0].strip()


def published() -> frozenset[str]:
    """Every version Stripe published up to the SDK's, from the SDK's own list (webhook endpoints)."""
    from .params import Enum, schema

    node = schema("WebhookEndpointCreateParams").fields["api_version"]
    values = node.values if isinstance(node, Enum) else ()
    return frozenset(values) | {API_VERSION}


def check_request_version(version: str) -> None:
    """Refuse a `Stripe-Version` that is not a published version, as Stripe does (400)."""
    match = _VERSION.match(version.strip())
    base = version.strip().split(";", 1)[0].strip()
    if match is None or base not in _PUBLISHED:
        raise invalid(f"Invalid Stripe API version: {version}")


_PUBLISHED = published()


def check_account_version(version: str) -> str:
    """An account's default version must be one Stripe published (the same rule as requests);
    preview flags are a request's business, not the account's, so they are dropped."""
    check_request_version(version)
    return version.strip().split(";", 1)[0].strip()


def before(version: str, boundary: str) -> bool:
    return version_date(version) < version_date(boundary)


def render(obj: dict[str, Any], version: str, lookup: Lookup) -> dict[str, Any]:
    """`obj` (current shape, already a copy) rewritten in `version`'s shape, recursively."""
    if not before(version, API_VERSION):
        return obj
    out: dict[str, Any] = _walk(obj, version, lookup)
    return out


def _walk(value: Any, version: str, lookup: Lookup) -> Any:
    if isinstance(value, list):
        return [_walk(v, version, lookup) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _walk(v, version, lookup) for k, v in value.items()}
    kind = out.get("object") if isinstance(out.get("object"), str) else None  # `data` holds an "object" too
    if before(version, BASIL):
        shaper = _PRE_BASIL.get(kind or "")
        if shaper is not None:
            shaper(out, version, lookup)
    if before(version, CLOVER) and kind in ("subscription", "subscription_schedule"):
        out.pop("billing_mode", None)
    return out


def _price(price_id: Any, version: str, lookup: Lookup) -> Any:
    if not isinstance(price_id, str):
        return price_id
    price = lookup(price_id)
    return _walk(price, version, lookup) if price is not None else price_id


def _invoice(inv: dict[str, Any], version: str, lookup: Lookup) -> None:
    parent = inv.pop("parent", None) or {}
    sub = (parent.get("subscription_details") or {}) if parent.get("type") == "subscription_details" else {}
    inv["subscription"] = sub.get("subscription")
    inv["subscription_details"] = {"metadata": sub.get("metadata") or {}} if sub else None
    inv["paid"] = inv.get("status") == "paid"
    inv["charge"] = None
    inv["payment_intent"] = None
    stored = lookup(inv["id"]) if isinstance(inv.get("id"), str) else None
    for pay_id in (stored or {}).get("_payments", []):
        payment = lookup(pay_id) or {}
        details = payment.get("payment") or {}
        inv["payment_intent"] = details.get("payment_intent")
        intent = lookup(details["payment_intent"]) if details.get("payment_intent") else None
        inv["charge"] = details.get("charge") or (intent or {}).get("latest_charge")
        break
    inv.pop("payments", None)


def _line(line: dict[str, Any], version: str, lookup: Lookup) -> None:
    parent = line.pop("parent", None) or {}
    pricing = line.pop("pricing", None) or {}
    price_id = (pricing.get("price_details") or {}).get("price")
    line["price"] = _price(price_id, version, lookup)
    if parent.get("type") == "subscription_item_details":
        details = parent.get("subscription_item_details") or {}
        line["type"] = "subscription"
        line["subscription"] = details.get("subscription")
        line["subscription_item"] = details.get("subscription_item")
        line["invoice_item"] = None
        line["proration"] = bool(details.get("proration"))
    else:
        details = parent.get("invoice_item_details") or {}
        line["type"] = "invoiceitem"
        line["subscription"] = details.get("subscription")
        line["subscription_item"] = None
        line["invoice_item"] = details.get("invoice_item")
        line["proration"] = bool(details.get("proration"))


def _invoiceitem(item: dict[str, Any], version: str, lookup: Lookup) -> None:
    parent = item.pop("parent", None) or {}
    pricing = item.pop("pricing", None) or {}
    details = pricing.get("price_details") or {}
    item["price"] = _price(details.get("price"), version, lookup)
    item["unit_amount_decimal"] = pricing.get("unit_amount_decimal")
    unit = pricing.get("unit_amount_decimal")
    item["unit_amount"] = int(float(unit)) if unit is not None and float(unit).is_integer() else None
    sub = parent.get("subscription_details") or {}
    item["subscription"] = sub.get("subscription")
    item["subscription_item"] = sub.get("subscription_item")


def _subscription(sub: dict[str, Any], version: str, lookup: Lookup) -> None:
    items = (sub.get("items") or {}).get("data") or []
    first = items[0] if items else {}
    sub["current_period_start"] = first.get("current_period_start")
    sub["current_period_end"] = first.get("current_period_end")
    for item in items:
        item.pop("current_period_start", None)
        item.pop("current_period_end", None)


_PRE_BASIL: dict[str, Callable[[dict[str, Any], str, Lookup], None]] = {
    "invoice": _invoice,
    "line_item": _line,
    "invoiceitem": _invoiceitem,
    "subscription": _subscription,
}


def render_event(state: store.State, event: dict[str, Any], version: str | None = None) -> dict[str, Any]:
    """`event` as Stripe shows it in `version` (default: the version it was created in)."""
    version = version or event.get("api_version") or API_VERSION
    out = store.public(event)
    out["api_version"] = version
    out["data"] = render(out["data"], version, lambda obj_id: _lookup(state, obj_id))
    return out


def _lookup(state: store.State, obj_id: str) -> dict[str, Any] | None:
    obj = state.objects.peek(obj_id)
    if obj is not None and obj.get("object") == "price":
        return store.render(state, obj)  # embedded whole in the older shapes
    return obj
