"""Validation of plan rows, the same for the API, the web form, PandaDoc intake and CSV import.

Input is loose text (forms, CSV cells, PandaDoc tokens) or JSON values; output is typed values
plus a message per field. Nothing is dropped: callers keep the raw input beside the errors.

Hostile or careless input (a JSON float for money, a list where text belongs, "NaN", a year 9999)
becomes an error on the field that carried it, never an exception: every door turns these errors
into a 422 or a needs-review row, and an exception there would be a 500 or a retry loop.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

from domain.money import (
    MoneyError,
    apply_percent_off,
    check_currency,
    format_amount,
    parse_amount,
    split_locale,
)

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
# Keys intake adds beside the plan fields (see `domain.pandadoc_mapping.map_details`): the form's
# locale, which settles how its amounts and dates are written; pricing lines other than the credit
# line, which a person must decide about; and why reading the document failed, if it did.
LOCALE_KEY = "_locale"
OTHER_LINES_KEY = "_other_lines"
INTAKE_FAILURE_KEY = "_intake_failure"
CONTROL_KEYS = ("accept_warnings", LOCALE_KEY, OTHER_LINES_KEY, INTAKE_FAILURE_KEY)
# The error that says a whole order form could not be read (it belongs to no single field).
DOCUMENT_ERROR_KEY = "document"
# How far price may drift from credit × (1 − discount) before a person must confirm it.
PRICE_TOLERANCE = Decimal("0.01")
# Contract dates are this century. Pure code has no clock to compare with "today", so the bounds
# are fixed: wide enough for any real start date, narrow enough that a typo (9999-12-25,
# 0001-01-01) is refused before it reaches date arithmetic over the term, Stripe's timestamps or
# the projection, which cannot represent dates past year 9999.
EARLIEST_DATE = date(2000, 1, 1)
LATEST_DATE = date(2099, 12, 31)
# Text lengths match the columns that store them, so the database never refuses (or truncates) a row.
MAX_LENGTHS = {"company_name": 200, "posthog_org_id": 64, "pandadoc_id": 64, "customer_email": 254,
               "stripe_customer_id_existing": 64}

_EMAIL = re.compile(r"^[^@\s,;]+@[^@\s,;]+\.[A-Za-z]{2,}$")
_CUSTOMER_ID = re.compile(r"^cus_[A-Za-z0-9]+$")
_TERM = re.compile(r"^([0-9]{1,3})\s*(months?|mos?|m|years?|yrs?|y)?$", re.IGNORECASE)
_DAYS = re.compile(r"^[0-9]{1,3}$")
_PERCENT = re.compile(r"^([0-9]{1,3})(?:[.,]([0-9]{1,3}))?$")
_LOCALE = re.compile(r"[A-Za-z]{2,8}([-_][A-Za-z0-9]{1,8})*")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ISO_DATE = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})$")
# PandaDoc's date fields come as ISO date-times ("2026-12-01T00:00:00.000Z"): the date is the day
# as written; the time and zone are the picker's midnight, not a moment in the contract.
_ISO_DATETIME = re.compile(
    r"^([0-9]{4})-([0-9]{2})-([0-9]{2})[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,9})?)?"
    r"(?:Z|[+-][0-9]{2}:?[0-9]{2})?$"
)
_YMD = re.compile(r"^([0-9]{4})([-/.])([0-9]{1,2})\2([0-9]{1,2})$")  # year first is always Y-M-D
_DOTTED_DMY = re.compile(r"^([0-9]{1,2})\.([0-9]{1,2})\.([0-9]{4})$")  # 01.12.2026 is day-first wherever written
_NUMERIC_DMY = re.compile(r"^([0-9]{1,2})([/-])([0-9]{1,2})\2([0-9]{4})$")
_DAY_MONTH_NAME = re.compile(r"^([0-9]{1,2})(?:st|nd|rd|th)?[\s-]+([A-Za-z]+)\.?,?[\s-]+([0-9]{4})$")
_MONTH_NAME_DAY = re.compile(r"^([A-Za-z]+)\.?\s+([0-9]{1,2})(?:st|nd|rd|th)?,?\s+([0-9]{4})$")
_MONTHS = {name: number for number, names in enumerate((
    ("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",),
    ("jun", "june"), ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"),
    ("oct", "october"), ("nov", "november"), ("dec", "december")), start=1) for name in names}
# Regions that write the month first (12/01/2026 is 1 December).
_MONTH_FIRST_REGIONS = frozenset({"us", "ph", "fm", "mh", "pw", "as", "gu", "mp", "pr", "um", "vi"})
# Regions where both orders are in daily use: their locale settles nothing.
_EITHER_ORDER_REGIONS = frozenset({"ca"})


@dataclass
class PlanInput:
    """Validated values (only the fields that parsed) and a message per field that did not.

    `failed` names the plan fields that were given and could not be read: callers keep those
    empty (never a default) and the row in review until a person fills them. `pending` names
    fields that failed earlier (`unresolved=`) and this change did not fill.
    """

    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    warnings: dict[str, str] = field(default_factory=dict)
    pending: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def complete(self) -> bool:
        """Nothing wrong and nothing still waiting for a person: the row can leave review."""
        return not self.errors and not self.pending

    @property
    def failed(self) -> frozenset[str]:
        return frozenset(name for name in self.errors if name in INPUT_FIELDS)


def parse_term(text: str | int) -> int:
    """"12 months", "1 year", "2 years", "24" → months."""
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        raise ValueError(f"{_shown(text)} is not a term: send a whole number of months, or text like \"12 months\".")
    if isinstance(text, int):
        months = text
    else:
        match = _TERM.match(text.strip())
        if not match:
            raise ValueError(f"{_shown(text)} is not a term: write it like \"12 months\", \"1 year\" or \"24\".")
        number, unit = int(match.group(1)), (match.group(2) or "m").lower()
        months = number * 12 if unit.startswith("y") else number
    if not 1 <= months <= 120:
        raise ValueError(f"A term of {months} months is outside 1–120 months.")
    return months


def parse_date(text: str | date, *, locale: str | None = None, currency: str | None = None) -> date:
    """A contract date from ISO (`2026-12-01`, PandaDoc's `2026-12-01T00:00:00.000Z`), `1 Dec 2026`,
    `Dec 1, 2026`, `01.12.2026` or `01/12/2026`.

    Where day and month could swap (`01/12/2026`), the form's `locale` settles the order; without
    one only a USD form does (see `_month_first`). Otherwise the date is refused with both readings,
    never guessed. Dates outside 2000–2099 are refused.
    """
    if isinstance(text, datetime):
        return _bounded(text.date(), text)
    if isinstance(text, date):
        return _bounded(text, text)
    if not isinstance(text, str):
        raise ValueError(f"{_shown(text)} is not a date: send it as text like \"2026-12-01\".")
    cleaned = " ".join(text.split())
    if len(cleaned) > 40:
        raise ValueError(f"{_shown(text)} is not a date: write it like 2026-12-01.")
    if match := (_ISO_DATE.match(cleaned) or _ISO_DATETIME.match(cleaned)):
        return _make_date(int(match.group(1)), int(match.group(2)), int(match.group(3)), text)
    if match := _YMD.match(cleaned):
        return _make_date(int(match.group(1)), int(match.group(3)), int(match.group(4)), text)
    if match := _DOTTED_DMY.match(cleaned):
        return _make_date(int(match.group(3)), int(match.group(2)), int(match.group(1)), text)
    if match := _DAY_MONTH_NAME.match(cleaned):
        return _make_date(int(match.group(3)), _month_number(match.group(2), text), int(match.group(1)), text)
    if match := _MONTH_NAME_DAY.match(cleaned):
        return _make_date(int(match.group(3)), _month_number(match.group(1), text), int(match.group(2)), text)
    if match := _NUMERIC_DMY.match(cleaned):
        first, second, year = int(match.group(1)), int(match.group(3)), int(match.group(4))
        if first > 12 >= second:
            return _make_date(year, second, first, text)
        if second > 12 >= first:
            return _make_date(year, first, second, text)
        if first == second:
            return _make_date(year, first, first, text)
        month_first = _month_first(locale, currency)
        if month_first is None:
            day_first = _make_date(year, second, first, text)
            month_then_day = _make_date(year, first, second, text)
            raise ValueError(
                f"{_shown(text)} could be {_spoken(day_first)} or {_spoken(month_then_day)}: write it as "
                f"{day_first.isoformat()} or {month_then_day.isoformat()}, or set the form's locale."
            )
        return _make_date(year, first, second, text) if month_first else _make_date(year, second, first, text)
    raise ValueError(f"{_shown(text)} is not a date: write it like 2026-12-01.")


def _month_first(locale: str | None, currency: str | None) -> bool | None:
    """Whether `01/12/2026` is 12 January (True), 1 December (False), or unknown (None).

    A locale settles it by its region (en-US month first, en-GB day first; en-CA writes both).
    Without a locale only USD does: the seller is a US company whose Zapier table writes
    12/01/2026 for 1 December, so on a USD form both sides write month first. On any other
    currency the seller's and the customer's habits can differ, so nothing is assumed.
    """
    if locale is not None and locale.strip():
        language, region = split_locale(locale)
        if region in _EITHER_ORDER_REGIONS or (not region and language == "en"):
            return None
        if region in _MONTH_FIRST_REGIONS:
            return True
        return False if (region or language) else None
    if currency is not None and currency.strip().lower() == "usd":
        return True
    return None


def _month_number(name: str, text: object) -> int:
    number = _MONTHS.get(name.lower())
    if number is None:
        raise ValueError(f"{_shown(text)} is not a date: {name!r} is not a month (write it like 2026-12-01).")
    return number


def _make_date(year: int, month: int, day: int, text: object) -> date:
    try:
        value = date(year, month, day)
    except ValueError:
        raise ValueError(f"{_shown(text)} is not a date on the calendar (write it like 2026-12-01).") from None
    return _bounded(value, text)


def _bounded(value: date, text: object) -> date:
    if not EARLIEST_DATE <= value <= LATEST_DATE:
        raise ValueError(
            f"{_shown(text)} is outside {EARLIEST_DATE.year}–{LATEST_DATE.year}; a contract date is in this "
            f"century, so check the year."
        )
    return value


def _spoken(value: date) -> str:
    return f"{value.day} {value.strftime('%B')} {value.year}"


def parse_percent(text: str | int | Decimal) -> Decimal:
    """"20", "20%", "12.5", "12,5 %", 20 → Decimal percent in 0–100, at most 3 decimals."""
    if isinstance(text, bool) or not isinstance(text, (str, int, Decimal)):
        raise ValueError(
            f"{_shown(text)} is not a percentage: send the discount as text like \"20\" or \"12.5\"."
        )
    if isinstance(text, (int, Decimal)):
        value = Decimal(text)
        if not value.is_finite():
            raise ValueError(f"{text} is not a percentage: write it like 20 or 12.5.")
    else:
        cleaned = "".join(text.split()).removesuffix("%")
        match = _PERCENT.match(cleaned)
        if not match:
            if re.fullmatch(r"[0-9]{1,3}[.,][0-9]+", cleaned):
                raise ValueError(f"{_shown(text)} has more than 3 decimal places; a discount has at most 3.")
            raise ValueError(f"{_shown(text)} is not a percentage: write it like 20 or 12.5.")
        value = Decimal(match.group(1) + ("." + match.group(2) if match.group(2) else ""))
    if not Decimal(0) <= value <= Decimal(100):
        raise ValueError(f"A discount of {value}% is outside 0–100%.")
    if value != value.quantize(Decimal("0.001"), rounding=ROUND_DOWN):
        raise ValueError(f"{_shown(text)} has more than 3 decimal places; a discount has at most 3.")
    return value


def validate_plan(
    data: Mapping[str, Any],
    *,
    known_products: Collection[str] | None = None,
    existing: Mapping[str, Any] | None = None,
    accept_warnings: bool = False,
    locale: str | None = None,
    unresolved: Collection[str] = (),
) -> PlanInput:
    """Validate a new plan (`existing=None`) or a change to one (`existing` = current values).

    For a change, only the fields in `data` are parsed, and cross-field rules see the merged row.
    `locale` is the form's locale when a door knows it (e.g. "de-DE"; intake passes it in `data`
    as "_locale"); it settles amounts like "1.234" and dates like "01/12/2026". `unresolved`
    names fields that failed before and are still empty: they are never defaulted, a blank value
    for one is an error, and while one is missing the result is `pending` (not `complete`).
    """
    result = PlanInput()
    if not isinstance(data, Mapping):
        result.errors["plan"] = "The plan must be a JSON object of fields, like {\"company_name\": \"Acme\"}."
        return result
    unknown = sorted(str(k) for k in data if k not in INPUT_FIELDS and k not in CONTROL_KEYS)
    for name in unknown:
        result.errors[name] = f"{name[:60]!r} is not a plan field."
    locale = locale if locale is not None else _locale_hint(data, result)
    still_open = set(unresolved)

    merged_raw: dict[str, Any] = {} if existing is not None else dict(DEFAULTS)
    for name in still_open:
        merged_raw.pop(name, None)  # a field that failed earlier gets no default
    merged_raw.update({k: v for k, v in data.items() if k in INPUT_FIELDS})

    currency = _plan_currency(merged_raw, existing, result)
    for name in INPUT_FIELDS:
        if name not in merged_raw:
            continue
        raw = merged_raw[name]
        if _blank(raw):
            if name in REQUIRED_FIELDS or name in still_open:
                result.errors[name] = f"{_label(name)} is required."
            elif name in DEFAULTS:
                result.values[name] = DEFAULTS[name]
            else:
                result.values[name] = None
            continue
        try:
            result.values[name] = _parse_field(name, raw, currency, known_products, locale)
        except (ValueError, MoneyError) as exc:
            result.errors[name] = str(exc)
    if existing is None:
        for name in REQUIRED_FIELDS:
            if name not in merged_raw and name not in result.errors:
                result.errors[name] = f"{_label(name)} is required."
    for name in sorted(still_open - set(merged_raw)):
        result.pending[name] = f"{_label(name)} could not be read earlier and is still empty; fill it in."

    if existing is not None:
        _check_currency_change(data, existing, result)
    row = {**(existing or {}), **result.values}
    for name in result.failed | set(result.pending):
        row.pop(name, None)  # a field in error is empty, whatever was stored before
    if row.get("payment_schedule") == "monthly" and not row.get("stripe_customer_id_existing"):
        result.errors.setdefault(
            "stripe_customer_id_existing",
            "A monthly plan needs \"Stripe ID - existing\": the credits go on the customer's existing "
            "Stripe account while the installments are billed to a new one.",
        )
    accepted = accept_warnings or _truthy(data.get("accept_warnings"))
    _check_discount_and_price(row, data, result, accepted)
    _note_other_lines(data.get(OTHER_LINES_KEY), result, accepted)
    failure = data.get(INTAKE_FAILURE_KEY)
    if failure is not None:
        result.errors[DOCUMENT_ERROR_KEY] = (
            f"The order form could not be read automatically ({str(failure)[:500]}); fill the row in from "
            f"the document."
        )
    return result


def _parse_field(name: str, raw: Any, currency: str | None, known_products: Collection[str] | None,
                 locale: str | None) -> Any:
    if name in ("credit_amount", "price"):
        if isinstance(raw, float):
            raise ValueError(
                f"{_label(name)} {raw!r} is a JSON number: send money as a decimal string, e.g. \"96000.00\"."
            )
        if isinstance(raw, bool) or not isinstance(raw, (str, int, Decimal)):
            raise ValueError(
                f"{_label(name)} must be a decimal string like \"96000.00\", not {_kind(raw)} ({_shown(raw)})."
            )
        if currency is None:
            raise ValueError(
                f"{_label(name)} {_shown(raw)} cannot be read until the plan's currency is known; fix the "
                f"currency, then enter the amount again."
            )
        amount = parse_amount(raw, currency, locale=locale)
        if amount <= 0:
            raise ValueError(f"{_label(name)} must be more than zero.")
        return amount
    if name == "discount":
        return parse_percent(raw)
    if name == "currency":
        return check_currency(_text(name, raw))
    if name == "start_date":
        return parse_date(raw, locale=locale, currency=currency)
    if name == "term_months":
        return parse_term(raw)
    if name == "products":
        return _products(raw, known_products)
    if name == "payment_terms_days":
        return _days(raw)
    text = _text(name, raw).strip()
    if name == "customer_email":
        if len(text) > MAX_LENGTHS[name] or not _EMAIL.match(text):
            raise ValueError(f"{_shown(text)} is not an email address.")
        return text.lower()
    if name == "payment_schedule":
        return _choice(name, text, PAYMENT_SCHEDULES)
    if name == "credit_start":
        return _choice(name, text.replace(" ", "_"), CREDIT_STARTS)
    if name == "credit_release":
        return _choice(name, text.replace(" ", "_"), CREDIT_RELEASES)
    if name == "stripe_customer_id_existing":
        if len(text) > MAX_LENGTHS[name] or not _CUSTOMER_ID.match(text):
            raise ValueError(f"{_shown(text)} is not a Stripe customer id (they look like cus_…).")
        return text
    if name in ("company_name", "posthog_org_id", "pandadoc_id"):
        if len(text) > MAX_LENGTHS[name]:
            raise ValueError(f"{_label(name)} is longer than {MAX_LENGTHS[name]} characters.")
        return text
    raise ValueError(f"{name!r} is not a plan field.")  # pragma: no cover - INPUT_FIELDS guards this


def _text(name: str, raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"{_label(name)} must be text, not {_kind(raw)} ({_shown(raw)}).")
    if _CONTROL.search(raw):
        raise ValueError(f"{_label(name)} contains control characters; type it again as plain text.")
    return raw


def _days(raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise ValueError(f"{_shown(raw)} is not a number of days: send a whole number like 30.")
    if isinstance(raw, str) and not _DAYS.match(raw.strip()):
        raise ValueError(f"{_shown(raw)} is not a number of days.")
    days = int(raw.strip()) if isinstance(raw, str) else raw
    if not 0 <= days <= 365:
        raise ValueError(f"Payment terms of {days} days are outside 0–365 days.")
    return days


def _products(raw: Any, known_products: Collection[str] | None) -> list[str]:
    if isinstance(raw, str):
        keys = [k.strip() for k in raw.split(",")]
    elif isinstance(raw, (list, tuple)):
        bad_items = [item for item in raw if not isinstance(item, str)]
        if bad_items:
            raise ValueError(f"Products must be a list of product keys (text), not {_shown(bad_items[0])}.")
        keys = [k.strip() for k in raw]
    else:
        raise ValueError(f"Products must be a list of product keys, not {_kind(raw)} ({_shown(raw)}).")
    keys = [k for k in keys if k]
    if any(len(k) > 64 or _CONTROL.search(k) for k in keys):
        raise ValueError("A product key is longer than 64 characters or has control characters.")
    if known_products is not None:
        bad = [k for k in keys if k not in known_products]
        if bad:
            raise ValueError(
                f"Unknown product {', '.join(map(repr, bad[:5]))}: choose from {', '.join(sorted(known_products))}."
            )
    return sorted(set(keys))


def _plan_currency(merged_raw: Mapping[str, Any], existing: Mapping[str, Any] | None,
                   result: PlanInput) -> str | None:
    """The currency amounts are read in, or None when it is not known (never a stand-in)."""
    raw = merged_raw["currency"] if "currency" in merged_raw else (existing or {}).get("currency")
    if _blank(raw) or not isinstance(raw, str):
        return None  # the currency field itself reports it when it was given
    try:
        return check_currency(raw)
    except MoneyError:
        return None


def _check_currency_change(data: Mapping[str, Any], existing: Mapping[str, Any], result: PlanInput) -> None:
    """Stored amounts are minor units of the stored currency: 9,600,000 means 96,000.00 USD but
    9,600,000 JPY. A new currency needs both amounts restated in it in the same change."""
    new, old = result.values.get("currency"), existing.get("currency")
    if new is None or not isinstance(old, str) or new == old.lower():
        return
    stored = [name for name in ("price", "credit_amount") if existing.get(name) is not None]
    missing = [name for name in ("price", "credit_amount") if name not in data or _blank(data.get(name))]
    if stored and missing:
        result.errors["currency"] = (
            f"Changing the currency from {old.upper()} to {new.upper()} needs both the price and the credit "
            f"amount in {new.upper()} in the same change (missing: {', '.join(missing)}); the stored amounts "
            f"are in {old.upper()} and would be misread."
        )


def _check_discount_and_price(row: Mapping[str, Any], data: Mapping[str, Any], result: PlanInput,
                              accepted: bool) -> None:
    credit, price, discount = row.get("credit_amount"), row.get("price"), row.get("discount")
    fraction = (
        "discount" in result.values and isinstance(discount, Decimal) and Decimal(0) < discount < Decimal(1)
        and not (isinstance(data.get("discount"), str) and "%" in str(data.get("discount")))
    )
    if fraction and not accepted:
        assert isinstance(discount, Decimal)
        meant = _plain(discount * 100)
        result.warnings["discount"] = (
            f"{_plain(discount)} looks like a fraction; did you mean {meant}%? Write the discount as a "
            f"percentage, or confirm {_plain(discount)}% is right."
        )
    if not isinstance(credit, int) or not isinstance(price, int) or not isinstance(discount, Decimal):
        return
    currency = str(row.get("currency") or "")
    expected = apply_percent_off(credit, discount)
    if not expected or _close(price, expected) or accepted:
        return
    if fraction and _close(price, apply_percent_off(credit, discount * 100)):
        return  # the price fits the discount read as a fraction: the discount warning says so
    shown = (lambda minor: format_amount(minor, currency)) if currency else str
    result.warnings["price"] = (
        f"Price {shown(price)} is not credit × (1 − discount) = {shown(expected)}; confirm it is right to go on."
    )


def _close(price: int, expected: int) -> bool:
    return abs(Decimal(price - expected)) <= PRICE_TOLERANCE * expected


def _note_other_lines(lines: Any, result: PlanInput, accepted: bool) -> None:
    """Pricing lines beside the credit line (a platform fee, a support package) are not in the
    price: each needs an operator's decision, so the row waits for one (confirming it decides)."""
    if not lines or accepted:
        return
    items = lines if isinstance(lines, list) else [lines]
    described = []
    for item in items[:20]:
        if isinstance(item, Mapping):
            name = str(item.get("name") or item.get("sku") or "a line")[:100]
            amount = item.get("total") if item.get("total") not in (None, "") else item.get("price")
            described.append(f"{name} ({str(amount)[:40]})" if amount not in (None, "") else name)
        else:
            described.append(str(item)[:100])
    message = (
        f"The order form has pricing lines besides the credit: {'; '.join(described)}. They are not in the "
        f"price; decide how to bill them, then confirm."
    )
    result.warnings["price"] = f"{result.warnings['price']} {message}" if "price" in result.warnings else message


