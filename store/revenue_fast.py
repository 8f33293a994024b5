"""The set-based half of a revenue rebuild: customers whose books are plain invoices go through
`domain.recognition_batch` (arrays), everyone else through the per-customer ledger
(`store.revenue.load_books` + `domain.recognition`).

A customer is *plain* when none of their money needs the ledger's judgement: no prepaid plan and
no installment customers, no customer-balance movements or invoices paid from the balance, no
credit notes, refunds or disputes, no one-off charges, and every paid invoice has lines, was paid
in one payment, and is small enough for int64 arithmetic. On a real warehouse that is most
customers; whoever is not plain loses nothing, they take the reference path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import repeat
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import ColumnElement, and_, exists, func, literal_column, or_, select
from sqlalchemy.orm import Session

from domain import recognition_batch as batch
from domain.money import exponent
from store.db import bulk_writer
from store.revenue_totals import Totals
from store.warehouse import (
    StripeCharge,
    StripeCreditNote,
    StripeCustomer,
    StripeCustomerBalanceTransaction,
    StripeDispute,
    StripeInvoice,
    StripeInvoiceLine,
    StripeInvoicePayment,
    StripeRefund,
)

CHUNK = 500
EPOCH = date(1970, 1, 1)


def _day_number(session: Session, column: Any) -> ColumnElement[Any]:
    """Days since 1970-01-01 of a timestamp's UTC day, computed by the database."""
    name = column.key
    table = column.table.name
    if session.get_bind().dialect.name == "postgresql":
        return literal_column(f"(({table}.{name} AT TIME ZONE 'UTC')::date - DATE '1970-01-01')")
    # SQLite keeps UTC wall time as text: its first ten characters are the day.
    return literal_column(f"CAST(julianday(substr({table}.{name}, 1, 10)) - 2440587.5 AS INTEGER)")


def _scoped(query: Any, column: Any, owners: Sequence[str] | None) -> list[Any]:
    if owners is None:
        return [query]
    return [query.where(column.in_(owners[i:i + CHUNK])) for i in range(0, len(owners), CHUNK)]


def _customers(session: Session, query: Any, column: Any, owners: Sequence[str] | None) -> set[str]:
    out: set[str] = set()
    for q in _scoped(query, column, owners):
        out |= {c for c in session.scalars(q) if c}
    return out


def ledger_customers(session: Session, owners: Sequence[str] | None) -> set[str]:
    """Of these customers (None: all), those whose books need the per-customer ledger."""
    Inv, C, Ch = StripeInvoice, StripeCustomer, StripeCharge  # noqa: N806
    found: set[str] = set()
    # Installment customers and the customers holding their plan's credit.
    for q in _scoped(select(C.id, C.ledger_customer_id).where(C.ledger_customer_id.is_not(None)), C.id, owners):
        for cid, ledger in session.execute(q):
            found |= {cid, ledger}
    for q in _scoped(select(C.ledger_customer_id).where(C.ledger_customer_id.is_not(None)),
                     C.ledger_customer_id, owners):
        found |= {c for c in session.scalars(q) if c}
    money = and_(Inv.deleted_at.is_(None), (Inv.status == "paid") | (Inv.amount_paid > 0))
    found |= _customers(session, select(Inv.customer_id).where(
        money, Inv.plan_key.is_not(None) | (Inv.balance_applied != 0)), Inv.customer_id, owners)
    B = StripeCustomerBalanceTransaction  # noqa: N806
    found |= _customers(session, select(B.customer_id).distinct(), B.customer_id, owners)
    found |= _customers(session, select(Inv.customer_id).join(
        StripeCreditNote, StripeCreditNote.invoice_id == Inv.id).distinct(), Inv.customer_id, owners)
    found |= _customers(session, select(Ch.customer_id).join(StripeRefund, StripeRefund.charge_id == Ch.id)
                        .distinct(), Ch.customer_id, owners)
    found |= _customers(session, select(Ch.customer_id).join(StripeDispute, StripeDispute.charge_id == Ch.id)
                        .distinct(), Ch.customer_id, owners)
    P = StripeInvoicePayment  # noqa: N806
    linked = exists().where(or_(P.charge_id == Ch.id,
                                and_(Ch.payment_intent_id.is_not(None), P.payment_intent_id == Ch.payment_intent_id)))
    found |= _customers(session, select(Ch.customer_id).where(Ch.invoice_id.is_(None), ~linked).distinct(),
                        Ch.customer_id, owners)
    return found


