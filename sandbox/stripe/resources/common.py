"""Small helpers shared by the resource modules."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..errors import invalid
from ..store import Obj, apply_metadata


def created_filter(items: Iterable[Obj], value: Any, field: str = "created") -> list[Obj]:
    """Stripe's `created` list filter: an exact int or `{gt, gte, lt, lte}`."""
    items = list(items)
    if value is None:
        return items
    if isinstance(value, int):
        return [o for o in items if o.get(field) == value]
    checks = {
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
    }
    for op, bound in value.items():
        items = [o for o in items if o.get(field) is not None and checks[op](o[field], bound)]
    return items


def set_fields(target: Obj, params: dict[str, Any], names: Iterable[str]) -> None:
    """Copy simple fields; Stripe treats an empty string as "unset" for nullable fields."""
    for name in names:
        if name in params:
            value = params[name]
            target[name] = None if value == "" else value


def set_metadata(target: Obj, params: dict[str, Any]) -> None:
    if "metadata" in params:
        apply_metadata(target, params["metadata"])


def require(params: dict[str, Any], *names: str) -> None:
    from ..errors import missing_param

    for name in names:
        if params.get(name) in (None, ""):
            raise missing_param(name)


def currency(value: Any, param: str = "currency") -> str:
    if not isinstance(value, str) or len(value) != 3 or not value.isalpha():
        raise invalid(f"Invalid currency: {value}", param=param)
    return value.lower()


def decimal_str(value: Any) -> str:
    """Render a Decimal like Stripe's `*_decimal` strings (no exponent, no trailing zeros)."""
    from decimal import Decimal

    d = Decimal(value)
    text = format(d.normalize(), "f") if d != d.to_integral() else str(int(d))
    return text


INVALID_FUTURE_TIMESTAMP = "Invalid timestamp: must be an integer Unix timestamp in the future."


def future_timestamp(value: Any, now: int, param: str) -> None:
    """Stripe refuses these timestamps unless they are after "now" (the sandbox clock)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return  # absent, "" (unset) or a keyword such as "now": not a timestamp to check
    if value <= now:
        raise invalid(INVALID_FUTURE_TIMESTAMP, param=param)
