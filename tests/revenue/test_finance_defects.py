"""Issue 18's defects, each against the real sandbox, sync and SQL: money counted once, closed
months that stay closed, a failed run that loses nothing, late webhooks that never win, tax."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from settings import Settings
from store import sync as stripe_sync
from store.db import unit_of_work
from store.revenue import rebuild, rebuild_all
from store.sync import apply_stripe_event, full_sync, incremental_sync
from store.warehouse import RevenueScheduleEntry, StripeSubscriptionItem, row_for, upsert
from tests.revenue.conftest import CARD

DAY = 86400


def events(sandbox: Any, type_: str, object_id: str) -> list[dict[str, Any]]:
    """The sandbox's events of one type about one object, oldest first, as plain JSON."""
    found = [e.to_dict(for_json=True) for e in sandbox.client().v1.events.list({"limit": 100}).auto_paging_iter()]
    return [e for e in reversed(found) if e["type"] == type_ and e["data"]["object"]["id"] == object_id]


def revenue(settings: Settings, **where: Any) -> int:
    with unit_of_work(settings.database_url) as s:
        q = select(func.coalesce(func.sum(RevenueScheduleEntry.net), 0))
        for column, value in where.items():
            q = q.where(getattr(RevenueScheduleEntry, column) == value)
        return int(s.scalar(q) or 0)


def by_month(settings: Settings, customer: str) -> dict[date, int]:
    with unit_of_work(settings.database_url) as s:
        rows = s.execute(select(RevenueScheduleEntry.month, func.sum(RevenueScheduleEntry.net))
                         .where(RevenueScheduleEntry.customer_id == customer)
                         .group_by(RevenueScheduleEntry.month)).all()
    return {m: int(n) for m, n in rows if n}


def card_invoice(client: Any, customer: str, amount: int, start: int, end: int) -> str:
    invoice = client.v1.invoices.create({"customer": customer, "collection_method": "charge_automatically"})
    client.v1.invoice_items.create({"customer": customer, "invoice": invoice.id, "amount": amount,
                                    "currency": "usd", "period": {"start": start, "end": end}})
    client.v1.invoices.finalize_invoice(invoice.id, {"auto_advance": False})
    client.v1.invoices.pay(invoice.id, {"payment_method": "pm_card_visa"})
    return str(invoice.id)


def test_a_charge_webhook_before_invoice_paid_counts_the_payment_once(fresh_stripe_sandbox: Any,
                                                                      revenue_settings: Settings) -> None:
    """Defect 1: 500.00 paid → 500.00 recognised, whatever order the webhooks come in."""
    client = fresh_stripe_sandbox.client()
    customer = client.v1.customers.create({"email": "once@example.com", **CARD})  # type: ignore[typeddict-item]
    now = fresh_stripe_sandbox.now()
    invoice = card_invoice(client, customer.id, 50_000, now, now)
    charge_event = next(e for e in reversed(
        [e.to_dict(for_json=True) for e in client.v1.events.list({"limit": 100}).auto_paging_iter()])
        if e["type"] == "charge.succeeded")
    # The webhook for the charge arrives first: nothing names the invoice yet, so it is a one-off.
    apply_stripe_event(revenue_settings, charge_event)
    assert revenue(revenue_settings, customer_id=customer.id) == 50_000
    for e in events(fresh_stripe_sandbox, "invoice.finalized", invoice) + events(
            fresh_stripe_sandbox, "invoice.paid", invoice):
        apply_stripe_event(revenue_settings, e)
    # invoice.paid re-reads the invoice with its payments: the charge is the invoice's.
    assert revenue(revenue_settings, customer_id=customer.id) == 50_000
    assert revenue(revenue_settings, source_type="charge") == 0
    # And again after a full sync.
    full_sync(revenue_settings, rate=None)
    assert revenue(revenue_settings, customer_id=customer.id) == 50_000