def _locale_hint(data: Mapping[str, Any], result: PlanInput) -> str | None:
    value = data.get(LOCALE_KEY)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 35 or not _LOCALE.fullmatch(value):
        result.errors[LOCALE_KEY] = f"{_shown(value)} is not a locale (write it like \"de-DE\" or \"en-GB\")."
        return None
    return value


def _choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    text = value.strip().lower()
    if text not in choices:
        raise ValueError(f"{_shown(value)} is not a valid {_label(name).lower()}: use {' or '.join(choices)}.")
    return text


def _truthy(value: Any) -> bool:
    # A form sends "1" or "on"; JSON sends true. The string "false" must not count as yes.
    return value is True or (isinstance(value, str) and value.strip().lower() in ("1", "on", "true", "yes"))


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _plain(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text


def _kind(value: Any) -> str:
    return {bool: "true/false", int: "a number", float: "a number", list: "a list", dict: "an object",
            str: "text"}.get(type(value), type(value).__name__)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "…"


def _label(name: str) -> str:
    return {
        "company_name": "Company name", "customer_email": "Customer email",
        "credit_amount": "Credit amount", "price": "Price", "start_date": "Start date",
        "term_months": "Term", "payment_schedule": "Payment schedule", "credit_start": "Credit start",
        "credit_release": "Credit release", "payment_terms_days": "Payment terms",
        "posthog_org_id": "PostHog org id", "pandadoc_id": "PandaDoc id",
    }.get(name, name.replace("_", " ").capitalize())

def stored_as_input(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored row's typed values (minor units, dates, Decimal percent) as the text `validate_plan`
    reads, to re-check a whole row, e.g. before it leaves needs review.

    Passing minor units straight back in would read 9,600,000 cents as 9,600,000 dollars. Empty
    fields stay None, so with `unresolved=` they are reported, not defaulted.
    """
    out: dict[str, Any] = {}
    currency = row.get("currency")
    for name in INPUT_FIELDS:
        if name not in row:
            continue
        value = row[name]
        if name in ("credit_amount", "price") and isinstance(value, int) and not isinstance(value, bool):
            value = format_amount(value, currency) if isinstance(currency, str) and currency else None
        elif isinstance(value, date):
            value = value.isoformat()
        elif isinstance(value, Decimal):
            value = _plain(value)
        out[name] = value
    return out
