"""Warehouse reads and derived tables: the revenue schedule, persons/groups, MRR inputs, rates.

The rules live in `domain` (deferred, mrr, persons, fx); this module only loads warehouse rows
into their dataclasses and writes the results back.
"""

from __future__ import annotations

import gc
import pickle
import subprocess
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any, cast

from sqlalchemy import Table, delete, func, or_, select, text
from sqlalchemy.orm import Session
from sqlalchemy.schema import AddConstraint, DropConstraint

from domain import mrr, persons, recognition
from domain.calendar import next_month_start
from store import mrr_aggregates, revenue_fast, revenue_totals
from store.db import bulk_insert
from store.revenue_totals import RevenueCustomerMonthTotal, RevenueMonthTotal
from store.warehouse import (
    ExchangeRate,
    RevenueReporting,
    RevenueScheduleEntry,
    StripeCharge,
    StripeCreditNote,
    StripeCustomer,
    StripeCustomerBalanceTransaction,
    StripeDispute,
    StripeInvoice,
    StripeInvoiceLine,
    StripeInvoicePayment,
    StripePrice,
    StripeRefund,
    StripeSubscription,
    StripeSubscriptionItem,
    StripeSubscriptionSchedule,
    row_for,
    touch,
    upsert,
    warehouse_version,
)

CHUNK = 500
_unit = revenue_fast.unit


def _day(value: datetime | None) -> date | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite hands datetimes back naive; they were stored as UTC
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).date()


def _chunks(ids: Sequence[str]) -> Iterable[Sequence[str]]:
    for i in range(0, len(ids), CHUNK):
        yield ids[i:i + CHUNK]


def link_invoice_payments(session: Session, invoice: dict[str, Any]) -> int:
    """Since 2025 charges no longer name their invoice; the invoice's `payments` (expanded) are
    Stripe's own record of which charge or payment intent paid it, kept as invoice_payment rows.
    Charges are not updated here: a page of invoices and a page of charges are written by
    different workers, and updating each other's rows would let them deadlock on PostgreSQL."""
    payments = [p for p in ((invoice.get("payments") or {}).get("data") or []) if isinstance(p, dict)]
    rows = [row_for({**p, "object": "invoice_payment", "invoice": invoice["id"]}) for p in payments if p.get("id")]
    if rows:
        upsert(session, StripeInvoicePayment, rows)
    return len(rows)


def payment_charges(session: Session, payment_ids: Sequence[str]) -> list[str]:
    """The charges these invoice payments name (directly or through their payment intent)."""
    out: list[str] = []
    for chunk in _chunks(list(payment_ids)):
        for charge_id, intent_id in session.execute(select(StripeInvoicePayment.charge_id,
                                                           StripeInvoicePayment.payment_intent_id)
                                                    .where(StripeInvoicePayment.id.in_(chunk))):
            if charge_id:
                out.append(charge_id)
            if intent_id:
                out.extend(session.scalars(select(StripeCharge.id).where(StripeCharge.payment_intent_id == intent_id)))
    return out


def _invoices_of_charges(session: Session, charge_ids: Sequence[str]) -> dict[str, str]:
    """charge id → the invoice it paid, from Stripe's invoice payments (by charge or payment intent)."""
    out: dict[str, str] = {}
    for chunk in _chunks(list(charge_ids)):
        intents: dict[str | None, str] = dict(session.execute(
            select(StripeCharge.payment_intent_id, StripeCharge.id)
            .where(StripeCharge.id.in_(chunk), StripeCharge.payment_intent_id.is_not(None))).all())
        for invoice_id, charge_id, intent_id in session.execute(select(
                StripeInvoicePayment.invoice_id, StripeInvoicePayment.charge_id, StripeInvoicePayment.payment_intent_id)
                .where(StripeInvoicePayment.invoice_id.is_not(None),
                       StripeInvoicePayment.charge_id.in_(chunk)
                       | StripeInvoicePayment.payment_intent_id.in_(list(intents)))):
            if invoice_id is None:
                continue
            if charge_id is not None and charge_id in chunk:
                out[charge_id] = invoice_id
            if intent_id is not None and intent_id in intents:
                out[intents[intent_id]] = invoice_id
    return out


# --- the revenue schedule: one customer's books at a time -------------------------------------------

def ledger_owners(session: Session, customer_ids: Iterable[str]) -> list[str]:
    """The customers whose books these customers' money belongs to: an installment customer's
    money is booked with the customer holding its plan's credit (`ledger_customer_id`)."""
    ids = sorted({c for c in customer_ids if c})
    owners: set[str] = set(ids)
    for chunk in _chunks(ids):
        for cid, ledger in session.execute(select(StripeCustomer.id, StripeCustomer.ledger_customer_id)
                                           .where(StripeCustomer.id.in_(chunk))):
            if ledger:
                owners.discard(cid)
                owners.add(ledger)
    return sorted(owners)


def customers_of_invoices(session: Session, invoice_ids: Iterable[str]) -> set[str]:
    out: set[str] = set()
    for chunk in _chunks(sorted(set(invoice_ids))):
        out |= {c for c in session.scalars(select(StripeInvoice.customer_id).where(StripeInvoice.id.in_(chunk))) if c}
    return out


def customers_of_charges(session: Session, charge_ids: Iterable[str]) -> set[str]:
    out: set[str] = set()
    for chunk in _chunks(sorted(set(charge_ids))):
        out |= {c for c in session.scalars(select(StripeCharge.customer_id).where(StripeCharge.id.in_(chunk))) if c}
    return out


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


_ALL = "revenue:all-customers"


def _lock_customers(session: Session, owners: Sequence[str]) -> None:
    """Two rebuilds of one customer (a webhook and a sync) must not interleave their delete and
    insert: on PostgreSQL each takes a transaction lock per customer, in one order (no deadlock),
    under a shared lock that a full rebuild takes exclusively (it would need too many locks to
    take one per customer)."""
    if session.get_bind().dialect.name != "postgresql" or session.info.get(_ALL):
        return  # SQLite serialises writers already; a full rebuild holds everything
    session.execute(text("SELECT pg_advisory_xact_lock_shared(hashtext(:k))"), {"k": _ALL})
    for owner in sorted(owners):
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"revenue:{owner}"})


