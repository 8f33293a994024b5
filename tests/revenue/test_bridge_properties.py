"""Properties of the MRR bridge and cohorts over random subscription histories (issue 16)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.mrr import (
    Discount,
    Item,
    Phase,
    Subscription,
    bridge,
    cohorts,
    first_paying_days,
    mrr_series,
    subscription_mrr,
)

ORIGIN = date(2025, 1, 1)
CUSTOMERS = ["cus_a", "cus_b", "cus_c", "cus_d"]
MONTH_ENDS = [date(2024, 12, 31)] + [date(2025 + (m // 12), m % 12 + 1, 1) - timedelta(days=1)
                                     for m in range(1, 25)]


def day(offset: int) -> date:
    return ORIGIN + timedelta(days=offset)


items = st.builds(Item, st.integers(1, 50_000), st.integers(1, 5), st.sampled_from(["month", "year", "week"]))


@st.composite
def subscriptions(draw: st.DrawFn, index: int) -> Subscription:
    start = draw(st.integers(0, 700))
    trial = draw(st.one_of(st.none(), st.integers(start, start + 60)))
    ended = draw(st.one_of(st.none(), st.integers(start, 760)))
    cancel_at = draw(st.one_of(st.none(), st.integers(start, 760)))
    phases = tuple(Phase(day(p), tuple(draw(st.lists(items, min_size=1, max_size=2))))
                   for p in sorted(draw(st.lists(st.integers(start, 760), max_size=2))))
    discount = draw(st.one_of(st.none(), st.builds(
        lambda pct, s: Discount(Decimal(pct), start=day(s)), st.integers(1, 100), st.integers(0, 760))))
    return Subscription(
        f"sub_{index}", draw(st.sampled_from(CUSTOMERS)), "usd",
        draw(st.sampled_from(["active", "active", "canceled", "trialing", "past_due", "unpaid"])), day(start),
        tuple(draw(st.lists(items, min_size=1, max_size=3))), (discount,) if discount else (),
        day(trial) if trial is not None else None, day(ended) if ended is not None else None,
        day(cancel_at) if cancel_at is not None else None, phases)


@st.composite
def histories(draw: st.DrawFn) -> list[Subscription]:
    return [draw(subscriptions(i)) for i in range(draw(st.integers(0, 8)))]


@settings(max_examples=150, deadline=None)
@given(histories())
def test_the_bridge_adds_up_every_month(subs: list[Subscription]) -> None:
    snapshots = list(zip(MONTH_ENDS, mrr_series(subs, MONTH_ENDS), strict=True))
    first_paid = first_paying_days(subs)
    steps = bridge(snapshots, first_paid)
    assert len(steps) == len(MONTH_ENDS) - 1
    ever_paid: set[str] = set()
    for step, (_, before), (_, after) in zip(steps, snapshots[:-1], snapshots[1:], strict=True):
        assert step.start_mrr + step.new + step.reactivation + step.expansion - step.contraction - step.churned \
            == step.end_mrr == sum(after.values())
        assert min(step.new, step.reactivation, step.expansion, step.contraction, step.churned) >= 0
        assert step.start_customers + step.new_customers + step.reactivated_customers - step.churned_customers \
            == step.end_customers
        # Whoever starts paying this month is new or reactivated; one seen paying at an earlier
        # month's end is never new again.
        starting = {c for c in after if after[c] and not before.get(c)}
        assert step.new + step.reactivation == sum(after[c] for c in starting)
        assert step.reactivation >= sum(after[c] for c in starting & ever_paid)
        if step.grr is not None:
            assert 0 <= step.grr <= 1 and step.nrr is not None and step.nrr >= step.grr
        ever_paid |= {c for c, v in before.items() if v}
    # Nobody paid before the first snapshot, so each customer is new at most once.
    assert sum(s.new_customers for s in steps) <= len({s.customer for s in subs})


@settings(max_examples=100, deadline=None)
@given(histories())
def test_every_paying_customer_is_in_exactly_one_cohort_and_retention_is_bounded(subs: list[Subscription]) -> None:
    month_ends = list(zip(MONTH_ENDS[1:], mrr_series(subs, MONTH_ENDS[1:]), strict=True))
    first_paid = first_paying_days(subs)
    found = cohorts([(d.replace(day=1), s) for d, s in month_ends], first_paid)
    within = [d for d in first_paid.values() if d <= MONTH_ENDS[-1]]
    assert sum(c.customers for c in found) == len(within)
    for c in found:
        assert len(c.retained_mrr) == 24 - ((c.month.year - 2025) * 12 + c.month.month - 1)
        for k in range(len(c.retained_mrr)):
            assert 0 <= c.retained_customers[k] <= c.customers
            assert 0 <= c.gross_retained_mrr[k] <= min(c.retained_mrr[k], c.mrr)


@settings(max_examples=100, deadline=None)
@given(histories())
def test_no_subscription_counts_after_its_scheduled_cancellation_or_before_its_first_paying_day(
        subs: list[Subscription]) -> None:
    for sub in subs:
        first = sub.first_paying_day()
        for d in MONTH_ENDS:
            value = subscription_mrr(sub, d)
            if sub.cancel_at is not None and d >= sub.cancel_at:
                assert value == 0
            if first is None or d < first:
                assert value == 0
