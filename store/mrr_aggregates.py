"""MRR pre-aggregates maintained by every revenue rebuild (issue 13): what the MRR, bridge,
cohort, committed and summary reports read instead of pricing every subscription per request.

`refresh(session, customer_ids)` is called by `store.revenue.rebuild` (the customers a sync, a
webhook or a plan action touched) and `rebuild_all` (None: everyone), in their transaction.

What is kept, all in native currency (minor units), so a report converts at read time:

- `mrr_customer_runs`: each customer's MRR per currency on the snapshot days, one row per run of
  kept days with the same MRR (`from_day`..`to_day`, both kept days; zero on days outside every
  run): a customer paying the same for two years is one row, not thirty. Snapshot days: every
  month end from the month before the first paying month to 13 months after the refresh day's
  month (committed MRR looks 12 ahead), and the refresh day itself ("as of the last sync").
- `mrr_customers`: each customer's first paying day and its cohort (that day's month).
- `mrr_bridge` per (start day, end day, currency, cohort): the fields of `domain.mrr.BridgeMonth`
  and `capped_end_mrr` (each customer's end MRR capped at its cohort month's end: gross
  retention), for the pairs of days the reports ask for (see `pairs`); `mrr_bridge_customers` the
  customer counts per (start day, end day, cohort), currency aside (a customer paying in two
  currencies counts once).
- `mrr_cohorts`: customers per cohort month; `mrr_scheduled_churn`: customers whose MRR drops to
  zero within the committed horizon of the refresh day; `mrr_left_out`: items MRR could not price.
- `mrr_refresh`: the refresh day and the first month: which days and pairs exist.

A partial refresh subtracts the touched customers' old contributions and adds their new ones
(`UPDATE … SET x = x + delta`, safe beside concurrent refreshes of other customers). It becomes a
full one when nothing was refreshed yet, when the day changed since the last refresh (every
customer's MRR on the new refresh day is needed), or when a touched customer started paying
before the first month kept.

A customer's movement between two days is classified on its total over currencies (new,
reactivation, churn: from or to zero) and, for a customer paying on both days, per currency
(expansion, contraction): with one currency per customer that is exactly `domain.mrr.bridge_step`.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, cast

from sqlalchemy import BigInteger, Date, DateTime, Integer, String, Table, delete, func, insert, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from domain import calendar, mrr
from store.models import Base
from store.warehouse import (
    ID,
    StripeCustomer,
    StripeInvoiceLine,
    StripePrice,
    StripeSubscription,
    StripeSubscriptionItem,
    StripeSubscriptionSchedule,
)

# Committed MRR measures the twelve month ends after its day's month; one more month keeps a
# refresh late in a month covering the page's committed chart.
HORIZON_MONTHS = 13
CHUNK = 500
AMOUNTS = ("start_mrr", "new", "reactivation", "expansion", "contraction", "churned", "end_mrr", "capped_end_mrr")
COUNTS = ("start_customers", "new_customers", "reactivated_customers", "churned_customers", "end_customers")


class MrrCustomerRun(Base):
    __tablename__ = "mrr_customer_runs"
    customer_id: Mapped[str] = mapped_column(ID, primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    from_day: Mapped[date] = mapped_column(Date, primary_key=True)
    to_day: Mapped[date] = mapped_column(Date)
    mrr: Mapped[int] = mapped_column(BigInteger)


class MrrCustomer(Base):
    __tablename__ = "mrr_customers"
    customer_id: Mapped[str] = mapped_column(ID, primary_key=True)
    first_paying_day: Mapped[date] = mapped_column(Date)
    cohort_month: Mapped[date] = mapped_column(Date)


class MrrBridge(Base):
    __tablename__ = "mrr_bridge"
    end_day: Mapped[date] = mapped_column(Date, primary_key=True)
    start_day: Mapped[date] = mapped_column(Date, primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    cohort_month: Mapped[date] = mapped_column(Date, primary_key=True)
    start_mrr: Mapped[int] = mapped_column(BigInteger, default=0)
    new: Mapped[int] = mapped_column(BigInteger, default=0)
    reactivation: Mapped[int] = mapped_column(BigInteger, default=0)
    expansion: Mapped[int] = mapped_column(BigInteger, default=0)
    contraction: Mapped[int] = mapped_column(BigInteger, default=0)
    churned: Mapped[int] = mapped_column(BigInteger, default=0)
    end_mrr: Mapped[int] = mapped_column(BigInteger, default=0)
    capped_end_mrr: Mapped[int] = mapped_column(BigInteger, default=0)


class MrrBridgeCustomers(Base):
    __tablename__ = "mrr_bridge_customers"
    end_day: Mapped[date] = mapped_column(Date, primary_key=True)
    start_day: Mapped[date] = mapped_column(Date, primary_key=True)
    cohort_month: Mapped[date] = mapped_column(Date, primary_key=True)
    start_customers: Mapped[int] = mapped_column(Integer, default=0)
    new_customers: Mapped[int] = mapped_column(Integer, default=0)
    reactivated_customers: Mapped[int] = mapped_column(Integer, default=0)
    churned_customers: Mapped[int] = mapped_column(Integer, default=0)
    end_customers: Mapped[int] = mapped_column(Integer, default=0)


class MrrCohort(Base):
    __tablename__ = "mrr_cohorts"
    cohort_month: Mapped[date] = mapped_column(Date, primary_key=True)
    customers: Mapped[int] = mapped_column(Integer, default=0)


class MrrScheduledChurn(Base):
    __tablename__ = "mrr_scheduled_churn"
    customer_id: Mapped[str] = mapped_column(ID, primary_key=True)
    churn_on: Mapped[date] = mapped_column(Date)


class MrrLeftOut(Base):
    __tablename__ = "mrr_left_out"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(ID, index=True)
    message: Mapped[str] = mapped_column(String(1000))


class MrrRefresh(Base):
    __tablename__ = "mrr_refresh"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    refresh_day: Mapped[date] = mapped_column(Date)
    first_month: Mapped[date] = mapped_column(Date)
    refreshed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# --- which days and pairs of days are kept ----------------------------------------------------

@dataclass(frozen=True)
class Kept:
    """The snapshot days and pairs a refresh on `refresh_day` keeps, from `first_month` on."""

    refresh_day: date
    first_month: date  # no customer paid before it: every earlier day's MRR is zero

    @property
    def month_ends(self) -> list[date]:
        out, month = [], calendar.add_months(self.first_month, -1)
        last = calendar.add_months(calendar.month_start(self.refresh_day), HORIZON_MONTHS)
        while month <= last:
            out.append(calendar.month_end(month))
            month = calendar.add_months(month, 1)
        return out

    @property
    def last_day(self) -> date:
        return calendar.month_end(calendar.add_months(calendar.month_start(self.refresh_day), HORIZON_MONTHS))

    @property
    def zero_until(self) -> date:
        """The month end before the first month: MRR is zero on it and on every day before."""
        return calendar.month_end(calendar.add_months(self.first_month, -1))

    def days(self) -> list[date]:
        return sorted({*self.month_ends, self.refresh_day})

    def pairs(self) -> set[tuple[date, date]]:
        """Month end to month end (the bridge, the chart, committed MRR); the end of the refresh
        day's month before to the refresh day (a range ending on it); the refresh day to the end
        of the next month (committed MRR's first step); every month end before the refresh day to
        the refresh day (the summary of a range ending on it)."""
        ends = self.month_ends
        out = set(zip(ends, ends[1:], strict=False))
        r = self.refresh_day
        month = calendar.month_start(r)
        out.add((calendar.month_end(calendar.add_months(month, -1)), r))
        out.add((r, calendar.month_end(calendar.add_months(month, 1))))
        out.update((x, r) for x in ends if x < r)
        return {(s, e) for s, e in out if s < e}

    def covers(self, day: date) -> bool:
        """A snapshot day: the refresh day, or a month end up to the horizon (zero before the first)."""
        return day == self.refresh_day or (day == calendar.month_end(day) and day <= self.last_day)

    def pair(self, start: date, end: date) -> tuple[date, date] | None:
        """The kept pair that answers (start, end), or None when only a live computation can."""
        if not (self.covers(start) and self.covers(end)) or start >= end:
            return None
        if end <= self.zero_until:
            return (start, end)  # nobody paid yet: no rows, every figure zero
        if start < self.zero_until:
            start = self.zero_until  # zero on both: the same movements from there
        return (start, end) if (start, end) in self.pairs() else None


def kept(session: Session) -> Kept | None:
    """What the last refresh keeps, or None before the first one (reports then compute live)."""
    row = session.get(MrrRefresh, 1)
    return None if row is None else Kept(row.refresh_day, row.first_month)


def refresh_day(session: Session) -> date | None:
    found = kept(session)
    return found.refresh_day if found else None


# --- loading subscriptions (of some customers) -------------------------------------------------

_SCHEDULE_IN_MESSAGE = re.compile(r"^subscription schedule (\S+) ")
_SUBSCRIPTION_IN_MESSAGE = re.compile(r"^subscription (\S+) ")


def _chunks(ids: Sequence[str]) -> Iterator[Sequence[str]]:
    for i in range(0, len(ids), CHUNK):
        yield ids[i:i + CHUNK]


def load_inputs(session: Session, customer_ids: Sequence[str] | None) -> tuple[list[mrr.Subscription],
                                                                                  dict[str, list[str]]]:
    """`store.revenue.mrr_inputs` for these customers only (None: everyone), with the items left
    out of MRR by customer. Reuses its parsing of prices, items, discounts and schedules."""
    from store import revenue as queries  # store.revenue imports this module

    if customer_ids is None:
        subs, messages = queries.mrr_inputs(session)
        return subs, _by_customer(session, subs, messages)
    prices: dict[str, dict[str, Any]] = {pid: raw or {} for pid, raw in session.execute(
        select(StripePrice.id, StripePrice.raw))}
    s, si, line = StripeSubscription, StripeSubscriptionItem, StripeInvoiceLine
    rows: list[Any] = []
    for chunk in _chunks(customer_ids):
        rows += session.execute(select(s.id, s.customer_id, s.currency, s.status, s.start_date, s.created,
                                       s.trial_end, s.ended_at, s.canceled_at, s.raw["discounts"], s.cancel_at)
                                .where(s.customer_id.in_(chunk))).all()
    sub_ids = [r[0] for r in rows]
    currency_of = {r[0]: (r[2] or "usd") for r in rows}
    metered = {pid for pid, raw in prices.items() if (raw.get("recurring") or {}).get("usage_type") == "metered"}
    last_usage: dict[tuple[str, str], tuple[datetime, int]] = {}
    items: dict[str, list[mrr.Item]] = defaultdict(list)
    left_out: list[str] = []
    if metered and sub_ids:
        # One pass over the metered prices' lines (invoice lines have no index by subscription:
        # a filter by subscription would read them all once per chunk).
        ours = set(sub_ids)
        for sub_id, price_id, amount, end in session.execute(
                select(line.subscription_id, line.price_id, line.amount, line.period_end)
                .where(line.price_id.in_(sorted(metered)), line.deleted_at.is_(None),
                       line.subscription_id.is_not(None))):
            if sub_id not in ours:
                continue
            key = (sub_id or "", price_id or "")
            when = queries._aware(end) or datetime.min.replace(tzinfo=UTC)
            if key not in last_usage or when > last_usage[key][0]:
                last_usage[key] = (when, int(amount or 0))
    for chunk in _chunks(sub_ids):
        for item_id, sub_id, price_id, quantity, item_discounts, raw in session.execute(
                select(si.id, si.subscription_id, si.price_id, si.quantity, si.raw["discounts"], si.raw)
                .where(si.subscription_id.in_(chunk), si.deleted_at.is_(None))):
            price = prices.get(price_id or "")
            discounts: tuple[mrr.Discount, ...] = ()
            usage = None
            if price is None:
                # A price not synced (yet): the item's embedded price has the terms.
                price = (raw or {}).get("price")
                if not isinstance(price, dict):
                    left_out.append(f"subscription {sub_id} item {item_id}: its price is not synced")
                    continue
            else:
                discounts = tuple(d for d in (queries._discount(x) for x in (item_discounts or [])
                                              if isinstance(item_discounts, list)) if d is not None)
                usage = (last_usage.get((sub_id, price_id or "")) or (None, None))[1]
            built = queries._item(price, currency_of.get(sub_id, ""), int(quantity or 0), usage, discounts)
            if isinstance(built, str):
                left_out.append(f"subscription {sub_id} item {item_id}: {built}")
            else:
                items[sub_id].append(built)
    wanted = set(customer_ids)
    schedule_messages: list[str] = []
    scheduled = queries._schedules(session, prices, currency_of, schedule_messages)
    out = []
    for (sub_id, customer_id, currency, status, start_date, created, trial_end, ended_at, canceled_at,
         sub_discounts, cancel_at) in rows:
        ended = queries._day(ended_at)
        if ended is None and status == "canceled":
            ended = queries._day(canceled_at)
        parsed = tuple(d for d in (queries._discount(x) for x in (sub_discounts or [])
                                   if isinstance(sub_discounts, list)) if d is not None)
        phases, schedule_end = scheduled.attached.get(sub_id, ((), None))
        out.append(mrr.Subscription(sub_id, customer_id or "", currency, status or "active",
                                    queries._day(start_date) or queries._day(created) or date(1970, 1, 1),
                                    tuple(items.get(sub_id, [])), parsed, queries._day(trial_end), ended,
                                    queries._day(cancel_at) or schedule_end, phases))
    out.extend(sub for sub in scheduled.not_started if sub.customer in wanted)
    by_customer = _by_customer(session, out, left_out + schedule_messages)
    return out, {c: m for c, m in by_customer.items() if c in wanted}


def _by_customer(session: Session, subs: Iterable[mrr.Subscription], messages: Iterable[str]) -> dict[str, list[str]]:
    """Each left-out message under the customer of the subscription or schedule it names."""
    owner = {sub.id: sub.customer for sub in subs}
    messages = list(messages)
    if any(_SCHEDULE_IN_MESSAGE.match(m) for m in messages):
        sched = StripeSubscriptionSchedule
        owner.update({sid: cid or "" for sid, cid in session.execute(select(sched.id, sched.customer_id))})
    out: dict[str, list[str]] = defaultdict(list)
    for message in messages:
        found = _SCHEDULE_IN_MESSAGE.match(message) or _SUBSCRIPTION_IN_MESSAGE.match(message)
        out[owner.get(found.group(1), "") if found else ""].append(message)
    return dict(out)


# --- one customer's contributions -------------------------------------------------------------

Snapshot = dict[date, dict[str, int]]  # day → currency → MRR (native minor units), zeros left out
AmountKey = tuple[date, date, str, date]  # start day, end day, currency, cohort month
CountKey = tuple[date, date, date]  # start day, end day, cohort month


Pairs = Mapping[date, Sequence[tuple[date, date]]]  # day → the pairs starting or ending on it


def index_pairs(pairs: Iterable[tuple[date, date]]) -> Pairs:
    out: dict[date, list[tuple[date, date]]] = defaultdict(list)
    for pair in sorted(set(pairs)):
        out[pair[0]].append(pair)
        out[pair[1]].append(pair)
    return out


def contribute(values: Mapping[date, Mapping[str, int]], first_paid: date | None, pairs: Pairs,
               amounts: dict[AmountKey, list[int]], counts: dict[CountKey, list[int]], sign: int = 1) -> None:
    """Add (`sign` -1: take away) what one customer contributes to each pair's aggregates
    (`AMOUNTS`, `COUNTS`): the rules of `domain.mrr.bridge_step` applied to this customer alone.
    Only pairs with a day on which it pays can move (zero on both days: nothing to add)."""
    if not values:
        return
    if first_paid is None:  # cannot happen for a customer with MRR; stay total anyway
        first_paid = min(values)
    cohort = calendar.month_start(first_paid)
    base = values.get(calendar.month_end(cohort), {})
    totals = {day: sum(by.values()) for day, by in values.items()}
    seen: set[tuple[date, date]] = set()
    for day in values:
        for start, end in pairs.get(day, ()):
            if (start, end) in seen:
                continue
            seen.add((start, end))
            ta, tb = totals.get(start, 0), totals.get(end, 0)
            if ta or tb:
                _contribute(amounts, counts, sign, start, end, values, ta, tb, first_paid, cohort, base)


def _contribute(amounts: dict[AmountKey, list[int]], counts: dict[CountKey, list[int]], sign: int, start: date,
                end: date, values: Mapping[date, Mapping[str, int]], ta: int, tb: int, first_paid: date,
                cohort: date, base: Mapping[str, int]) -> None:
    empty: dict[str, int] = {}
    a, b = values.get(start, empty), values.get(end, empty)
    reactivated = not ta and first_paid <= start
    count = counts.get((start, end, cohort))
    if count is None:
        count = counts[(start, end, cohort)] = [0] * len(COUNTS)
    count[0] += sign * (ta > 0)
    count[1 if not reactivated else 2] += sign * (not ta)
    count[3] += sign * (not tb)
    count[4] += sign * (tb > 0)
    for currency in a.keys() | b.keys():
        av, bv = a.get(currency, 0), b.get(currency, 0)
        row = amounts.get((start, end, currency, cohort))
        if row is None:
            row = amounts[(start, end, currency, cohort)] = [0] * len(AMOUNTS)
        row[0] += sign * av
        row[6] += sign * bv
        row[7] += sign * min(bv, base.get(currency, 0))
        if not ta:
            row[2 if reactivated else 1] += sign * bv
        elif not tb:
            row[5] += sign * av
        elif bv > av:
            row[3] += sign * (bv - av)
        else:
            row[4] += sign * (av - bv)


def _runs(snaps: Mapping[str, Snapshot], days: Sequence[date]) -> Iterator[dict[str, Any]]:
    """`mrr_customer_runs` rows: each customer's MRR per currency over consecutive kept days."""
    for customer, values in snaps.items():
        open_runs: dict[str, dict[str, Any]] = {}  # currency → its run still going on the day before
        for day in days:
            by = values.get(day, {})
            for currency in list(open_runs):
                if by.get(currency) != open_runs[currency]["mrr"]:
                    yield open_runs.pop(currency)
            for currency, value in by.items():
                run = open_runs.get(currency)
                if run is None:
                    open_runs[currency] = {"customer_id": customer, "currency": currency, "from_day": day,
                                           "to_day": day, "mrr": value}
                else:
                    run["to_day"] = day
        yield from open_runs.values()


def _snapshots(subs: Sequence[mrr.Subscription], days: Sequence[date]) -> dict[str, Snapshot]:
    out: dict[str, Snapshot] = defaultdict(dict)
    for day, found in zip(days, mrr.mrr_by_currency_series(subs, days), strict=True):
        for (customer, currency), value in found.items():
            out[customer].setdefault(day, {})[currency] = value
    return out


# --- refresh --------------------------------------------------------------------------------

def refresh(session: Session, customer_ids: Iterable[str] | None, today: date | None = None) -> None:
    """Bring the MRR pre-aggregates up to date for these customers (None: everyone), as of `today`
    (default: today in UTC)."""
    today = today or datetime.now(UTC).date()
    # One MRR refresh at a time on PostgreSQL (SQLite serialises writers already): a full refresh
    # deletes and rewrites every row, which a concurrent partial one's increments must not cross.
    # Taken after the rebuild's customer locks, in every path: no deadlock.
    row = session.get(MrrRefresh, 1, with_for_update=session.get_bind().dialect.name == "postgresql")
    found = None if row is None else Kept(row.refresh_day, row.first_month)
    if customer_ids is None or found is None or found.refresh_day != today:
        _refresh_all(session, today)
        return
    ids = sorted({c for c in customer_ids if c})
    if ids:
        _refresh_some(session, found, ids)


def _first_month(first_paid: Mapping[str, date], today: date) -> date:
    return min([calendar.month_start(d) for d in first_paid.values()] + [calendar.month_start(today)])


def _refresh_all(session: Session, today: date) -> None:
    subs, left_out = load_inputs(session, None)
    first_paid = mrr.first_paying_days(subs)
    keep = Kept(today, _first_month(first_paid, today))
    runs, amounts, counts = _aggregate_all(subs, first_paid, keep)
    for model in (MrrCustomerRun, MrrCustomer, MrrBridge, MrrBridgeCustomers, MrrCohort, MrrScheduledChurn,
                  MrrLeftOut):
        session.execute(delete(model))
    _insert(session, MrrCustomerRun, runs)
    _insert(session, MrrCustomer, ({"customer_id": c, "first_paying_day": d,
                                    "cohort_month": calendar.month_start(d)} for c, d in first_paid.items()))
    _insert(session, MrrBridge, (_amount_row(k, v) for k, v in amounts.items()))
    _insert(session, MrrBridgeCustomers, (_count_row(k, v) for k, v in counts.items()))
    sizes: dict[date, int] = defaultdict(int)
    for d in first_paid.values():
        sizes[calendar.month_start(d)] += 1
    _insert(session, MrrCohort, ({"cohort_month": m, "customers": n} for m, n in sizes.items()))
    _write_churn_and_left_out(session, subs, keep, left_out)
    state = session.get(MrrRefresh, 1)
    if state is None:
        session.add(MrrRefresh(id=1, refresh_day=today, first_month=keep.first_month, refreshed_at=datetime.now(UTC)))
    else:
        state.refresh_day, state.first_month, state.refreshed_at = today, keep.first_month, datetime.now(UTC)
    session.flush()


def _aggregate_all(subs: Sequence[mrr.Subscription], first_paid: Mapping[str, date], keep: Kept) -> tuple[
        list[dict[str, Any]], dict[AmountKey, list[int]], dict[CountKey, list[int]]]:
    """Every customer's runs and contributions at once: what `contribute` adds up customer by
    customer (a partial refresh), here over a (customer, currency) × day matrix with numpy, so a
    full refresh costs pricing each subscription once per change and a few array operations per
    pair of days (the property test holds the two to the same tables)."""
    import numpy as np

    days = keep.days()
    index = {d: i for i, d in enumerate(days)}
    row_of: dict[tuple[str, str], int] = {}
    rows, firsts, stops, values = [], [], [], []
    for customer, currency, first, stop, value in mrr.mrr_runs(subs, days):
        rows.append(row_of.setdefault((customer, currency), len(row_of)))
        firsts.append(first)
        stops.append(stop)
        values.append(value)
    if not row_of:
        return [], {}, {}
    width = len(days)
    steps = np.zeros((len(row_of), width + 1), dtype=np.int64)
    np.add.at(steps, (np.array(rows), np.array(firsts)), np.array(values, dtype=np.int64))
    np.add.at(steps, (np.array(rows), np.array(stops)), -np.array(values, dtype=np.int64))
    mrr_of = np.cumsum(steps, axis=1)[:, :width]  # (customer, currency) × day

    keys = list(row_of)
    customers = sorted({c for c, _ in keys})
    customer_index = {c: i for i, c in enumerate(customers)}
    currencies = sorted({cur for _, cur in keys})
    row_customer = np.array([customer_index[c] for c, _ in keys])
    row_currency = np.array([currencies.index(cur) for _, cur in keys])
    totals = np.zeros((len(customers), width), dtype=np.int64)
    np.add.at(totals, row_customer, mrr_of)
    firsts_paid = []
    for i, c in enumerate(customers):
        # A customer with MRR always has a first paying day; stay total anyway (as `contribute`).
        firsts_paid.append(first_paid.get(c) or days[int(np.argmax(totals[i] > 0))])
    paid_on = np.array([d.toordinal() for d in firsts_paid])
    cohort_months = [calendar.month_start(d) for d in firsts_paid]
    cohorts = sorted(set(cohort_months))
    customer_cohort = np.array([cohorts.index(m) for m in cohort_months])
    row_cohort = customer_cohort[row_customer]
    base_day = np.array([index.get(calendar.month_end(m), -1) for m in cohort_months])[row_customer]
    base = np.where(base_day >= 0, mrr_of[np.arange(len(keys)), np.maximum(base_day, 0)], 0)
    groups = len(currencies) * len(cohorts)
    row_group = row_currency * len(cohorts) + row_cohort

    def by_cohort(mask: Any) -> Any:
        return np.bincount(customer_cohort, weights=mask.astype(np.float64), minlength=len(cohorts))

    def by_group(amount: Any) -> Any:
        # float64 sums are exact for integers below 2**53 minor units.
        return np.bincount(row_group, weights=amount.astype(np.float64), minlength=groups)

    amounts: dict[AmountKey, list[int]] = {}
    counts: dict[CountKey, list[int]] = {}
    for start, end in sorted(keep.pairs()):
        i, j = index[start], index[end]
        ta, tb = totals[:, i], totals[:, j]
        paying = (ta > 0) | (tb > 0)
        back = (ta == 0) & (paid_on <= start.toordinal()) & paying
        fresh = (ta == 0) & ~back & paying
        customer_counts = np.stack([by_cohort(ta > 0), by_cohort(fresh), by_cohort(back),
                                    by_cohort((tb == 0) & paying), by_cohort(tb > 0)]).round().astype(np.int64)
        for k in np.nonzero(customer_counts.any(axis=0))[0]:
            counts[(start, end, cohorts[k])] = [int(v) for v in customer_counts[:, k]]
        a, b = mrr_of[:, i], mrr_of[:, j]
        row_ta, row_tb, row_back = ta[row_customer], tb[row_customer], back[row_customer]
        both = (row_ta > 0) & (row_tb > 0)
        zero = np.zeros_like(a)
        sums = np.stack([
            by_group(a), by_group(np.where((row_ta == 0) & ~row_back, b, zero)),
            by_group(np.where((row_ta == 0) & row_back, b, zero)),
            by_group(np.where(both & (b > a), b - a, zero)), by_group(np.where(both & (b <= a), a - b, zero)),
            by_group(np.where((row_ta > 0) & (row_tb == 0), a, zero)), by_group(b),
            by_group(np.minimum(b, base))]).round().astype(np.int64)
        for g in np.nonzero(sums.any(axis=0))[0]:
            currency, cohort = currencies[g // len(cohorts)], cohorts[g % len(cohorts)]
            amounts[(start, end, currency, cohort)] = [int(v) for v in sums[:, g]]

    # Runs: where a row's MRR differs from the day before, up to the next such day.
    changed = np.ones(mrr_of.shape, dtype=bool)
    changed[:, 1:] = mrr_of[:, 1:] != mrr_of[:, :-1]
    run_rows, run_firsts = np.nonzero(changed)
    run_lasts = np.full(run_firsts.shape, width - 1)
    same_row = run_rows[1:] == run_rows[:-1]
    run_lasts[:-1] = np.where(same_row, run_firsts[1:] - 1, width - 1)
    runs = [{"customer_id": keys[r][0], "currency": keys[r][1], "from_day": days[f], "to_day": days[t],
             "mrr": int(mrr_of[r, f])}
            for r, f, t in zip(run_rows.tolist(), run_firsts.tolist(), run_lasts.tolist(), strict=True)
            if mrr_of[r, f]]
    return runs, amounts, counts


def _refresh_some(session: Session, keep: Kept, ids: list[str]) -> None:
    subs, left_out = load_inputs(session, ids)
    first_paid = mrr.first_paying_days(subs)
    if any(calendar.month_start(d) < keep.first_month for d in first_paid.values()):
        _refresh_all(session, keep.refresh_day)  # paying before every month kept: all pairs move
        return
    days, pairs = keep.days(), index_pairs(keep.pairs())
    snaps = _snapshots(subs, days)
    old_snaps: dict[str, Snapshot] = defaultdict(dict)
    old_first: dict[str, date] = {}
    for chunk in _chunks(ids):
        run = MrrCustomerRun
        for c, cur, first, last, v in session.execute(select(run.customer_id, run.currency, run.from_day,
                                                             run.to_day, run.mrr).where(run.customer_id.in_(chunk))):
            for d in days[bisect_left(days, first):bisect_right(days, last)]:
                old_snaps[c].setdefault(d, {})[cur] = v
        old_first.update((c, d) for c, d in session.execute(
            select(MrrCustomer.customer_id, MrrCustomer.first_paying_day).where(MrrCustomer.customer_id.in_(chunk))))
    amounts: dict[AmountKey, list[int]] = {}
    counts: dict[CountKey, list[int]] = {}
    sizes: dict[date, int] = defaultdict(int)
    for customer in ids:
        before, after = old_snaps.get(customer, {}), snaps.get(customer, {})
        if before != after or old_first.get(customer) != first_paid.get(customer):
            contribute(before, old_first.get(customer), pairs, amounts, counts, -1)
            contribute(after, first_paid.get(customer), pairs, amounts, counts)
        if customer in old_first:
            sizes[calendar.month_start(old_first[customer])] -= 1
        if customer in first_paid:
            sizes[calendar.month_start(first_paid[customer])] += 1
    for chunk in _chunks(ids):
        for model in (MrrCustomerRun, MrrCustomer, MrrScheduledChurn, MrrLeftOut):
            session.execute(delete(model).where(model.customer_id.in_(chunk)))
    _insert(session, MrrCustomerRun, _runs(snaps, days))
    _insert(session, MrrCustomer, ({"customer_id": c, "first_paying_day": d,
                                    "cohort_month": calendar.month_start(d)} for c, d in first_paid.items()))
    _increment(session, MrrBridge, [_amount_row(k, v) for k, v in amounts.items() if any(v)], AMOUNTS)
    _increment(session, MrrBridgeCustomers, [_count_row(k, v) for k, v in counts.items() if any(v)], COUNTS)
    _increment(session, MrrCohort, [{"cohort_month": m, "customers": n} for m, n in sizes.items() if n],
               ("customers",))
    _write_churn_and_left_out(session, subs, keep, left_out)
    session.flush()


def _write_churn_and_left_out(session: Session, subs: Sequence[mrr.Subscription], keep: Kept,
                              left_out: Mapping[str, list[str]]) -> None:
    on = keep.refresh_day
    until = calendar.month_end(calendar.add_months(calendar.month_start(on), HORIZON_MONTHS - 1))
    # Only a customer with a subscription ending in the horizon can be leaving: price only those.
    ending = {sub.customer for sub in subs
              if any(d is not None and on < d <= until for d in (sub.cancel_at, sub.ended_at))}
    leaving = mrr.scheduled_churn([sub for sub in subs if sub.customer in ending], on, until)
    _insert(session, MrrScheduledChurn, ({"customer_id": c, "churn_on": d} for c, (d, _) in leaving.items()))
    _insert(session, MrrLeftOut, ({"customer_id": c, "message": m[:1000]} for c, ms in left_out.items() for m in ms))


def _amount_row(key: AmountKey, values: list[int]) -> dict[str, Any]:
    start, end, currency, cohort = key
    return {"start_day": start, "end_day": end, "currency": currency, "cohort_month": cohort,
            **dict(zip(AMOUNTS, values, strict=True))}


def _count_row(key: CountKey, values: list[int]) -> dict[str, Any]:
    start, end, cohort = key
    return {"start_day": start, "end_day": end, "cohort_month": cohort, **dict(zip(COUNTS, values, strict=True))}


def _insert(session: Session, model: type[Base], rows: Iterable[dict[str, Any]]) -> None:
    """Core inserts in batches: the ORM's bulk path costs more than the database at 10⁵ rows."""
    table = cast(Table, model.__table__)
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= 5000:
            session.execute(insert(table), batch)
            batch = []
    if batch:
        session.execute(insert(table), batch)


def _increment(session: Session, model: type[Base], rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    """Add each row's `columns` to the stored row with its key (inserting it if missing): two
    refreshes of different customers add up, whichever commits first."""
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert  # type: ignore[assignment]
    table = cast(Table, model.__table__)
    keys = [c.name for c in table.primary_key.columns]
    for i in range(0, len(rows), 1000):
        stmt = dialect_insert(table).values(rows[i:i + 1000])
        stmt = stmt.on_conflict_do_update(index_elements=keys,
                                          set_={c: table.c[c] + stmt.excluded[c] for c in columns})
        session.execute(stmt)


# --- reads for the reports --------------------------------------------------------------------

@dataclass
class PairFigures:
    """One pair's aggregates: currency → the `AMOUNTS` summed over cohorts (or of one cohort)."""

    amounts: dict[str, list[int]]
    counts: list[int]


def pair_figures(session: Session, wanted: Sequence[tuple[date, date]],
                 by_cohort: bool = False) -> dict[tuple[date, date], dict[date | None, PairFigures]]:
    """(start, end) → cohort month (None: all cohorts) → figures, for kept pairs."""
    out: dict[tuple[date, date], dict[date | None, PairFigures]] = {p: {} for p in wanted}
    if not wanted:
        return out
    ends = sorted({e for _, e in wanted})

    def figures(pair: tuple[date, date], cohort: date) -> PairFigures:
        key = cohort if by_cohort else None
        found = out[pair].get(key)
        if found is None:
            found = out[pair][key] = PairFigures({}, [0] * len(COUNTS))
        return found

    b = MrrBridge
    for row in session.execute(select(b.start_day, b.end_day, b.currency, b.cohort_month,
                                      *(b.__table__.c[k] for k in AMOUNTS)).where(b.end_day.in_(ends))):
        pair = (row[0], row[1])
        if pair in out:
            into = figures(pair, row[3]).amounts.setdefault(row[2], [0] * len(AMOUNTS))
            for i, v in enumerate(row[4:]):
                into[i] += v
    c = MrrBridgeCustomers
    for row in session.execute(select(c.start_day, c.end_day, c.cohort_month,
                                      *(c.__table__.c[k] for k in COUNTS)).where(c.end_day.in_(ends))):
        pair = (row[0], row[1])
        if pair in out:
            into_counts = figures(pair, row[2]).counts
            for i, v in enumerate(row[3:]):
                into_counts[i] += v
    return out


def cohort_sizes(session: Session, start: date, end: date) -> dict[date, int]:
    return {m: n for m, n in session.execute(select(MrrCohort.cohort_month, MrrCohort.customers)
                                             .where(MrrCohort.cohort_month >= start, MrrCohort.cohort_month <= end,
                                                    MrrCohort.customers > 0))}


def customers_on(session: Session, day: date, customer_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    """Customer → currency → MRR on a snapshot day."""
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for chunk in _chunks(customer_ids):
        run = MrrCustomerRun
        for c, cur, v in session.execute(select(run.customer_id, run.currency, run.mrr).where(
                run.customer_id.in_(chunk), run.from_day <= day, run.to_day >= day)):
            out[c][cur] = v
    return dict(out)


def scheduled_churn(session: Session) -> dict[str, date]:
    """Customer → the day its MRR drops to zero, within the committed horizon of the refresh day."""
    return {c: d for c, d in session.execute(select(MrrScheduledChurn.customer_id, MrrScheduledChurn.churn_on))}


def names_and_emails(session: Session, customer_ids: Sequence[str]) -> dict[str, tuple[str | None, str | None]]:
    """Customer → (name, email): two columns, not the customer rows and their raw JSON (a scheduled
    churn list can hold thousands)."""
    c = StripeCustomer
    out: dict[str, tuple[str | None, str | None]] = {}
    for chunk in _chunks(sorted(set(customer_ids))):
        for cid, name, email in session.execute(select(c.id, c.name, c.email).where(c.id.in_(chunk))):
            out[cid] = (name, email)
    return out


def left_out(session: Session, limit: int = 100) -> list[str]:
    return list(session.scalars(select(MrrLeftOut.message).order_by(MrrLeftOut.message).limit(limit)))


def customer_runs(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(MrrCustomerRun)) or 0)
