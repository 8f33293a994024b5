"""The range a report covers, its months, and conversion into the reporting currency."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy.orm import Session

from domain import calendar, fx
from domain.money import format_amount
from store import revenue as queries


@dataclass(frozen=True)
class Range:
    start: date
    end: date
    currency: str  # the reporting currency


def month_start(day: date, back: int = 0) -> date:
    """The first day of `day`'s month, `back` months earlier (negative: later)."""
    return calendar.add_months(calendar.month_start(day), -back)


def month_end(month: date) -> date:
    """The last day of `month`'s month."""
    return calendar.month_end(month)


def months(r: Range) -> list[date]:
    """First days of the months `r` touches, in order."""
    out, cursor = [], month_start(r.start)
    while cursor <= r.end:
        out.append(cursor)
        cursor = month_start(cursor, -1)
    return out


def month_end_days(r: Range) -> list[date]:
    """The day each month of `r` is measured on: its last day, or `end` in the last month."""
    return [min(month_end(m), r.end) for m in months(r)]


class Converter:
    """Minor units of any currency → minor units of the reporting currency, noting missing rates.

    Each amount converts at the rate of its own day (a month at its last day in the range): past
    months keep their figures when the range moves."""

    def __init__(self, session: Session, r: Range) -> None:
        self.reporting = r.currency
        self.end = r.end
        self.history = queries.rate_history(session, r.currency)
        self._days = {c: [d for d, _ in h] for c, h in self.history.items()}
        self.rates = self.rates_on(r.end)
        self.missing: set[str] = set()
        self._by_day: dict[date, dict[str, Decimal]] = {}
        # The whole rates table for this currency: cache keys change when any rate does.
        self.key = tuple((c, tuple(h)) for c, h in sorted(self.history.items()))

    def rates_on(self, day: date) -> dict[str, Decimal]:
        out = {}
        for currency, history in self.history.items():
            i = bisect_right(self._days[currency], day)
            if i:
                out[currency] = history[i - 1][1]
        return out

    def __call__(self, amount: int, currency: str, on: date | None = None) -> int:
        rates = self.rates if on is None or on == self.end else self._rates_cached(on)
        try:
            return fx.convert(amount, currency, self.reporting, rates)
        except fx.MissingRate:
            self.missing.add(currency.lower())
            return 0

    def _rates_cached(self, day: date) -> dict[str, Decimal]:
        if day not in self._by_day:
            self._by_day[day] = self.rates_on(day)
        return self._by_day[day]

    def on(self, day: date) -> Callable[[int, str], int]:
        return lambda amount, currency: self(amount, currency, day)

    def month(self, month: date) -> date:
        """The day a month's amounts convert on: its last day, or `end` within the last month."""
        return min(month_end(month), self.end)

    def money(self, minor: int) -> str:
        return format_amount(minor, self.reporting)
