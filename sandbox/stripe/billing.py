"""Money math in integer minor units: price amounts (per-unit, tiered graduated/volume) and discounts.

Fractional unit prices (`unit_amount_decimal`) are summed exactly with Decimal and rounded once
per line, half up, as Stripe rounds line amounts.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

Obj = dict[str, Any]


def to_minor(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _dec(value: Any) -> Decimal:
    return Decimal(str(value)) if value is not None else Decimal(0)


def unit_amount_decimal(price: Obj) -> Decimal | None:
    if price.get("unit_amount_decimal") is not None:
        return Decimal(price["unit_amount_decimal"])
    return None


def price_amount(price: Obj, quantity: int) -> int:
    """Amount for `quantity` units of `price` (before discounts)."""
    if price.get("transform_quantity"):
        tq = price["transform_quantity"]
        div = int(tq["divide_by"])
        quantity = -(-quantity // div) if tq.get("round") == "up" else quantity // div
    if price["billing_scheme"] != "tiered":
        return to_minor(_dec(price.get("unit_amount_decimal")) * quantity)
    tiers = price["tiers"] or []
    if price["tiers_mode"] == "volume":
        for tier in tiers:
            if tier["up_to"] is None or quantity <= tier["up_to"]:
                return to_minor(_dec(tier["unit_amount_decimal"]) * quantity + _dec(tier["flat_amount_decimal"]))
        return 0
    # graduated: each tier prices the units that fall inside it
    total = Decimal(0)
    lower = 0
    for tier in tiers:
        upper = tier["up_to"]
        in_tier = (quantity if upper is None else min(quantity, upper)) - lower
        if in_tier <= 0:
            break
        total += _dec(tier["unit_amount_decimal"]) * in_tier + _dec(tier["flat_amount_decimal"])
        if upper is None:
            break
        lower = upper
    return to_minor(total)


def coupon_discount(coupon: Obj, amount: int, cur: str) -> int:
    """What `coupon` takes off `amount` (never more than `amount`, never negative)."""
    if amount <= 0:
        return 0
    if coupon.get("_percent_off") is not None:
        return min(amount, to_minor(Decimal(amount) * Decimal(coupon["_percent_off"]) / 100))
    if coupon.get("amount_off") is not None and coupon.get("currency") == cur:
        return min(amount, int(coupon["amount_off"]))
    return 0


def stripe_fee(amount: int) -> int:
    """Stripe's standard card fee, 2.9% + 30 (for the balance transaction `fee`)."""
    if amount <= 0:
        return 0
    return to_minor(Decimal(amount) * Decimal("0.029")) + 30
