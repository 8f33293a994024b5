"""Revenue recognition per customer: money received once, closed months that stay closed, prepaid
credit recognised as it is used (or over the term).

Everything here is pure: the warehouse hands over one customer's paid invoices, one-off charges,
reductions (refunds, credit notes, lost disputes) and customer-balance credits, and gets back an
append-only list of bookings. A booking is (month, booked at, amount): the amount is revenue of
`month`, and it became known at `booked at`. Two rules make past months final:

- **Nothing is booked into a month that is already over.** A payment that arrives after some of
  its service period has passed books those days' share in the month it arrived (a catch-up).
- **Reductions come out of what is still deferred first.** A refund, credit note or lost dispute
  in month M takes its amount from what the obligation still has scheduled for months M and later
  (in proportion), and only the rest is a negative adjustment in month M.

So revenue of a month only ever changes while that month is running, and the deferred balance on
any day is the sum of bookings made by that day for later months.

Prepaid credit (SPEC §10, issue 18). A plan's upfront payment (or its installments) buys credit
that lands on the Stripe customer balance; usage invoices are then paid out of that balance. The
balance is not money: it is the plan's money, deferred. Two policies:

- `consumption` (default): the plan's money is a pool; each credit draw recognises
  pool × credit used ÷ credit left (so 12,000.00 paid for 15,000.00 of credit recognises 0.80 per
  credit unit), booked over the usage invoice's service period; at the end of the term whatever
  is left in the pool is breakage, booked in the term's last month. Revenue never runs ahead of
  the money received: an installment plan whose credit came all at once recognises its usage at
  the share of the price paid so far, and the rest as the installments arrive or at breakage.
- `ratable`: the plan's invoices are spread over their service periods (the term) like any other
  invoice; credit draws add nothing.

Either way, per customer: recognised + deferred = money received net of tax, to the cent.
Credit that came from elsewhere: a credit note or an overpayment put money the customer already
paid on the balance, so it is recognised one for one when used; a manual credit with no plan
behind it is a gift and recognises nothing when used.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

from domain.deferred import allocate, days_by_month, month_of

Policy = Literal["consumption", "ratable"]
POLICIES: tuple[Policy, ...] = ("consumption", "ratable")


def check_policy(value: str) -> Policy:
    if value == "consumption":
        return "consumption"
    if value == "ratable":
        return "ratable"
    raise ValueError(f"Revenue recognition policy {value!r} is unknown; use consumption or ratable.")


# --- inputs -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reduction:
    """Money given back on an invoice or charge: a refund, a credit note, a lost dispute."""

    at: datetime
    amount: int  # minor units, positive, as given back (tax included when the invoice had tax)
    excluding_tax: int | None = None  # when Stripe says how much of it was tax-free (credit notes)


@dataclass(frozen=True)
class InvoiceLine:
    line_id: str
    amount: int  # after the line's discounts, tax excluded (inclusive tax taken out)
    start: date | None = None
    end: date | None = None  # exclusive


@dataclass(frozen=True)
class Invoice:
    """A paid invoice: `money` came in cash (amount_paid), `credit_used` from the customer balance."""

    invoice_id: str
    currency: str
    paid_at: datetime
    total: int  # tax included
    tax: int
    money: int
    credit_used: int
    lines: tuple[InvoiceLine, ...]
    plan: str | None = None  # the plan whose prepaid money this invoice brought in
    reductions: tuple[Reduction, ...] = ()
    finalized_at: datetime | None = None  # when the balance was applied (default: paid_at)
    # When the money came, in parts for partial payments; empty: all of `money` at `paid_at`.
    payments: tuple[tuple[datetime, int], ...] = ()

    def arrivals(self) -> tuple[tuple[datetime, int], ...]:
        return self.payments or ((self.paid_at, self.money),)


@dataclass(frozen=True)
class Charge:
    """A one-off charge: no invoice, revenue when paid."""

    charge_id: str
    currency: str
    at: datetime
    amount: int
    reductions: tuple[Reduction, ...] = ()


CreditSource = Literal["plan", "money", "gift"]


@dataclass(frozen=True)
class Credit:
    """A customer balance change that is not an invoice drawing on it.

    `amount` > 0 puts credit on the balance, < 0 takes credit away (a manual removal).
    `source`: `plan` (a plan's prepaid credit, `plan` names it), `money` (a credit note or an
    overpayment: money the customer already paid), `gift` (a manual credit with nothing behind it).
    """

    txn_id: str
    currency: str
    at: datetime
    amount: int
    source: CreditSource
    plan: str | None = None


@dataclass(frozen=True)
class Plan:
    key: str
    term_end: date | None  # exclusive; unused credit is breakage on the day before


@dataclass(frozen=True)
class CustomerBooks:
    customer_id: str
    invoices: tuple[Invoice, ...] = ()
    charges: tuple[Charge, ...] = ()
    credits: tuple[Credit, ...] = ()
    plans: tuple[Plan, ...] = ()


# --- output -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Booking:
    """Revenue of `month`, known from `at` on. `gross` counts money in only; `net` also what went back."""

    key: str  # the obligation: an invoice line, a charge, a plan, a credit
    source_type: str  # invoice | charge | plan | credit
    source_id: str
    currency: str
    month: date
    at: datetime
    gross: int
    net: int


def _day(at: datetime) -> date:
    return at.astimezone(UTC).date() if at.tzinfo else at.date()


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time(0, 0), tzinfo=UTC)


class _Obligation:
    """The append-only bookings of one thing the customer paid for."""

    def __init__(self, key: str, source_type: str, source_id: str, currency: str) -> None:
        self.key, self.source_type, self.source_id, self.currency = key, source_type, source_id, currency
        self.bookings: list[Booking] = []
        self.received = 0  # money in, less money back: what may still be given back

    def book(self, month: date, at: datetime, amount: int, *, gross: bool) -> None:
        if amount:
            self.bookings.append(Booking(self.key, self.source_type, self.source_id, self.currency, month, at,
                                         amount if gross else 0, amount))

    def book_spread(self, amount: int, start: date | None, end: date | None, at: datetime) -> None:
        """`amount` over the days of [start, end); days in months already over catch up into `at`'s month."""
        now = month_of(_day(at))
        months = days_by_month(start, end) if start is not None and end is not None else []
        if not months or amount == 0:
            self.book(now, at, amount, gross=True)
            return
        parts = allocate(amount, [days for _, days in months])
        caught_up = sum(part for (month, _), part in zip(months, parts, strict=True) if month < now)
        self.book(now, at, caught_up, gross=True)
        for (month, _), part in zip(months, parts, strict=True):
            if month >= now:
                self.book(month, at, part, gross=True)

    def scheduled_from(self, month: date) -> dict[date, int]:
        out: dict[date, int] = defaultdict(int)
        for b in self.bookings:
            if b.month >= month:
                out[b.month] += b.net
        return {m: v for m, v in sorted(out.items()) if v > 0}

    def reduce(self, amount: int, at: datetime) -> None:
        """Take `amount` from what is still scheduled for this month and later, the rest now."""
        if amount <= 0:
            return
        now = month_of(_day(at))
        still = self.scheduled_from(now)
        taken = min(amount, sum(still.values()))
        if taken:
            for month, part in zip(still, allocate(taken, list(still.values())), strict=True):
                self.book(month, at, -part, gross=False)
        self.book(now, at, -(amount - taken), gross=False)


