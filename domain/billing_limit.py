"""A billing limit with a discount: how much usage (at list price) the limit buys.

Runbook ("Coupons and Discounts"): discounts are applied before the limit is checked, so a $200
limit at 20% off is reached only after $250 of usage — usage × (1 − discount) ≤ limit, i.e.
usage ≤ limit ÷ (1 − discount). All arithmetic is on integers (minor units, and the percent as an
exact fraction), so no float ever touches money.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from domain.money import check_currency, display, format_amount


class BillingLimitError(ValueError):
    """An input that has no answer; the message names the value at fault."""


@dataclass(frozen=True)
class BillingLimitAnswer:
    limit: int  # minor units
    currency: str
    discount: Decimal  # percent, 0–100
    usage_allowed: int | None  # minor units of list-price usage; None = no limit is ever reached
    exact: bool  # limit ÷ (1 − discount) is a whole number of minor units
    explanation: str

    def to_json(self) -> dict[str, object]:
        return {
            "limit": format_amount(self.limit, self.currency),
            "currency": self.currency,
            "discount": str(self.discount),
            "usage_allowed": None if self.usage_allowed is None else format_amount(self.usage_allowed, self.currency),
            "exact": self.exact,
            "explanation": self.explanation,
        }


def usage_allowed(limit: int, discount: Decimal, currency: str = "usd") -> BillingLimitAnswer:
    """Usage (list price, minor units) a billing limit of `limit` buys at `discount` percent off.

    When the division is not whole the answer is rounded down: the largest usage whose discounted
    charge does not exceed the limit (the next minor unit of usage would go over it).
    """
    currency = check_currency(currency)
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise BillingLimitError(f"The billing limit {limit!r} must be a whole number of minor units.")
    if limit < 0:
        raise BillingLimitError(f"The billing limit {format_amount(limit, currency)} is negative; use 0 or more.")
    if not isinstance(discount, Decimal) or not discount.is_finite():
        raise BillingLimitError(f"The discount {discount!r} must be a finite decimal percent.")
    if not Decimal(0) <= discount <= Decimal(100):
        raise BillingLimitError(f"The discount {discount}% is outside 0–100%.")
    shown_limit = display(limit, currency)
    if discount == 100:
        return BillingLimitAnswer(
            limit, currency, discount, None, True,
            f"At 100% off usage is never charged, so the limit of {shown_limit} is never reached.")
    factor = 1 - Fraction(discount) / 100
    exact_usage = Fraction(limit) / factor
    allowed = exact_usage.numerator // exact_usage.denominator
    whole = exact_usage.denominator == 1
    if limit == 0:
        text = "A limit of 0 allows no charged usage at any discount below 100%."
    elif discount == 0:
        text = f"Without a discount a limit of {shown_limit} allows {shown_limit} of usage."
    else:
        text = (f"A limit of {shown_limit} at {discount.normalize():f}% off allows "
                f"{display(allowed, currency)} of usage"
                + ("." if whole else " (rounded down to the minor unit)."))
    return BillingLimitAnswer(limit, currency, discount, allowed, whole, text)
