"""MRR, ARR, ARPU and movements against hand-computed fixtures."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from fractions import Fraction

import pytest

from domain.fx import MissingRate, convert
from domain.mrr import (
    Discount,
    Item,
    Subscription,
    Tier,
    movements,
    mrr_by_customer,
    subscription_mrr,
    summarise,
    tiered_amount,
)

JAN, FEB, MAR = date(2026, 1, 10), date(2026, 2, 10), date(2026, 3, 10)


def sub(id: str, *items: Item, customer: str = "cus_a", status: str = "active", start: date = date(2026, 1, 1),
        **kw: object) -> Subscription:
    return Subscription(id, customer, "usd", status, start, items, **kw)  # type: ignore[arg-type]


MONTHLY_50 = Item(5000, 1, "month")


def test_monthly() -> None:
    assert subscription_mrr(sub("s", MONTHLY_50), JAN) == 5000


def test_annual_is_a_twelfth() -> None:
    assert subscription_mrr(sub("s", Item(120000, 1, "year")), JAN) == 10000


def test_quantity_multiplies() -> None:
    assert subscription_mrr(sub("s", Item(1000, 7, "month")), JAN) == 7000


def test_quarterly_weekly_and_daily_normalise_to_a_month() -> None:
    assert subscription_mrr(sub("s", Item(30000, 1, "month", 3)), JAN) == 10000
    assert subscription_mrr(sub("s", Item(1000, 1, "week")), JAN) == 4333  # 10.00 × 52 / 12 = 43.333…
    assert subscription_mrr(sub("s", Item(100, 1, "day")), JAN) == 3042  # 1.00 × 365 / 12 = 30.4166…


def test_several_items_sum_before_rounding() -> None:
    # Two weekly items of 43.333… each: 86.67 together, not 43.33 + 43.33.
    assert subscription_mrr(sub("s", Item(1000, 1, "week"), Item(1000, 1, "week")), JAN) == 8667


def test_percent_discount_forever() -> None:
    assert subscription_mrr(sub("s", Item(10000, 1, "month"), discounts=(Discount(Decimal(20)),)), JAN) == 8000


def test_amount_off_is_per_invoice_so_an_annual_one_counts_a_twelfth() -> None:
    discount = Discount(amount_off=1500)
    assert subscription_mrr(sub("s", Item(120000, 1, "year"), discounts=(discount,)), JAN) == 9875


def test_repeating_discount_ends_and_once_discount_is_not_recurring() -> None:
    half = Discount(Decimal(50), duration="repeating", start=date(2026, 1, 1), end=date(2026, 4, 1))
    s = sub("s", Item(10000, 1, "month"), discounts=(half, Discount(amount_off=9999, duration="once")))
    assert subscription_mrr(s, MAR) == 5000
    assert subscription_mrr(s, date(2026, 4, 1)) == 10000


def test_trial_counts_nothing_until_it_ends() -> None:
    s = sub("s", MONTHLY_50, status="trialing", trial_end=date(2026, 2, 1))
    assert subscription_mrr(s, JAN) == 0
    assert subscription_mrr(s, date(2026, 2, 1)) == 5000


def test_cancelled_counts_until_it_ended() -> None:
    s = sub("s", MONTHLY_50, status="canceled", ended_at=date(2026, 3, 1))
    assert subscription_mrr(s, FEB) == 5000
    assert subscription_mrr(s, MAR) == 0


def test_incomplete_and_not_yet_started_count_nothing() -> None:
    assert subscription_mrr(sub("s", MONTHLY_50, status="incomplete"), JAN) == 0
    assert subscription_mrr(sub("s", MONTHLY_50, start=date(2026, 2, 1)), JAN) == 0


def test_movements_between_two_dates() -> None:
    subs = [
        sub("s_new", MONTHLY_50, customer="new", start=date(2026, 2, 1)),
        sub("s_trial", Item(120000, 1, "year"), customer="trial", status="active", trial_end=date(2026, 2, 1)),
        sub("s_gone", Item(20000, 1, "month"), customer="gone", status="canceled", ended_at=date(2026, 2, 15)),
        sub("s_up1", MONTHLY_50, customer="up"),
        sub("s_up2", Item(1000, 3, "month"), customer="up", start=date(2026, 2, 20)),
        sub("s_down1", MONTHLY_50, customer="down"),
        sub("s_down2", Item(4000, 1, "month"), customer="down", status="canceled", ended_at=date(2026, 3, 1)),
        sub("s_disc", Item(10000, 1, "month"), customer="disc",
            discounts=(Discount(Decimal(25), start=date(2026, 2, 1)),)),
        sub("s_flat", Item(7000, 1, "month"), customer="flat"),
    ]
    before, after = mrr_by_customer(subs, JAN), mrr_by_customer(subs, MAR)
    assert before == {"gone": 20000, "up": 5000, "down": 9000, "disc": 10000, "flat": 7000}
    assert after == {"new": 5000, "trial": 10000, "up": 8000, "down": 5000, "disc": 7500, "flat": 7000}
    m = movements(before, after)
    assert (m.new, m.expansion, m.contraction, m.churned) == (15000, 3000, 6500, 20000)
    assert (m.new_customers, m.churned_customers) == (2, 1)
    assert m.start_mrr + m.net_new == m.end_mrr == 42500
    s = summarise(after)
    assert (s.mrr, s.arr, s.customers, s.arpu) == (42500, 510000, 6, 7083)


def test_reporting_currency_conversion() -> None:
    rates = {"eur": Decimal("1.08"), "jpy": Decimal("0.0067")}
    assert convert(10000, "eur", "usd", rates) == 10800
    assert convert(150000, "jpy", "usd", rates) == 100500  # ¥150,000 has no minor unit
    assert convert(10000, "usd", "usd", rates) == 10000
    with pytest.raises(MissingRate, match="GBP to USD"):
        convert(1, "gbp", "usd", rates)
    summed = mrr_by_customer([Subscription("s", "c", "eur", "active", JAN, (MONTHLY_50,))], FEB,
                             lambda amount, cur: convert(amount, cur, "usd", rates))
    assert summed == {"c": 5400}


# --- issue 18 defects 6 and 8 -----------------------------------------------------------------------

def test_paused_and_unpaid_subscriptions_count_nothing() -> None:
    assert subscription_mrr(sub("s", MONTHLY_50, status="paused"), JAN) == 0
    assert subscription_mrr(sub("s", MONTHLY_50, status="unpaid"), JAN) == 0
    assert subscription_mrr(sub("s", MONTHLY_50, status="past_due"), JAN) == 5000  # still billed


def test_stacked_percent_discounts_apply_one_after_the_other() -> None:
    # Two 50% coupons: Stripe bills 25% (50% of what the first left), not 0.
    half = Discount(Decimal(50))
    assert subscription_mrr(sub("s", Item(10000, 1, "month"), discounts=(half, half)), JAN) == 2500


def test_amount_off_is_normalised_by_the_invoicing_interval_not_the_first_item() -> None:
    # An annual item listed first and a monthly one: invoices come monthly, so 10.00 off each
    # invoice is 10.00 off a month (on main: 10.00 / 12).
    s = sub("s", Item(120000, 1, "year"), Item(5000, 1, "month"), discounts=(Discount(amount_off=1000),))
    assert subscription_mrr(s, JAN) == 10000 + 5000 - 1000


def test_item_discounts_apply_to_their_item() -> None:
    discounted = Item(10000, 1, "month", discounts=(Discount(Decimal(10)),))
    assert subscription_mrr(sub("s", discounted, MONTHLY_50), JAN) == 9000 + 5000


def test_tiered_volume_and_graduated_prices() -> None:
    tiers = (Tier(10, Fraction(500)), Tier(None, Fraction(400), flat_amount=1000))
    # Volume: 15 units all at the second tier: 15 × 4.00 + 10.00 flat = 70.00.
    assert subscription_mrr(sub("s", Item(0, 15, "month", tiers=tiers, tiers_mode="volume")), JAN) == 7000
    # Graduated: 10 × 5.00 + 5 × 4.00 + 10.00 flat = 80.00.
    assert subscription_mrr(sub("s", Item(0, 15, "month", tiers=tiers, tiers_mode="graduated")), JAN) == 8000
    assert tiered_amount(tiers, "graduated", 0) == 0


def test_decimal_and_metered_prices() -> None:
    # 0.5 cents a unit for 10,001 units: 50.005 → 50.01 (half up).
    assert subscription_mrr(sub("s", Item(Fraction(1, 2), 10001, "month")), JAN) == 5001
    # Metered: what the last period billed, 123.45 a month.
    assert subscription_mrr(sub("s", Item(0, 0, "month", metered_amount=12345)), JAN) == 12345