def _net_share(amount: int, invoice: Invoice) -> int:
    """The tax-free part of `amount` of this invoice (tax is never revenue)."""
    if invoice.total <= 0 or invoice.tax <= 0:
        return amount
    return amount * (invoice.total - invoice.tax) // invoice.total


def _reduction_net(r: Reduction, invoice: Invoice | None) -> int:
    if r.excluding_tax is not None:
        return r.excluding_tax
    return r.amount if invoice is None else _net_share(r.amount, invoice)


def _line_weights(lines: Sequence[InvoiceLine]) -> list[int]:
    weights = [max(line.amount, 0) for line in lines]
    return weights if any(weights) else [1] * len(lines)


# Where credit with no end date waits: a month no report range reaches, but every deferred
# balance counts (money a customer holds as credit is deferred until it is used).
OPEN_ENDED = date(9999, 12, 1)


@dataclass
class _Pool:
    """A plan's money not yet recognised and the credit it still stands behind (consumption).

    The pool is booked, while it waits, in the term's last month (`hold`): so the schedule's
    deferred balance includes it, and what is unused at the end is already breakage there. A
    draw moves its value from `hold` to the usage invoice's service period; both months are
    still open when it happens (`hold` is the term's end)."""

    obligation: _Obligation
    hold: date
    pool: int = 0
    credit: int = 0
    over: bool = False  # the term ended: the pool was recognised as breakage


@dataclass
class _Lot:
    txn_id: str
    at: datetime
    left: int
    source: CreditSource
    plan: str | None
    expires: date | None = None  # a plan's term end: its credit was recognised as breakage then


