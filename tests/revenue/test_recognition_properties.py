"""Issue 18, "What it must show" #2, on the recognition rules: random customers with plans (upfront
and per-installment), usage paid from the balance, invoices with tax, refunds, credit notes (to
the balance or out of band), one-off charges, in any order →

- per customer, on every day: recognised + deferred = money received net of tax, to the cent,
  under both policies;
- what is known by a day never changes a month that was over by then;
- the order the facts arrive in changes nothing.

The same invariants through the sandbox, the sync and the webhooks are in test_sync_properties.py.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.deferred import month_of
from domain.recognition import (
    Charge,
    Credit,
    CustomerBooks,
    Invoice,
    InvoiceLine,
    Plan,
    Reduction,
    by_month,
    deferred_on,
    recognise_customer,
    recognised_through,
)

ORIGIN = datetime(2026, 1, 1, tzinfo=UTC)


def _at(day: int, hour: int = 0) -> datetime:
    return ORIGIN + timedelta(days=day, hours=hour)


@dataclass(frozen=True)
class Money:
    """A fact about money the test knows independently of the rules: (when, net of tax)."""

    at: datetime
    net: int


def _net(amount: int, total: int, tax: int) -> int:
    return amount if total <= 0 or tax <= 0 else amount * (total - tax) // total


@st.composite
def customers(draw: st.DrawFn) -> tuple[CustomerBooks, list[Money]]:
    invoices: list[Invoice] = []
    charges: list[Charge] = []
    credits: list[Credit] = []
    plans: list[Plan] = []
    money: list[Money] = []
    seq = iter(range(10_000))
    for p in range(draw(st.integers(0, 2))):
        key = f"i:{p}"
        start = draw(st.integers(0, 400))
        term_days = draw(st.sampled_from([30, 90, 365]))
        price = draw(st.integers(1, 2_000_000))
        credit = draw(st.integers(1, 3_000_000))
        plans.append(Plan(key, (ORIGIN + timedelta(days=start + term_days)).date()))
        if draw(st.booleans()):  # upfront, paid before or after the start
            paid = start + draw(st.integers(-40, 60))
            tax = draw(st.sampled_from([0, 0, price // 5]))
            refunds = []
            if draw(st.booleans()):
                back = draw(st.integers(1, price + tax))
                when = _at(paid + draw(st.integers(0, 500)), 5)
                refunds.append(Reduction(when, back))
                money.append(Money(when, -_net(back, price + tax, tax)))
            line = InvoiceLine(f"il_up{p}", price, (ORIGIN + timedelta(days=start)).date(),
                               (ORIGIN + timedelta(days=start + term_days)).date())
            invoices.append(Invoice(f"in_up{p}", "usd", _at(paid, 1), price + tax, tax, price + tax, 0, (line,),
                                    plan=key, reductions=tuple(refunds)))
            money.append(Money(_at(paid, 1), _net(price + tax, price + tax, tax)))
            credits.append(Credit(f"cb_up{p}", "usd", _at(paid, 2), credit, "plan", key))
        else:  # monthly installments, a credit share released with each
            n = draw(st.integers(1, 6))
            for k in range(n):
                amount = price // n + (price % n if k == 0 else 0)
                day = start + 30 * k
                line = InvoiceLine(f"il_i{p}_{k}", amount, (ORIGIN + timedelta(days=day)).date(),
                                   (ORIGIN + timedelta(days=day + 30)).date())
                invoices.append(Invoice(f"in_i{p}_{k}", "usd", _at(day, 1), amount, 0, amount, 0, (line,),
                                        plan=key))
                money.append(Money(_at(day, 1), amount))
                share = credit // n + (credit % n if k == 0 else 0)
                credits.append(Credit(f"cb_i{p}_{k}", "usd", _at(day, 2), share, "plan", key))
    if draw(st.booleans()):
        credits.append(Credit("cb_gift", "usd", _at(draw(st.integers(0, 300)), 3), draw(st.integers(1, 50_000)),
                              "gift"))
    for u in range(draw(st.integers(0, 8))):  # usage paid from the balance, money for the rest
        day = draw(st.integers(0, 800))
        amount = draw(st.integers(1, 400_000))
        from_balance = draw(st.integers(0, amount))
        line = InvoiceLine(f"il_u{u}", amount, (ORIGIN + timedelta(days=day)).date(),
                           (ORIGIN + timedelta(days=day + draw(st.sampled_from([0, 30])))).date())
        invoices.append(Invoice(f"in_u{u}", "usd", _at(day, 4), amount, 0, amount - from_balance, from_balance,
                                (line,)))
        if amount - from_balance:
            money.append(Money(_at(day, 4), amount - from_balance))
    for o in range(draw(st.integers(0, 4))):  # ordinary invoices with tax, refunds, credit notes
        day = draw(st.integers(0, 700))
        amount = draw(st.integers(1, 1_000_000))
        tax = draw(st.sampled_from([0, amount // 10, amount // 5]))
        total = amount + tax
        lines = (InvoiceLine(f"il_o{o}", amount, (ORIGIN + timedelta(days=day - draw(st.integers(0, 90)))).date(),
                             (ORIGIN + timedelta(days=day + draw(st.integers(0, 400)))).date()),)
        reductions: list[Reduction] = []
        paid_at = _at(day, 6)
        money.append(Money(paid_at, _net(total, total, tax)))
        left = total
        for _ in range(draw(st.integers(0, 2))):
            if left <= 0:
                break
            back = draw(st.integers(1, left))
            left -= back
            when = _at(day + draw(st.integers(0, 500)), 7)
            if draw(st.booleans()) or tax:  # refunded (or an out-of-band credit note)
                reductions.append(Reduction(when, back))
                money.append(Money(when, -_net(back, total, tax)))
            else:  # a credit note onto the balance: money the customer keeps as credit
                reductions.append(Reduction(when, back, back))
                credits.append(Credit(f"cb_cn{o}_{next(seq)}", "usd", when, back, "money"))
        invoices.append(Invoice(f"in_o{o}", "usd", paid_at, total, tax, total, 0, lines,
                                reductions=tuple(reductions)))
    for c in range(draw(st.integers(0, 2))):
        day = draw(st.integers(0, 700))
        amount = draw(st.integers(1, 300_000))
        back = draw(st.integers(0, amount))
        refunds = (Reduction(_at(day + 3, 8), back),) if back else ()
        charges.append(Charge(f"ch_{c}", "usd", _at(day, 8), amount, refunds))
        money.append(Money(_at(day, 8), amount))
        if back:
            money.append(Money(_at(day + 3, 8), -back))
    return CustomerBooks("cus_p", tuple(invoices), tuple(charges), tuple(credits), tuple(plans)), money


def _days(books: CustomerBooks) -> list[date]:
    """Days worth checking: every day something happened, the day before, and month ends."""
    days: set[date] = set()
    times = [i.paid_at for i in books.invoices] + [c.at for c in books.credits] + [c.at for c in books.charges] + [
        r.at for i in books.invoices for r in i.reductions]
    for t in times:
        days |= {t.date(), t.date() - timedelta(days=1)}
    for p in books.plans:
        if p.term_end:
            days |= {p.term_end, p.term_end - timedelta(days=1)}
    cursor = date(2025, 12, 1)
    while cursor < date(2029, 1, 1):
        days.add(cursor - timedelta(days=1))
        cursor = date(cursor.year + (cursor.month == 12), cursor.month % 12 + 1, 1)
    return sorted(days)


@settings(max_examples=150, deadline=None)
@given(customer=customers(), policy=st.sampled_from(["consumption", "ratable"]))
def test_recognised_plus_deferred_is_money_received_on_every_day(customer: tuple[CustomerBooks, list[Money]],
                                                                 policy: str) -> None:
    books, money = customer
    bookings = recognise_customer(books, policy)  # type: ignore[arg-type]
    for day in _days(books):
        end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        received = sum(m.net for m in money if m.at < end)
        assert recognised_through(bookings, day) + deferred_on(bookings, day) == received, (day, policy)
        # Deferred revenue is money held for later: never negative, for no obligation.
        for key in {b.key for b in bookings}:
            assert deferred_on([b for b in bookings if b.key == key], day) >= 0, (key, day, policy)
    # Usage never makes revenue run ahead of the money: nothing is recognised before it came.
    assert recognised_through(bookings, date(2025, 12, 31)) == 0


def _known_by(books: CustomerBooks, cutoff: datetime) -> CustomerBooks:
    """The customer's books as a sync at `cutoff` would have seen them."""
    invoices = tuple(replace(i, reductions=tuple(r for r in i.reductions if r.at < cutoff))
                     for i in books.invoices if i.paid_at < cutoff)
    charges = tuple(replace(c, reductions=tuple(r for r in c.reductions if r.at < cutoff))
                    for c in books.charges if c.at < cutoff)
    credits = tuple(c for c in books.credits if c.at < cutoff)
    return CustomerBooks(books.customer_id, invoices, charges, credits, books.plans)