SCHEDULE_COLUMNS = ("source_type", "source_id", "line_id", "customer_id", "month", "currency", "currency_unit",
                    "gross", "net", "paid_at")
# Invoices recognised at a time: numpy's temporaries for 20,000 invoices are reused from the heap
# chunk after chunk, where a million lines at once mapped fresh memory for each and spent about a
# second in page faults; and each chunk's rows go to the database while the next is computed.
CHUNK_INVOICES = 20_000
# The columns' types for a binary COPY on PostgreSQL (store.db.bulk_writer).
SCHEDULE_TYPES = ("text", "text", "text", "text", "date", "text", "int4", "int8", "int8", "timestamptz")


@dataclass
class FastRows:
    """How many schedule rows were written, the customers found to need the ledger after all,
    and the rows' pre-aggregates."""

    written: int
    ledger: set[str]
    totals: Totals = field(default_factory=Totals)


def rows(session: Session, owners: Sequence[str] | None, leave_out: set[str]) -> FastRows:
    """Write the schedule rows of these customers' (None: all) plain books; report the customers
    found not to be plain after all (an invoice without lines, split payments, amounts too
    large): those take the ledger."""
    Inv, L, P = StripeInvoice, StripeInvoiceLine, StripeInvoicePayment  # noqa: N806
    invoices: dict[str, list[Any]] = {}
    too_hard: set[str] = set()
    money = and_(Inv.deleted_at.is_(None), (Inv.status == "paid") | (Inv.amount_paid > 0))
    for q in _scoped(select(Inv.id, Inv.customer_id, Inv.currency, Inv.total, Inv.tax, Inv.amount_paid,
                            Inv.paid_at, Inv.finalized_at, Inv.created).where(money), Inv.customer_id, owners):
        for iid, customer, currency, total, tax, paid, paid_at, finalized, created in session.execute(q):
            if not customer or customer in leave_out:
                continue
            at = paid_at or finalized or created
            if at is None:
                too_hard.add(customer)
                continue
            invoices[iid] = [customer, currency, int(total or 0), int(tax or 0), int(paid or 0), _aware(at)]
    ids = list(invoices)
    # One payment for the whole amount dates the money; anything else is the ledger's to split.
    payment_query = select(P.invoice_id, P.amount_paid, P.paid_at, P.status).where(P.invoice_id.is_not(None))
    payments: dict[str, list[tuple[Any, ...]]] = {}
    for q in _scoped(payment_query, P.invoice_id, None if owners is None else ids):
        for invoice_id, amount, at, status in session.execute(q):
            if invoice_id in invoices:
                payments.setdefault(invoice_id, []).append((amount, at, status))
    for invoice_id, found in payments.items():
        inv = invoices[invoice_id]
        amount, at, status = found[0]
        if len(found) != 1 or status != "paid" or at is None or int(amount or 0) != inv[4]:
            too_hard.add(inv[0])
        else:
            inv[5] = _aware(at)
    postgres = session.get_bind().dialect.name == "postgresql"
    start, end = _day_number(session, L.period_start), _day_number(session, L.period_end)
    no_day: ColumnElement[Any] = literal_column(str(int(batch.NO_DAY)))
    # Lines by invoice, then by id in code point order (the ledger's order within an invoice,
    # whatever the database's collation): the id itself need not be read.
    line_query = select(L.invoice_id, func.coalesce(L.amount, 0) - func.coalesce(L.discount_amount, 0)
                        - func.coalesce(L.tax_inclusive, 0), func.coalesce(start, no_day), func.coalesce(end, no_day)
                        ).where(L.deleted_at.is_(None)).order_by(L.invoice_id, L.id.collate("C") if postgres else L.id)
    line_rows: list[tuple[Any, ...]] = []
    connection = session.connection()
    for q in _scoped(line_query, L.invoice_id, None if owners is None else ids):
        # A million rows: plain driver tuples, without SQLAlchemy's per-row processing.
        sql = str(q.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True}))
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(sql)
            line_rows.extend(r for r in cursor.fetchall() if r[0] in invoices)
        finally:
            cursor.close()
    return _schedule(session, invoices, line_rows, too_hard, postgres)


def unit(currency: str) -> int:
    """Minor units per major unit of `currency` (100 when the code is unknown)."""
    try:
        return int(10 ** exponent(currency))
    except ValueError:
        return 100


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def month_text(month: date) -> str:
    return month.isoformat()


