"""Validation of plan rows, the same for the API, the web form, PandaDoc intake and CSV import.

Input is loose text (forms, CSV cells, PandaDoc tokens) or JSON values; output is typed values
plus a message per field. Nothing is dropped: callers keep the raw input beside the errors.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from domain.money import MoneyError, apply_percent_off, check_currency, format_amount, parse_amount

PAYMENT_SCHEDULES = ("upfront", "monthly")
CREDIT_STARTS = ("immediately", "next_billing_cycle")
CREDIT_RELEASES = ("all", "per_installment")

# Keys of the plan JSON (SPEC §9) a client may send; the rest are written by workflows.
INPUT_FIELDS = (
    "pandadoc_id", "company_name", "customer_email", "credit_amount", "discount", "price",
    "currency", "start_date", "term_months", "posthog_org_id", "payment_schedule", "credit_start",
    "credit_release", "payment_terms_days", "products", "stripe_customer_id_existing",
)
REQUIRED_FIELDS = ("company_name", "customer_email", "credit_amount", "price", "start_date", "term_months")
DEFAULTS: dict[str, Any] = {
    "currency": "usd",
    "discount": Decimal(0),
    "payment_schedule": "upfront",
    "credit_start": "immediately",
    "credit_release": "all",
    "payment_terms_days": 30,
    "products": [],
}
# How far price may drift from credit × (1 − discount) before a person must confirm it.
PRICE_TOLERANCE = Decimal("0.01")

_EMAIL = re.compile(r"^[^@\s,;]+@[^@\s,;]+\.[A-Za-z]{2,}$")
_CUSTOMER_ID = re.compile(r"^cus_[A-Za-z0-9]+$")
_TERM = re.compile(r"^(\d{1,3})\s*(months?|mos?|m|years?|yrs?|y)?$", re.IGNORECASE)
_DATE_FORMATS = ("%Y-%m-%d", "%m/%d/%Y", "%d %B %Y", "%B %d, %Y", "%b %d, %Y", "%Y/%m/%d")


@dataclass
class PlanInput:
    """Validated values (only the fields that parsed) and a message per field that did not."""

    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    warnings: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def parse_term(text: str | int) -> int:
    """"12 months", "1 year", "2 years", "24" → months."""
    if isinstance(text, int) and not isinstance(text, bool):
        months = text
    else:
        match = _TERM.match(str(text).strip())
        if not match:
            raise ValueError(f"{text!r} is not a term: write it like \"12 months\", \"1 year\" or \"24\".")
        number, unit = int(match.group(1)), (match.group(2) or "m").lower()
        months = number * 12 if unit.startswith("y") else number
    if not 1 <= months <= 120:
        raise ValueError(f"A term of {months} months is outside 1–120 months.")
    return months


def parse_date(text: str | date) -> date:
    if isinstance(text, date):
        return text
    cleaned = str(text).strip()
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(cleaned, fmt).date()
        except ValueError:
            continue
    raise ValueError(f"{text!r} is not a date: write it like 2026-12-01.")


def parse_percent(text: str | int | Decimal) -> Decimal:
    cleaned = str(text).strip().removesuffix("%").strip() or "0"
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a percentage: write it like 20 or 12.5.") from None
    if not Decimal(0) <= value <= Decimal(100):
        raise ValueError(f"A discount of {value}% is outside 0–100%.")
    return value


def validate_plan(
    data: Mapping[str, Any],
    *,
    known_products: Collection[str] | None = None,
    existing: Mapping[str, Any] | None = None,
    accept_warnings: bool = False,
) -> PlanInput:
    """Validate a new plan (`existing=None`) or a change to one (`existing` = current values).

    For a change, only the fields in `data` are parsed, and cross-field rules see the merged row.
    """
    result = PlanInput()
    unknown = sorted(set(data) - set(INPUT_FIELDS) - {"accept_warnings"})
    for name in unknown:
        result.errors[name] = f"{name!r} is not a plan field."

    merged_raw: dict[str, Any] = {} if existing is not None else dict(DEFAULTS)
    merged_raw.update({k: v for k, v in data.items() if k in INPUT_FIELDS})

    currency = _currency(merged_raw.get("currency", (existing or {}).get("currency", "usd")), result)
    for name in INPUT_FIELDS:
        if name not in merged_raw:
            continue
        raw = merged_raw[name]
        if _blank(raw):
            if name in REQUIRED_FIELDS:
                result.errors[name] = f"{_label(name)} is required."
            elif name in DEFAULTS:
                result.values[name] = DEFAULTS[name]
            else:
                result.values[name] = None
            continue
        try:
            result.values[name] = _parse_field(name, raw, currency, known_products)
        except (ValueError, MoneyError) as exc:
            result.errors[name] = str(exc)
    if existing is None:
        for name in REQUIRED_FIELDS:
            if name not in merged_raw and name not in result.errors:
                result.errors[name] = f"{_label(name)} is required."

    row = {**(existing or {}), **result.values}
    if row.get("payment_schedule") == "monthly" and not row.get("stripe_customer_id_existing"):
        result.errors.setdefault(
            "stripe_customer_id_existing",
            "A monthly plan needs \"Stripe ID - existing\": the credits go on the customer's existing "
            "Stripe account while the installments are billed to a new one.",
        )
    _check_price_against_credit(row, result, accept_warnings or bool(data.get("accept_warnings")))
    return result


def _parse_field(name: str, raw: Any, currency: str, known_products: Collection[str] | None) -> Any:
    text = raw.strip() if isinstance(raw, str) else raw
    if name in ("credit_amount", "price"):
        amount = parse_amount(text, currency)
        if amount <= 0:
            raise ValueError(f"{_label(name)} must be more than zero.")
        return amount
    if name == "discount":
        return parse_percent(text)
    if name == "currency":
        return check_currency(str(text))
    if name == "start_date":
        return parse_date(text)
    if name == "term_months":
        return parse_term(text)
    if name == "customer_email":
        if not _EMAIL.match(str(text)):
            raise ValueError(f"{text!r} is not an email address.")
        return str(text).lower()
    if name == "payment_schedule":
        return _choice(name, text, PAYMENT_SCHEDULES)
    if name == "credit_start":
        return _choice(name, str(text).replace(" ", "_"), CREDIT_STARTS)
    if name == "credit_release":
        return _choice(name, str(text).replace(" ", "_"), CREDIT_RELEASES)
    if name == "payment_terms_days":
        try:
            days = int(str(text))
        except ValueError:
            raise ValueError(f"{text!r} is not a number of days.") from None
        if not 0 <= days <= 365:
            raise ValueError(f"Payment terms of {days} days are outside 0–365 days.")
        return days
    if name == "products":
        keys = [k.strip() for k in text.split(",")] if isinstance(text, str) else list(text)
        keys = [k for k in keys if k]
        if known_products is not None:
            bad = [k for k in keys if k not in known_products]
            if bad:
                raise ValueError(
                    f"Unknown product {', '.join(map(repr, bad))}: choose from {', '.join(sorted(known_products))}."
                )
        return sorted(set(keys))
    if name == "stripe_customer_id_existing":
        if not _CUSTOMER_ID.match(str(text)):
            raise ValueError(f"{text!r} is not a Stripe customer id (they look like cus_…).")
        return str(text)
    if name in ("company_name", "posthog_org_id", "pandadoc_id"):
        value = str(text)
        if len(value) > 200:
            raise ValueError(f"{_label(name)} is longer than 200 characters.")
        return value
    raise ValueError(f"{name!r} is not a plan field.")  # pragma: no cover - INPUT_FIELDS guards this


def _check_price_against_credit(row: Mapping[str, Any], result: PlanInput, accepted: bool) -> None:
    credit, price, discount = row.get("credit_amount"), row.get("price"), row.get("discount")
    if not isinstance(credit, int) or not isinstance(price, int) or not isinstance(discount, Decimal):
        return
    expected = apply_percent_off(credit, discount)
    if expected and abs(Decimal(price - expected)) > PRICE_TOLERANCE * expected and not accepted:
        currency = row.get("currency") or "usd"
        result.warnings["price"] = (
            f"Price {format_amount(price, currency)} is not credit × (1 − discount) = "
            f"{format_amount(expected, currency)}; confirm it is right to go on."
        )


def _currency(raw: Any, result: PlanInput) -> str:
    try:
        return check_currency(str(raw or "usd"))
    except MoneyError:
        return "usd"  # the currency field itself reports the error


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    text = str(value).strip().lower()
    if text not in choices:
        raise ValueError(f"{value!r} is not a valid {_label(name).lower()}: use {' or '.join(choices)}.")
    return text


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _label(name: str) -> str:
    return {
        "company_name": "Company name", "customer_email": "Customer email",
        "credit_amount": "Credit amount", "price": "Price", "start_date": "Start date",
        "term_months": "Term", "payment_schedule": "Payment schedule", "credit_start": "Credit start",
        "credit_release": "Credit release", "payment_terms_days": "Payment terms",
        "posthog_org_id": "PostHog org id", "pandadoc_id": "PandaDoc id",
    }.get(name, name.replace("_", " ").capitalize())
