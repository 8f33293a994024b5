"""The revenue recognition rules of `domain.recognition`, set-based over arrays (numpy), for the
invoices that need nothing but them: an invoice paid in money in one payment, with no refund,
credit note, dispute or credit balance behind it, outside any prepaid plan. That is nearly every
invoice line, so a full recompute of a million lines is array arithmetic instead of a Python loop
per line. Everything else (plans, credit, reductions, partial payments, one-off charges) keeps
going through the per-customer ledger, which stays the reference: `tests/revenue/
test_recognition_batch.py` checks on random data that both give the same schedule to the cent.

Why an invoice can be taken alone: in the ledger a plain invoice's lines are obligations of their
own, touched only by that invoice's money; nothing else a customer does moves them.

The rules, as the ledger applies them to such an invoice:
1. the money net of tax (`amount × (total − tax) // total` when there is tax) is split over the
   lines by their amounts (negative lines weigh 0; all-zero lines weigh 1 each), largest remainder,
   ties to the earlier line;
2. each line's share is split over the days of its service period per calendar month (largest
   remainder, ties to the earlier month); a line with no period, or an empty one, is revenue in
   the month the money came;
3. months already over when the money came are booked in that month (the catch-up);
4. the schedule keeps one row per invoice and month (zero rows left out).

Integers throughout (int64): the caller keeps invoices whose products could overflow on the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

# Amounts below 2**31 keep every product (amount × weight, amount × days) inside int64; a period
# longer than a century would expand into too many months. Either takes the ledger instead.
LARGEST_AMOUNT = 2**31
LONGEST_PERIOD_DAYS = 36600
NO_DAY = np.iinfo(np.int64).min  # a line without a period start or end


@dataclass(frozen=True)
class Invoices:
    """One entry per invoice; its lines are `Lines` rows with `invoice` = its position here."""

    money: Ints  # the one payment, minor units
    total: Ints  # tax included
    tax: Ints
    paid_day: Ints  # the payment's UTC day, days since 1970-01-01


@dataclass(frozen=True)
class Lines:
    """Lines grouped by invoice (`invoice` non-decreasing), in the ledger's line order within one."""

    invoice: Ints
    amount: Ints  # after discounts, tax excluded
    start: Ints  # days since 1970-01-01, NO_DAY when unknown
    end: Ints  # exclusive


@dataclass(frozen=True)
class Schedule:
    """One row per (invoice, month): months are counted from 1970-01 (0 = January 1970)."""

    invoice: Ints
    month: Ints
    amount: Ints


def month_of_day(days: Ints) -> Ints:
    """Months since 1970-01 of days since 1970-01-01."""
    return days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)


def first_day(months: Ints) -> Ints:
    """Days since 1970-01-01 of the first day of months since 1970-01."""
    return months.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)


def _group_starts(group: Ints, groups: int) -> Ints:
    """Index of each group's first element (groups contiguous, numbered 0..groups-1, none empty)."""
    starts = np.zeros(groups, dtype=np.int64)
    if len(group):
        change = np.flatnonzero(np.diff(group)) + 1
        starts[1:] = change
    return starts


def allocate_grouped(totals: Ints, weights: Ints, group: Ints) -> Ints:
    """`domain.deferred.allocate` for many splits at once: element i gets its share of
    `totals[group[i]]` by `weights` within its group; groups contiguous and in tie-break order;
    every group's weights positive in sum, none negative."""
    groups = len(totals)
    if not len(group):
        return np.zeros(0, dtype=np.int64)
    starts = _group_starts(group, groups)
    whole = np.add.reduceat(weights, starts)
    size = np.abs(totals)
    exact = size[group] * weights
    floors = exact // whole[group]
    remainders = exact % whole[group]
    leftover = size - np.add.reduceat(floors, starts)
    # Largest remainder first, then position: rank each element within its group. When the
    # three keys fit in one int64 (the month split: days < 2**17), one sort instead of three.
    position = np.arange(len(group), dtype=np.int64)
    within = position - starts[group]
    if groups < 2**30 and int(whole.max()) < 2**17 and int(within.max()) < 2**16:
        order = np.argsort((group << 33) | ((whole[group] - 1 - remainders) << 16) | within, kind="stable")
    else:
        order = np.lexsort((position, -remainders, group))
    rank = np.empty(len(group), dtype=np.int64)
    rank[order] = position - starts[group[order]]
    parts = floors + (rank < leftover[group])
    return np.where(totals[group] < 0, -parts, parts)