def test_a_refund_in_july_leaves_january_to_june_as_they_were(fresh_stripe_sandbox: Any,
                                                              revenue_settings: Settings) -> None:
    """Defect 2: a July refund of half an annual invoice is booked in July, not spread back."""
    client = fresh_stripe_sandbox.client()
    customer = client.v1.customers.create({"email": "closed@example.com", **CARD})  # type: ignore[typeddict-item]
    start = fresh_stripe_sandbox.now()
    first = datetime.fromtimestamp(start, UTC).date().replace(day=1)
    invoice = card_invoice(client, customer.id, 120_000, start, start + 365 * DAY)
    full_sync(revenue_settings, rate=None)
    before = by_month(revenue_settings, customer.id)
    fresh_stripe_sandbox.advance(190 * DAY)  # about six months later
    refund_day = datetime.fromtimestamp(fresh_stripe_sandbox.now(), UTC).date()
    charge = client.v1.charges.list({"customer": customer.id}).data[0]
    client.v1.refunds.create({"charge": charge.id, "amount": 60_000})
    incremental_sync(revenue_settings, rate=None)
    after = by_month(revenue_settings, customer.id)
    refund_month = refund_day.replace(day=1)
    closed = [m for m in before if m < refund_month]
    assert len(closed) >= 6 and first in closed
    assert {m: after.get(m) for m in closed} == {m: before[m] for m in closed}
    # The refund comes out of what was still deferred (the refund's month on); what it does not
    # cover would be a negative adjustment in the refund's month. The invoice nets to 600.00.
    still = sum(v for m, v in before.items() if m >= refund_month)
    assert sum(v for m, v in after.items() if m >= refund_month) == still - 60_000
    assert sum(after.values()) == 60_000
    assert revenue(revenue_settings, source_id=invoice) == 60_000