def stamp_text(at: datetime, postgres: bool) -> str:
    """A booking time as the schedule stores it: UTC wall time (SQLite, as SQLAlchemy writes it),
    with the offset for PostgreSQL's timestamptz."""
    text_ = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return text_ + "+00:00" if postgres else text_


def _schedule(session: Session, invoices: dict[str, list[Any]], line_rows: list[tuple[Any, ...]], too_hard: set[str],
              postgres: bool) -> FastRows:
    kept = {iid: inv for iid, inv in invoices.items() if inv[0] not in too_hard}
    # Invoices by customer, then id: the rows reach the schedule's unique key (customer, row,
    # month) in order.
    names = sorted(kept, key=lambda iid: (kept[iid][0], iid))
    if not names or not line_rows:
        return FastRows(0, too_hard | {inv[0] for inv in kept.values()})
    position = {name: p for p, name in enumerate(names)}
    invoice_column, amount, start, end = zip(*line_rows, strict=True)
    at = np.fromiter((position.get(i, -1) for i in invoice_column), dtype=np.int64, count=len(invoice_column))
    without_lines = np.flatnonzero(np.bincount(at[at >= 0], minlength=len(names)) == 0)
    if len(without_lines):
        # Lines not synced (yet): the ledger books the money as one line with no period.
        return _schedule(session, invoices, line_rows, too_hard | {kept[names[i]][0] for i in without_lines.tolist()},
                         postgres)
    mine = np.flatnonzero(at >= 0)
    order = mine[np.argsort(at[mine], kind="stable")]  # grouped by invoice, still in line id order
    invs = [kept[name] for name in names]
    paid_day = np.array([(inv[5].astimezone(UTC).date() - EPOCH).days for inv in invs], dtype=np.int64)
    arrays = batch.Invoices(money=np.array([inv[4] for inv in invs], dtype=np.int64),
                            total=np.array([inv[2] for inv in invs], dtype=np.int64),
                            tax=np.array([inv[3] for inv in invs], dtype=np.int64), paid_day=paid_day)
    lines = batch.Lines(invoice=at[order], amount=np.array(amount, dtype=np.int64)[order],
                        start=np.array(start, dtype=np.int64)[order], end=np.array(end, dtype=np.int64)[order])
    ok = batch.fits(arrays, lines)
    if not ok.all():
        return _schedule(session, invoices, line_rows, too_hard | {invs[i][0] for i in np.flatnonzero(~ok).tolist()},
                         postgres)
    units = {c: unit(c) for c in {inv[1] for inv in invs}}
    # Columns per invoice, spread to the rows by numpy's indexing; zip makes the row tuples in C.
    source = np.array(names, dtype=object)
    key = np.array([f"{name}@{inv[5].astimezone(UTC).date().isoformat()}"
                    for name, inv in zip(names, invs, strict=True)], dtype=object)
    customer = np.array([inv[0] for inv in invs], dtype=object)
    currency = np.array([inv[1] for inv in invs], dtype=object)
    minor = np.array([units[inv[1]] for inv in invs], dtype=object)
    # PostgreSQL takes these rows in binary: dates as objects, not text.
    stamp = np.array([inv[5] if postgres else stamp_text(inv[5], postgres) for inv in invs], dtype=object)
    month_names: dict[int, str | date] = {}
    pieces: list[batch.Schedule] = []
    written = 0
    bounds = np.searchsorted(lines.invoice, np.arange(0, len(names) + CHUNK_INVOICES, CHUNK_INVOICES))
    with bulk_writer(session, "revenue_schedule", SCHEDULE_COLUMNS, SCHEDULE_TYPES) as write:
        for i, low in enumerate(range(0, len(names), CHUNK_INVOICES)):
            high, a, b = min(low + CHUNK_INVOICES, len(names)), bounds[i], bounds[i + 1]
            got = batch.recognise(
                batch.Invoices(arrays.money[low:high], arrays.total[low:high], arrays.tax[low:high],
                               arrays.paid_day[low:high]),
                batch.Lines(lines.invoice[a:b] - low, lines.amount[a:b], lines.start[a:b], lines.end[a:b]))
            got = batch.Schedule(got.invoice + low, got.month, got.amount)
            pieces.append(got)
            months, month_at = np.unique(got.month, return_inverse=True)
            month_text_ = np.array([month_names.get(m) or month_names.setdefault(m, _month(m, postgres))
                                    for m in months.tolist()], dtype=object)
            amounts = got.amount.tolist()
            written += write(list(zip(repeat("invoice", len(amounts)), source[got.invoice].tolist(),
                                      key[got.invoice].tolist(), customer[got.invoice].tolist(),
                                      month_text_[month_at].tolist(), currency[got.invoice].tolist(),
                                      minor[got.invoice].tolist(), amounts, amounts, stamp[got.invoice].tolist(),
                                      strict=True)))
    whole = batch.Schedule(np.concatenate([p.invoice for p in pieces]), np.concatenate([p.month for p in pieces]),
                           np.concatenate([p.amount for p in pieces]))
    return FastRows(written, too_hard, _totals(whole, invs, paid_day, units))


