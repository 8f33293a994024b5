"""Monthly recurring revenue from subscription state, and how it moved between two dates.

MRR of a subscription on a day = Σ items (unit amount × quantity normalised to one month), minus
its discounts that are in force that day; zero before it starts, while it is trialing, and from
the moment it has ended. Normalising: a month is 1/12 of a year, a week 52/12 per month, a day
365/12 per month; `interval_count` divides. Sums are exact fractions, rounded half up to a minor
unit once per subscription, so nothing drifts across items.

A "once" discount applies to a single invoice, so it is not recurring revenue and does not lower
MRR; "repeating" discounts lower it for their months, "forever" ones always. Several discounts
apply one after the other, each to what the previous left (two 50% coupons bill 25%, as Stripe
does). `amount_off` is per invoice, so it is normalised by the interval the subscription invoices
at (its most frequent item's). Item discounts apply to their item before the subscription's.

Prices: per unit (`unit_amount`, or `unit_amount_decimal` for fractions of a cent), tiered
(`volume`: the tier the quantity falls in prices every unit; `graduated`: each tier prices its own
units; flat amounts added), and metered (usage is not known ahead: the MRR is the last billed
period's amount). `paused` and `unpaid` subscriptions bill nothing and count zero.

Known limit: MRR on a past day uses today's items and prices of each subscription (Stripe keeps no
item history); movements are therefore exact for starts, trials, cancellations and discounts, and
for upgrades only as far as the warehouse has seen them. A subscription schedule's phases are the
exception: from a phase's start its items are the subscription's, so a scheduled price change and
a schedule not started yet count from the day they take effect (committed MRR).

The bridge: between two snapshots each customer's change is new (first MRR ever), reactivation
(MRR again after having had some before), expansion, contraction or churn (to zero); start +
movements = end, always. Cohorts group customers by the month of their first paying day.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from fractions import Fraction

MONTHS_PER_INTERVAL = {
    "day": Fraction(12, 365),
    "week": Fraction(12, 52),
    "month": Fraction(1),
    "year": Fraction(12),
}
# Statuses that produce no revenue: the first payment did not go through (incomplete), or Stripe
# stopped invoicing (paused) or stopped collecting (unpaid). Known from today's state only.
NEVER_COUNTED = frozenset({"incomplete", "incomplete_expired", "paused", "unpaid"})


class MrrError(ValueError):
    """A subscription whose state cannot be turned into MRR; the message says which and why."""


@dataclass(frozen=True)
class Tier:
    up_to: int | None  # None: every unit above the previous tier
    unit_amount: Fraction = Fraction(0)  # minor units per unit (decimal prices allowed)
    flat_amount: int = 0


def tiered_amount(tiers: tuple[Tier, ...], mode: str | None, quantity: int) -> Fraction:
    """What `quantity` units cost per interval under Stripe's tiers."""
    if quantity <= 0 or not tiers:
        return Fraction(0)
    if mode == "graduated":
        total, below = Fraction(0), 0
        for tier in tiers:
            top = quantity if tier.up_to is None else min(quantity, tier.up_to)
            if top <= below:
                break
            total += tier.unit_amount * (top - below) + tier.flat_amount
            below = top
        return total
    # volume: the tier the whole quantity falls in prices every unit
    for tier in tiers:
        if tier.up_to is None or quantity <= tier.up_to:
            return tier.unit_amount * quantity + tier.flat_amount
    raise MrrError(f"Quantity {quantity} is above every tier and the last tier has an upper bound.")


@dataclass(frozen=True)
class Item:
    unit_amount: int | Fraction  # minor units per interval per unit (a Fraction for decimal prices)
    quantity: int
    interval: str  # day | week | month | year
    interval_count: int = 1
    tiers: tuple[Tier, ...] = ()
    tiers_mode: str | None = None  # volume | graduated
    metered_amount: int | None = None  # metered price: what the last billed period came to
    discounts: tuple[Discount, ...] = ()  # the item's own discounts

    def billing_months(self) -> Fraction:
        if self.interval not in MONTHS_PER_INTERVAL:
            raise MrrError(f"Price interval {self.interval!r} is not one of day, week, month, year.")
        if self.interval_count <= 0:
            raise MrrError(f"Price interval_count {self.interval_count} must be positive.")
        return MONTHS_PER_INTERVAL[self.interval] * self.interval_count

    def per_interval(self) -> Fraction:
        if self.metered_amount is not None:
            return Fraction(self.metered_amount)
        if self.tiers:
            return tiered_amount(self.tiers, self.tiers_mode, self.quantity)
        return Fraction(self.unit_amount) * self.quantity

    def monthly(self, on: date | None = None) -> Fraction:
        value = self.per_interval() / self.billing_months()
        if on is not None:
            value = apply_discounts(value, self.discounts, on, self.billing_months())
        return value


