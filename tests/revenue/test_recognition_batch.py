"""The set-based recognition (domain/recognition_batch.py) books exactly what the ledger
(domain/recognition.py, the reference) books for the invoices it takes: random invoices, to the cent."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import recognition, recognition_batch

EPOCH = date(1970, 1, 1)


def _days(day: date | None) -> int:
    return int(recognition_batch.NO_DAY) if day is None else (day - EPOCH).days


@st.composite
def invoices(draw: st.DrawFn) -> list[recognition.Invoice]:
    out = []
    for i in range(draw(st.integers(1, 6))):
        paid_at = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(
            days=draw(st.integers(0, 1200)), seconds=draw(st.integers(0, 86399)))
        lines = []
        for j in range(draw(st.integers(1, 5))):
            amount = draw(st.one_of(st.integers(-5000, 200000), st.sampled_from([0, 1, 7, 10**9])))
            if draw(st.booleans()):
                start = paid_at.date() + timedelta(days=draw(st.integers(-400, 60)))
                end = start + timedelta(days=draw(st.sampled_from([0, 1, 2, 28, 29, 30, 31, 59, 92, 365, 366, 1000])))
                if draw(st.integers(0, 9)) == 0:
                    start, end = end, start  # an inverted period books when paid
            else:
                start = end = None
            lines.append(recognition.InvoiceLine(f"il_{i}_{j}", amount, start, end))
        total = draw(st.integers(0, 400000))
        tax = draw(st.sampled_from([0, 0, total // 11, total // 5]))
        money = draw(st.one_of(st.just(total), st.integers(0, 500000)))
        out.append(recognition.Invoice(f"in_{i}", draw(st.sampled_from(["usd", "eur", "jpy"])), paid_at, total,
                                       tax, money, 0, tuple(lines)))
    return out


def _reference(found: list[recognition.Invoice]) -> dict[tuple[str, date], int]:
    rows = recognition.month_rows(recognition.recognise_customer(
        recognition.CustomerBooks("cus_1", tuple(found)), "consumption"))
    out: dict[tuple[str, date], int] = defaultdict(int)
    for b in rows:
        assert b.gross == b.net  # nothing taken back: all booked money is gross
        assert b.at == next(i.paid_at for i in found if i.invoice_id == b.source_id)
        out[(b.source_id, b.month)] += b.net
    return {k: v for k, v in out.items() if v}


def _batch(found: list[recognition.Invoice]) -> dict[tuple[str, date], int]:
    inv = recognition_batch.Invoices(
        money=np.array([i.money for i in found], dtype=np.int64),
        total=np.array([i.total for i in found], dtype=np.int64),
        tax=np.array([i.tax for i in found], dtype=np.int64),
        paid_day=np.array([(i.paid_at.date() - EPOCH).days for i in found], dtype=np.int64))
    lines = recognition_batch.Lines(
        invoice=np.array([n for n, i in enumerate(found) for _ in i.lines], dtype=np.int64),
        amount=np.array([line.amount for i in found for line in i.lines], dtype=np.int64),
        start=np.array([_days(line.start) for i in found for line in i.lines], dtype=np.int64),
        end=np.array([_days(line.end) for i in found for line in i.lines], dtype=np.int64))
    assert recognition_batch.fits(inv, lines).all()
    got = recognition_batch.recognise(inv, lines)
    months = recognition_batch.first_day(got.month)
    out: dict[tuple[str, date], int] = {}
    for n, day, amount in zip(got.invoice.tolist(), months.tolist(), got.amount.tolist(), strict=True):
        key = (found[n].invoice_id, EPOCH + timedelta(days=day))
        assert key not in out  # one row per invoice and month
        out[key] = amount
    return out


@settings(max_examples=300, deadline=None)
@given(invoices())
def test_the_set_based_rules_book_what_the_ledger_books(found: list[recognition.Invoice]) -> None:
    assert _batch(found) == _reference(found)


def test_a_worked_example_catches_up_and_splits_by_days() -> None:
    # 1,200.00 paid on 2026-03-10 for a year from 2026-01-01 (a 110.00 tax): the 1,090.00 net
    # spreads by days; January and February are already over, so they are booked in March.
    line = recognition.InvoiceLine("il_1", 109000, date(2026, 1, 1), date(2027, 1, 1))
    invoice = recognition.Invoice("in_1", "usd", datetime(2026, 3, 10, 12, tzinfo=UTC), 120000, 11000, 120000, 0,
                                  (line,))
    got = _batch([invoice])
    assert got == _reference([invoice])
    assert got[("in_1", date(2026, 3, 1))] == 9258 + 8362 + 9258  # Jan 31 d, Feb 28 d, Mar 31 d of 365
    assert sum(got.values()) == 109000
    assert min(month for _, month in got) == date(2026, 3, 1)


def test_invoices_too_large_for_int64_arithmetic_are_left_to_the_ledger() -> None:
    inv = recognition_batch.Invoices(*(np.array([v], dtype=np.int64) for v in (2**40, 2**40, 0, 20000)))
    lines = recognition_batch.Lines(*(np.array([v], dtype=np.int64) for v in (0, 2**40, 20000, 20031)))
    assert not recognition_batch.fits(inv, lines).any()