def _month(month: int, postgres: bool) -> str | date:
    """The first day of a month counted from 1970-01: a date for PostgreSQL's binary COPY, ISO
    text for SQLite."""
    first = EPOCH + timedelta(days=int(batch.first_day(np.array([month], dtype=np.int64))[0]))
    return first if postgres else month_text(first)


def _grouped(keys: npt.NDArray[np.int64], amounts: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64],
                                                                                   npt.NDArray[np.int64]]:
    """Distinct keys (sorted) and the sum of `amounts` per key, exactly (int64, no float weights)."""
    order = np.argsort(keys, kind="stable")
    keys, amounts = keys[order], amounts[order]
    first = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    return keys[first], np.add.reduceat(amounts, first)


def _totals(got: batch.Schedule, invs: list[list[Any]], paid_day: npt.NDArray[np.int64],
            units: dict[str, int]) -> Totals:
    """The pre-aggregates of these rows (gross = net: plain invoices give nothing back)."""
    if not len(got.amount):
        return Totals()
    customers = sorted({inv[0] for inv in invs})
    currencies = sorted(units)
    customer_of = {c: i for i, c in enumerate(customers)}
    currency_of = {c: i for i, c in enumerate(currencies)}
    cust = np.array([customer_of[inv[0]] for inv in invs], dtype=np.int64)[got.invoice]
    cur = np.array([currency_of[inv[1]] for inv in invs], dtype=np.int64)[got.invoice]
    day = paid_day[got.invoice]
    month, n_cur = got.month, np.int64(len(currencies))
    m_low, d_low = month.min(), day.min()
    m_span, d_span = np.int64(month.max() - m_low + 1), np.int64(day.max() - d_low + 1)
    out = Totals()
    month_names = _day_names(batch.first_day(np.arange(m_low, m_low + m_span, dtype=np.int64)))
    day_names = _day_names(np.arange(d_low, d_low + d_span, dtype=np.int64))
    currency_names = np.array(currencies, dtype=object)
    customer_names = np.array(customers, dtype=object)
    unit_of = np.array([units[c] for c in currencies], dtype=np.int64)

    keys, sums = _grouped(((month - m_low) * d_span + (day - d_low)) * n_cur + cur, got.amount)
    rest, c = np.divmod(keys, n_cur)
    m, d = np.divmod(rest, d_span)
    for month_, day_, currency, amount in zip(month_names[m].tolist(), day_names[d].tolist(),
                                              currency_names[c].tolist(), sums.tolist(), strict=True):
        out.add_month((month_, day_, currency, "invoice"), amount, amount)
    # In the table's key order (month, currency, customer): written as they come, no sort after.
    n_cust = np.int64(len(customers))
    keys, sums = _grouped(((month - m_low) * n_cur + cur) * n_cust + cust, got.amount)
    rest, who = np.divmod(keys, n_cust)
    m, c = np.divmod(rest, n_cur)
    amounts = sums.tolist()
    out.customer_months.extend(zip(customer_names[who].tolist(), month_names[m].tolist(), currency_names[c].tolist(),
                                   amounts, amounts, strict=True))
    keys, sums = _grouped((cust * d_span + (day - d_low)) * n_cur + cur, got.amount)
    rest, c = np.divmod(keys, n_cur)
    who, d = np.divmod(rest, d_span)
    amounts = sums.tolist()
    out.customer_days.extend(zip(customer_names[who].tolist(), day_names[d].tolist(), currency_names[c].tolist(),
                                 unit_of[c].tolist(), amounts, amounts, strict=True))
    return out


def _day_names(days: npt.NDArray[np.int64]) -> npt.NDArray[np.object_]:
    """ISO dates of days since 1970-01-01, as an array to index into."""
    return np.array([(EPOCH + timedelta(days=d)).isoformat() for d in days.tolist()], dtype=object)