@dataclass(frozen=True)
class Discount:
    percent_off: Decimal | None = None
    amount_off: int | None = None  # minor units off each invoice
    duration: str = "forever"  # once | repeating | forever
    start: date | None = None
    end: date | None = None  # Stripe's discount `end`; for repeating: start + duration_in_months

    def in_force(self, on: date) -> bool:
        if self.duration == "once":
            return False
        if self.start is not None and on < self.start:
            return False
        return self.end is None or on < self.end


@dataclass(frozen=True)
class Phase:
    """A subscription schedule phase: from `start` its items replace the subscription's."""

    start: date
    items: tuple[Item, ...]
    end: date | None = None  # informative: what follows the last phase is `cancel_at` or the release


@dataclass(frozen=True)
class Subscription:
    id: str
    customer: str
    currency: str
    status: str
    start: date
    items: tuple[Item, ...]
    discounts: tuple[Discount, ...] = ()
    trial_end: date | None = None
    ended_at: date | None = None  # set once cancelled for good (immediately or at period end)
    cancel_at: date | None = None  # a scheduled cancellation: counts until then
    phases: tuple[Phase, ...] = ()  # its schedule's phases, by start

    def counts_on(self, on: date) -> bool:
        if self.status in NEVER_COUNTED:
            return False
        if on < self.start:
            return False
        if self.trial_end is not None and on < self.trial_end:
            return False
        if self.cancel_at is not None and on >= self.cancel_at:
            return False
        return self.ended_at is None or on < self.ended_at

    def phase_on(self, on: date) -> Phase | None:
        """The schedule phase in force on `on`, if a phase has started by then."""
        current = None
        for phase in self.phases:
            if phase.start <= on:
                current = phase
        return current

    def first_paying_day(self) -> date | None:
        """The first day it counts for MRR, or None if it never does (never started, incomplete,
        cancelled before its trial ended, nothing priced)."""
        if self.status in NEVER_COUNTED or not (self.items or self.phases):
            return None
        first = max(self.start, self.trial_end or self.start)
        last = min((d for d in (self.ended_at, self.cancel_at) if d is not None), default=None)
        if last is not None and last <= first:
            return None
        return first


def _round_half_up(value: Fraction) -> int:
    if value < 0:
        return -_round_half_up(-value)
    return int((value + Fraction(1, 2)).__floor__())


def apply_discounts(value: Fraction, discounts: Iterable[Discount], on: date, billing_months: Fraction) -> Fraction:
    """Discounts in force on `on`, one after the other on what is left, never below zero."""
    for discount in discounts:
        if not discount.in_force(on):
            continue
        if discount.percent_off is not None:
            value -= value * Fraction(discount.percent_off) / 100
        if discount.amount_off is not None:
            value -= Fraction(discount.amount_off) / billing_months
        value = max(value, Fraction(0))
    return value


def _gross_and_billing_months(sub: Subscription) -> tuple[Fraction, Fraction]:
    gross = sum((item.monthly() for item in sub.items), Fraction(0))
    # Invoices come at the most frequent item's interval (mixed intervals: flexible billing mode).
    billing_months = min((item.billing_months() for item in sub.items), default=Fraction(1))
    return gross, billing_months


def subscription_mrr(sub: Subscription, on: date, _base: tuple[Fraction, Fraction] | None = None) -> int:
    """MRR of one subscription on `on`, in minor units of its currency (never negative)."""
    if not sub.counts_on(on):
        return 0
    phase = sub.phase_on(on) if sub.phases else None
    if phase is not None:
        # A scheduled change in force: its items, priced now (phases are few, no cache needed).
        sub = replace(sub, items=phase.items, phases=())
        _base = None
    gross, billing_months = _base or _gross_and_billing_months(sub)
    if any(item.discounts for item in sub.items):
        gross = sum((item.monthly(on) for item in sub.items), Fraction(0))
    return max(_round_half_up(apply_discounts(gross, sub.discounts, on, billing_months)), 0)


Convert = Callable[[int, str], int]


def _same(amount: int, currency: str) -> int:
    return amount