def _lock_all(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": _ALL})
        session.info[_ALL] = True


_NO_REVENUE_TYPES = frozenset({"applied_to_invoice", "unapplied_from_invoice"})
# Moved aside and given back by the plan workflow around a renewal's invoice (issue 11): the
# credit never left the customer, so neither move changes what the credit is worth.
_HELD_KINDS = frozenset({"held_balance", "held_balance_return"})
_MONEY_TYPES = frozenset({"credit_note", "invoice_overpaid", "invoice_too_large", "unspent_receiver_credit"})


def load_books(session: Session, owners: Sequence[str]) -> dict[str, recognition.CustomerBooks]:
    """Everything domain.recognition needs about these customers (and their installment customers)."""
    members: dict[str, str] = {o: o for o in owners}
    member_plan: dict[str, str] = {}
    for cid, ledger, plan in session.execute(select(StripeCustomer.id, StripeCustomer.ledger_customer_id,
                                                    StripeCustomer.plan_key)
                                             .where(StripeCustomer.ledger_customer_id.in_(list(owners)))):
        members[cid] = ledger or cid
        if plan:
            member_plan[cid] = plan
    ids = list(members)
    Inv, L = StripeInvoice, StripeInvoiceLine  # noqa: N806
    invoices: dict[str, dict[str, Any]] = {}
    for row in session.execute(select(Inv.id, Inv.customer_id, Inv.currency, Inv.status, Inv.total, Inv.tax,
                                      Inv.amount_paid, Inv.balance_applied, Inv.paid_at, Inv.created, Inv.plan_key,
                                      Inv.finalized_at)
                               .where(Inv.customer_id.in_(ids), Inv.deleted_at.is_(None),
                                      (Inv.status == "paid") | (Inv.amount_paid > 0))):
        (iid, inv_customer, currency, status, total, tax, paid, applied, paid_at, created, plan, finalized) = row
        invoices[iid] = {"customer": inv_customer, "currency": currency, "status": status, "total": int(total or 0),
                         "tax": int(tax or 0), "paid": int(paid or 0),
                         "applied": int(applied or 0) if status == "paid" else 0,
                         "paid_at": _aware(paid_at), "created": _aware(created),
                         "plan": plan or member_plan.get(inv_customer or ""), "finalized": _aware(finalized),
                         "lines": [], "reductions": [], "payments": []}
    inv_ids = list(invoices)
    for chunk in _chunks(inv_ids):
        for line_id, invoice_id, amount, discount, tax_in, start, end in session.execute(
                select(L.id, L.invoice_id, L.amount, L.discount_amount, L.tax_inclusive, L.period_start, L.period_end)
                .where(L.invoice_id.in_(chunk), L.deleted_at.is_(None)).order_by(L.invoice_id, L.id)):
            invoices[invoice_id]["lines"].append(recognition.InvoiceLine(
                line_id, int(amount or 0) - int(discount or 0) - int(tax_in or 0), _day(start), _day(end)))
        for paid_invoice, amount, at, status in session.execute(
                select(StripeInvoicePayment.invoice_id, StripeInvoicePayment.amount_paid,
                       StripeInvoicePayment.paid_at, StripeInvoicePayment.status)
                .where(StripeInvoicePayment.invoice_id.in_(chunk))):
            if status == "paid" and at is not None and paid_invoice in invoices:
                invoices[paid_invoice]["payments"].append((_aware(at), int(amount or 0)))
    for inv in invoices.values():
        # Lines by id in code point order whatever the database's collation: the set-based path
        # (store/revenue_fast.py) orders them the same way, and ties in a split go to the earlier.
        inv["lines"].sort(key=lambda line: line.line_id)
    # Credit notes: a pre-payment note lowered what was paid already; only post-payment ones
    # give money back. Refunds behind a credit note are counted once, as the note.
    behind_notes: set[str] = set()
    for chunk in _chunks(inv_ids):
        for note in session.scalars(select(StripeCreditNote).where(StripeCreditNote.invoice_id.in_(chunk),
                                                                   StripeCreditNote.status != "void")):
            raw = note.raw or {}
            for r in raw.get("refunds") or []:
                ref = r.get("refund") if isinstance(r, dict) else r
                ref_id = ref.get("id") if isinstance(ref, dict) else ref
                if isinstance(ref_id, str):
                    behind_notes.add(ref_id)
            if isinstance(raw.get("refund"), str):
                behind_notes.add(raw["refund"])
            inv = invoices[note.invoice_id or ""]
            created = _aware(note.created) or datetime.now(UTC)
            pre = raw.get("type") == "pre_payment" or (
                raw.get("type") is None and inv["paid_at"] is not None and created < inv["paid_at"])
            if not pre:
                inv["reductions"].append(recognition.Reduction(created, int(note.total or 0),
                                                               note.total_excluding_tax))
    C = StripeCharge  # noqa: N806
    charges: dict[str, dict[str, Any]] = {}
    for charge_id, customer, charge_invoice, amount, currency, created, status, paid in session.execute(
            select(C.id, C.customer_id, C.invoice_id, C.amount, C.currency, C.created, C.status, C.paid)
            .where(C.customer_id.in_(ids))):
        if not paid or status != "succeeded":
            continue
        charges[charge_id] = {"customer": customer, "invoice": charge_invoice, "amount": int(amount or 0),
                        "currency": currency, "at": _aware(created) or datetime.now(UTC), "reductions": []}
    charge_ids = list(charges)
    for charge_id, paid_invoice in _invoices_of_charges(session, charge_ids).items():
        charges[charge_id]["invoice"] = paid_invoice
    for chunk in _chunks(charge_ids):
        for refund in session.scalars(select(StripeRefund).where(StripeRefund.charge_id.in_(chunk))):
            if refund.status in ("succeeded", "pending") and refund.id not in behind_notes \
                    and refund.charge_id in charges:
                charges[refund.charge_id or ""]["reductions"].append(recognition.Reduction(
                    _aware(refund.created) or datetime.now(UTC), int(refund.amount or 0)))
        for dispute in session.scalars(select(StripeDispute).where(StripeDispute.charge_id.in_(chunk),
                                                                   StripeDispute.status == "lost")):
            if dispute.charge_id not in charges:
                continue
            when = _aware(dispute.lost_at) or (datetime.fromtimestamp(dispute.event_created, UTC)
                                               if dispute.event_created else None) or _aware(dispute.created)
            charges[dispute.charge_id or ""]["reductions"].append(recognition.Reduction(
                when or datetime.now(UTC), int(dispute.amount or 0)))
    credits: dict[str, list[recognition.Credit]] = defaultdict(list)
    B = StripeCustomerBalanceTransaction  # noqa: N806
    for tid, txn_customer, amount, currency, kind, created, txn_plan, raw_kind in session.execute(
            select(B.id, B.customer_id, B.amount, B.currency, B.type, B.created, B.plan_key,
                   B.raw["metadata"]["revops_kind"].as_string())
            .where(B.customer_id.in_(ids))):
        if kind in _NO_REVENUE_TYPES or raw_kind in _HELD_KINDS or not amount:
            continue
        source: recognition.CreditSource = "plan" if txn_plan else "money" if kind in _MONEY_TYPES else "gift"
        credits[members[txn_customer or ""]].append(recognition.Credit(
            tid, currency, _aware(created) or datetime.now(UTC), -int(amount), source, txn_plan))
    # A plan's term ends with its last service day: the upfront line's period, the installment
    # subscription's cancel_at, whichever is later.
    term_end: dict[str, date] = {}
    for inv in invoices.values():
        for line in inv["lines"]:
            if inv["plan"] and line.end is not None:
                term_end[inv["plan"]] = max(term_end.get(inv["plan"], line.end), line.end)
    installment_customers = [c for c in member_plan]
    for chunk in _chunks(installment_customers):
        for sub_customer, cancel_at, ended in session.execute(select(
                StripeSubscription.customer_id, StripeSubscription.cancel_at, StripeSubscription.ended_at)
                .where(StripeSubscription.customer_id.in_(chunk))):
            sub_end = _day(cancel_at) or _day(ended)
            sub_plan = member_plan[sub_customer or ""]
            if sub_end is not None:
                term_end[sub_plan] = max(term_end.get(sub_plan, sub_end), sub_end)

    out: dict[str, recognition.CustomerBooks] = {}
    by_owner_invoices: dict[str, list[recognition.Invoice]] = defaultdict(list)
    for iid, inv in invoices.items():
        money_at = inv["paid_at"] or inv["finalized"] or inv["created"] or datetime.now(UTC)
        payments = sorted(inv["payments"])
        known = sum(a for _, a in payments)
        if known != inv["paid"]:
            # Paid out of band, or payments Stripe did not list: the rest arrived when it was paid.
            payments.append((money_at, inv["paid"] - known))
        if not inv["lines"]:
            # Lines not synced (yet): the money still counts, as one line with no period.
            inv["lines"] = [recognition.InvoiceLine(iid, inv["total"] - inv["tax"])]
        by_owner_invoices[members[inv["customer"]]].append(recognition.Invoice(
            iid, inv["currency"], money_at, inv["total"], inv["tax"], inv["paid"], inv["applied"],
            tuple(inv["lines"]), inv["plan"], tuple(inv["reductions"]), inv["finalized"],
            payments=tuple((at, amount) for at, amount in payments if amount)))
    by_owner_charges: dict[str, list[recognition.Charge]] = defaultdict(list)
    for cid, c in charges.items():
        if c["invoice"] is not None and c["invoice"] in invoices:
            # Paid an invoice: its refunds and disputes take money back from that invoice.
            invoices_reductions = c["reductions"]
            if invoices_reductions:
                owner = members[invoices[c["invoice"]]["customer"]]
                by_owner_invoices[owner] = [
                    replace(i, reductions=i.reductions + tuple(invoices_reductions)) if i.invoice_id == c["invoice"]
                    else i for i in by_owner_invoices[owner]]
            continue
        if c["invoice"] is not None:
            continue  # paid an invoice that is not paid (or not synced) yet: not a one-off
        by_owner_charges[members[c["customer"]]].append(recognition.Charge(
            cid, c["currency"], c["at"], c["amount"], tuple(c["reductions"])))
    plans = {p for i in by_owner_invoices.values() for x in i if (p := x.plan)} | {
        c.plan for cs in credits.values() for c in cs if c.plan}
    for owner in owners:
        owner_plans = {x.plan for x in by_owner_invoices.get(owner, []) if x.plan} | {
            c.plan for c in credits.get(owner, []) if c.plan}
        out[owner] = recognition.CustomerBooks(
            owner, tuple(by_owner_invoices.get(owner, [])), tuple(by_owner_charges.get(owner, [])),
            tuple(credits.get(owner, [])),
            tuple(recognition.Plan(p, term_end.get(p)) for p in sorted(owner_plans & plans)))
    return out


def recompute_customers(session: Session, customer_ids: Iterable[str], policy: str = "consumption", *,
                        set_based: bool = True) -> int:
    """Rebuild the revenue schedule of these customers' books (installment customers are
    rebuilt with the customer holding their plan's credit). Plain books go through the set-based
    rules (store/revenue_fast.py), the rest through the ledger; `set_based=False` sends everyone
    through the ledger (the reference the tests compare with)."""
    checked = recognition.check_policy(policy)
    owners = ledger_owners(session, customer_ids)
    for chunk in _chunks(owners):
        _lock_customers(session, chunk)
    # Every customer lock first, then the totals' (one order for every rebuild: no deadlock).
    revenue_totals.lock(session)
    members = list(owners)
    for chunk in _chunks(owners):
        members += session.scalars(select(StripeCustomer.id).where(StripeCustomer.ledger_customer_id.in_(chunk)))
    # Their totals before and after, so only what changed is written to the shared totals.
    old = revenue_totals.contributions(session, members)
    for chunk in _chunks(members):
        session.execute(delete(RevenueScheduleEntry).where(RevenueScheduleEntry.customer_id.in_(chunk)))
    new = revenue_totals.Totals()
    written = _recompute(session, owners, checked, set_based, new)
    revenue_totals.replace_customers(session, members, old, new)
    touch(session)
    return written


def _recompute(session: Session, owners: list[str] | None, policy: recognition.Policy, set_based: bool,
               totals: revenue_totals.Totals | None = None, empty: Callable[[], None] | None = None) -> int:
    """Write the schedule rows of these owners (None: every customer with money); their old rows
    are gone already, or `empty` takes them away before anything is written. With `totals`,
    their pre-aggregates are gathered there."""
    written = 0
    postgres = _postgres(session)
    if not set_based:
        if empty is not None:
            empty()
        on_ledger = owners if owners is not None else ledger_owners(session, _customers_with_money(session))
        return _write_ledger(session, on_ledger, policy, totals)
    ledger = revenue_fast.ledger_customers(session, owners)
    wanted = None if owners is None else set(owners)
    on_ledger = ledger_owners(session, ledger if wanted is None else ledger & wanted)
    if wanted is not None:
        on_ledger = [o for o in on_ledger if o in wanted]
    # A full rebuild's plain invoices are read and recognised in a process of their own while
    # this one loads the ledger's books and writes (store/revenue_fast.py).
    apart = revenue_fast.PlainApart.start(session, ledger) if owners is None else None
    try:
        if empty is not None:
            empty()  # meanwhile, the other process starts and reads
        books: dict[str, recognition.CustomerBooks] = {}
        for chunk in _chunks(on_ledger):
            books.update(load_books(session, chunk))
        # The ledger runs beside the plain invoices' read, compute and write: on a thread for a few
        # customers, in a process of its own for many (its Python would hold the GIL the other needs).
        found = list(books.values())
        if len(found) >= LEDGER_PROCESS_CUSTOMERS:
            work = _LedgerApart.start(found, policy).result
        else:
            def work() -> list[list[recognition.Booking]]:
                return recognition.schedules(found, policy)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="revenue-ledger") as pool:
            schedules = pool.submit(work)
            fast = revenue_fast.rows(session, owners, ledger, apart)
            written += fast.written
            if totals is not None:
                totals.merge(fast.totals)
            done = schedules.result()
    finally:
        if apart is not None:
            apart.close()
    rows = [_row(b, books_.customer_id, postgres) for books_, bookings in zip(found, done, strict=True)
            for b in bookings]
    written += _insert_schedule(session, rows)
    if totals is not None:
        totals.add_rows(rows)
    # Customers the plain path found to need the ledger after all (a split payment, an invoice
    # without lines): their invoices were left out there.
    return written + _write_ledger(session, ledger_owners(session, fast.ledger), policy, totals)


