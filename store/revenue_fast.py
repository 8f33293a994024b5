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

import gc
import os
import pickle
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import repeat
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
from sqlalchemy import ColumnElement, and_, exists, func, literal_column, or_, select
from sqlalchemy.orm import Session

from domain import recognition_batch as batch
from domain.money import exponent
from store.db import bulk_writer, session_factory
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


def rows(session: Session, owners: Sequence[str] | None, leave_out: set[str],
         apart: PlainApart | None = None) -> FastRows:
    """Write the schedule rows of these customers' (None: all) plain books; report the customers
    found not to be plain after all (an invoice without lines, split payments, amounts too
    large): those take the ledger. With `apart` (a full rebuild) another process reads and
    recognises them while this one writes."""
    postgres = session.get_bind().dialect.name == "postgresql"
    if apart is not None and (first := apart.first()) is not None:
        return _write(session, apart.chunks(first), postgres)
    # Read before writing: the session cannot read while a COPY is open on PostgreSQL.
    return _write(session, list(_chunks(session, owners, leave_out)), postgres)


def _chunks(session: Session, owners: Sequence[str] | None, leave_out: set[str],
            chunk_invoices: int | None = None) -> Iterator[_Chunk]:
    """The plain invoices recognised about `chunk_invoices` (`CHUNK_INVOICES`) at a time, by
    customer: a customer's invoices are all in one chunk, in the schedule's order. The first chunk
    holds no invoices, only the customers found not plain on reading them."""
    size = chunk_invoices or CHUNK_INVOICES
    invoices, too_hard = _invoices(session, owners, leave_out)
    kept = {iid: inv for iid, inv in invoices.items() if inv[0] not in too_hard}
    names = sorted(kept, key=lambda iid: (kept[iid][0], iid))
    yield _Chunk(_Header(too_hard, [], [], [], [], np.zeros(0, dtype=np.int64)), None)
    low = 0
    while low < len(names):
        high = min(low + size, len(names))
        while high < len(names) and kept[names[high]][0] == kept[names[high - 1]][0]:
            high += 1  # the rest of this customer's invoices
        group = names[low:high]
        plain = _plain({name: kept[name] for name in group}, _lines(session, group), set())
        got = batch.recognise(plain.invoices, plain.lines) if plain.header.names else None
        yield _Chunk(plain.header, got)
        low = high


def _invoices(session: Session, owners: Sequence[str] | None,
              leave_out: set[str]) -> tuple[dict[str, list[Any]], set[str]]:
    """The paid invoices of these customers (None: all) outside `leave_out`: [customer, currency,
    total, tax, paid, when the money came] by id; and the customers whose invoices are not plain."""
    Inv, P = StripeInvoice, StripeInvoicePayment  # noqa: N806
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
    return invoices, too_hard


LINES_PER_QUERY = 2000  # invoice ids written into one query's IN list


def _lines(session: Session, invoice_ids: Sequence[str]) -> list[tuple[Any, ...]]:
    """(invoice, amount net of discounts and inclusive tax, first day, day after the last) of these
    invoices' lines, by invoice, then by id in code point order (the ledger's order within an
    invoice, whatever the database's collation): the id itself need not be read."""
    L = StripeInvoiceLine  # noqa: N806
    connection = session.connection()
    start, end = _day_number(session, L.period_start), _day_number(session, L.period_end)
    no_day: ColumnElement[Any] = literal_column(str(int(batch.NO_DAY)))
    query = select(L.invoice_id, func.coalesce(L.amount, 0) - func.coalesce(L.discount_amount, 0)
                   - func.coalesce(L.tax_inclusive, 0), func.coalesce(start, no_day), func.coalesce(end, no_day)
                   ).where(L.deleted_at.is_(None)
                           ).order_by(L.invoice_id, _in_code_point_order(L.id, connection.dialect.name))
    found: list[tuple[Any, ...]] = []
    for i in range(0, len(invoice_ids), LINES_PER_QUERY):
        # A million rows: plain driver tuples, without SQLAlchemy's per-row processing.
        q = query.where(L.invoice_id.in_(invoice_ids[i:i + LINES_PER_QUERY]))
        sql = str(q.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True}))
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(sql)
            found.extend(cursor.fetchall())
        finally:
            cursor.close()
    return found


def _in_code_point_order(column: Any, dialect: str) -> Any:
    """`column` sorted as Python sorts strings, whatever the database's collation."""
    return column.collate("C") if dialect == "postgresql" else column


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


@dataclass
class _Header:
    """The plain invoices in the schedule's order (by customer, then id) and what their rows show;
    `too_hard`: the customers that take the ledger instead."""

    too_hard: set[str]
    names: list[str]
    customers: list[str]
    currencies: list[str]
    paid: list[datetime]  # when the money came
    paid_day: npt.NDArray[np.int64]


