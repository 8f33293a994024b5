"""Revenue pre-aggregates: what the reports read instead of the schedule (migration 0012).

- `revenue_month_totals`: per month recognised, day booked, currency and source type — a few
  thousand rows at any size; revenue per month, the deferred balance on any day, one-offs.
- `revenue_customer_month_totals`: per customer, month and currency — top customers, a customer's
  history.
- `revenue_customer_days`: per customer, day booked and currency — the persons and groups views
  (their "last 30 days").

They are kept in step inside the rebuild that writes the schedule, in its transaction: what the
rebuilt customers' rows added before is read, what their new rows add is gathered while they are
written, and only the difference is written (`INSERT … ON CONFLICT DO UPDATE`, on SQLite and
PostgreSQL); a full rebuild writes them all while it writes the schedule. So the first request
after a sync reads totals that are already right.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import BigInteger, Date, Index, Integer, PrimaryKeyConstraint, String, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from store.db import bulk_insert
from store.models import Base

CHUNK = 500


class RevenueMonthTotal(Base):
    __tablename__ = "revenue_month_totals"

    month: Mapped[date] = mapped_column(Date, primary_key=True)
    booked_on: Mapped[date] = mapped_column(Date, primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    source_type: Mapped[str] = mapped_column(String(16), primary_key=True)
    gross: Mapped[int] = mapped_column(BigInteger)
    net: Mapped[int] = mapped_column(BigInteger)


class RevenueCustomerMonthTotal(Base):
    """In (currency, month, customer) order (the key itself on SQLite): top customers of a range
    read one stretch of it for their currency, and one per other currency (migration 0014). Rows
    that came to nothing are deleted through a partial index."""

    __tablename__ = "revenue_customer_month_totals"

    customer_id: Mapped[str] = mapped_column(String(255))
    month: Mapped[date] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3))
    gross: Mapped[int] = mapped_column(BigInteger)
    net: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (PrimaryKeyConstraint("currency", "month", "customer_id",
                                           name="pk_revenue_customer_month_totals"),
                      Index("ix_revenue_customer_month_totals_empty", "customer_id",
                            sqlite_where=text("gross = 0 AND net = 0"), postgresql_where=text("gross = 0 AND net = 0")),
                      {"sqlite_with_rowid": False})


class RevenueCustomerDay(Base):
    __tablename__ = "revenue_customer_days"
    __table_args__ = {"sqlite_with_rowid": False}

    customer_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    booked_on: Mapped[date] = mapped_column(Date, primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    currency_unit: Mapped[int] = mapped_column(Integer)
    gross: Mapped[int] = mapped_column(BigInteger)
    net: Mapped[int] = mapped_column(BigInteger)


def _booked_on(session: Session) -> str:
    if session.get_bind().dialect.name == "postgresql":
        return "CAST(paid_at AT TIME ZONE 'UTC' AS DATE)"
    return "substr(paid_at, 1, 10)"  # SQLite keeps UTC wall time as text


# (table, key columns, grouped expressions, extra summed columns, only rows with a customer)
def _tables(day: str) -> list[tuple[str, tuple[str, ...], tuple[str, ...], tuple[tuple[str, str], ...], bool]]:
    return [
        ("revenue_month_totals", ("month", "booked_on", "currency", "source_type"),
         ("month", day, "currency", "source_type"), (), False),
        ("revenue_customer_month_totals", ("customer_id", "month", "currency"),
         ("customer_id", "month", "currency"), (), True),
        ("revenue_customer_days", ("customer_id", "booked_on", "currency"),
         ("customer_id", day, "currency"), (("currency_unit", "MAX(currency_unit)"),), True),
    ]


def _apply(session: Session, where: str, params: dict[str, object], sign: int) -> None:
    """Add (sign 1) or take away (sign -1) the totals of the schedule rows matching `where`."""
    for table, keys, grouped, extra, customers_only in _tables(_booked_on(session)):
        columns = (*keys, *(c for c, _ in extra), "gross", "net")
        values = (*grouped, *(e for _, e in extra), f"{sign} * SUM(gross)", f"{sign} * SUM(net)")
        only = " AND customer_id IS NOT NULL" if customers_only else ""
        extra_set = "".join(f", {c} = excluded.{c}" for c, _ in extra)
        session.execute(text(
            f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608 - fixed names
            f"SELECT {', '.join(values)} FROM revenue_schedule WHERE paid_at IS NOT NULL{only} AND ({where}) "
            f"GROUP BY {', '.join(str(i + 1) for i in range(len(keys)))} "
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET gross = {table}.gross + excluded.gross, "
            f"net = {table}.net + excluded.net{extra_set}"), params)


def lock(session: Session) -> None:
    """Two rebuilds of different customers add into the same monthly rows: on PostgreSQL they take
    turns (a transaction lock), so neither waits on a row the other holds while holding one it
    wants. SQLite has one writer at a time already."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext('revenue:totals'))"))