# From this many ledger customers a process of its own pays for itself (~0.2 s to start).
LEDGER_PROCESS_CUSTOMERS = 1000


class _LedgerApart:
    """The ledger's Python in a process of its own (`python -m domain.recognition`), so it does not
    hold the GIL the plain invoices' reads and writes need. A plain subprocess, not
    multiprocessing: nothing of the caller's main module is imported again there."""

    def __init__(self, process: subprocess.Popen[bytes] | None, found: list[recognition.CustomerBooks],
                 policy: recognition.Policy) -> None:
        self.process, self.found, self.policy = process, found, policy

    @classmethod
    def start(cls, found: list[recognition.CustomerBooks], policy: recognition.Policy) -> _LedgerApart:
        # No process to be had (None): the work is done here instead.
        return cls(revenue_fast.module_process("domain.recognition", policy), found, policy)

    def result(self) -> list[list[recognition.Booking]]:
        """The schedules (run on a thread: it waits on pipes, not on the GIL)."""
        process = self.process
        if process is not None and process.stdin is not None and process.stdout is not None:
            try:
                with process.stdin:
                    process.stdin.write(pickle.dumps(self.found, protocol=pickle.HIGHEST_PROTOCOL))
                out = process.stdout.read()
            except OSError:
                out = b""
            process.stdout.close()
            if process.wait() == 0 and out:
                done: list[list[recognition.Booking]] = pickle.loads(out)  # noqa: S301 - our own child's output
                return done
        return recognition.schedules(self.found, self.policy)