@dataclass
class _Plain:
    header: _Header
    invoices: batch.Invoices
    lines: batch.Lines


@dataclass
class _Chunk:
    """Some plain invoices and their schedule (`invoice`: positions in `header.names`)."""

    header: _Header
    schedule: batch.Schedule | None


def _plain(invoices: dict[str, list[Any]], line_rows: list[tuple[Any, ...]], too_hard: set[str]) -> _Plain:
    kept = {iid: inv for iid, inv in invoices.items() if inv[0] not in too_hard}
    # Invoices by customer, then id: the rows reach the schedule's unique key (customer, row,
    # month) in order.
    names = sorted(kept, key=lambda iid: (kept[iid][0], iid))
    if not names or not line_rows:
        # No lines synced (yet) for any of them: the ledger books each invoice as one line.
        none = np.zeros(0, dtype=np.int64)
        return _Plain(_Header(too_hard | {inv[0] for inv in kept.values()}, [], [], [], [], none),
                      batch.Invoices(none, none, none, none), batch.Lines(none, none, none, none))
    position = {name: p for p, name in enumerate(names)}
    invoice_column, amount, start, end = zip(*line_rows, strict=True)
    at = np.fromiter((position.get(i, -1) for i in invoice_column), dtype=np.int64, count=len(invoice_column))
    without_lines = np.flatnonzero(np.bincount(at[at >= 0], minlength=len(names)) == 0)
    if len(without_lines):
        # Lines not synced (yet): the ledger books the money as one line with no period.
        return _plain(invoices, line_rows, too_hard | {kept[names[i]][0] for i in without_lines.tolist()})
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
        return _plain(invoices, line_rows, too_hard | {invs[i][0] for i in np.flatnonzero(~ok).tolist()})
    header = _Header(too_hard, names, [inv[0] for inv in invs], [inv[1] for inv in invs], [inv[5] for inv in invs],
                     paid_day)
    return _Plain(header, arrays, lines)


def _write(session: Session, chunks: Iterable[_Chunk], postgres: bool) -> FastRows:
    """Write the schedule rows of each chunk as it comes; gather their pre-aggregates."""
    every = _Header(set(), [], [], [], [], np.zeros(0, dtype=np.int64))
    days: list[npt.NDArray[np.int64]] = []
    units: dict[str, int] = {}
    month_names: dict[int, str | date] = {}
    pieces: list[batch.Schedule] = []
    written = 0
    with bulk_writer(session, "revenue_schedule", SCHEDULE_COLUMNS, SCHEDULE_TYPES) as write:
        for chunk in chunks:
            header, got = chunk.header, chunk.schedule
            every.too_hard |= header.too_hard
            if got is None or not header.names:
                continue
            for c in header.currencies:
                if c not in units:
                    units[c] = unit(c)
            # Columns per invoice, spread to the rows by numpy's indexing; zip makes the tuples in C.
            key = np.array([f"{name}@{at.astimezone(UTC).date().isoformat()}"
                            for name, at in zip(header.names, header.paid, strict=True)], dtype=object)
            # PostgreSQL takes these rows in binary: dates as objects, not text.
            stamp = np.array([at if postgres else stamp_text(at, postgres) for at in header.paid], dtype=object)
            months, month_at = np.unique(got.month, return_inverse=True)
            month_values = np.array([month_names.get(m) or month_names.setdefault(m, _month(m, postgres))
                                     for m in months.tolist()], dtype=object)
            at, amounts = got.invoice, got.amount.tolist()
            written += write(list(zip(
                repeat("invoice", len(amounts)), np.array(header.names, dtype=object)[at].tolist(), key[at].tolist(),
                np.array(header.customers, dtype=object)[at].tolist(), month_values[month_at].tolist(),
                np.array(header.currencies, dtype=object)[at].tolist(),
                np.array([units[c] for c in header.currencies], dtype=object)[at].tolist(), amounts, amounts,
                stamp[at].tolist(), strict=True)))
            pieces.append(batch.Schedule(got.invoice + len(every.names), got.month, got.amount))
            every.names += header.names
            every.customers += header.customers
            every.currencies += header.currencies
            days.append(header.paid_day)
    if not pieces:
        return FastRows(0, every.too_hard)
    every.paid_day = np.concatenate(days)
    whole = batch.Schedule(np.concatenate([p.invoice for p in pieces]), np.concatenate([p.month for p in pieces]),
                           np.concatenate([p.amount for p in pieces]))
    return FastRows(written, every.too_hard, _totals(whole, every, units))


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


