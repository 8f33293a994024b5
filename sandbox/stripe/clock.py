"""Sandbox time: real time plus an offset that only moves forward (`/_sandbox/clock/advance`).

While the sandbox replays what happens between two instants (renewals, finalizations) it freezes
the clock at each due instant so objects get the timestamps Stripe would give them.
"""

from __future__ import annotations

import calendar
import datetime as dt
import time


class Clock:
    def __init__(self, offset: int = 0) -> None:
        self.offset = offset
        self.frozen: int | None = None

    def now(self) -> int:
        if self.frozen is not None:
            return self.frozen
        return int(time.time()) + self.offset

    def set_to(self, target: int) -> None:
        self.offset = target - int(time.time())


def add_interval(anchor: int, interval: str, count: int, *, periods: int = 1) -> int:
    """`anchor` plus `periods` x (`count` `interval`s), month ends clamped like Stripe's billing."""
    n = count * periods
    if interval == "day":
        return anchor + 86400 * n
    if interval == "week":
        return anchor + 7 * 86400 * n
    months = n if interval == "month" else 12 * n
    if interval not in ("month", "year"):
        raise ValueError(interval)
    d = dt.datetime.fromtimestamp(anchor, tz=dt.UTC)
    total = d.year * 12 + (d.month - 1) + months
    year, month = divmod(total, 12)
    day = min(d.day, calendar.monthrange(year, month + 1)[1])
    return int(d.replace(year=year, month=month + 1, day=day).timestamp())