def _ledger_rows(books: dict[str, recognition.CustomerBooks], policy: recognition.Policy,
                 postgres: bool) -> list[tuple[Any, ...]]:
    return [_row(b, owner, postgres) for owner, found in books.items()
            for b in recognition.month_rows(recognition.recognise_customer(found, policy))]


def _write_ledger(session: Session, owners: Sequence[str], policy: recognition.Policy,
                  totals: revenue_totals.Totals | None) -> int:
    written = 0
    for chunk in _chunks(owners):
        rows = _ledger_rows(load_books(session, chunk), policy, _postgres(session))
        written += _insert_schedule(session, rows)
        if totals is not None:
            totals.add_rows(rows)
    return written


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _row(b: recognition.Booking, owner: str | None, postgres: bool) -> tuple[Any, ...]:
    """A booking as a schedule row in its insert form (`revenue_fast.SCHEDULE_COLUMNS`, dates as text)."""
    return (b.source_type, b.source_id, f"{b.key}@{_day(b.at)}", owner, revenue_fast.month_text(b.month),
            b.currency, _unit(b.currency), b.gross, b.net, revenue_fast.stamp_text(b.at, postgres))


def _customers_with_money(session: Session) -> set[str]:
    found = set(session.scalars(select(StripeInvoice.customer_id).distinct())) | set(
        session.scalars(select(StripeCharge.customer_id).distinct())) | set(
        session.scalars(select(StripeCustomerBalanceTransaction.customer_id).distinct()))
    return {c for c in found if c}


def recompute_invoices(session: Session, invoice_ids: Iterable[str], policy: str = "consumption") -> int:
    """Rebuild the revenue schedule of the customers of these invoices."""
    return recompute_customers(session, customers_of_invoices(session, invoice_ids), policy)


def _insert_schedule(session: Session, rows: list[tuple[Any, ...]]) -> int:
    """Append schedule rows in their insert form (`revenue_fast.SCHEDULE_COLUMNS`, dates as text), in bulk."""
    return bulk_insert(session, "revenue_schedule", revenue_fast.SCHEDULE_COLUMNS, rows)


def recompute_charges(session: Session, charge_ids: Iterable[str], policy: str = "consumption") -> int:
    """Rebuild the revenue schedule of the customers of these charges."""
    return rebuild(session, invoices=(), charges=charge_ids, customers=(), policy=policy)