@dataclass(order=True)
class _Event:
    at: datetime
    order: int  # at the same instant: money in, credit granted, credit used, money back, term end
    seq: int
    kind: str = field(compare=False)
    target: str = field(compare=False)
    amount: int = field(compare=False, default=0)
    fraction: tuple[int, int] = field(compare=False, default=(1, 1))
    start: date | None = field(compare=False, default=None)
    end: date | None = field(compare=False, default=None)


def recognise_customer(books: CustomerBooks, policy: Policy) -> list[Booking]:
    """Every booking of one customer's revenue, in order. Per currency:
    Σ net = money received − money given back − tax, less what is still in a plan's pool."""
    out: list[Booking] = []
    currencies = sorted({i.currency for i in books.invoices} | {c.currency for c in books.charges}
                        | {c.currency for c in books.credits})
    for currency in currencies:
        out.extend(_recognise_currency(books, currency, policy))
    return out


def _recognise_currency(books: CustomerBooks, currency: str, policy: Policy) -> list[Booking]:
    obligations: dict[str, _Obligation] = {}
    pools: dict[str, _Pool] = {}
    events: list[_Event] = []
    seq = 0

    def add(at: datetime, order: int, kind: str, target: str, amount: int = 0, **kw: object) -> None:
        nonlocal seq
        seq += 1
        events.append(_Event(at, order, seq, kind, target, amount, **kw))  # type: ignore[arg-type]

    def obligation(key: str, source_type: str, source_id: str) -> _Obligation:
        if key not in obligations:
            obligations[key] = _Obligation(key, source_type, source_id, currency)
        return obligations[key]

    plans = {p.key: p for p in books.plans}

    def pool_for(plan: str, source_id: str) -> _Pool:
        if plan not in pools:
            term_end = plans[plan].term_end if plan in plans else None
            hold = month_of(term_end - timedelta(days=1)) if term_end is not None else OPEN_ENDED
            pools[plan] = _Pool(obligation(f"plan:{plan}", "plan", source_id), hold)
            if term_end is not None:
                add(_start_of(term_end) - timedelta(seconds=1), 9, "breakage", plan)
        return pools[plan]

    consumption = policy == "consumption"
    draws: list[tuple[datetime, int, Invoice, InvoiceLine]] = []
    for inv in sorted((i for i in books.invoices if i.currency == currency), key=lambda i: (i.paid_at, i.invoice_id)):
        plan_money = consumption and inv.plan is not None
        # What comes back is capped by what the invoice was worth (money and credit together,
        # tax excluded); beyond the money it paid, it takes back revenue the credit brought.
        room = max(inv.total - inv.tax, 0)
        backs: list[tuple[datetime, int]] = []
        for r in sorted(inv.reductions, key=lambda r: r.at):
            back = min(_reduction_net(r, inv), room)
            room -= back
            backs.append((r.at, back))
        if plan_money and inv.plan is not None:
            pool_for(inv.plan, inv.invoice_id)
            for paid_at, amount in inv.arrivals():
                add(paid_at, 0, "pool_in", inv.plan, _net_share(amount, inv))
            for at, back in backs:
                add(at, 3, "pool_out", inv.plan, back)
        elif inv.lines:
            weights = _line_weights(inv.lines)
            for line in inv.lines:
                obligation(line.line_id, "invoice", inv.invoice_id)
            for paid_at, amount in inv.arrivals():
                for line, share in zip(inv.lines, allocate(_net_share(amount, inv), weights), strict=True):
                    add(paid_at, 0, "line_in", line.line_id, share, start=line.start, end=line.end)
            for at, back in backs:
                for line, share in zip(inv.lines, allocate(back, weights), strict=True):
                    add(at, 3, "line_out", line.line_id, share)
        if inv.credit_used > 0 and inv.lines:
            # The balance paid part of this invoice: split by line so each draw keeps its period.
            for line, part in zip(inv.lines, allocate(inv.credit_used, _line_weights(inv.lines)), strict=True):
                if part:
                    draws.append((inv.finalized_at or inv.paid_at, part, inv, line))
    for c in sorted((c for c in books.charges if c.currency == currency), key=lambda c: (c.at, c.charge_id)):
        obligation(c.charge_id, "charge", c.charge_id)
        add(c.at, 0, "line_in", c.charge_id, c.amount)
        for r in c.reductions:
            add(r.at, 3, "line_out", c.charge_id, _reduction_net(r, None))

    # Which credit each draw used: the oldest credit on the balance first (Stripe keeps one
    # balance; first in, first out is the order a customer would expect and auditors accept).
    lots: list[_Lot] = []
    credits = sorted((c for c in books.credits if c.currency == currency), key=lambda c: (c.at, c.txn_id))
    changes: list[tuple[datetime, int, object]] = [(c.at, 0, c) for c in credits] + [
        (d[0], 1, d) for d in draws]
    changes.sort(key=lambda x: (x[0], x[1]))
    for at, _kind, item in changes:
        if isinstance(item, Credit):
            if item.amount > 0:
                expires = plans[item.plan].term_end if item.plan in plans else None
                lot = _Lot(item.txn_id, at, item.amount, item.source, item.plan, expires)
                lots.append(lot)
                if item.source == "plan" and item.plan is not None and consumption:
                    pool_for(item.plan, item.txn_id)
                    add(at, 1, "grant", item.plan, item.amount)
                elif item.source == "money":
                    add(at, 1, "credit_in", f"credit:{item.txn_id}", item.amount)
                    obligation(f"credit:{item.txn_id}", "credit", item.txn_id)
            else:
                _take(lots, -item.amount, _day(at), lambda lot, n, at=at: _removed(lot, n, at, add, consumption))
            continue
        _at, part, inv, line = item  # type: ignore[misc]
        used = _net_share(part, inv)
        fraction = (used, part)

        def draw(lot: _Lot, n: int, at: datetime = at, line: InvoiceLine = line,
                 fraction: tuple[int, int] = fraction) -> None:
            if lot.source == "plan" and lot.plan is not None and consumption:
                add(at, 2, "draw", lot.plan, n, fraction=fraction, start=line.start, end=line.end)
            elif lot.source == "money":
                add(at, 2, "credit_used", f"credit:{lot.txn_id}", n, fraction=fraction,
                    start=line.start, end=line.end)

        _take(lots, part, _day(at), draw)

    for e in sorted(events):
        if e.kind == "line_in":
            ob = obligations[e.target]
            ob.received += e.amount
            ob.book_spread(e.amount, e.start, e.end, e.at)
        elif e.kind == "line_out":
            ob = obligations[e.target]
            if ob.source_type == "charge":
                back = min(e.amount, max(ob.received, 0))  # a charge cannot give back more than it took
            else:
                back = e.amount  # capped by the invoice's worth above
            ob.received -= back
            ob.reduce(back, e.at)
        elif e.kind == "credit_in":
            # Money the customer already paid, back on the balance: deferred until it is used.
            obligations[e.target].book(OPEN_ENDED, e.at, e.amount, gross=False)
        elif e.kind == "credit_used":
            ob = obligations[e.target]
            ob.book(OPEN_ENDED, e.at, -e.amount, gross=False)
            ob.book_spread(e.amount * e.fraction[0] // max(e.fraction[1], 1), e.start, e.end, e.at)
        elif e.kind in ("pool_in", "pool_out", "grant", "remove", "draw", "breakage"):
            _pool_event(pools[e.target], e)
    bookings = [b for ob in obligations.values() for b in ob.bookings]
    bookings.sort(key=lambda b: (b.at, b.key, b.month))
    return bookings


def _removed(lot: _Lot, n: int, at: datetime, add: object, consumption: bool) -> None:
    if lot.source == "plan" and lot.plan is not None and consumption:
        add(at, 2, "remove", lot.plan, n)  # type: ignore[operator]


def _take(lots: list[_Lot], amount: int, day: date, use: object) -> int:
    """Take `amount` of credit from the oldest lots still in their term, then from expired ones;
    what no lot covers is left untaken (credit Stripe had from before the warehouse knew)."""
    left = amount
    live = [lot for lot in lots if lot.expires is None or lot.expires > day]
    expired = [lot for lot in lots if not (lot.expires is None or lot.expires > day)]
    for lot in live + expired:
        if left <= 0:
            break
        if lot.left <= 0:
            continue
        n = min(lot.left, left)
        lot.left -= n
        left -= n
        use(lot, n)  # type: ignore[operator]
    return amount - left


def _pool_event(p: _Pool, e: _Event) -> None:
    ob = p.obligation
    if e.kind == "pool_in":
        ob.received += e.amount
        if p.over:
            ob.book_spread(e.amount, None, None, e.at)  # after the term: revenue when it arrives
        else:
            p.pool += e.amount
            ob.book(p.hold, e.at, e.amount, gross=True)
    elif e.kind == "pool_out":
        # Taken from what is still deferred first: the pool, then what is scheduled for this
        # month and later, and only the rest as a negative adjustment now.
        back = e.amount  # capped by the invoice's worth
        ob.received -= back
        from_pool = min(back, p.pool)
        p.pool -= from_pool
        ob.book(p.hold, e.at, -from_pool, gross=False)
        ob.reduce(back - from_pool, e.at)
    elif e.kind == "grant":
        p.credit += e.amount
    elif e.kind == "remove":
        p.credit = max(p.credit - e.amount, 0)
    elif e.kind == "draw":
        if p.over or p.credit <= 0 or p.pool <= 0:
            p.credit = max(p.credit - e.amount, 0)
            return
        used = min(e.amount, p.credit)
        value = p.pool * used // p.credit
        p.pool -= value
        p.credit -= used
        revenue = value * e.fraction[0] // max(e.fraction[1], 1)
        # The tax share of a credit-paid invoice is paid out of the pool: not revenue, and no
        # longer deferred either (it is owed to the tax authority).
        ob.received -= value - revenue
        ob.book(p.hold, e.at, -value, gross=True)  # moved, not given back
        ob.book_spread(revenue, e.start, e.end, e.at)
    elif e.kind == "breakage":
        p.pool = 0  # already booked in `hold`, the term's last month
        p.credit = 0
        p.over = True


# --- reading the bookings -----------------------------------------------------------------------

def by_month(bookings: Iterable[Booking]) -> dict[date, int]:
    """Net revenue per month (months that net to zero left out)."""
    out: dict[date, int] = defaultdict(int)
    for b in bookings:
        out[b.month] += b.net
    return {m: v for m, v in sorted(out.items()) if v}


def recognised_through(bookings: Iterable[Booking], day: date) -> int:
    """Net revenue of the months up to and including `day`'s month, as known at the end of `day`."""
    cutoff = _start_of(day + timedelta(days=1))
    last = month_of(day)
    return sum(b.net for b in bookings if b.at < cutoff and b.month <= last)


def deferred_on(bookings: Iterable[Booking], day: date) -> int:
    """What was booked by the end of `day` for months after `day`'s month: the deferred balance
    (a plan's unused pool waits in its term's last month, so it is included)."""
    cutoff = _start_of(day + timedelta(days=1))
    last = month_of(day)
    return sum(b.net for b in bookings if b.at < cutoff and b.month > last)


def schedules(books: Sequence[CustomerBooks], policy: Policy) -> list[list[Booking]]:
    """`month_rows(recognise_customer(…))` of each customer's books: the ledger's whole work for
    many customers in one call (a full rebuild runs it in a process of its own)."""
    return [month_rows(recognise_customer(b, policy)) for b in books]


def row_key(b: Booking) -> str:
    """What a schedule row is kept per: an invoice's lines together (its id), any other obligation
    (a plan, a charge, a credit) by its own key. Per line would be five rows per line at a million
    lines; what the line was is in the warehouse's invoice lines."""
    return b.source_id if b.source_type == "invoice" else b.key


def month_rows(bookings: Iterable[Booking]) -> list[Booking]:
    """Bookings merged per `row_key`, month and day booked: the rows of `revenue_schedule`
    (`key` is the row key)."""
    merged: dict[tuple[str, date, date], Booking] = {}
    for b in bookings:
        key = row_key(b)
        k = (key, b.month, _day(b.at))
        old = merged.get(k)
        if old is None:
            merged[k] = Booking(key, b.source_type, b.source_id, b.currency, b.month, b.at, b.gross, b.net)
        else:
            merged[k] = Booking(key, b.source_type, b.source_id, b.currency, b.month, max(old.at, b.at),
                                old.gross + b.gross, old.net + b.net)
    return [b for b in merged.values() if b.gross or b.net]


def main() -> None:
    """`python -m domain.recognition POLICY`: pickled books on stdin, their schedules on stdout.
    A full rebuild runs the ledger here, in a process of its own (store.revenue), while it writes
    the plain invoices; only the project's own process writes the input."""
    import pickle
    import sys

    # Run as a script this file is `__main__`; the books unpickle as `domain.recognition` classes,
    # so that module's own functions (and isinstance checks) must do the work.
    from domain import recognition

    books = pickle.load(sys.stdin.buffer)  # noqa: S301 - written by store.revenue in the parent
    pickle.dump(recognition.schedules(books, recognition.check_policy(sys.argv[1])), sys.stdout.buffer,
                protocol=pickle.HIGHEST_PROTOCOL)


if __name__ == "__main__":
    main()