def _in(name: str, values: Sequence[str]) -> tuple[str, dict[str, object]]:
    marks = ", ".join(f":{name}{i}" for i in range(len(values)))
    return f"({marks})", {f"{name}{i}": v for i, v in enumerate(values)}


def contributions(session: Session, customer_ids: Sequence[str]) -> Totals:
    """What these customers' schedule rows add to each total now (read before they are replaced)."""
    out = Totals()
    day = _booked_on(session)
    for i in range(0, len(customer_ids), CHUNK):
        marks, params = _in("c", customer_ids[i:i + CHUNK])
        where = f"paid_at IS NOT NULL AND customer_id IN {marks}"
        for row in session.execute(text(
                f"SELECT month, {day}, currency, source_type, SUM(gross), SUM(net) FROM revenue_schedule "  # noqa: S608
                f"WHERE {where} GROUP BY 1, 2, 3, 4"), params):
            out.add_month((str(row[0]), str(row[1]), row[2], row[3]), int(row[4]), int(row[5]))
        out.customer_months.extend(
            (r[0], str(r[1]), r[2], int(r[3]), int(r[4])) for r in session.execute(text(
                f"SELECT customer_id, month, currency, SUM(gross), SUM(net) FROM revenue_schedule "  # noqa: S608
                f"WHERE {where} GROUP BY 1, 2, 3"), params))
        out.customer_days.extend(
            (r[0], str(r[1]), r[2], int(r[3]), int(r[4]), int(r[5])) for r in session.execute(text(
                f"SELECT customer_id, {day}, currency, MAX(currency_unit), SUM(gross), SUM(net) "  # noqa: S608
                f"FROM revenue_schedule WHERE {where} GROUP BY 1, 2, 3"), params))
    return out


def replace_customers(session: Session, customer_ids: Sequence[str], old: Totals, new: Totals) -> None:
    """These customers' totals go from `old` to `new`: only what changed is written (a payment
    that moved one month touches that month's rows, not every month the customer ever paid in)."""
    changed: dict[str, list[tuple[Any, ...]]] = {}
    for name, key_size, before, after in (
            ("revenue_month_totals", 4, [(*k, g, n) for k, (g, n) in old.months.items()],
             [(*k, g, n) for k, (g, n) in new.months.items()]),
            ("revenue_customer_month_totals", 3, old.customer_months, new.customer_months),
            ("revenue_customer_days", 4, old.customer_days, new.customer_days)):
        delta: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0])
        for sign, rows in ((-1, before), (1, after)):
            for row in rows:
                found = delta[tuple(row[:key_size])]
                found[0] += sign * row[-2]
                found[1] += sign * row[-1]
        # Sorted: rows are locked in one order by everyone.
        changed[name] = sorted((*k, g, n) for k, (g, n) in delta.items() if g or n)
    _upsert(session, "revenue_month_totals", ("month", "booked_on", "currency", "source_type"), (),
            changed["revenue_month_totals"])
    _upsert(session, "revenue_customer_month_totals", ("customer_id", "month", "currency"), (),
            changed["revenue_customer_month_totals"])
    _upsert(session, "revenue_customer_days", ("customer_id", "booked_on", "currency"), ("currency_unit",),
            changed["revenue_customer_days"])
    for i in range(0, len(customer_ids), CHUNK):
        marks, params = _in("c", customer_ids[i:i + CHUNK])
        # Totals that came to nothing (revenue that left a month) are not kept.
        for table in ("revenue_customer_month_totals", "revenue_customer_days"):
            session.execute(text(f"DELETE FROM {table} WHERE gross = 0 AND net = 0 "  # noqa: S608
                                 f"AND customer_id IN {marks}"), params)
    _drop_empty(session)


