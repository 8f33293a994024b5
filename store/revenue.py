"""Warehouse reads and derived tables: the revenue schedule, persons/groups, MRR inputs, rates.

The rules live in `domain` (deferred, mrr, persons, fx); this module only loads warehouse rows
into their dataclasses and writes the results back.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.orm import Session

from domain import deferred, mrr, persons
from domain.money import exponent
from store.warehouse import (
    ExchangeRate,
    RevenueScheduleEntry,
    StripeCharge,
    StripeCreditNote,
    StripeCustomer,
    StripeDispute,
    StripeInvoice,
    StripeInvoiceLine,
    StripePrice,
    StripeRefund,
    StripeSubscription,
    StripeSubscriptionItem,
    touch,
    warehouse_version,
)

CHUNK = 500
# Core, not ORM, inserts: the schedule is written in bulk and needs no identity map.
SCHEDULE = cast(Table, RevenueScheduleEntry.__table__)


def _unit(currency: str) -> int:
    try:
        return int(10 ** exponent(currency))
    except ValueError:
        return 100


def _day(value: datetime | None) -> date | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite hands datetimes back naive; they were stored as UTC
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).date()


def _chunks(ids: Sequence[str]) -> Iterable[Sequence[str]]:
    for i in range(0, len(ids), CHUNK):
        yield ids[i:i + CHUNK]


def link_invoice_payments(session: Session, invoice: dict[str, Any]) -> None:
    """Since 2025 charges no longer name their invoice; the invoice's `payments` name the charge
    or payment intent. Record the link on the charge so refunds and disputes find the invoice."""
    payments = ((invoice.get("payments") or {}).get("data")) or []
    for p in payments:
        payment = p.get("payment") or {}
        charge = payment.get("charge")
        intent = payment.get("payment_intent")
        charge_id = charge.get("id") if isinstance(charge, dict) else charge
        intent_id = intent.get("id") if isinstance(intent, dict) else intent
        if charge_id:
            session.execute(update(StripeCharge).where(StripeCharge.id == charge_id).values(invoice_id=invoice["id"]))
        if intent_id:
            session.execute(update(StripeCharge).where(StripeCharge.payment_intent_id == intent_id)
                            .values(invoice_id=invoice["id"]))


def _reductions_by_invoice(session: Session, invoice_ids: Sequence[str]) -> dict[str, int]:
    """What credit notes, refunds not already behind a credit note, and lost disputes took back."""
    out: dict[str, int] = defaultdict(int)
    refunds_in_notes: set[str] = set()
    for note in session.scalars(select(StripeCreditNote).where(StripeCreditNote.invoice_id.in_(invoice_ids),
                                                               StripeCreditNote.status != "void")):
        out[note.invoice_id or ""] += note.total
        raw = note.raw or {}
        for r in raw.get("refunds") or []:
            ref = r.get("refund") if isinstance(r, dict) else r
            ref_id = ref.get("id") if isinstance(ref, dict) else ref
            if isinstance(ref_id, str):
                refunds_in_notes.add(ref_id)
        if isinstance(raw.get("refund"), str):
            refunds_in_notes.add(raw["refund"])
    charges = {c.id: c for c in session.scalars(select(StripeCharge).where(StripeCharge.invoice_id.in_(invoice_ids)))}
    if charges:
        charge_ids = list(charges)
        for refund in session.scalars(select(StripeRefund).where(StripeRefund.charge_id.in_(charge_ids))):
            if refund.status in ("succeeded", "pending") and refund.id not in refunds_in_notes:
                out[charges[refund.charge_id or ""].invoice_id or ""] += refund.amount
        for dispute in session.scalars(select(StripeDispute).where(StripeDispute.charge_id.in_(charge_ids),
                                                                   StripeDispute.status == "lost")):
            out[charges[dispute.charge_id or ""].invoice_id or ""] += dispute.amount
    return out


def recompute_invoices(session: Session, invoice_ids: Iterable[str]) -> int:
    """Rebuild the revenue schedule rows of these invoices from their lines and reductions.

    Reads columns rather than ORM objects (the raw JSON is not needed here) and writes rows with
    the driver's executemany: at a million lines both matter more than the arithmetic."""
    ids = sorted(set(invoice_ids))
    written = 0
    for chunk in _chunks(ids):
        session.execute(delete(RevenueScheduleEntry).where(RevenueScheduleEntry.source_type == "invoice",
                                                           RevenueScheduleEntry.source_id.in_(chunk)))
        invoices = {i: (customer, paid_at or created) for i, customer, paid_at, created in session.execute(
            select(StripeInvoice.id, StripeInvoice.customer_id, StripeInvoice.paid_at, StripeInvoice.created)
            .where(StripeInvoice.id.in_(chunk), StripeInvoice.status == "paid", StripeInvoice.deleted_at.is_(None)))}
        if not invoices:
            continue
        lines_by_invoice: dict[str, list[deferred.Line]] = defaultdict(list)
        periods: dict[str, tuple[date | None, date | None]] = {}
        L = StripeInvoiceLine  # noqa: N806
        for line_id, invoice_id, amount, currency, start, end, discount in session.execute(
                select(L.id, L.invoice_id, L.amount, L.currency, L.period_start, L.period_end, L.discount_amount)
                .where(L.invoice_id.in_(list(invoices)), L.deleted_at.is_(None))):
            periods[line_id] = (_day(start), _day(end))
            lines_by_invoice[invoice_id].append(deferred.Line(line_id, amount, currency, date.min, date.min, discount))
        reductions = _reductions_by_invoice(session, list(invoices))
        rows: list[tuple[Any, ...]] = []
        for invoice_id, (customer_id, paid_at) in invoices.items():
            lines = sorted(lines_by_invoice.get(invoice_id, []), key=lambda x: x.line_id)
            if not lines:
                continue
            paid_on = _day(paid_at) or date.today()
            dated = []
            for line in lines:
                period_start, period_end = periods[line.line_id]
                first = period_start or paid_on
                dated.append(deferred.Line(line.line_id, line.amount, line.currency, first, period_end or first,
                                           line.discount))
            for m in deferred.recognise_invoice(dated, paid_on=paid_on, reductions=reductions.get(invoice_id, 0)):
                rows.append(("invoice", invoice_id, m.line_id, customer_id, m.month, m.currency, _unit(m.currency),
                             m.gross, m.net, paid_at))
        written += _insert_schedule(session, rows)
    touch(session)
    return written


