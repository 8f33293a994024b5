"""Converting money to the reporting currency with the rates table.

A rate says how many units of the reporting currency one unit of the other currency is worth
(major units: 1 EUR = 1.08 USD), so exponents (JPY has none, USD two) are handled here once.
Results are rounded half up to a minor unit of the reporting currency.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal

from domain.money import exponent


class MissingRate(LookupError):
    """No rate to convert a currency; the message names it and says how to add one."""


def convert(amount: int, currency: str, reporting: str, rates: Mapping[str, Decimal]) -> int:
    """`amount` minor units of `currency` → minor units of `reporting`."""
    currency, reporting = currency.lower(), reporting.lower()
    if currency == reporting:
        return amount
    rate = rates.get(currency)
    if rate is None:
        raise MissingRate(
            f"There is no exchange rate from {currency.upper()} to {reporting.upper()}; "
            f"add one to the exchange_rates table."
        )
    major = Decimal(amount).scaleb(-exponent(currency)) * rate
    return int(major.scaleb(exponent(reporting)).to_integral_value(rounding=ROUND_HALF_UP))