@settings(max_examples=150, deadline=None)
@given(customer=customers(), policy=st.sampled_from(["consumption", "ratable"]), cut=st.integers(0, 900))
def test_months_that_were_over_never_change(customer: tuple[CustomerBooks, list[Money]], policy: str,
                                            cut: int) -> None:
    books, _money = customer
    cutoff = _at(cut)
    then = by_month(recognise_customer(_known_by(books, cutoff), policy))  # type: ignore[arg-type]
    now = by_month(recognise_customer(books, policy))  # type: ignore[arg-type]
    over = month_of(cutoff.date())
    assert {m: v for m, v in now.items() if m < over} == {m: v for m, v in then.items() if m < over}


@settings(max_examples=60, deadline=None)
@given(customer=customers(), policy=st.sampled_from(["consumption", "ratable"]), seed=st.integers(0, 2**32))
def test_the_order_facts_arrive_in_changes_nothing(customer: tuple[CustomerBooks, list[Money]], policy: str,
                                                   seed: int) -> None:
    books, _money = customer
    rng = random.Random(seed)
    shuffled = CustomerBooks(books.customer_id, tuple(rng.sample(books.invoices, len(books.invoices))),
                             tuple(rng.sample(books.charges, len(books.charges))),
                             tuple(rng.sample(books.credits, len(books.credits))),
                             tuple(rng.sample(books.plans, len(books.plans))))
    assert sorted(recognise_customer(shuffled, policy), key=repr) == sorted(  # type: ignore[arg-type]
        recognise_customer(books, policy), key=repr)  # type: ignore[arg-type]
