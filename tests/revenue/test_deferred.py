"""Deferred revenue: exact days, calendar months, months add up to the line to the cent."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from domain.deferred import Line, allocate, days_by_month, recognise_charge, recognise_invoice, spread


def test_a_1200_line_for_a_year_from_mid_january() -> None:
    months = spread(120000, date(2026, 1, 15), date(2027, 1, 15))
    # 365 days; 120000 × days / 365 rounded down leaves 6 cents, which go to the six 31-day
    # months (fraction .78 beats January 2027's .74).
    thirty_one, thirty = 10192, 9863
    assert months == {
        date(2026, 1, 1): 5589,  # 17 days
        date(2026, 2, 1): 9205,  # 28 days
        date(2026, 3, 1): thirty_one,
        date(2026, 4, 1): thirty,
        date(2026, 5, 1): thirty_one,
        date(2026, 6, 1): thirty,
        date(2026, 7, 1): thirty_one,
        date(2026, 8, 1): thirty_one,
        date(2026, 9, 1): thirty,
        date(2026, 10, 1): thirty_one,
        date(2026, 11, 1): thirty,
        date(2026, 12, 1): thirty_one,
        date(2027, 1, 1): 4602,  # 14 days
    }
    assert sum(months.values()) == 120000


def test_100_over_three_days_across_a_month_end() -> None:
    # 30 and 31 January, 1 February: two thirds and one third; the odd cent to January (.67 > .33).
    assert spread(10000, date(2026, 1, 30), date(2026, 2, 2)) == {date(2026, 1, 1): 6667, date(2026, 2, 1): 3333}


def test_a_leap_february_counts_29_days() -> None:
    assert days_by_month(date(2028, 2, 1), date(2028, 3, 2)) == [(date(2028, 2, 1), 29), (date(2028, 3, 1), 1)]


def test_a_fully_refunded_invoice_keeps_gross_and_nets_to_zero() -> None:
    lines = [Line("il_1", 120000, "usd", date(2026, 1, 15), date(2027, 1, 15)),
             Line("il_2", 10000, "usd", date(2026, 1, 30), date(2026, 2, 2))]
    rows = recognise_invoice(lines, paid_on=date(2026, 1, 15), reductions=130000)
    assert sum(r.gross for r in rows) == 130000
    assert all(r.net == 0 for r in rows)


def test_a_partial_credit_note_and_a_discount_reduce_net_to_the_cent() -> None:
    lines = [Line("il_1", 120000, "usd", date(2026, 1, 15), date(2027, 1, 15), discount=20000),
             Line("il_2", 10000, "usd", date(2026, 1, 30), date(2026, 2, 2))]
    # 110000 left after the discount; a 11000.00 credit note takes 10% of each line.
    rows = recognise_invoice(lines, paid_on=date(2026, 1, 15), reductions=11000)
    net = {line: sum(r.net for r in rows if r.line_id == line) for line in ("il_1", "il_2")}
    assert net == {"il_1": 90000, "il_2": 9000}
    assert sum(r.gross for r in rows) == 130000


def test_reductions_beyond_the_invoice_do_not_make_revenue_negative() -> None:
    rows = recognise_invoice([Line("il_1", 5000, "usd", date(2026, 3, 1), date(2026, 4, 1))],
                             paid_on=date(2026, 3, 1), reductions=9999)
    assert [(r.gross, r.net) for r in rows] == [(5000, 0)]


def test_a_one_off_line_and_a_charge_are_recognised_when_paid() -> None:
    rows = recognise_invoice([Line("il_1", 4200, "usd", date(2026, 5, 20), date(2026, 5, 20))],
                             paid_on=date(2026, 6, 3))
    assert [(r.month, r.gross) for r in rows] == [(date(2026, 6, 1), 4200)]
    charge = recognise_charge("ch_1", 5000, 1500, "usd", date(2026, 7, 31))
    assert (charge.month, charge.gross, charge.net) == (date(2026, 7, 1), 5000, 3500)


@given(
    amount=st.integers(min_value=-10**12, max_value=10**12),
    start=st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 1, 1)),
    days=st.integers(min_value=0, max_value=3 * 366),
)
def test_months_always_add_up_to_the_line_exactly(amount: int, start: date, days: int) -> None:
    end = start + timedelta(days=days)
    months = spread(amount, start, end)
    assert sum(months.values()) == amount
    total_days = max(days, 1)
    for month, part in months.items():
        in_month = dict(days_by_month(start, end)).get(month, total_days)
        exact = amount * in_month / total_days
        assert abs(part - exact) < 1  # never more than one minor unit from the exact share


@given(total=st.integers(min_value=-10**9, max_value=10**9),
       weights=st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=40).filter(any))
def test_allocation_is_exact_for_any_weights(total: int, weights: list[int]) -> None:
    parts = allocate(total, weights)
    assert sum(parts) == total
    assert all(p == 0 for p, w in zip(parts, weights, strict=True) if w == 0)


@given(gross=st.lists(st.integers(min_value=0, max_value=10**8), min_size=1, max_size=8),
       reductions=st.integers(min_value=0, max_value=10**9))
def test_net_of_an_invoice_is_its_total_less_reductions_capped_at_zero(gross: list[int], reductions: int) -> None:
    lines = [Line(f"il_{i}", g, "usd", date(2026, 1, 15), date(2026, 4, 15)) for i, g in enumerate(gross)]
    rows = recognise_invoice(lines, paid_on=date(2026, 1, 15), reductions=reductions)
    assert sum(r.gross for r in rows) == sum(gross)
    assert sum(r.net for r in rows) == sum(gross) - min(reductions, sum(gross))
