"""Money: integer minor units plus an ISO currency. `Decimal` only when parsing or printing.

Exponents follow Stripe's currency list: most currencies have 2 decimals, the zero-decimal ones
(JPY, KRW, …) none, and the three-decimal ones (BHD, KWD, …) three.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

ZERO_DECIMAL = frozenset(
    "bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split()
)
THREE_DECIMAL = frozenset("bhd jod kwd omr tnd".split())
# Currencies Stripe settles in that a contract here may use; extend when sales does.
CURRENCIES = frozenset(
    """usd eur gbp cad aud nzd chf sek nok dkk pln czk huf ron bgn isk ils aed sar inr sgd hkd
    mxn brl ars cop pen zar egp ngn kes thb myr idr php twd cny try uah""".split()
) | ZERO_DECIMAL | THREE_DECIMAL

_AMOUNT = re.compile(r"^[+-]?\d+(\.\d+)?$")
_SYMBOLS = "$€£¥₩"


class MoneyError(ValueError):
    """A sentence saying what is wrong with an amount or a currency."""


def check_currency(currency: str) -> str:
    code = currency.strip().lower()
    if code not in CURRENCIES:
        raise MoneyError(f"{currency!r} is not a currency we can bill in (use an ISO code such as usd).")
    return code


def exponent(currency: str) -> int:
    code = check_currency(currency)
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def parse_amount(text: str | int | Decimal, currency: str) -> int:
    """`"96,000.00"`, `"$96000"`, `Decimal("96000")` → minor units (9600000 for usd).

    Refuses more decimals than the currency has rather than rounding money silently.
    """
    digits = exponent(currency)
    if isinstance(text, int):
        value = Decimal(text)
    elif isinstance(text, Decimal):
        value = text
    else:
        cleaned = text.strip().replace(",", "").replace(" ", "").replace("\u00a0", "")
        cleaned = cleaned.lstrip(_SYMBOLS).removesuffix(currency.upper()).removesuffix(currency.lower())
        if not _AMOUNT.match(cleaned):
            raise MoneyError(f"{text!r} is not an amount (write it like 96000.00).")
        try:
            value = Decimal(cleaned)
        except InvalidOperation:  # pragma: no cover - the regex already guards this
            raise MoneyError(f"{text!r} is not an amount.") from None
    minor = value.scaleb(digits)
    if minor != minor.to_integral_value():
        raise MoneyError(
            f"{text} has more than {digits} decimal places, which {currency.upper()} does not have."
        )
    return int(minor)


def to_decimal(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-exponent(currency))


def format_amount(minor: int, currency: str) -> str:
    """Minor units → the decimal string the API uses, e.g. 9600000 usd → "96000.00"."""
    digits = exponent(currency)
    return f"{to_decimal(minor, currency):.{digits}f}"


def display(minor: int, currency: str) -> str:
    """For people: "96,000.00 USD"."""
    digits = exponent(currency)
    return f"{to_decimal(minor, currency):,.{digits}f} {currency.upper()}"


def split_remainder_first(total: int, parts: int) -> list[int]:
    """Split `total` into `parts` whole amounts that add up to it exactly.

    Every part is `total // parts`; the remainder goes on the first part, as the runbook's first
    installment invoice carries it (SPEC §6). Parts differ by at most the remainder.
    """
    if parts <= 0:
        raise ValueError("parts must be positive")
    if total < 0:
        raise ValueError("total must not be negative")
    base, remainder = divmod(total, parts)
    return [base + remainder] + [base] * (parts - 1)


def apply_percent_off(minor: int, percent: Decimal) -> int:
    """`minor × (1 − percent/100)`, rounded half up to a whole minor unit."""
    value = Decimal(minor) * (Decimal(100) - percent) / Decimal(100)
    return int(value.to_integral_value(rounding=ROUND_HALF_UP))
