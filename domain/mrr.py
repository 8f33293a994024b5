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
for upgrades only as far as the warehouse has seen them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
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

    def counts_on(self, on: date) -> bool:
        if self.status in NEVER_COUNTED:
            return False
        if on < self.start:
            return False
        if self.trial_end is not None and on < self.trial_end:
            return False
        return self.ended_at is None or on < self.ended_at


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
