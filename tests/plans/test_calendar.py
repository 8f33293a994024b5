"""domain/calendar.py: month arithmetic, checked as properties over any date."""

from __future__ import annotations

import calendar as std_calendar
from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from domain.calendar import add_months, days_by_month, month_end, month_start, next_month_start

days = st.dates(min_value=date(1990, 1, 1), max_value=date(2200, 12, 31))


@given(days, st.integers(min_value=-240, max_value=240))
def test_add_months_keeps_the_day_clamped_to_the_month(day: date, months: int) -> None:
    moved = add_months(day, months)
    index = day.year * 12 + day.month - 1 + months
    assert (moved.year, moved.month) == (index // 12, index % 12 + 1)
    assert moved.day == min(day.day, std_calendar.monthrange(moved.year, moved.month)[1])


def test_add_months_examples() -> None:
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2028, 1, 31), 1) == date(2028, 2, 29)
    assert add_months(date(2024, 2, 29), 12) == date(2025, 2, 28)
    assert add_months(date(2026, 3, 31), -1) == date(2026, 2, 28)
    assert add_months(date(2026, 12, 1), 12) == date(2027, 12, 1)


@given(days)
def test_month_bounds(day: date) -> None:
    assert month_start(day) <= day <= month_end(day)
    assert month_start(day).day == 1 and month_end(day) + timedelta(days=1) == next_month_start(day)


@given(days, st.integers(min_value=-5, max_value=800))
def test_days_by_month_cover_the_period_exactly(start: date, length: int) -> None:
    end = start + timedelta(days=length)
    parts = days_by_month(start, end)
    assert sum(n for _, n in parts) == max(length, 0)
    assert all(month.day == 1 and n > 0 for month, n in parts)
    assert [m for m, _ in parts] == sorted({m for m, _ in parts})
    if parts:
        assert parts[0][0] == month_start(start)
        assert all(next_month_start(a) == b for (a, _), (b, _) in zip(parts, parts[1:], strict=False))
