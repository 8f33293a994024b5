"""A rebuild through the set-based path (store/revenue_fast.py) writes the same schedule as the
per-customer ledger (the reference), and the pre-aggregates equal the schedule summed again —
on random warehouses holding every kind of money: plain invoices, taxes, split and partial
payments, credit notes, refunds, lost disputes, one-off charges, prepaid plans with their credit,
installment customers and gifts; after a full rebuild and after incremental ones."""

from __future__ import annotations

import os
import pickle
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, insert, select, text

from domain import recognition
from store import revenue, revenue_fast
from store.db import unit_of_work
from store.revenue import rebuild, rebuild_all
from store.revenue_totals import RevenueCustomerDay, RevenueCustomerMonthTotal, RevenueMonthTotal
from store.warehouse import (
    RevenueScheduleEntry,
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

TABLES = (StripeCustomer, StripeInvoice, StripeInvoiceLine, StripeInvoicePayment, StripeCreditNote, StripeCharge,
          StripeRefund, StripeDispute, StripeCustomerBalanceTransaction)
START = datetime(2025, 1, 1, tzinfo=UTC)


def _warehouse(rng: random.Random) -> dict[Any, list[dict[str, Any]]]:
    now = datetime.now(UTC)
    rows: dict[Any, list[dict[str, Any]]] = {t: [] for t in TABLES}

    def add(table: Any, **values: Any) -> None:
        rows[table].append({"created": values.pop("created", START), "raw": values.pop("raw", {}),
                            "synced_at": now, **values})

    def when() -> datetime:
        return START + timedelta(days=rng.randrange(500), seconds=rng.randrange(86400))

    n = rng.randrange(4, 14)
    for c in range(n):
        plan = f"inst:plan-{c}" if rng.random() < 0.25 else None
        member = rng.random() < 0.15 and c > 0
        add(StripeCustomer, id=f"cus_{c}", ledger_customer_id="cus_0" if member else None,
            plan_key="inst:plan-0" if member else None)
        if plan:
            paid = when()
            add(StripeInvoice, id=f"in_plan_{c}", customer_id=f"cus_{c}", status="paid", currency="usd",
                total=1_200_000, amount_paid=1_200_000, paid_at=paid, plan_key=plan, created=paid)
            add(StripeInvoiceLine, id=f"il_plan_{c}", invoice_id=f"in_plan_{c}", amount=1_200_000, currency="usd",
                quantity=1, period_start=paid, period_end=paid + timedelta(days=365))
            add(StripeCustomerBalanceTransaction, id=f"cbtxn_plan_{c}", customer_id=f"cus_{c}", amount=-1_500_000,
                currency="usd", type="adjustment", plan_key=plan, created=paid + timedelta(minutes=1))
        if rng.random() < 0.15:
            add(StripeCustomerBalanceTransaction, id=f"cbtxn_gift_{c}", customer_id=f"cus_{c}",
                amount=-rng.randrange(100, 5000), currency="usd", type=rng.choice(["adjustment", "credit_note"]),
                created=when())
        for i in range(rng.randrange(0, 5)):
            iid = f"in_{c}_{i}"
            paid_at = when()
            currency = rng.choice(["usd", "usd", "eur", "jpy"])
            net = 0
            for j in range(rng.randrange(0, 5)):
                amount = rng.choice([rng.randrange(-2000, 90000), 0, 1, 99999])
                discount = rng.randrange(0, 300) if rng.random() < 0.2 else 0
                start = paid_at + timedelta(days=rng.randrange(-60, 10)) if rng.random() < 0.85 else None
                end = start + timedelta(days=rng.choice([0, 1, 30, 31, 92, 365])) if start else None
                net += amount - discount
                add(StripeInvoiceLine, id=f"il_{c}_{i}_{j}", invoice_id=iid, amount=amount, discount_amount=discount,
                    currency=currency, quantity=1, period_start=start, period_end=end,
                    deleted_at=now if rng.random() < 0.05 else None)
            tax = max(net, 0) // 10 if rng.random() < 0.3 else 0
            total = max(net + tax, 0)
            status = rng.choice(["paid", "paid", "paid", "open"])
            applied = rng.randrange(0, total + 1) if rng.random() < 0.15 else 0
            paid = total - applied if status == "paid" else rng.randrange(0, total + 1)
            add(StripeInvoice, id=iid, customer_id=f"cus_{c}", status=status, currency=currency, total=total, tax=tax,
                amount_paid=paid, balance_applied=applied, paid_at=paid_at if status == "paid" else None,
                finalized_at=paid_at - timedelta(days=rng.randrange(0, 3)), created=paid_at - timedelta(days=3),
                plan_key=plan if plan and rng.random() < 0.3 else None)
            payments = rng.choice([0, 0, 1, 1, 2])
            for k in range(payments):
                amount = paid if payments == 1 and rng.random() < 0.8 else rng.randrange(0, paid + 1)
                add(StripeInvoicePayment, id=f"inpay_{c}_{i}_{k}", invoice_id=iid, amount_paid=amount,
                    currency=currency, status=rng.choice(["paid", "paid", "open"]),
                    paid_at=paid_at + timedelta(hours=k), charge_id=f"ch_{c}_{i}" if k == 0 else None)
            if paid and rng.random() < 0.5:
                add(StripeCharge, id=f"ch_{c}_{i}", customer_id=f"cus_{c}",
                    invoice_id=iid if rng.random() < 0.5 else None, amount=paid, currency=currency,
                    status="succeeded", paid=True, created=paid_at)
                if rng.random() < 0.2:
                    add(StripeRefund, id=f"re_{c}_{i}", charge_id=f"ch_{c}_{i}", amount=rng.randrange(1, paid + 1),
                        currency=currency, status="succeeded", created=paid_at + timedelta(days=rng.randrange(1, 90)))
                if rng.random() < 0.1:
                    add(StripeDispute, id=f"dp_{c}_{i}", charge_id=f"ch_{c}_{i}", amount=paid, currency=currency,
                        status=rng.choice(["lost", "won"]), created=paid_at + timedelta(days=5),
                        lost_at=paid_at + timedelta(days=40))
            if rng.random() < 0.1:
                add(StripeCreditNote, id=f"cn_{c}_{i}", invoice_id=iid, customer_id=f"cus_{c}",
                    total=rng.randrange(1, max(total, 2)), currency=currency,
                    status=rng.choice(["issued", "void"]), created=paid_at + timedelta(days=rng.randrange(-2, 60)),
                    raw={"type": rng.choice(["post_payment", "pre_payment"])})
        if rng.random() < 0.2:
            add(StripeCharge, id=f"ch_oneoff_{c}", customer_id=f"cus_{c}", amount=rng.randrange(100, 9000),
                currency="usd", status="succeeded", paid=True, created=when())
    return rows


def _fill(url: str, rows: dict[Any, list[dict[str, Any]]]) -> None:
    with unit_of_work(url) as s:
        for table in (RevenueScheduleEntry, RevenueMonthTotal, RevenueCustomerMonthTotal, RevenueCustomerDay,
                      *TABLES):
            s.execute(delete(table))
        for table, found in rows.items():
            for row in found:
                s.execute(insert(table), [row])


def _schedule(url: str) -> list[tuple[Any, ...]]:
    with unit_of_work(url) as s:
        return sorted(tuple(r) for r in s.execute(select(
            RevenueScheduleEntry.source_type, RevenueScheduleEntry.source_id, RevenueScheduleEntry.line_id,
            RevenueScheduleEntry.customer_id, RevenueScheduleEntry.month, RevenueScheduleEntry.currency,
            RevenueScheduleEntry.gross, RevenueScheduleEntry.net, RevenueScheduleEntry.paid_at)))


def _totals(url: str) -> tuple[list[tuple[Any, ...]], ...]:
    """The three pre-aggregates as kept, and as the schedule sums them now."""
    day = "CAST(paid_at AT TIME ZONE 'UTC' AS DATE)" if url.startswith("postgresql") else "substr(paid_at, 1, 10)"
    with unit_of_work(url) as s:
        def rows(sql: str) -> list[tuple[Any, ...]]:
            return sorted((*(str(v) for v in r[:-2]), int(r[-2]), int(r[-1])) for r in s.execute(text(sql)))
        return (
            rows("SELECT month, booked_on, currency, source_type, gross, net FROM revenue_month_totals"),
            rows("SELECT month, DAY, currency, source_type, SUM(gross), SUM(net) FROM revenue_schedule "
                 "GROUP BY 1, 2, 3, 4 HAVING SUM(gross) <> 0 OR SUM(net) <> 0".replace("DAY", day)),
            rows("SELECT customer_id, month, currency, gross, net FROM revenue_customer_month_totals"),
            rows("SELECT customer_id, month, currency, SUM(gross), SUM(net) FROM revenue_schedule "
                 "WHERE customer_id IS NOT NULL GROUP BY 1, 2, 3 HAVING SUM(gross) <> 0 OR SUM(net) <> 0"),
            rows("SELECT customer_id, booked_on, currency, gross, net FROM revenue_customer_days"),
            rows("SELECT customer_id, DAY, currency, SUM(gross), SUM(net) FROM revenue_schedule WHERE customer_id "
                 "IS NOT NULL GROUP BY 1, 2, 3 HAVING SUM(gross) <> 0 OR SUM(net) <> 0".replace("DAY", day)),
        )


def _assert_totals_match(url: str) -> None:
    kept_months, summed_months, kept_cm, summed_cm, kept_days, summed_days = _totals(url)
    assert kept_months == summed_months
    assert kept_cm == summed_cm
    assert kept_days == summed_days


@settings(max_examples=int(os.environ.get("RECOMPUTE_EXAMPLES", "12")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), policy=st.sampled_from(["consumption", "ratable"]))
def test_the_set_based_rebuild_writes_what_the_ledger_writes(database_url: str, seed: int, policy: str) -> None:
    rng = random.Random(seed)
    rows = _warehouse(rng)
    _fill(database_url, rows)
    with unit_of_work(database_url) as s:
        rebuild_all(s, policy, set_based=False)
    reference = _schedule(database_url)
    # Chunks of a few invoices too: a customer's invoices are never split between two.
    with unit_of_work(database_url) as s, patch.object(revenue_fast, "CHUNK_INVOICES", rng.choice([1, 3, 20_000])):
        rebuild_all(s, policy)
    assert _schedule(database_url) == reference
    _assert_totals_match(database_url)

    # Incremental: change some invoices (amounts, a new credit note), rebuild only them; the result
    # equals a full rebuild through the ledger, and the totals still match the schedule.
    invoices = [r["id"] for r in rows[StripeInvoice]]
    changed = rng.sample(invoices, min(len(invoices), 3))
    with unit_of_work(database_url) as s:
        for iid in changed:
            s.execute(StripeInvoiceLine.__table__.update().where(StripeInvoiceLine.invoice_id == iid)  # type: ignore[attr-defined]
                      .values(amount=StripeInvoiceLine.amount + 7))
            if rng.random() < 0.5:
                s.execute(insert(StripeCreditNote), [{"id": f"cn_new_{iid}", "invoice_id": iid, "total": 300,
                                                      "currency": "usd", "status": "issued", "raw": {},
                                                      "created": START + timedelta(days=600),
                                                      "synced_at": START}])
        rebuild(s, invoices=changed, charges=(), customers=(), policy=policy)
    incremental = _schedule(database_url)
    _assert_totals_match(database_url)
    with unit_of_work(database_url) as s:
        rebuild_all(s, policy, set_based=False)
    assert incremental == _schedule(database_url)
    with unit_of_work(database_url) as s:
        count = s.scalar(select(func.count()).select_from(RevenueScheduleEntry))
    assert count == len(incremental)


def _written_elsewhere_as_the_ledger_writes(database_url: str, monkeypatch: Any, seeds: tuple[int, ...],
                                            module: Any, name: str, what: str) -> None:
    """For each seed's warehouse, a full rebuild writes the ledger's schedule while `module.name`
    (what would do the work in this process) is made to fail: the work was done elsewhere."""
    def not_here(*_: Any) -> None:
        raise AssertionError(f"{what} ran in this process, not in its own")

    for seed in seeds:
        _fill(database_url, _warehouse(random.Random(seed)))
        with unit_of_work(database_url) as s:
            rebuild_all(s, set_based=False)
        reference = _schedule(database_url)
        with unit_of_work(database_url) as s, monkeypatch.context() as patched:
            patched.setattr(module, name, not_here)
            rebuild_all(s)
        assert _schedule(database_url) == reference
        _assert_totals_match(database_url)


def test_the_ledger_in_a_process_of_its_own_writes_the_same(database_url: str, monkeypatch: Any) -> None:
    """From LEDGER_PROCESS_CUSTOMERS ledger customers on, the ledger runs in another process."""
    monkeypatch.setattr(revenue, "LEDGER_PROCESS_CUSTOMERS", 1)
    _written_elsewhere_as_the_ledger_writes(database_url, monkeypatch, (11, 12, 13), recognition, "schedules",
                                            "the ledger")


def test_plain_invoices_read_in_a_process_of_their_own_write_the_same(database_url: str, monkeypatch: Any) -> None:
    """From PLAIN_PROCESS_INVOICES invoices on, a full rebuild's plain invoices are read and
    recognised in another process and written here chunk by chunk as they come (three invoices a
    chunk here, so a customer's invoices meet a chunk's end: they are never split)."""
    monkeypatch.setattr(revenue_fast, "PLAIN_PROCESS_INVOICES", 1)
    monkeypatch.setattr(revenue_fast, "CHUNK_INVOICES", 3)
    _written_elsewhere_as_the_ledger_writes(database_url, monkeypatch, (21, 22, 23), revenue_fast, "_chunks",
                                            "reading the plain invoices")


def _child(code: str) -> Any:
    """A stand-in for `python -m store.revenue_fast` running `code`."""
    def start(*_: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                env={**os.environ, "PYTHONPATH": str(Path(revenue_fast.__file__).parent.parent)})
    return start


def test_a_plain_invoices_process_that_fails_loses_nothing(database_url: str, monkeypatch: Any,
                                                            tmp_path: Path) -> None:
    """Failing before it sends anything, the other process leaves the work to this one (same
    schedule); failing halfway, after some rows were written, it fails the rebuild: the schedule
    and its totals stay what they were, nothing half-written is committed."""
    monkeypatch.setattr(revenue_fast, "PLAIN_PROCESS_INVOICES", 1)
    for seed in range(31, 60):  # the first warehouse with plain invoices
        _fill(database_url, _warehouse(random.Random(seed)))
        with unit_of_work(database_url) as s:
            chunks = [c for c in revenue_fast._chunks(s, None, revenue_fast.ledger_customers(s, None))
                      if c.schedule is not None]
        if chunks:
            break
    assert chunks, "a warehouse with plain invoices to write"
    with unit_of_work(database_url) as s:
        rebuild_all(s, set_based=False)
    reference, totals = _schedule(database_url), _totals(database_url)

    monkeypatch.setattr(revenue_fast, "module_process", _child("import sys; sys.stdin.read(); sys.exit(3)"))
    with unit_of_work(database_url) as s:
        rebuild_all(s)
    assert _schedule(database_url) == reference

    # One chunk of real rows is sent, then the process dies.
    sent = tmp_path / "chunk.pickle"
    sent.write_bytes(pickle.dumps(chunks[0]))
    monkeypatch.setattr(revenue_fast, "module_process", _child(
        f"import sys; sys.stdin.buffer.read(); sys.stdout.buffer.write(open({str(sent)!r}, 'rb').read()); "
        "sys.stdout.flush(); sys.exit(4)"))
    with pytest.raises(RuntimeError, match="stopped early"), unit_of_work(database_url) as s:
        rebuild_all(s)
    assert _schedule(database_url) == reference
    assert _totals(database_url) == totals
