"""The revenue code's months come from domain/calendar.py: the deferred-revenue keys, the
reports' month index, the deferred balance's next month and the page's range length agree with
a plain walk over the days, for any dates (hypothesis)."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from domain import calendar
from domain.deferred import days_by_month, month_of
from reports.period import Range, month_end, month_start, months

DAYS = st.dates(min_value=date(1970, 1, 1), max_value=date(2199, 12, 31))


def _walk(start: date, end: date) -> list[date]:
    """First days of the months [start, end] touches, one day at a time (slow, obviously right)."""
    seen: list[date] = []
    day = start
    while day <= end:
        if not seen or seen[-1] != day.replace(day=1):
            seen.append(day.replace(day=1))
        day += timedelta(days=1)
    return seen


@given(DAYS, st.integers(min_value=0, max_value=800))
def test_months_touched_and_the_report_months_match_a_walk(start: date, span: int) -> None:
    end = min(start + timedelta(days=span), date(2199, 12, 31))
    walked = _walk(start, end)
    assert calendar.months_touched(start, end) == len(walked)
    assert months(Range(start, end, "usd")) == walked
    assert calendar.months_touched(end + timedelta(days=1), end) == 0


@given(DAYS, st.integers(min_value=-300, max_value=300))
def test_report_month_index_moves_whole_months(day: date, back: int) -> None:
    moved = month_start(day, back)
    assert moved.day == 1
    assert (day.year * 12 + day.month) - (moved.year * 12 + moved.month) == back
    assert month_end(moved) + timedelta(days=1) == calendar.next_month_start(moved)


@given(DAYS, st.integers(min_value=0, max_value=500))
def test_deferred_days_by_month_cover_the_period(start: date, length: int) -> None:
    end = start + timedelta(days=length)
    spread = days_by_month(start, end)
    assert sum(days for _, days in spread) == length
    assert [m for m, _ in spread] == (_walk(start, end - timedelta(days=1)) if length else [])
    assert month_of(start) == start.replace(day=1)


def test_the_page_refuses_a_range_over_twenty_years() -> None:
    assert calendar.months_touched(date(2000, 1, 31), date(2019, 12, 1)) == 240
    assert calendar.months_touched(date(2000, 1, 31), date(2020, 1, 1)) == 241
    assert calendar.months_touched(date(2026, 12, 31), date(2027, 1, 1)) == 2