def _upsert(session: Session, table: str, keys: tuple[str, ...], extra: tuple[str, ...],
            rows: list[tuple[Any, ...]]) -> None:
    """Add (gross, net) deltas into `table` by key (the rows: key, extra columns, gross, net)."""
    if not rows:
        return
    columns = (*keys, *extra, "gross", "net")
    marks = ", ".join(f":v{i}" for i in range(len(columns)))
    names = ", ".join(columns)
    extra_set = "".join(f", {c} = excluded.{c}" for c in extra)
    session.execute(text(
        f"INSERT INTO {table} ({names}) VALUES ({marks}) ON CONFLICT ({', '.join(keys)}) "  # noqa: S608
        f"DO UPDATE SET gross = {table}.gross + excluded.gross, net = {table}.net + excluded.net{extra_set}"),
        [{f"v{i}": v for i, v in enumerate(row)} for row in rows])


def change_customerless_charges(session: Session, charge_ids: Sequence[str], sign: int) -> None:
    """Take one-off charges without a customer out of the totals (-1, before deleting their rows) or
    put them in (1, after writing them); their rows are kept per charge."""
    lock(session)
    for i in range(0, len(charge_ids), CHUNK):
        marks, params = _in("s", charge_ids[i:i + CHUNK])
        _apply(session, f"source_type = 'charge' AND customer_id IS NULL AND source_id IN {marks}", params, sign)
    if sign > 0:
        _drop_empty(session)


def _drop_empty(session: Session) -> None:
    session.execute(text("DELETE FROM revenue_month_totals WHERE gross = 0 AND net = 0"))


def clear(session: Session) -> None:
    for table, _, _, _, _ in _tables(""):
        session.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - fixed names


def rebuild(session: Session) -> None:
    """Every total summed again from the schedule, in SQL."""
    clear(session)
    _apply(session, "1 = 1", {}, 1)


@dataclass
class Totals:
    """Pre-aggregates gathered while a full rebuild writes the schedule, written in bulk after it
    (summing a million schedule rows again in SQL took longer than computing them)."""

    months: dict[tuple[str, str, str, str], list[int]] = field(default_factory=dict)
    customer_months: list[tuple[str, str, str, int, int]] = field(default_factory=list)
    customer_days: list[tuple[str, str, str, int, int, int]] = field(default_factory=list)

    def add_month(self, key: tuple[str, str, str, str], gross: int, net: int) -> None:
        found = self.months.setdefault(key, [0, 0])
        found[0] += gross
        found[1] += net

    def add_rows(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Schedule rows in their insert form (source_type, source_id, line_id, customer, month,
        currency, unit, gross, net, booked at), of customers not yet counted here."""
        by_month: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        by_day: dict[tuple[str, str, str, int], list[int]] = defaultdict(lambda: [0, 0])
        for kind, _, _, customer, month, currency, unit, gross, net, at in rows:
            day = at[:10]
            self.add_month((month, day, currency, kind), gross, net)
            if customer is None:
                continue
            in_month = by_month[(customer, month, currency)]
            in_month[0] += gross
            in_month[1] += net
            on_day = by_day[(customer, day, currency, unit)]
            on_day[0] += gross
            on_day[1] += net
        self.customer_months.extend((*k, g, n) for k, (g, n) in by_month.items() if g or n)
        self.customer_days.extend((*k, g, n) for k, (g, n) in by_day.items() if g or n)

    def merge(self, other: Totals) -> None:
        for key, (g, n) in other.months.items():
            self.add_month(key, g, n)
        self.customer_months.extend(other.customer_months)
        self.customer_days.extend(other.customer_days)

    def write(self, session: Session) -> None:
        """Into empty tables, in the order gathered: the set-based rows come in each table's key
        order (sorting a million tuples here cost a second), the ledger's few after them."""
        months = [(*k, g, n) for k, (g, n) in self.months.items() if g or n]
        bulk_insert(session, "revenue_month_totals", ("month", "booked_on", "currency", "source_type", "gross", "net"),
              months)
        bulk_insert(session, "revenue_customer_month_totals", ("customer_id", "month", "currency", "gross", "net"),
              self.customer_months)
        bulk_insert(session, "revenue_customer_days",
              ("customer_id", "booked_on", "currency", "currency_unit", "gross", "net"), self.customer_days)