def test_a_failed_incremental_run_loses_nothing(fresh_stripe_sandbox: Any, revenue_settings: Settings,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 3: the events cursor moves only with the rebuild it covers."""
    client = fresh_stripe_sandbox.client()
    customer = client.v1.customers.create({"email": "lost@example.com"})
    full_sync(revenue_settings, rate=None)
    now = fresh_stripe_sandbox.now()
    invoice = client.v1.invoices.create({"customer": customer.id, "collection_method": "send_invoice",
                                         "days_until_due": 30})
    client.v1.invoice_items.create({"customer": customer.id, "invoice": invoice.id, "amount": 7_000,
                                    "currency": "usd", "period": {"start": now, "end": now}})
    client.v1.invoices.finalize_invoice(invoice.id)
    client.v1.invoices.pay(invoice.id, {"paid_out_of_band": True})
    # More than one batch of events, the invoice's in an earlier second than the last ones.
    fresh_stripe_sandbox.advance(10)
    for i in range(120):
        client.v1.customers.create({"email": f"later{i}@example.com"})
    real = stripe_sync._rebuild

    def fails_once(*args: Any, **kwargs: Any) -> None:
        monkeypatch.setattr(stripe_sync, "_rebuild", real)
        raise RuntimeError("the database went away mid-run")

    monkeypatch.setattr(stripe_sync, "_rebuild", fails_once)
    with pytest.raises(RuntimeError, match="went away"):
        incremental_sync(revenue_settings, rate=None)
    incremental_sync(revenue_settings, rate=None)
    assert revenue(revenue_settings, source_id=invoice.id) == 7_000


def test_a_stale_subscription_event_does_not_roll_items_back(fresh_stripe_sandbox: Any,
                                                             revenue_settings: Settings) -> None:
    """Defect 4: subscription items follow the newest event, not the last delivered."""
    client = fresh_stripe_sandbox.client()
    customer = client.v1.customers.create({"email": "stale@example.com", **CARD})  # type: ignore[typeddict-item]
    sub = client.v1.subscriptions.create({"customer": customer.id,
                                          "items": [{"price": "price_product_analytics_default"}]})
    full_sync(revenue_settings, rate=None)
    item = sub["items"].data[0].id
    fresh_stripe_sandbox.advance(60)
    client.v1.subscriptions.update(sub.id, {"items": [{"id": item, "quantity": 3}]})
    fresh_stripe_sandbox.advance(60)
    client.v1.subscriptions.update(sub.id, {"items": [{"id": item, "quantity": 2}]})
    updates = events(fresh_stripe_sandbox, "customer.subscription.updated", sub.id)
    assert len(updates) >= 2
    apply_stripe_event(revenue_settings, updates[-1])
    apply_stripe_event(revenue_settings, updates[0])  # late delivery of the older change
    with unit_of_work(revenue_settings.database_url) as s:
        assert s.scalar(select(StripeSubscriptionItem.quantity).where(StripeSubscriptionItem.id == item)) == 2


def test_a_late_invoice_finalized_from_the_same_second_does_not_undo_paid(fresh_stripe_sandbox: Any,
                                                                          revenue_settings: Settings) -> None:
    """Defect 4: on a tie the object is fetched, so paid stays paid and its revenue stays."""
    client = fresh_stripe_sandbox.client()
    customer = client.v1.customers.create({"email": "tie@example.com"})
    now = fresh_stripe_sandbox.now()
    invoice = client.v1.invoices.create({"customer": customer.id, "collection_method": "send_invoice",
                                         "days_until_due": 30})
    client.v1.invoice_items.create({"customer": customer.id, "invoice": invoice.id, "amount": 4_200,
                                    "currency": "usd", "period": {"start": now, "end": now}})
    client.v1.invoices.finalize_invoice(invoice.id)
    client.v1.invoices.pay(invoice.id, {"paid_out_of_band": True})
    finalized = events(fresh_stripe_sandbox, "invoice.finalized", invoice.id)[0]
    paid = events(fresh_stripe_sandbox, "invoice.paid", invoice.id)[0]
    # Both in the same second, as Stripe stamps events that close together (the sandbox's clock
    # may tick between the two calls on a busy machine).
    finalized = {**finalized, "created": paid["created"]}
    apply_stripe_event(revenue_settings, paid)
    apply_stripe_event(revenue_settings, finalized)
    assert revenue(revenue_settings, source_id=invoice.id) == 4_200


def _store(settings: Settings, *objects: dict[str, Any]) -> None:
    from store.warehouse import TABLES

    with unit_of_work(settings.database_url) as s:
        for o in objects:
            upsert(s, TABLES[o["object"]][0], [row_for(o)])


def test_tax_is_never_revenue(revenue_settings: Settings) -> None:
    """Defect 5, through the warehouse's own SQL: Stripe objects as the API shapes them."""
    paid = int(datetime(2027, 5, 3, tzinfo=UTC).timestamp())
    later = int(datetime(2027, 5, 20, tzinfo=UTC).timestamp())
    customer = {"id": "cus_tax", "object": "customer", "created": paid, "metadata": {}}
    # 100.00 + 20.00 VAT (exclusive), paid; a credit note for half of it, tax included.
    exclusive = {"id": "in_ex", "object": "invoice", "customer": "cus_tax", "created": paid, "currency": "eur",
                 "status": "paid", "total": 12_000, "total_excluding_tax": 10_000, "amount_paid": 12_000,
                 "status_transitions": {"paid_at": paid, "finalized_at": paid}, "starting_balance": 0,
                 "ending_balance": 0}
    ex_line = {"id": "il_ex", "object": "line_item", "invoice": "in_ex", "amount": 10_000, "currency": "eur",
               "period": {"start": paid, "end": paid},
               "taxes": [{"amount": 2_000, "tax_behavior": "exclusive"}]}
    note = {"id": "cn_ex", "object": "credit_note", "invoice": "in_ex", "customer": "cus_tax", "created": later,
            "total": 6_000, "total_excluding_tax": 5_000, "currency": "eur", "status": "issued",
            "type": "post_payment"}
    # 120.00 with 20.00 VAT inside the price (inclusive).
    inclusive = {"id": "in_in", "object": "invoice", "customer": "cus_tax", "created": paid, "currency": "eur",
                 "status": "paid", "total": 12_000, "total_excluding_tax": 10_000, "amount_paid": 12_000,
                 "status_transitions": {"paid_at": paid, "finalized_at": paid}}
    in_line = {"id": "il_in", "object": "line_item", "invoice": "in_in", "amount": 12_000, "currency": "eur",
               "period": {"start": paid, "end": paid},
               "taxes": [{"amount": 2_000, "tax_behavior": "inclusive"}]}
    _store(revenue_settings, customer, exclusive, ex_line, note, inclusive, in_line)
    with unit_of_work(revenue_settings.database_url) as s:
        rebuild(s, invoices=["in_ex", "in_in"], charges=[], customers=[])
    assert revenue(revenue_settings, source_id="in_ex") == 5_000  # half of 100.00, not 40.00
    assert revenue(revenue_settings, source_id="in_in") == 10_000  # the VAT inside is not revenue


def test_concurrent_rebuilds_of_one_customer_do_not_collide(revenue_settings: Settings) -> None:
    """Defect 3: a webhook's rebuild and a sync's rebuild of the same customer at once (on
    PostgreSQL this was a UniqueViolation on the schedule)."""
    import threading

    paid = int(datetime(2027, 2, 1, tzinfo=UTC).timestamp())
    objects: list[dict[str, Any]] = [{"id": "cus_race", "object": "customer", "created": paid, "metadata": {}}]
    for i in range(5):
        objects += [{"id": f"in_race{i}", "object": "invoice", "customer": "cus_race", "created": paid,
                     "currency": "usd", "status": "paid", "total": 120_000, "amount_paid": 120_000,
                     "status_transitions": {"paid_at": paid}},
                    {"id": f"il_race{i}", "object": "line_item", "invoice": f"in_race{i}", "amount": 120_000,
                     "currency": "usd", "period": {"start": paid, "end": paid + 365 * DAY}}]
    _store(revenue_settings, *objects)
    errors: list[BaseException] = []
    start = threading.Barrier(5)

    def rebuild_many() -> None:
        try:
            start.wait()
            for _ in range(15):
                with unit_of_work(revenue_settings.database_url) as s:
                    rebuild(s, invoices=["in_race0"], charges=[], customers=["cus_race"])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def full_rebuilds() -> None:  # a full sync's rebuild at the same time
        try:
            start.wait()
            for _ in range(8):
                with unit_of_work(revenue_settings.database_url) as s:
                    rebuild_all(s)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=rebuild_many) for _ in range(4)] + [threading.Thread(target=full_rebuilds)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert revenue(revenue_settings, customer_id="cus_race") == 5 * 120_000


def test_a_partial_payment_is_money_when_it_arrives_and_the_rest_when_it_does(revenue_settings: Settings) -> None:
    """Defect 1, partial payments: each invoice payment is dated by itself; earlier months stay."""
    first = int(datetime(2027, 1, 5, tzinfo=UTC).timestamp())
    second = int(datetime(2027, 3, 5, tzinfo=UTC).timestamp())
    line = {"id": "il_part", "object": "line_item", "invoice": "in_part", "amount": 100_000, "currency": "usd",
            "period": {"start": first, "end": first}}
    open_invoice = {"id": "in_part", "object": "invoice", "customer": "cus_part", "created": first,
                    "currency": "usd", "status": "open", "total": 100_000, "amount_paid": 40_000,
                    "status_transitions": {"finalized_at": first},
                    "payments": {"data": [{"id": "inpay_1", "object": "invoice_payment", "amount_paid": 40_000,
                                           "currency": "usd", "status": "paid", "invoice": "in_part",
                                           "payment": {"type": "charge", "charge": "ch_part1"},
                                           "status_transitions": {"paid_at": first}, "created": first}]}}
    _store(revenue_settings, {"id": "cus_part", "object": "customer", "created": first, "metadata": {}},
           open_invoice, line, {"id": "ch_part1", "object": "charge", "customer": "cus_part", "created": first,
                                "amount": 40_000, "currency": "usd", "status": "succeeded", "paid": True})
    from store.revenue import link_invoice_payments

    with unit_of_work(revenue_settings.database_url) as s:
        link_invoice_payments(s, open_invoice)
        rebuild(s, invoices=["in_part"], charges=["ch_part1"], customers=[])
    assert by_month(revenue_settings, "cus_part") == {date(2027, 1, 1): 40_000}  # the charge is not a one-off too
    paid_invoice = {**open_invoice, "status": "paid", "amount_paid": 100_000,
                    "status_transitions": {"finalized_at": first, "paid_at": second},
                    "payments": {"data": [*open_invoice["payments"]["data"],  # type: ignore[index]
                                          {"id": "inpay_2", "object": "invoice_payment", "amount_paid": 60_000,
                                           "currency": "usd", "status": "paid", "invoice": "in_part",
                                           "payment": {"type": "charge", "charge": "ch_part2"},
                                           "status_transitions": {"paid_at": second}, "created": second}]}}
    _store(revenue_settings, paid_invoice, {"id": "ch_part2", "object": "charge", "customer": "cus_part",
                                            "created": second, "amount": 60_000, "currency": "usd",
                                            "status": "succeeded", "paid": True})
    with unit_of_work(revenue_settings.database_url) as s:
        link_invoice_payments(s, paid_invoice)
        rebuild(s, invoices=["in_part"], charges=["ch_part2"], customers=[])
    assert by_month(revenue_settings, "cus_part") == {date(2027, 1, 1): 40_000, date(2027, 3, 1): 60_000}


def test_an_invoice_whose_lines_are_not_synced_still_counts_its_money(revenue_settings: Settings) -> None:
    paid = int(datetime(2027, 6, 2, tzinfo=UTC).timestamp())
    _store(revenue_settings, {"id": "cus_nl", "object": "customer", "created": paid, "metadata": {}},
           {"id": "in_nl", "object": "invoice", "customer": "cus_nl", "created": paid, "currency": "usd",
            "status": "paid", "total": 3_300, "amount_paid": 3_300, "status_transitions": {"paid_at": paid}})
    with unit_of_work(revenue_settings.database_url) as s:
        rebuild(s, invoices=["in_nl"], charges=[], customers=[])
    assert by_month(revenue_settings, "cus_nl") == {date(2027, 6, 1): 3_300}