_SCHEDULE_COLUMNS = ("source_type", "source_id", "line_id", "customer_id", "month", "currency", "currency_unit",
                     "gross", "net", "paid_at")


def _insert_schedule(session: Session, rows: list[tuple[Any, ...]]) -> int:
    if not rows:
        return 0
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        # The text forms SQLAlchemy itself stores for Date and DateTime on SQLite (UTC wall time).
        rows = [(*r[:4], r[4].isoformat(), *r[5:9], r[9].strftime("%Y-%m-%d %H:%M:%S.%f") if r[9] else None)
                for r in rows]
        marks = ", ".join("?" for _ in _SCHEDULE_COLUMNS)
    else:
        marks = ", ".join("%s" for _ in _SCHEDULE_COLUMNS)
    sql = f"INSERT INTO revenue_schedule ({', '.join(_SCHEDULE_COLUMNS)}) VALUES ({marks})"  # noqa: S608
    connection.exec_driver_sql(sql, rows)
    return len(rows)


def match_invoice_charges(session: Session, charge_ids: Sequence[str]) -> int:
    """Link charges that name no invoice to the invoice they paid, when one clearly matches.

    Since 2025 a charge no longer names its invoice, and an invoice lists its payments only when
    asked; without the link an invoice's charge would count twice (once as the invoice, once as
    a one-off charge). A paid invoice of the same customer, same currency and amount, paid within
    a day of the charge, not already linked to another charge, is taken as the one it paid."""
    linked = 0
    day = 86400
    for chunk in _chunks(list(charge_ids)):
        charges = list(session.scalars(select(StripeCharge).where(
            StripeCharge.id.in_(chunk), StripeCharge.invoice_id.is_(None), StripeCharge.paid.is_(True))))
        for charge in charges:
            if charge.customer_id is None or charge.created is None:
                continue
            created = charge.created if charge.created.tzinfo else charge.created.replace(tzinfo=UTC)
            window = (datetime.fromtimestamp(created.timestamp() - day, UTC),
                      datetime.fromtimestamp(created.timestamp() + day, UTC))
            taken = select(StripeCharge.invoice_id).where(StripeCharge.invoice_id.is_not(None),
                                                          StripeCharge.customer_id == charge.customer_id)
            invoice_id = session.scalars(select(StripeInvoice.id).where(
                StripeInvoice.customer_id == charge.customer_id, StripeInvoice.status == "paid",
                StripeInvoice.currency == charge.currency, StripeInvoice.amount_paid == charge.amount,
                StripeInvoice.paid_at >= window[0], StripeInvoice.paid_at <= window[1],
                StripeInvoice.id.not_in(taken)).order_by(StripeInvoice.paid_at)).first()
            if invoice_id is not None:
                charge.invoice_id = invoice_id
                linked += 1
    session.flush()
    return linked


