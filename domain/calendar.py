"""Calendar months: the one place month arithmetic lives (dateutil's `relativedelta`).

Contracts, service periods, installments and credit releases all move "a month later" on the
same day of the month, clamped to the month's last day when it is shorter (Jan 31 + 1 month is
Feb 28, or 29 in a leap year). `relativedelta` has done that, tested and maintained, for years;
the project's own month helpers are to be replaced by these.

Pure: dates in, dates out. No clock.
"""

from __future__ import annotations

from datetime import date

from dateutil.relativedelta import relativedelta


def add_months(day: date, months: int) -> date:
    """Same day of month `months` later (or earlier, when negative), clamped to the month's last
    day: Jan 31 + 1 → Feb 28, Nov 30 + 3 → Feb 28, Feb 29 + 12 → Feb 28."""
    result: date = day + relativedelta(months=months)
    return result


def month_start(day: date) -> date:
    """The first day of `day`'s month."""
    return day.replace(day=1)


def next_month_start(day: date) -> date:
    """The first day of the month after `day`'s. (A first of the month needs no clamping, and this
    runs for every month of every service period the revenue ledger spreads: plain arithmetic.)"""
    return date(day.year + 1, 1, 1) if day.month == 12 else date(day.year, day.month + 1, 1)


def days_by_month(start: date, end: date) -> list[tuple[date, int]]:
    """Days of [start, end) per calendar month (keyed by the month's first day), in order; empty
    when `end <= start`. What a service period is spread over."""
    out: list[tuple[date, int]] = []
    cursor = start
    while cursor < end:
        boundary = min(next_month_start(cursor), end)
        out.append((month_start(cursor), (boundary - cursor).days))
        cursor = boundary
    return out


def month_end(day: date) -> date:
    """The last day of `day`'s month (Feb 28/29, Apr 30, …)."""
    result: date = month_start(day) + relativedelta(months=1, days=-1)
    return result


def months_touched(start: date, end: date) -> int:
    """How many calendar months [start, end] touches, both ends' months counted (Jan 31 → Feb 1
    is 2, a single day is 1); 0 when `end < start`. What a report over the range walks."""
    if end < start:
        return 0
    delta = relativedelta(month_start(end), month_start(start))
    return delta.years * 12 + delta.months + 1


__all__ = ["add_months", "days_by_month", "month_end", "month_start", "months_touched", "next_month_start"]
