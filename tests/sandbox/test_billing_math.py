"""Properties of the sandbox's money math (integer minor units, Decimal unit prices)."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from sandbox.stripe.billing import coupon_discount, price_amount, to_minor
from sandbox.stripe.clock import add_interval

TIERS = [
    {"up_to": 10, "unit_amount_decimal": "0", "flat_amount_decimal": None},
    {"up_to": 100, "unit_amount_decimal": "2.5", "flat_amount_decimal": "100"},
    {"up_to": None, "unit_amount_decimal": "0.75", "flat_amount_decimal": None},
]
GRADUATED = {"billing_scheme": "tiered", "tiers_mode": "graduated", "tiers": TIERS, "transform_quantity": None}


def _brute(q: int) -> int:
    total = Decimal(0)
    for unit in range(1, q + 1):
        tier = next(t for t in TIERS if t["up_to"] is None or unit <= t["up_to"])
        total += Decimal(tier["unit_amount_decimal"])
    if q > 10:
        total += 100
    return to_minor(total)


@given(st.integers(min_value=0, max_value=400))
def test_graduated_matches_unit_by_unit_sum(q: int) -> None:
    assert price_amount(GRADUATED, q) == _brute(q)


@given(st.integers(min_value=0, max_value=10**7), st.integers(min_value=0, max_value=10**7))
def test_graduated_is_monotonic(a: int, b: int) -> None:
    lo, hi = sorted((a, b))
    assert price_amount(GRADUATED, lo) <= price_amount(GRADUATED, hi)


@given(st.integers(min_value=0, max_value=10**9), st.decimals(min_value=Decimal("0.01"), max_value=100, places=2))
def test_percent_discount_bounded(amount: int, pct: Decimal) -> None:
    off = coupon_discount({"_percent_off": str(pct)}, amount, "usd")
    assert 0 <= off <= amount and isinstance(off, int)


@given(st.integers(min_value=946_684_800, max_value=2_000_000_000), st.integers(min_value=1, max_value=40))
def test_month_periods_from_anchor_do_not_drift(anchor: int, n: int) -> None:
    # Period n is computed from the anchor, so Jan 31 -> Feb 28 -> Mar 31 (not Mar 28).
    ends = [add_interval(anchor, "month", 1, periods=i) for i in range(n + 1)]
    assert ends == sorted(ends)
    assert add_interval(anchor, "month", 12) == add_interval(anchor, "year", 1)