def _recompute_customerless_charges(session: Session, charge_ids: Sequence[str]) -> int:
    """A charge with no customer is its own one-off: revenue when paid, net of refunds."""
    written = 0
    for chunk in _chunks(list(charge_ids)):
        revenue_totals.change_customerless_charges(session, chunk, -1)
        session.execute(delete(RevenueScheduleEntry).where(RevenueScheduleEntry.source_type == "charge",
                                                           RevenueScheduleEntry.source_id.in_(chunk),
                                                           RevenueScheduleEntry.customer_id.is_(None)))
        rows: list[tuple[Any, ...]] = []
        paid_invoices = _invoices_of_charges(session, chunk)
        for c in session.scalars(select(StripeCharge).where(
                StripeCharge.id.in_(chunk), StripeCharge.customer_id.is_(None), StripeCharge.invoice_id.is_(None),
                StripeCharge.paid.is_(True), StripeCharge.status == "succeeded")):
            if c.id in paid_invoices:
                continue
            refunds = tuple(recognition.Reduction(_aware(r.created) or datetime.now(UTC), int(r.amount or 0))
                            for r in session.scalars(select(StripeRefund).where(StripeRefund.charge_id == c.id))
                            if r.status in ("succeeded", "pending"))
            books = recognition.CustomerBooks(c.id, charges=(recognition.Charge(
                c.id, c.currency, _aware(c.created) or datetime.now(UTC), c.amount, refunds),))
            rows.extend(_row(b, None, _postgres(session))
                        for b in recognition.month_rows(recognition.recognise_customer(books, "consumption")))
        written += _insert_schedule(session, rows)
        revenue_totals.change_customerless_charges(session, chunk, 1)
    touch(session)
    return written


def rebuild(session: Session, *, invoices: Iterable[str], charges: Iterable[str], customers: Iterable[str],
            policy: str = "consumption") -> int:
    """Rebuild the books of every customer these changes touch, each customer once."""
    charge_ids = sorted(set(charges))
    touched = set(customers) | customers_of_invoices(session, invoices) | customers_of_charges(session, charge_ids)
    written = recompute_customers(session, touched, policy)
    mrr_aggregates.refresh(session, touched)
    return written + _recompute_customerless_charges(session, charge_ids)


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """A full rebuild makes millions of tuples and no reference cycles: the cyclic collector would
    walk them again and again (it took a third of the time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextmanager
def _unique_key_built_after(session: Session) -> Iterator[None]:
    """On PostgreSQL a full rebuild fills an emptied schedule without its unique key and builds
    the key's index once at the end (sorting 1.2M rows took 0.4 s; keeping the index up to date row
    by row cost the COPY 0.8 s). A duplicate still fails the rebuild, only later. SQLite: nothing."""
    if not _postgres(session):
        yield
        return
    key = next(c for c in cast(Table, RevenueScheduleEntry.__table__).constraints
               if c.name == "uq_revenue_schedule_customer_line_month")
    session.execute(DropConstraint(key))
    yield
    session.execute(AddConstraint(key))


def rebuild_all(session: Session, policy: str = "consumption", *, set_based: bool = True) -> int:
    """The whole schedule again (after a full sync): every customer with money, from scratch.

    Under an exclusive lock that per-customer rebuilds (webhooks) share: they wait for it, it waits
    for them, and neither deadlocks on the schedule's rows."""
    _lock_all(session)
    checked = recognition.check_policy(policy)

    def empty() -> None:
        if _postgres(session):
            # Deleting a million rows leaves a million dead ones for every rebuild to step over;
            # TRUNCATE starts the tables afresh (readers wait for this transaction, as they would
            # for the lock it already holds).
            session.execute(text("TRUNCATE revenue_schedule, revenue_month_totals, revenue_customer_month_totals, "
                                 "revenue_customer_days"))
        else:
            session.execute(delete(RevenueScheduleEntry))
            revenue_totals.clear(session)

    totals = revenue_totals.Totals()
    with _no_cyclic_gc(), _unique_key_built_after(session):
        written = _recompute(session, None, checked, set_based, totals, empty)
        totals.write(session)
    customerless = list(session.scalars(select(StripeCharge.id).where(StripeCharge.customer_id.is_(None))))
    written += _recompute_customerless_charges(session, customerless)
    if _postgres(session):
        # Fresh statistics for tables just rewritten: without them the planner guessed millions of
        # rows for the persons view and compiled it (JIT), a third of a second per request.
        session.execute(text("ANALYZE revenue_schedule, revenue_month_totals, revenue_customer_month_totals, "
                             "revenue_customer_days"))
    mrr_aggregates.refresh(session, None)
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
            # Only the metadata and `created` of each object's JSON (an invoice's is mostly lines):
            # the database extracts them instead of Python parsing every whole object.
            for cid, oid, metadata, created in session.execute(
                    select(model.customer_id, model.id, model.raw["metadata"], model.raw["created"].as_integer())
                    .where(model.customer_id.in_(chunk))):
                if isinstance(metadata, dict) and metadata:
                    children[cid].append(persons.Child(kind, oid, int(created or 0), metadata))
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


def set_reporting_currency(session: Session, currency: str) -> None:
    """Keep `revenue_reporting` (what the analytics views convert into) equal to REPORTING_CURRENCY."""
    code, unit = currency.lower(), _unit(currency.lower())
    row = session.get(RevenueReporting, 1)
    if row is None:
        session.add(RevenueReporting(id=1, currency=code, currency_unit=unit))
    elif (row.currency, row.currency_unit) != (code, unit):
        row.currency, row.currency_unit = code, unit
    else:
        return
    touch(session)


def rate_history(session: Session, reporting: str) -> dict[str, list[tuple[date, Decimal]]]:
    """Currency → its rates into `reporting`, oldest first: each month converts at its own rate."""
    out: dict[str, list[tuple[date, Decimal]]] = defaultdict(list)
    for r in session.scalars(select(ExchangeRate).where(ExchangeRate.reporting_currency == reporting.lower())
                             .order_by(ExchangeRate.valid_from)):
        out[r.currency].append((r.valid_from, r.rate))
    return dict(out)


def subscriptions_for_mrr(session: Session) -> list[mrr.Subscription]:
    """Every subscription with its items and prices as domain.mrr dataclasses."""
    return mrr_inputs(session)[0]


def _fraction(value: Any) -> Fraction | None:
    if value is None or value == "":
        return None
    try:
        return Fraction(Decimal(str(value)))
    except (ArithmeticError, ValueError):
        return None