def _totals(got: batch.Schedule, header: _Header, units: dict[str, int]) -> Totals:
    """The pre-aggregates of these rows (gross = net: plain invoices give nothing back)."""
    if not len(got.amount):
        return Totals()
    customers = sorted(set(header.customers))
    currencies = sorted(units)
    customer_of = {c: i for i, c in enumerate(customers)}
    currency_of = {c: i for i, c in enumerate(currencies)}
    cust = np.array([customer_of[c] for c in header.customers], dtype=np.int64)[got.invoice]
    cur = np.array([currency_of[c] for c in header.currencies], dtype=np.int64)[got.invoice]
    day = header.paid_day[got.invoice]
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
    # In the table's key order (currency, month, customer): written as they come, no sort after.
    n_cust = np.int64(len(customers))
    keys, sums = _grouped((cur * m_span + (month - m_low)) * n_cust + cust, got.amount)
    rest, who = np.divmod(keys, n_cust)
    c, m = np.divmod(rest, m_span)
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


# From this many invoices a full rebuild reads and recognises them in a process of its own (~0.3 s
# to start), which leaves this one to write.
PLAIN_PROCESS_INVOICES = 20_000


def module_process(module: str, *args: str) -> subprocess.Popen[bytes] | None:
    """`python -m module args…` of this project, with pipes to its stdin and stdout; None when no
    process can be had (the caller does the work itself)."""
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    try:
        return subprocess.Popen([sys.executable, "-m", module, *args],  # noqa: S603 - our own module
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    except OSError:
        return None


class PlainApart:
    """A full rebuild's plain invoices read and recognised by `python -m store.revenue_fast`, a
    process of its own, while this one loads the ledger's books and writes: it sends them chunk
    by chunk, each written here as it arrives while it works on the next.

    It reads the warehouse through its own connection, as last committed: the rebuild's
    transaction changes only the schedule and its totals, which it does not read."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process

    @classmethod
    def start(cls, session: Session, leave_out: set[str]) -> PlainApart | None:
        """The process, for a warehouse worth one (a database file or server holding at least
        `PLAIN_PROCESS_INVOICES` invoices); None otherwise."""
        url = session.connection().engine.url
        if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
            return None  # another process cannot see an in-memory database
        if (session.scalar(select(func.count()).select_from(StripeInvoice)) or 0) < PLAIN_PROCESS_INVOICES:
            return None
        process = module_process("store.revenue_fast")
        if process is None or process.stdin is None:
            return None
        try:
            # The URL with its password: through the pipe, never on a command line.
            with process.stdin:
                pickle.dump((url.render_as_string(hide_password=False), leave_out, CHUNK_INVOICES), process.stdin,
                            protocol=pickle.HIGHEST_PROTOCOL)
        except OSError:
            process.kill()
            process.wait()
            return None
        return cls(process)

    def _next(self) -> Any:
        assert self.process.stdout is not None
        try:
            return pickle.load(self.process.stdout)  # noqa: S301 - our own child's output
        except (EOFError, pickle.UnpicklingError) as exc:
            code = self.process.wait()
            raise RuntimeError(f"The process recognising plain invoices stopped early (exit status {code}); "
                               "the rebuild is rolled back.") from exc

    def first(self) -> _Chunk | None:
        """The first chunk (the customers found not plain while reading invoices); None when the
        process failed before sending it: nothing is written yet, this process does the work."""
        try:
            chunk: _Chunk = self._next()
        except RuntimeError:
            return None
        return chunk

    def chunks(self, first: _Chunk) -> Iterator[_Chunk]:
        """`first`, then every other chunk as it comes; an error if the process stops before the last."""
        yield first
        while (chunk := self._next()) is not None:
            yield chunk
        if self.process.wait() != 0:
            raise RuntimeError(f"The process recognising plain invoices failed (exit status "
                               f"{self.process.returncode}); the rebuild is rolled back.")

    def close(self) -> None:
        """Stop the process if it is still running (the rebuild failed first)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def serve(url: str, leave_out: set[str], out: BinaryIO, chunk_invoices: int = CHUNK_INVOICES) -> None:
    """Read and recognise every plain invoice of `url` outside `leave_out`, sending each chunk as
    it is done, then None (pickles on `out`)."""
    gc.disable()  # a short life making millions of tuples and no cycles: nothing to collect
    with session_factory(url)() as session:
        for chunk in _chunks(session, None, leave_out, chunk_invoices):
            pickle.dump(chunk, out, protocol=pickle.HIGHEST_PROTOCOL)
            out.flush()
        session.rollback()  # it only read
    pickle.dump(None, out)
    out.flush()


def main() -> None:
    """`python -m store.revenue_fast`: (database URL, customers left to the ledger) pickled on
    stdin; the plain invoices' chunks pickled on stdout (`PlainApart`)."""
    # Run as a script this file is `__main__`: the module's own functions must do the work, so
    # that what they pickle names `store.revenue_fast`, which the parent can load.
    from store import revenue_fast

    url, leave_out, chunk_invoices = pickle.load(sys.stdin.buffer)  # noqa: S301 - written by the parent process
    revenue_fast.serve(url, leave_out, sys.stdout.buffer, chunk_invoices)


if __name__ == "__main__":
    main()
