"""Subscriptions, schedules and the sandbox clock (each test on its own fresh sandbox)."""

from __future__ import annotations

import pytest
import stripe

from sandbox.stripe import catalog
from sandbox.stripe.harness import StripeSandbox

from .helpers import control

DAY = 86400
PA = catalog.PRICES["product_analytics"]["default"]
SR = catalog.PRICES["session_replay"]["default"]
FF = catalog.PRICES["feature_flags"]["default"]


def _carded(client: stripe.StripeClient, email: str, card: str = "pm_card_visa") -> stripe.Customer:
    """A customer with a default card: a customer made through the API has none."""
    return client.v1.customers.create(
        {"email": email, "payment_method": card, "invoice_settings": {"default_payment_method": card}}
    )


def _types(client: stripe.StripeClient, obj_id: str) -> list[str]:
    events = client.v1.events.list({"limit": 100}).auto_paging_iter()
    return [e.type for e in reversed(list(events)) if e.data.object.id == obj_id]


def test_subscription_create_renew_and_item_periods(fresh_stripe_sandbox: StripeSandbox) -> None:
    sb = fresh_stripe_sandbox
    client = sb.client()
    cus = _carded(client, "s@example.com")
    sub = client.v1.subscriptions.create(
        {"customer": cus.id, "items": [{"price": PA}, {"price": SR, "quantity": 2}], "metadata": {"deal": "x"}}
    )
    assert sub.id.startswith("sub_") and sub.status == "active"
    item = sub["items"].data[0]
    assert item.id.startswith("si_") and item.price.id == PA
    assert item.current_period_end > item.current_period_start
    assert "current_period_end" not in sub.to_dict()  # moved to items in the current API
    first = client.v1.invoices.retrieve(sub.latest_invoice)
    assert first.billing_reason == "subscription_create" and first.status == "paid"
    assert first.total == 45000 + 2 * 30000
    assert first.parent.subscription_details.subscription == sub.id

    end = item.current_period_end
    sb.advance(end - sb.now() + 60)
    renewal = client.v1.invoices.retrieve(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    assert renewal.billing_reason == "subscription_cycle" and renewal.status == "draft"
    assert renewal.automatically_finalizes_at == end + 3600
    sb.advance(3600)
    renewal = client.v1.invoices.retrieve(renewal.id)
    assert renewal.status == "paid"  # charge_automatically: paid by the customer's default card
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub["items"].data[0].current_period_start == end
    assert [i.id for i in client.v1.invoices.list({"subscription": sub.id}).data] == [renewal.id, first.id]
    assert "customer.subscription.updated" in _types(client, sub.id)


def test_send_invoice_subscription_goes_overdue(fresh_stripe_sandbox: StripeSandbox) -> None:
    sb = fresh_stripe_sandbox
    client = sb.client()
    cus = client.v1.customers.create({"email": "o@example.com"})
    sub = client.v1.subscriptions.create(
        {"customer": cus.id, "items": [{"price": FF}], "collection_method": "send_invoice", "days_until_due": 10}
    )
    inv = client.v1.invoices.retrieve(sub.latest_invoice)
    assert inv.status == "open" and inv.due_date == pytest.approx(sb.now() + 10 * DAY, abs=5)
    sb.advance(11 * DAY)
    assert "invoice.overdue" in _types(client, inv.id)
    assert client.v1.subscriptions.retrieve(sub.id).status == "past_due"
    client.v1.invoices.pay(inv.id, {"paid_out_of_band": True})
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"


def test_update_cancel_at_trial_and_cancel(fresh_stripe_sandbox: StripeSandbox) -> None:
    sb = fresh_stripe_sandbox
    client = sb.client()
    cus = _carded(client, "c@example.com")
    coupon = client.v1.coupons.create({"amount_off": 5000, "currency": "usd", "duration": "forever"})
    trial = client.v1.subscriptions.create(
        {
            "customer": cus.id,
            "items": [{"price": PA}],
            "trial_end": sb.now() + 7 * DAY,
            "discounts": [{"coupon": coupon.id}],
        }
    )
    assert trial.status == "trialing" and client.v1.invoices.retrieve(trial.latest_invoice).total == 0
    sb.advance(7 * DAY + 1)
    trial = client.v1.subscriptions.retrieve(trial.id)
    assert trial.status == "active"
    inv = client.v1.invoices.retrieve(trial.latest_invoice)
    assert inv.total == 40000  # 45000 less the forever coupon

    sub = client.v1.subscriptions.create({"customer": cus.id, "items": [{"price": SR}]})
    cancel_at = sb.now() + 3 * DAY
    upd = client.v1.subscriptions.update(sub.id, {"cancel_at": cancel_at, "metadata": {"reason": "churn"}})
    assert upd.cancel_at == cancel_at
    ev = client.v1.events.list({"type": "customer.subscription.updated", "limit": 5}).data[0]
    assert ev.data.previous_attributes.cancel_at is None
    sb.advance(3 * DAY + 1)
    ended = client.v1.subscriptions.retrieve(sub.id)
    assert ended.status == "canceled" and ended.ended_at == cancel_at
    assert "customer.subscription.deleted" in _types(client, sub.id)

    canceled = client.v1.subscriptions.cancel(trial.id)
    assert canceled.status == "canceled"
    assert [s.id for s in client.v1.subscriptions.list({"customer": cus.id}).data] == []
    assert len(client.v1.subscriptions.list({"customer": cus.id, "status": "all"}).data) == 2


def test_schedule_future_start_phases_and_cancel_end(fresh_stripe_sandbox: StripeSandbox) -> None:
    sb = fresh_stripe_sandbox
    client = sb.client()
    cus = _carded(client, "sch@example.com")
    start = sb.now() + 10 * DAY
    sched = client.v1.subscription_schedules.create(
        {
            "customer": cus.id,
            "start_date": start,
            "end_behavior": "cancel",
            "metadata": {"plan": "annual"},
            "phases": [
                {"items": [{"price": PA}, {"price": SR}], "duration": {"interval": "month", "interval_count": 2}},
                {"items": [{"price": PA}, {"price": FF, "quantity": 3}], "duration": {"interval": "month"}},
            ],
        }
    )
    assert sched.id.startswith("sub_sched_") and sched.status == "not_started" and sched.subscription is None
    assert _types(client, sched.id) == ["subscription_schedule.created"]
    assert sched.phases[0].start_date == start and sched.phases[1].start_date == sched.phases[0].end_date
    sb.advance(10 * DAY + 5)
    sched = client.v1.subscription_schedules.retrieve(sched.id, {"expand": ["subscription", "customer"]})
    assert sched.status == "active" and sched.customer.id == cus.id
    sub = sched.subscription
    assert sub.schedule == sched.id and {i.price.id for i in sub["items"].data} == {PA, SR}
    assert sub.start_date == start

    sb.advance_to(sched.phases[1].start_date + 5)
    sub = client.v1.subscriptions.retrieve(sub.id)
    prices = {i.price.id: i.quantity for i in sub["items"].data}
    assert prices == {PA: 1, FF: 3}
    sb.advance_to(sched.phases[1].end_date + 5)
    sched = client.v1.subscription_schedules.retrieve(sched.id)
    assert sched.status == "completed"
    assert client.v1.subscriptions.retrieve(sub.id).status == "canceled"
    # Events are kept 30 days of sandbox time: `created` (3 months ago) is gone, the end is there.
    assert _types(client, sched.id)[-1] == "subscription_schedule.completed"
    assert "subscription_schedule.created" not in _types(client, sched.id)
    listed = client.v1.subscription_schedules.list({"customer": cus.id})
    assert [s.id for s in listed.data] == [sched.id]


def test_schedule_release_at_end_and_explicit_release_cancel(fresh_stripe_sandbox: StripeSandbox) -> None:
    sb = fresh_stripe_sandbox
    client = sb.client()
    cus = _carded(client, "rel@example.com")
    sched = client.v1.subscription_schedules.create(
        {
            "customer": cus.id,
            "start_date": "now",
            "end_behavior": "release",
            "phases": [{"items": [{"price": PA}], "end_date": sb.now() + 40 * DAY}],
        }
    )
    assert sched.status == "active" and sched.subscription
    sb.advance(41 * DAY)
    sched = client.v1.subscription_schedules.retrieve(sched.id)
    assert sched.status == "released" and sched.released_subscription
    sub = client.v1.subscriptions.retrieve(sched.released_subscription)
    assert sub.status == "active" and sub.schedule is None

    future = client.v1.subscription_schedules.create(
        {
            "customer": cus.id,
            "start_date": sb.now() + DAY,
            "phases": [{"items": [{"price": SR}], "duration": {"interval": "year"}}],
        }
    )
    assert client.v1.subscription_schedules.cancel(future.id).status == "canceled"
    sb.advance(2 * DAY)
    assert client.v1.subscription_schedules.retrieve(future.id).subscription is None

    live = client.v1.subscription_schedules.create(
        {
            "customer": cus.id,
            "start_date": "now",
            "phases": [{"items": [{"price": SR}], "duration": {"interval": "year"}}],
        }
    )
    released = client.v1.subscription_schedules.release(live.id)
    assert released.status == "released" and released.released_subscription == live.subscription
    assert client.v1.subscriptions.retrieve(live.subscription).status == "active"


def test_schedule_send_invoice_phase_and_yearly_price(fresh_stripe_sandbox: StripeSandbox) -> None:
    sb = fresh_stripe_sandbox
    client = sb.client()
    cus = client.v1.customers.create({"email": "y@example.com"})
    yearly = client.v1.prices.create(
        {
            "currency": "usd",
            "product": "prod_product_analytics",
            "unit_amount": 500000,
            "recurring": {"interval": "year"},
            "nickname": "annual",
            "lookup_key": "pa_annual_test",
        }
    )
    sched = client.v1.subscription_schedules.create(
        {
            "customer": cus.id,
            "start_date": sb.now() + DAY,
            "default_settings": {"collection_method": "send_invoice", "invoice_settings": {"days_until_due": 30}},
            "phases": [{"items": [{"price": yearly.id}], "duration": {"interval": "year", "interval_count": 2}}],
        }
    )
    sb.advance(DAY + 1)
    sched = client.v1.subscription_schedules.retrieve(sched.id, {"expand": ["subscription.latest_invoice"]})
    inv = sched.subscription.latest_invoice
    assert inv.status == "open" and inv.collection_method == "send_invoice" and inv.total == 500000
    assert "invoice.sent" in _types(client, inv.id)


def test_clock_controls_over_http(fresh_stripe_sandbox: StripeSandbox) -> None:
    sb = fresh_stripe_sandbox
    now = control(sb, "GET", "/_sandbox/clock")["now"]
    moved = control(sb, "POST", "/_sandbox/clock/advance", {"seconds": 3600})["now"]
    assert moved >= now + 3600
    to = control(sb, "POST", "/_sandbox/clock/advance", {"to": moved + 100})["now"]
    assert to == moved + 100
    client = sb.client()
    assert client.v1.customers.create({}).created >= to


def test_declined_card_402_retries_and_past_due(fresh_stripe_sandbox: StripeSandbox) -> None:
    sb = fresh_stripe_sandbox
    client = sb.client()
    cus = _carded(client, "d@example.com")
    good = cus.invoice_settings.default_payment_method
    sub = client.v1.subscriptions.create({"customer": cus.id, "items": [{"price": PA}]})
    # This card attaches but every charge on it declines.
    failing = client.v1.payment_methods.attach("pm_card_chargeCustomerFail", {"customer": cus.id})
    client.v1.customers.update(cus.id, {"invoice_settings": {"default_payment_method": failing.id}})
    end = sub["items"].data[0].current_period_end
    sb.advance(end - sb.now() + 3601)  # renewal drafted, finalized an hour later, payment declined
    sub = client.v1.subscriptions.retrieve(sub.id)
    inv = client.v1.invoices.retrieve(sub.latest_invoice)
    assert sub.status == "past_due" and inv.status == "open" and inv.attempt_count == 1
    assert inv.next_payment_attempt == pytest.approx(end + 3600 + 3 * DAY, abs=5)
    failed = client.v1.charges.list({"customer": cus.id}).data[0]
    assert failed.status == "failed" and failed.failure_code == "card_declined"
    assert "invoice.payment_failed" in _types(client, inv.id)
    with pytest.raises(stripe.CardError) as exc:
        client.v1.invoices.pay(inv.id)
    assert exc.value.http_status == 402 and exc.value.code == "card_declined"

    client.v1.customers.update(cus.id, {"invoice_settings": {"default_payment_method": good}})
    sb.advance(3 * DAY)  # the automatic retry now succeeds
    assert client.v1.invoices.retrieve(inv.id).status == "paid"
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"


def test_auto_advance_draft_finalizes_and_sends(fresh_stripe_sandbox: StripeSandbox) -> None:
    sb = fresh_stripe_sandbox
    client = sb.client()
    cus = client.v1.customers.create({"email": "aa@example.com"})
    client.v1.customers.balance_transactions.create(cus.id, {"amount": -1000, "currency": "usd"})
    inv = client.v1.invoices.create(
        {
            "customer": cus.id,
            "collection_method": "send_invoice",
            "days_until_due": 14,
            "auto_advance": True,
            "automatically_finalizes_at": sb.now() + 7200,
        }
    )
    client.v1.invoice_items.create({"customer": cus.id, "invoice": inv.id, "amount": 5000, "currency": "usd"})
    sb.advance(3600)
    assert client.v1.invoices.retrieve(inv.id).status == "draft"
    sb.advance(3601)
    inv = client.v1.invoices.retrieve(inv.id)
    assert inv.status == "open" and inv.amount_due == 4000 and inv.starting_balance == -1000
    assert inv.due_date == inv.status_transitions.finalized_at + 14 * DAY
    assert _types(client, inv.id)[-2:] == ["invoice.finalized", "invoice.sent"]
