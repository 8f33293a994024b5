"""Deferred revenue: a paid invoice line spread over the exact days of its service period.

Each line's amount is assigned to calendar months in proportion to the days of its service period
that fall in each month (not months of 30.44 days), and the cents left over by rounding down go to
the months with the largest fractional parts (largest-remainder method), so the months always add
up to the line exactly. Net revenue takes discounts, refunds and credit notes off; gross is kept
beside it and spread with the same weights.

Service periods follow Stripe: `period.start` inclusive, `period.end` exclusive. A line whose
period is empty (a one-off item, a charge) is recognised in the month it was paid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

# Month arithmetic has one home (domain/calendar.py); these names stay importable from here for
# the revenue code that keys months by their first day.
from domain.calendar import days_by_month
from domain.calendar import month_start as month_of

__all__ = ["Line", "MonthlyRevenue", "allocate", "days_by_month", "month_of", "net_of_reductions",
           "recognise_charge", "recognise_invoice", "spread"]


def allocate(total: int, weights: Sequence[int]) -> list[int]:
    """Split `total` minor units in proportion to `weights` so the parts add up to it exactly.

    Largest remainder: every part gets the floor of its exact share, then the leftover units go one
    each to the parts with the largest fractional share (ties to the earlier part). A negative total
    (a credit line) is split as its absolute value and negated, so rounding is symmetric.
    """
    if not weights:
        raise ValueError("Cannot allocate an amount over no weights.")
    if any(w < 0 for w in weights):
        raise ValueError(f"Weights must not be negative: {list(weights)}.")
    whole = sum(weights)
    if whole == 0:
        raise ValueError("Cannot allocate an amount over weights that are all zero.")
    if total < 0:
        return [-part for part in allocate(-total, weights)]
    floors: list[int] = []
    remainders: list[int] = []
    for w in weights:
        q, r = divmod(total * w, whole)
        floors.append(q)
        remainders.append(r)
    leftover = total - sum(floors)
    if leftover:
        # Largest remainder first, then position ascending: a deterministic tie-break.
        order = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
        for i in order[:leftover]:
            floors[i] += 1
    return floors


def spread(amount: int, start: date, end: date, *, recognised_on: date | None = None) -> dict[date, int]:
    """`amount` over the months of the service period [start, end), exact to the minor unit.

    An empty period puts the whole amount in the month of `recognised_on` (default: `start`).
    """
    months = days_by_month(start, end)
    if not months:
        return {month_of(recognised_on or start): amount}
    parts = allocate(amount, [days for _, days in months])
    return {month: part for (month, _), part in zip(months, parts, strict=True)}


@dataclass(frozen=True)
class Line:
    """One paid invoice line (or a one-off charge), amounts in minor units of `currency`."""

    line_id: str
    amount: int  # gross: before discounts, as Stripe's line `amount`
    currency: str
    period_start: date
    period_end: date  # exclusive
    discount: int = 0  # the line's `discount_amounts`, summed


@dataclass(frozen=True)
class MonthlyRevenue:
    line_id: str
    month: date
    currency: str
    gross: int
    net: int


def net_of_reductions(lines: Sequence[Line], reductions: int) -> list[int]:
    """Each line's net: its own discount off, then the invoice's refunds and credit notes shared
    across lines in proportion to what is left of each (largest remainder, so nothing is lost).

    Reductions beyond what was paid are capped: revenue does not go below zero on an invoice.
    """
    after_discount = [line.amount - line.discount for line in lines]
    positive = [max(value, 0) for value in after_discount]
    paid = sum(after_discount)
    taken = min(max(reductions, 0), max(paid, 0))
    if taken == 0 or sum(positive) == 0:
        return after_discount
    shares = allocate(taken, positive)
    return [value - share for value, share in zip(after_discount, shares, strict=True)]


def recognise_invoice(lines: Sequence[Line], *, paid_on: date, reductions: int = 0) -> list[MonthlyRevenue]:
    """The revenue schedule of one paid invoice: per line per month, gross and net.

    `reductions` is what refunds, credit notes and lost disputes took back from the invoice
    (minor units, positive). Both gross and net are spread with the line's own day weights.
    """
    nets = net_of_reductions(lines, reductions)
    out: list[MonthlyRevenue] = []
    for line, net in zip(lines, nets, strict=True):
        months = days_by_month(line.period_start, line.period_end)
        if not months:
            out.append(MonthlyRevenue(line.line_id, month_of(paid_on), line.currency, line.amount, net))
            continue
        weights = [days for _, days in months]
        grosses = allocate(line.amount, weights)
        net_parts = grosses if net == line.amount else allocate(net, weights)
        for (month, _), gross, part in zip(months, grosses, net_parts, strict=True):
            out.append(MonthlyRevenue(line.line_id, month, line.currency, gross, part))
    return out


def recognise_charge(charge_id: str, amount: int, refunded: int, currency: str, paid_on: date) -> MonthlyRevenue:
    """A one-off charge (no invoice) is revenue in the month it was paid, net of its refunds."""
    return MonthlyRevenue(charge_id, month_of(paid_on), currency, amount, amount - min(max(refunded, 0), amount))