def recompute_charges(session: Session, charge_ids: Iterable[str]) -> int:
    """One-off charges (no invoice) are revenue when paid, net of refunds and lost disputes."""
    ids = sorted(set(charge_ids))
    match_invoice_charges(session, ids)
    written = 0
    for chunk in _chunks(ids):
        session.execute(delete(RevenueScheduleEntry).where(RevenueScheduleEntry.source_type == "charge",
                                                           RevenueScheduleEntry.source_id.in_(chunk)))
        charges = list(session.scalars(select(StripeCharge).where(
            StripeCharge.id.in_(chunk), StripeCharge.invoice_id.is_(None), StripeCharge.paid.is_(True),
            StripeCharge.status == "succeeded")))
        if not charges:
            continue
        lost = dict(session.execute(select(StripeDispute.charge_id, func.sum(StripeDispute.amount)).where(
            StripeDispute.charge_id.in_([c.id for c in charges]), StripeDispute.status == "lost")
            .group_by(StripeDispute.charge_id)).all())
        rows = []
        for c in charges:
            paid_on = _day(c.created) or date.today()
            m = deferred.recognise_charge(c.id, c.amount, c.amount_refunded + int(lost.get(c.id) or 0),
                                          c.currency, paid_on)
            rows.append({"source_type": "charge", "source_id": c.id, "line_id": c.id, "customer_id": c.customer_id,
                         "month": m.month, "currency": m.currency, "currency_unit": _unit(m.currency),
                         "gross": m.gross, "net": m.net, "paid_at": c.created})
        session.execute(SCHEDULE.insert(), rows)
        written += len(rows)
    touch(session)
    return written


def all_invoice_ids(session: Session) -> list[str]:
    return list(session.scalars(select(StripeInvoice.id)))


def all_charge_ids(session: Session) -> list[str]:
    return list(session.scalars(select(StripeCharge.id)))


def resolve_customers(session: Session, customer_ids: Iterable[str]) -> int:
    """Re-resolve the PostHog person and group of these customers (domain.persons)."""
    ids = sorted(set(customer_ids))
    changed = 0
    for chunk in _chunks(ids):
        customers = list(session.scalars(select(StripeCustomer).where(StripeCustomer.id.in_(chunk))))
        if not customers:
            continue
        children: dict[str, list[persons.Child]] = defaultdict(list)
        for kind, model in (("subscription", StripeSubscription), ("charge", StripeCharge),
                            ("invoice", StripeInvoice)):
            for cid, oid, raw in session.execute(select(model.customer_id, model.id, model.raw)
                                                 .where(model.customer_id.in_(chunk))):
                metadata = (raw or {}).get("metadata") or {}
                if metadata:
                    children[cid].append(persons.Child(kind, oid, int((raw or {}).get("created") or 0), metadata))
        for customer in customers:
            metadata = (customer.raw or {}).get("metadata") or {}
            person = persons.resolve_person(metadata, children.get(customer.id, []))
            group = persons.resolve_group(metadata, children.get(customer.id, []))
            values = (person.value, person.source, group.value, group.source)
            if values != (customer.person_distinct_id, customer.person_source, customer.group_key,
                          customer.group_source):
                (customer.person_distinct_id, customer.person_source, customer.group_key,
                 customer.group_source) = values
                changed += 1
    if changed:
        touch(session)
    return changed