def mrr_by_customer(subs: Iterable[Subscription], on: date, convert: Convert = _same) -> dict[str, int]:
    """Customer → MRR on `on`, each subscription converted to one currency by `convert`."""
    out: dict[str, int] = {}
    for sub in subs:
        value = subscription_mrr(sub, on)
        if value:
            out[sub.customer] = out.get(sub.customer, 0) + convert(value, sub.currency)
    return out


@dataclass(frozen=True)
class Movements:
    start_mrr: int
    end_mrr: int
    new: int
    expansion: int
    contraction: int  # positive: how much MRR went down
    churned: int  # positive: MRR of customers who left
    new_customers: int = 0
    churned_customers: int = 0
    by_customer: dict[str, int] = field(default_factory=dict)  # customer → change

    @property
    def net_new(self) -> int:
        return self.new + self.expansion - self.contraction - self.churned


def mrr_series(subs: Iterable[Subscription], days: list[date], convert: Convert = _same,
               converts: list[Convert] | None = None) -> list[dict[str, int]]:
    """`mrr_by_customer` on each of `days`, pricing each subscription's items once. `converts`:
    one conversion per day (each day at its own exchange rate), else `convert` for all."""
    per_day = converts if converts is not None else [convert] * len(days)
    out: list[dict[str, int]] = [{} for _ in days]
    for sub in subs:
        base = _gross_and_billing_months(sub)
        for i, day in enumerate(days):
            value = subscription_mrr(sub, day, base)
            if value:
                out[i][sub.customer] = out[i].get(sub.customer, 0) + per_day[i](value, sub.currency)
    return out


def movements(before: Mapping[str, int], after: Mapping[str, int]) -> Movements:
    """Classify each customer's MRR change between two snapshots.

    new: from zero to something; churned: from something to zero; expansion / contraction: up or
    down while staying above zero. start + net_new == end, always.
    """
    new = expansion = contraction = churned = 0
    new_customers = churned_customers = 0
    changes: dict[str, int] = {}
    for customer in set(before) | set(after):
        a, b = before.get(customer, 0), after.get(customer, 0)
        if a == b:
            continue
        changes[customer] = b - a
        if a == 0:
            new += b
            new_customers += 1
        elif b == 0:
            churned += a
            churned_customers += 1
        elif b > a:
            expansion += b - a
        else:
            contraction += a - b
    return Movements(sum(before.values()), sum(after.values()), new, expansion, contraction, churned,
                     new_customers, churned_customers, changes)


@dataclass(frozen=True)
class Summary:
    mrr: int
    arr: int
    customers: int
    arpu: int  # MRR per paying customer, rounded half up


def summarise(by_customer: Mapping[str, int]) -> Summary:
    total = sum(by_customer.values())
    paying = sum(1 for v in by_customer.values() if v > 0)
    arpu = _round_half_up(Fraction(total, paying)) if paying else 0
    return Summary(total, total * 12, paying, arpu)