def net_of_tax(inv: Invoices) -> Ints:
    taxed = (inv.total > 0) & (inv.tax > 0)
    safe_total = np.where(taxed, inv.total, 1)
    return np.where(taxed, inv.money * (inv.total - inv.tax) // safe_total, inv.money)


def fits(inv: Invoices, lines: Lines) -> Bools:
    """Invoices whose arithmetic stays inside int64 and whose periods are not absurdly long
    (the rest belong on the ledger)."""
    known = (lines.start != NO_DAY) & (lines.end != NO_DAY)
    length = np.where(known, lines.end - lines.start, 0)
    line_ok = (np.abs(lines.amount) < LARGEST_AMOUNT) & (length < LONGEST_PERIOD_DAYS)
    bad_lines = np.zeros(len(inv.money), dtype=np.int64)
    np.add.at(bad_lines, lines.invoice, (~line_ok).astype(np.int64))
    ok: Bools = (bad_lines == 0) & (np.abs(inv.money) < LARGEST_AMOUNT) & (np.abs(inv.total) < LARGEST_AMOUNT) \
        & (np.abs(inv.tax) < LARGEST_AMOUNT)
    return ok


def recognise(inv: Invoices, lines: Lines) -> Schedule:
    """The schedule of these invoices, as `domain.recognition` books it (see the module doc)."""
    n_inv, n_lines = len(inv.money), len(lines.invoice)
    if n_lines == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Schedule(empty, empty, empty)
    # 1. Net money over the lines by their (non-negative) amounts.
    weights = np.maximum(lines.amount, 0)
    starts = _group_starts(lines.invoice, n_inv)
    has_weight = np.add.reduceat(weights, starts) > 0
    weights = np.where(has_weight[lines.invoice], weights, 1)
    share = allocate_grouped(net_of_tax(inv), weights, lines.invoice)

    # 2. Each line's share over the days of its period, per month.
    now = month_of_day(inv.paid_day)[lines.invoice]
    known = (lines.start != NO_DAY) & (lines.end != NO_DAY) & (lines.end > lines.start) & (share != 0)
    spread = np.flatnonzero(known)
    first = month_of_day(lines.start[spread])
    last = month_of_day(lines.end[spread] - 1)
    counts = last - first + 1
    which = np.repeat(np.arange(len(spread), dtype=np.int64), counts)
    offset = np.arange(len(which), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    month = first[which] + offset
    begin = np.maximum(first_day(month), lines.start[spread][which])
    stop = np.minimum(first_day(month + 1), lines.end[spread][which])
    parts = allocate_grouped(share[spread], stop - begin, which)

    # 3. Months already over catch up into the month the money came; lines with no period book there.
    line = np.concatenate([spread[which], np.flatnonzero(~known)])
    months = np.concatenate([np.maximum(month, now[spread][which]), now[~known]])
    amounts = np.concatenate([parts, share[~known]])

    # 4. One row per invoice and month.
    invoice = lines.invoice[line]
    low = months.min()
    key = invoice * np.int64(months.max() - low + 1) + (months - low)
    order = np.argsort(key, kind="stable")
    key, amounts = key[order], amounts[order]
    boundary = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
    summed = np.add.reduceat(amounts, boundary)
    keys = key[boundary]
    keep = summed != 0
    span = np.int64(months.max() - low + 1)
    return Schedule(keys[keep] // span, keys[keep] % span + low, summed[keep])