def all_customer_ids(session: Session) -> list[str]:
    return list(session.scalars(select(StripeCustomer.id)))


# --- Reads for the revenue API and page --------------------------------------------------------

def rates_on(session: Session, reporting: str, on: date) -> dict[str, Decimal]:
    """Currency → rate into `reporting`, the newest valid on `on` for each currency."""
    out: dict[str, tuple[date, Decimal]] = {}
    for r in session.scalars(select(ExchangeRate).where(ExchangeRate.reporting_currency == reporting.lower(),
                                                        ExchangeRate.valid_from <= on)):
        if r.currency not in out or r.valid_from > out[r.currency][0]:
            out[r.currency] = (r.valid_from, r.rate)
    return {c: v[1] for c, v in out.items()}


def subscriptions_for_mrr(session: Session) -> list[mrr.Subscription]:
    """Every subscription with its items and prices as domain.mrr dataclasses.

    Reads columns, not ORM objects, and of the raw JSON only the discounts: at 100,000
    subscriptions this is what keeps the revenue endpoints interactive."""
    prices = {pid: (unit, interval, count) for pid, unit, interval, count in session.execute(
        select(StripePrice.id, StripePrice.unit_amount, StripePrice.interval, StripePrice.interval_count))}
    items: dict[str, list[mrr.Item]] = defaultdict(list)
    missing: list[str] = []
    for item_id, sub_id, price_id, quantity in session.execute(
            select(StripeSubscriptionItem.id, StripeSubscriptionItem.subscription_id, StripeSubscriptionItem.price_id,
                   StripeSubscriptionItem.quantity).where(StripeSubscriptionItem.deleted_at.is_(None))):
        unit, interval, count = prices.get(price_id or "", (None, None, None))
        if unit is None or interval is None:
            missing.append(item_id)
            continue
        items[sub_id].append(mrr.Item(int(unit), int(quantity or 0), str(interval), int(count or 1)))
    for chunk in _chunks(missing):
        # Prices we have not synced (yet): the item's embedded price has the terms.
        for sub_id, quantity, raw in session.execute(select(
                StripeSubscriptionItem.subscription_id, StripeSubscriptionItem.quantity, StripeSubscriptionItem.raw)
                .where(StripeSubscriptionItem.id.in_(chunk))):
            price = (raw or {}).get("price") or {}
            recurring = price.get("recurring") or {}
            if isinstance(price, dict) and price.get("unit_amount") is not None and recurring.get("interval"):
                items[sub_id].append(mrr.Item(int(price["unit_amount"]), int(quantity or 0),
                                              str(recurring["interval"]), int(recurring.get("interval_count") or 1)))
    out = []
    s = StripeSubscription
    for (sub_id, customer_id, currency, status, start_date, created, trial_end, ended_at, canceled_at,
         discounts) in session.execute(select(s.id, s.customer_id, s.currency, s.status, s.start_date, s.created,
                                              s.trial_end, s.ended_at, s.canceled_at, s.raw["discounts"])):
        ended = _day(ended_at)
        if ended is None and status == "canceled":
            ended = _day(canceled_at)
        parsed = tuple(d for d in (_discount(x) for x in (discounts or []) if isinstance(discounts, list))
                       if d is not None)
        out.append(mrr.Subscription(sub_id, customer_id or "", currency, status or "active",
                                    _day(start_date) or _day(created) or date(1970, 1, 1),
                                    tuple(items.get(sub_id, [])), parsed, _day(trial_end), ended))
    return out