def _tiers(raw: Any) -> tuple[mrr.Tier, ...]:
    out = []
    for t in raw or []:
        if not isinstance(t, dict):
            continue
        unit = _fraction(t.get("unit_amount_decimal"))
        if unit is None:
            unit = Fraction(int(t.get("unit_amount") or 0))
        flat = _fraction(t.get("flat_amount_decimal"))
        out.append(mrr.Tier(t.get("up_to") if isinstance(t.get("up_to"), int) else None, unit,
                            int(flat) if flat is not None else int(t.get("flat_amount") or 0)))
    return tuple(out)


def _item(price: dict[str, Any], currency: str, quantity: int, metered: int | None,
          discounts: tuple[mrr.Discount, ...]) -> mrr.Item | str:
    """A subscription item priced in the subscription's currency, or why it cannot be."""
    pid = price.get("id")
    recurring = price.get("recurring") or {}
    interval = recurring.get("interval")
    if not interval:
        return f"price {pid} is not recurring"
    count = int(recurring.get("interval_count") or 1)
    terms: dict[str, Any] = price
    if currency and (price.get("currency") or currency) != currency:
        # A price with currency_options bills a subscription in another currency at that amount.
        option = (price.get("currency_options") or {}).get(currency)
        if not isinstance(option, dict):
            return f"price {pid} has no amount in {currency}"
        terms = option
    if recurring.get("usage_type") == "metered":
        if metered is None:
            return f"price {pid} is metered and no period has been billed yet"
        return mrr.Item(0, quantity, str(interval), count, metered_amount=metered, discounts=discounts)
    if price.get("billing_scheme") == "tiered":
        tiers = _tiers(terms.get("tiers"))
        if not tiers:
            return f"price {pid} is tiered but its tiers were not synced"
        return mrr.Item(0, quantity, str(interval), count, tiers=tiers, tiers_mode=price.get("tiers_mode"),
                        discounts=discounts)
    unit = _fraction(terms.get("unit_amount_decimal"))
    if unit is None and terms.get("unit_amount") is not None:
        unit = Fraction(int(terms["unit_amount"]))
    if unit is None:
        return f"price {pid} has no unit amount"
    return mrr.Item(unit if unit.denominator != 1 else int(unit), quantity, str(interval), count,
                    discounts=discounts)


def mrr_inputs(session: Session) -> tuple[list[mrr.Subscription], list[str]]:
    """Every subscription as domain.mrr dataclasses, and the items left out of MRR with the reason.

    Reads columns, not ORM objects, and of the raw JSON only prices (a few), discounts and the
    embedded price of items whose price was not synced: at 100,000 subscriptions this is what
    keeps the revenue endpoints interactive."""
    prices: dict[str, dict[str, Any]] = {pid: raw or {} for pid, raw in session.execute(
        select(StripePrice.id, StripePrice.raw))}
    metered_ids = [pid for pid, raw in prices.items() if (raw.get("recurring") or {}).get("usage_type") == "metered"]
    last_usage: dict[tuple[str, str], tuple[datetime, int]] = {}
    L = StripeInvoiceLine  # noqa: N806
    for chunk in _chunks(metered_ids):
        for sub_id, price_id, amount, end in session.execute(
                select(L.subscription_id, L.price_id, L.amount, L.period_end)
                .where(L.price_id.in_(chunk), L.deleted_at.is_(None), L.subscription_id.is_not(None))):
            key = (sub_id or "", price_id or "")
            when = _aware(end) or datetime.min.replace(tzinfo=UTC)
            if key not in last_usage or when > last_usage[key][0]:
                last_usage[key] = (when, int(amount or 0))
    s = StripeSubscription
    rows = session.execute(select(s.id, s.customer_id, s.currency, s.status, s.start_date, s.created, s.trial_end,
                                  s.ended_at, s.canceled_at, s.raw["discounts"], s.cancel_at)).all()
    currency_of = {r[0]: (r[2] or "usd") for r in rows}
    items: dict[str, list[mrr.Item]] = defaultdict(list)
    left_out: list[str] = []
    missing: list[str] = []
    SI = StripeSubscriptionItem  # noqa: N806
    for item_id, sub_id, price_id, quantity, item_discounts in session.execute(
            select(SI.id, SI.subscription_id, SI.price_id, SI.quantity, SI.raw["discounts"])
            .where(SI.deleted_at.is_(None))):
        price = prices.get(price_id or "")
        if price is None:
            missing.append(item_id)
            continue
        parsed = tuple(d for d in (_discount(x) for x in (item_discounts or []) if isinstance(item_discounts, list))
                       if d is not None)
        built = _item(price, currency_of.get(sub_id, ""), int(quantity or 0),
                      (last_usage.get((sub_id, price_id or "")) or (None, None))[1], parsed)
        if isinstance(built, str):
            left_out.append(f"subscription {sub_id} item {item_id}: {built}")
        else:
            items[sub_id].append(built)
    for chunk in _chunks(missing):
        # Prices we have not synced (yet): the item's embedded price has the terms.
        for item_id, sub_id, quantity, raw in session.execute(select(
                SI.id, SI.subscription_id, SI.quantity, SI.raw).where(SI.id.in_(chunk))):
            price = (raw or {}).get("price")
            if not isinstance(price, dict):
                left_out.append(f"subscription {sub_id} item {item_id}: its price is not synced")
                continue
            built = _item(price, currency_of.get(sub_id, ""), int(quantity or 0), None, ())
            if isinstance(built, str):
                left_out.append(f"subscription {sub_id} item {item_id}: {built}")
            else:
                items[sub_id].append(built)
    scheduled = _schedules(session, prices, currency_of, left_out)
    out = []
    for (sub_id, customer_id, currency, status, start_date, created, trial_end, ended_at, canceled_at,
         discounts, cancel_at) in rows:
        ended = _day(ended_at)
        if ended is None and status == "canceled":
            ended = _day(canceled_at)
        parsed = tuple(d for d in (_discount(x) for x in (discounts or []) if isinstance(discounts, list))
                       if d is not None)
        phases, schedule_end = scheduled.attached.get(sub_id, ((), None))
        out.append(mrr.Subscription(sub_id, customer_id or "", currency, status or "active",
                                    _day(start_date) or _day(created) or date(1970, 1, 1),
                                    tuple(items.get(sub_id, [])), parsed, _day(trial_end), ended,
                                    _day(cancel_at) or schedule_end, phases))
    out.extend(scheduled.not_started)
    return out, sorted(left_out)