def as_date(value: datetime | date | int | None) -> date | None:
    """Stripe timestamps (unix seconds) and datetimes to the UTC day they fall on."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    from datetime import UTC

    return datetime.fromtimestamp(value, UTC).date()


# --- the bridge, retention and cohorts --------------------------------------------------------

def first_paying_days(subs: Iterable[Subscription]) -> dict[str, date]:
    """Customer → the first day any of its subscriptions counted for MRR: what tells a new
    customer (no such day before) from a reactivated one (paid before, left, came back)."""
    out: dict[str, date] = {}
    for sub in subs:
        day = sub.first_paying_day()
        if day is not None and (sub.customer not in out or day < out[sub.customer]):
            out[sub.customer] = day
    return out


@dataclass(frozen=True)
class BridgeMonth:
    """How MRR went from the snapshot on `start` to the one on `end`.

    Amounts are minor units (contraction and churned positive: how much went down); NRR and GRR
    count only customers paying on `start` (new and reactivated MRR is not retention)."""

    start: date
    end: date
    start_mrr: int
    new: int
    reactivation: int
    expansion: int
    contraction: int
    churned: int
    end_mrr: int
    start_customers: int
    new_customers: int
    reactivated_customers: int
    churned_customers: int
    end_customers: int

    @property
    def net_new(self) -> int:
        return self.new + self.reactivation + self.expansion - self.contraction - self.churned

    @property
    def nrr(self) -> Fraction | None:
        """Net revenue retention: what the customers paying at the start pay at the end."""
        if not self.start_mrr:
            return None
        return Fraction(self.start_mrr + self.expansion - self.contraction - self.churned, self.start_mrr)

    @property
    def grr(self) -> Fraction | None:
        """Gross revenue retention: as NRR without expansion (never above 1)."""
        if not self.start_mrr:
            return None
        return Fraction(self.start_mrr - self.contraction - self.churned, self.start_mrr)

    @property
    def customer_churn_rate(self) -> Fraction | None:
        if not self.start_customers:
            return None
        return Fraction(self.churned_customers, self.start_customers)

    @property
    def revenue_churn_rate(self) -> Fraction | None:
        """Gross MRR churn: churned and contracted MRR over the start MRR."""
        if not self.start_mrr:
            return None
        return Fraction(self.churned + self.contraction, self.start_mrr)

    @property
    def arpa(self) -> int:
        """Average revenue per account: end MRR per paying customer, rounded half up."""
        return _round_half_up(Fraction(self.end_mrr, self.end_customers)) if self.end_customers else 0

    @property
    def ltv(self) -> int | None:
        """Lifetime value: ARPA ÷ monthly customer churn rate (None when no one churned)."""
        return ltv_of(self.arpa, self.customer_churn_rate)


def bridge_step(start: date, before: Mapping[str, int], end: date, after: Mapping[str, int],
                first_paid: Mapping[str, date]) -> BridgeMonth:
    """Classify each customer's change between two snapshots; `first_paid` from
    `first_paying_days`. A customer at zero on `start` whose first paying day is on or before
    `start` had MRR before: reactivation, not new."""
    new = reactivation = expansion = contraction = churned = 0
    new_c = reactivated_c = churned_c = 0
    for customer in set(before) | set(after):
        a, b = before.get(customer, 0), after.get(customer, 0)
        if a == b:
            continue
        if a == 0:
            first = first_paid.get(customer)
            if first is not None and first <= start:
                reactivation += b
                reactivated_c += 1
            else:
                new += b
                new_c += 1
        elif b == 0:
            churned += a
            churned_c += 1
        elif b > a:
            expansion += b - a
        else:
            contraction += a - b
    return BridgeMonth(start, end, sum(before.values()), new, reactivation, expansion, contraction, churned,
                       sum(after.values()), sum(1 for v in before.values() if v > 0), new_c, reactivated_c,
                       churned_c, sum(1 for v in after.values() if v > 0))


def bridge(snapshots: Sequence[tuple[date, Mapping[str, int]]], first_paid: Mapping[str, date]) -> list[BridgeMonth]:
    """One bridge step between each pair of consecutive (day, customer → MRR) snapshots."""
    pairs = zip(snapshots, snapshots[1:], strict=False)
    return [bridge_step(d0, s0, d1, s1, first_paid) for (d0, s0), (d1, s1) in pairs]


@dataclass(frozen=True)
class Cohort:
    """Customers whose first paying day fell in `month`, followed month by month.

    Index k of each tuple is the end of the k-th month after `month` (0: `month` itself)."""

    month: date
    customers: int
    mrr: int  # the cohort's MRR at the end of its first month: the base of its NRR and GRR
    retained_customers: tuple[int, ...]
    retained_mrr: tuple[int, ...]
    gross_retained_mrr: tuple[int, ...]  # each customer's MRR capped at its first month's

    def nrr(self, k: int) -> Fraction | None:
        return Fraction(self.retained_mrr[k], self.mrr) if self.mrr else None

    def grr(self, k: int) -> Fraction | None:
        return Fraction(self.gross_retained_mrr[k], self.mrr) if self.mrr else None


def _month_of(day: date) -> date:
    return day.replace(day=1)


def cohorts(month_ends: Sequence[tuple[date, Mapping[str, int]]], first_paid: Mapping[str, date]) -> list[Cohort]:
    """Cohorts of the months in `month_ends` ((month, MRR by customer at its end), in order)."""
    members: dict[date, list[str]] = {}
    for customer, day in first_paid.items():
        members.setdefault(_month_of(day), []).append(customer)
    out = []
    for i, (month, snapshot) in enumerate(month_ends):
        who = sorted(members.get(_month_of(month), []))
        if not who:
            continue
        base = {c: snapshot.get(c, 0) for c in who}
        later = [s for _, s in month_ends[i:]]
        out.append(Cohort(
            _month_of(month), len(who), sum(base.values()),
            tuple(sum(1 for c in who if s.get(c, 0) > 0) for s in later),
            tuple(sum(s.get(c, 0) for c in who) for s in later),
            tuple(sum(min(s.get(c, 0), base[c]) for c in who) for s in later)))
    return out


def percent(value: Fraction | None) -> str | None:
    """A ratio as a percent string with two decimals, rounded half up ("102.50"); None stays None."""
    if value is None:
        return None
    hundredths = _round_half_up(value * 10000)
    sign = "-" if hundredths < 0 else ""
    whole, cents = divmod(abs(hundredths), 100)
    return f"{sign}{whole}.{cents:02d}"


def ltv_of(arpa: int, churn_rate: Fraction | None) -> int | None:
    """Lifetime value: ARPA ÷ monthly customer churn rate; None when no one churned (unbounded)."""
    if not churn_rate:
        return None
    return _round_half_up(Fraction(arpa) / churn_rate)


# --- pre-aggregates: MRR per customer and currency on many days ------------------------------

def change_days(sub: Subscription) -> list[date]:
    """The days on which `subscription_mrr(sub, ·)` can change, sorted.

    MRR on a day depends on the day only through comparisons with these dates (start, trial end,
    cancellation, end, phase starts, discount starts and ends): between two of them it is constant,
    so a subscription needs pricing once per change, not once per snapshot day."""
    found: set[date] = set()
    for day in (sub.start, sub.trial_end, sub.ended_at, sub.cancel_at):
        if day is not None:
            found.add(day)
    discounts = list(sub.discounts)
    for item in (*sub.items, *(i for p in sub.phases for i in p.items)):
        discounts.extend(item.discounts)
    for phase in sub.phases:
        found.add(phase.start)
    for discount in discounts:
        for day in (discount.start, discount.end):
            if day is not None:
                found.add(day)
    return sorted(found)


def mrr_by_currency_series(subs: Iterable[Subscription], days: Sequence[date]) -> list[dict[tuple[str, str], int]]:
    """(customer, currency) → MRR in that currency's minor units on each of `days` (zeros left
    out): `mrr_series` without conversion, a customer paying in two currencies keeps both.

    Each subscription is priced on the first day and again only on a day after one of its
    `change_days`: the same figures as pricing every day, many times fewer calls at 40 days."""
    from bisect import bisect_right

    order = sorted(range(len(days)), key=lambda i: days[i])
    out: list[dict[tuple[str, str], int]] = [{} for _ in days]
    for sub in subs:
        base = _gross_and_billing_months(sub)
        changes = change_days(sub)
        key = (sub.customer, sub.currency.lower())
        value, seen = 0, -1  # seen: how many change days lie on or before the last day priced
        for i in order:
            now = bisect_right(changes, days[i])
            if now != seen:
                value, seen = subscription_mrr(sub, days[i], base), now
            if value:
                out[i][key] = out[i].get(key, 0) + value
    return out


def scheduled_churn(subs: Iterable[Subscription], on: date, until: date) -> dict[str, tuple[date, int]]:
    """Customer → (the day its MRR drops to zero, its MRR on `on`) for customers paying on `on`
    whose subscriptions all end by `until` (a `cancel_at`, a cancelling schedule). MRR is summed
    in native minor units: only whether it is zero matters here."""
    by_customer: dict[str, list[Subscription]] = {}
    for sub in subs:
        by_customer.setdefault(sub.customer, []).append(sub)

    def total(own: list[Subscription], day: date) -> int:
        return sum(subscription_mrr(s, day) for s in own)

    out = {}
    for customer, own in by_customer.items():
        now = total(own, on)
        if not now or total(own, until):
            continue
        ends = sorted({d for s in own for d in (s.cancel_at, s.ended_at) if d is not None and on < d <= until})
        for day in ends:
            if total(own, day) == 0:
                out[customer] = (day, now)
                break
    return out


def mrr_runs(subs: Iterable[Subscription], days: Sequence[date]) -> Iterator[tuple[str, str, int, int, int]]:
    """(customer, currency, first, stop, MRR): each subscription's MRR on `days[first:stop]` (days
    sorted), one tuple per stretch of days between two of its `change_days`, zeros left out.

    What `mrr_by_currency_series` gives, as stretches: a subscription is priced once per change,
    and nothing is done per day (the pre-aggregates add the stretches up with numpy)."""
    from bisect import bisect_left

    for sub in subs:
        base = _gross_and_billing_months(sub)
        # A change day c moves MRR from the first day on or after c: a stretch starts there.
        cuts = sorted({0, *(bisect_left(days, c) for c in change_days(sub))} - {len(days)})
        key = (sub.customer, sub.currency.lower())
        for k, first in enumerate(cuts):
            value = subscription_mrr(sub, days[first], base) if days else 0
            if value:
                yield (*key, first, cuts[k + 1] if k + 1 < len(cuts) else len(days), value)