def _discount(value: Any) -> mrr.Discount | None:
    """A subscription discount, when expanded (a bare id says nothing about the amount)."""
    if not isinstance(value, dict):
        return None
    source = value.get("source") or {}
    coupon = value.get("coupon") or source.get("coupon") or {}
    if not isinstance(coupon, dict):
        return None
    percent = coupon.get("percent_off")
    start = value.get("start")
    end = value.get("end")
    return mrr.Discount(
        percent_off=Decimal(str(percent)) if percent is not None else None,
        amount_off=coupon.get("amount_off"),
        duration=coupon.get("duration") or "forever",
        start=_day(datetime.fromtimestamp(start, UTC)) if start else None,
        end=_day(datetime.fromtimestamp(end, UTC)) if end else None,
    )


# --- Report queries -------------------------------------------------------------------------

def revenue_by_month(session: Session, start: date, end: date) -> list[tuple[date, str, int, int]]:
    """(month, currency, gross, net) of recognised revenue for months in [start, end]."""
    first = start.replace(day=1)
    rows = session.execute(
        select(RevenueScheduleEntry.month, RevenueScheduleEntry.currency, func.sum(RevenueScheduleEntry.gross),
               func.sum(RevenueScheduleEntry.net))
        .where(RevenueScheduleEntry.month >= first, RevenueScheduleEntry.month <= end)
        .group_by(RevenueScheduleEntry.month, RevenueScheduleEntry.currency)
        .order_by(RevenueScheduleEntry.month)).all()
    return [(m, c, int(g or 0), int(n or 0)) for m, c, g, n in rows]


def deferred_after(session: Session, on: date) -> list[tuple[str, int]]:
    """(currency, net) paid by `on` but recognised in months after it: the deferred balance."""
    next_month = date(on.year + (on.month == 12), on.month % 12 + 1, 1)
    cutoff = datetime(on.year, on.month, on.day, 23, 59, 59, tzinfo=UTC)
    rows = session.execute(
        select(RevenueScheduleEntry.currency, func.sum(RevenueScheduleEntry.net))
        .where(RevenueScheduleEntry.month >= next_month, RevenueScheduleEntry.paid_at <= cutoff)
        .group_by(RevenueScheduleEntry.currency)).all()
    return [(c, int(n or 0)) for c, n in rows]


def revenue_by_customer(session: Session, start: date, end: date) -> list[tuple[str, str, int, int]]:
    """(customer id, currency, gross, net) recognised in months [start, end]."""
    rows = session.execute(
        select(RevenueScheduleEntry.customer_id, RevenueScheduleEntry.currency,
               func.sum(RevenueScheduleEntry.gross), func.sum(RevenueScheduleEntry.net))
        .where(RevenueScheduleEntry.month >= start.replace(day=1), RevenueScheduleEntry.month <= end,
               RevenueScheduleEntry.customer_id.is_not(None))
        .group_by(RevenueScheduleEntry.customer_id, RevenueScheduleEntry.currency)).all()
    return [(str(c), cur, int(g or 0), int(n or 0)) for c, cur, g, n in rows]


def customers_by_id(session: Session, ids: Iterable[str]) -> dict[str, StripeCustomer]:
    out: dict[str, StripeCustomer] = {}
    id_list = sorted(set(ids))
    for chunk in _chunks(id_list):
        for c in session.scalars(select(StripeCustomer).where(StripeCustomer.id.in_(chunk))):
            out[c.id] = c
    return out


def subscriptions_marker(session: Session) -> tuple[Any, ...]:
    """Changes whenever the warehouse is written: a cache key for MRR inputs."""
    return (warehouse_version(session),)


def revenue_marker(session: Session) -> tuple[Any, ...]:
    """Changes whenever the revenue schedule or a customer's person/group does: a cache key."""
    return (warehouse_version(session),)