class _Scheduled:
    def __init__(self) -> None:
        # subscription id → (its schedule's phases, the day a cancelling schedule ends it)
        self.attached: dict[str, tuple[tuple[mrr.Phase, ...], date | None]] = {}
        self.not_started: list[mrr.Subscription] = []


def _stamp_day(value: Any) -> date | None:
    return datetime.fromtimestamp(value, UTC).date() if isinstance(value, int) else None


def _schedules(session: Session, prices: dict[str, dict[str, Any]], currency_of: dict[str, str],
               left_out: list[str]) -> _Scheduled:
    """Schedules still to run: their phases are scheduled price changes of their subscription, and
    a schedule not started yet is a subscription from its first phase's start (committed MRR)."""
    out = _Scheduled()
    S = StripeSubscriptionSchedule  # noqa: N806
    for sched_id, customer_id, sub_id, raw in session.execute(
            select(S.id, S.customer_id, S.subscription_id, S.raw)
            .where(S.status.in_(("not_started", "active")), S.deleted_at.is_(None))):
        raw = raw or {}
        currency = currency_of.get(sub_id or "") or ""
        phases = []
        for i, ph in enumerate(p for p in raw.get("phases") or [] if isinstance(p, dict)):
            start = _stamp_day(ph.get("start_date"))
            if start is None:
                continue
            phase_currency = currency or str(ph.get("currency") or "usd")
            built_items = []
            for it in ph.get("items") or []:
                price_ref = it.get("price") if isinstance(it, dict) else None
                price = price_ref if isinstance(price_ref, dict) else prices.get(str(price_ref))
                built = (_item(price, phase_currency, int(it.get("quantity") or 1), None, ())
                         if price is not None else f"price {price_ref} is not synced")
                if isinstance(built, str):
                    left_out.append(f"subscription schedule {sched_id} phase {i}: {built}")
                else:
                    built_items.append(built)
            phases.append((mrr.Phase(start, tuple(built_items), _stamp_day(ph.get("end_date"))),
                           phase_currency, _stamp_day(ph.get("trial_end"))))
        if not phases:
            continue
        phases.sort(key=lambda p: p[0].start)
        last_end = phases[-1][0].end
        ends = last_end if raw.get("end_behavior") == "cancel" else None
        if sub_id:
            out.attached[sub_id] = (tuple(p for p, _, _ in phases), ends)
        else:
            first, first_currency, trial_end = phases[0]
            out.not_started.append(mrr.Subscription(
                sched_id, customer_id or "", first_currency, "not_started", first.start, first.items,
                trial_end=trial_end, cancel_at=ends, phases=tuple(p for p, _, _ in phases)))
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
    T = RevenueMonthTotal  # noqa: N806
    rows = session.execute(
        select(T.month, T.currency, func.sum(T.gross), func.sum(T.net))
        .where(T.month >= first, T.month <= end).group_by(T.month, T.currency).order_by(T.month)).all()
    return [(m, c, int(g or 0), int(n or 0)) for m, c, g, n in rows]


def _end_of(on: date) -> datetime:
    return datetime.combine(on + timedelta(days=1), datetime.min.time(), tzinfo=UTC)


def deferred_after(session: Session, on: date) -> list[tuple[str, int]]:
    """(currency, net) booked by the end of `on` for months after its month: the deferred balance."""
    next_month = next_month_start(on)
    T = RevenueMonthTotal  # noqa: N806
    rows = session.execute(
        select(T.currency, func.sum(T.net)).where(T.month >= next_month, T.booked_on <= on)
        .group_by(T.currency)).all()
    return [(c, int(n or 0)) for c, n in rows]


def booked_in_month(session: Session, on: date) -> list[tuple[str, int, int]]:
    """(currency, gross, net) of `on`'s month as booked by the end of `on`."""
    T = RevenueMonthTotal  # noqa: N806
    rows = session.execute(
        select(T.currency, func.sum(T.gross), func.sum(T.net))
        .where(T.month == on.replace(day=1), T.booked_on <= on).group_by(T.currency)).all()
    return [(c, int(g or 0), int(n or 0)) for c, g, n in rows]


def revenue_by_customer(session: Session, start: date, end: date) -> list[tuple[str, str, int, int]]:
    """(customer id, currency, gross, net) recognised in months [start, end]."""
    T = RevenueCustomerMonthTotal  # noqa: N806
    rows = session.execute(
        select(T.customer_id, T.currency, func.sum(T.gross), func.sum(T.net))
        .where(T.month >= start.replace(day=1), T.month <= end).group_by(T.customer_id, T.currency)).all()
    return [(str(c), cur, int(g or 0), int(n or 0)) for c, cur, g, n in rows]


def revenue_by_customer_month(session: Session, start: date, end: date,
                              customer_id: str | None = None) -> list[tuple[str, str, date, int, int]]:
    """(customer id, currency, month, gross, net) recognised in months [start, end] (one customer's
    when `customer_id` is given)."""
    if customer_id is not None:
        # One customer: the schedule's key starts with the customer.
        E = RevenueScheduleEntry  # noqa: N806
        rows = session.execute(select(E.customer_id, E.currency, E.month, func.sum(E.gross), func.sum(E.net))
                               .where(E.customer_id == customer_id, E.month >= start.replace(day=1), E.month <= end)
                               .group_by(E.customer_id, E.currency, E.month))
        return [(str(c), cur, m, int(g), int(n)) for c, cur, m, g, n in rows if g or n]
    T = RevenueCustomerMonthTotal  # noqa: N806
    query = select(T.customer_id, T.currency, T.month, T.gross, T.net).where(T.month >= start.replace(day=1),
                                                                            T.month <= end)
    return [(str(c), cur, m, int(g), int(n)) for c, cur, m, g, n in session.execute(query)]


def top_customers_in(session: Session, start: date, end: date, currency: str,
                     limit: int) -> tuple[dict[str, tuple[int, int]], list[tuple[str, str, date, int, int]]]:
    """What ranking customers by revenue in months [start, end] needs, summed by the database:
    (customer → (gross, net) in `currency` itself, for the `limit` best customers in it and every
    customer with revenue in another currency; and those other-currency rows per month, which
    convert each month at its own rate). A customer outside both cannot rank in the top `limit`."""
    T = RevenueCustomerMonthTotal  # noqa: N806
    in_range = (T.month >= start.replace(day=1), T.month <= end)
    # Other currencies: two stretches of the key, either side of `currency` (empty when there is none).
    foreign = [(str(c), cur, m, int(g), int(n)) for c, cur, m, g, n in session.execute(
        select(T.customer_id, T.currency, T.month, T.gross, T.net)
        .where(*in_range, or_(T.currency < currency, T.currency > currency)))]
    others = sorted({row[0] for row in foreign})
    # Ranked by net alone (one sum over the range, not two); the candidates' gross and net then
    # come from the schedule by its key (customer first), a few rows each.
    net = func.sum(T.net)
    ranked = [str(c) for c in session.scalars(select(T.customer_id).where(*in_range, T.currency == currency)
                                               .group_by(T.customer_id).order_by(net.desc(), T.customer_id)
                                               .limit(limit + len(others)))]
    own: dict[str, tuple[int, int]] = {}
    E = RevenueScheduleEntry  # noqa: N806
    for chunk in _chunks(sorted(set(ranked) | set(others))):
        for c, g, n in session.execute(select(E.customer_id, func.sum(E.gross), func.sum(E.net))
                                       .where(E.customer_id.in_(chunk), E.currency == currency,
                                              E.month >= start.replace(day=1), E.month <= end)
                                       .group_by(E.customer_id)):
            own[str(c)] = (int(g), int(n))
    return own, foreign


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


def revenue_by_month_and_source(session: Session, start: date, end: date) -> list[tuple[date, str, str, int, int]]:
    """(month, currency, source type, gross, net) recognised in months [start, end]: `charge` rows
    are one-off charges and payments without an invoice, the rest recurring and plan revenue."""
    T = RevenueMonthTotal  # noqa: N806
    rows = session.execute(
        select(T.month, T.currency, T.source_type, func.sum(T.gross), func.sum(T.net))
        .where(T.month >= start.replace(day=1), T.month <= end)
        .group_by(T.month, T.currency, T.source_type).order_by(T.month)).all()
    return [(m, c, t, int(g or 0), int(n or 0)) for m, c, t, g, n in rows]


def one_off_charges(session: Session, start: date, end: date) -> list[tuple[str, str | None, str, date, int, int]]:
    """(charge id, customer, currency, month, gross, net) of one-off charges in months [start, end]."""
    E = RevenueScheduleEntry  # noqa: N806
    rows = session.execute(
        select(E.source_id, E.customer_id, E.currency, E.month, func.sum(E.gross), func.sum(E.net))
        .where(E.source_type == "charge", E.month >= start.replace(day=1), E.month <= end)
        .group_by(E.source_id, E.customer_id, E.currency, E.month).order_by(E.month, E.source_id)).all()
    return [(str(i), c, cur, m, int(g or 0), int(n or 0)) for i, c, cur, m, g, n in rows]


def plan_contracts(session: Session, on: date) -> list[dict[str, Any]]:
    """Prepaid plans as contracted revenue on `on`: per plan, money received, recognised by `on`'s
    month, still deferred after it, the credit granted, the customer's credit left and the term's last day.

    A plan is the `plan:<key>` obligation of the revenue schedule (domain.recognition), so these
    figures are the schedule's own; credit is from the plan's balance transactions and the term
    end from its invoices' line periods."""
    E = RevenueScheduleEntry  # noqa: N806
    month = on.replace(day=1)
    plans: dict[str, dict[str, Any]] = {}
    for line_id, customer_id, currency, entry_month, gross, net in session.execute(
            select(E.line_id, E.customer_id, E.currency, E.month, E.gross, E.net)
            .where(E.source_type == "plan", E.paid_at < _end_of(on))):
        key = line_id.rsplit("@", 1)[0].removeprefix("plan:")
        p = plans.setdefault(key, {"plan_key": key, "customer_id": customer_id, "currency": currency,
                                   "received": 0, "recognised": 0, "deferred": 0})
        p["received"] += int(gross or 0)
        if entry_month <= month:
            p["recognised"] += int(net or 0)
        else:
            p["deferred"] += int(net or 0)
    if not plans:
        return []
    keys = sorted(plans)
    credit: dict[str, int] = defaultdict(int)
    B = StripeCustomerBalanceTransaction  # noqa: N806
    terms: dict[str, date] = {}
    for chunk in _chunks(keys):
        for plan_key, amount in session.execute(select(B.plan_key, B.amount).where(B.plan_key.in_(chunk))):
            credit[plan_key or ""] -= int(amount or 0)  # a credit is a negative balance transaction
    # The plans' own invoices (a partial index holds only invoices with a plan), then their lines.
    plan_of = {iid: key for iid, key in session.execute(
        select(StripeInvoice.id, StripeInvoice.plan_key).where(StripeInvoice.plan_key.is_not(None))) if key in plans}
    for chunk in _chunks(sorted(plan_of)):
        for invoice_id, end in session.execute(
                select(StripeInvoiceLine.invoice_id, func.max(StripeInvoiceLine.period_end))
                .where(StripeInvoiceLine.invoice_id.in_(chunk)).group_by(StripeInvoiceLine.invoice_id)):
            day = _day(end)
            key = plan_of[invoice_id or ""]
            if day is not None and (key not in terms or day - timedelta(days=1) > terms[key]):
                terms[key] = day - timedelta(days=1)  # Stripe's period end is exclusive
    balances: dict[str, int] = {}
    customer_ids = sorted({p["customer_id"] for p in plans.values() if p["customer_id"]})
    for chunk in _chunks(customer_ids):
        for cid, balance in session.execute(select(StripeCustomer.id, StripeCustomer.raw["balance"].as_integer())
                                            .where(StripeCustomer.id.in_(chunk))):
            balances[cid] = int(balance or 0)
    out = []
    for key in keys:
        p = plans[key]
        granted = max(credit.get(key, 0), 0)
        # Stripe keeps one balance per customer: the credit left is what is on it, at most this plan's.
        left = min(max(-balances.get(p["customer_id"] or "", 0), 0), granted)
        out.append({**p, "credit_granted": granted, "credit_left": left, "term_end": terms.get(key)})
    return out
