"""Where Stripe is strict, the sandbox is too: future-only timestamps, incomplete subscriptions,
billing_mode, per-currency balances, drafts that show the balance, and only Stripe's event types."""

from __future__ import annotations

import uuid

import pytest
import stripe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.stripe import catalog
from sandbox.stripe.harness import StripeSandbox

DAY = 86400
HOUR = 3600
PA = catalog.PRICES["product_analytics"]["default"]  # 45000 usd a month
MESSAGE = "Invalid timestamp: must be an integer Unix timestamp in the future."


@pytest.fixture
def client(stripe_sandbox: StripeSandbox) -> stripe.StripeClient:
    return stripe_sandbox.client()


def _customer(client: stripe.StripeClient, **extra: object) -> stripe.Customer:
    return client.v1.customers.create({"email": f"{uuid.uuid4().hex[:8]}@example.com", **extra})  # type: ignore[typeddict-item]


def _carded(client: stripe.StripeClient) -> stripe.Customer:
    return _customer(client, payment_method="pm_card_visa", invoice_settings={"default_payment_method": "pm_card_visa"})


def _types(client: stripe.StripeClient, obj_id: str) -> list[str]:
    events = client.v1.events.list({"limit": 100}).auto_paging_iter()
    return [e.type for e in reversed(list(events)) if e.data.object.id == obj_id]


def _refused(call: object, param: str) -> None:
    with pytest.raises(stripe.InvalidRequestError) as exc:
        call()  # type: ignore[operator]
    assert exc.value.http_status == 400 and exc.value.param == param
    assert exc.value.error is not None and exc.value.error.type == "invalid_request_error"
    assert exc.value.user_message == MESSAGE


# ---- timestamps ---------------------------------------------------------------------------------------


def test_timestamps_stripe_requires_in_the_future(fresh_stripe_sandbox: StripeSandbox) -> None:
    sb = fresh_stripe_sandbox
    client = sb.client()
    cus = _carded(client)
    sb.advance(10 * DAY)
    # "Now" is the sandbox clock: a time that is ahead of the wall clock but behind it is in the past.
    past = sb.now() - DAY
    send = {"customer": cus.id, "collection_method": "send_invoice"}
    _refused(lambda: client.v1.invoices.create({**send, "due_date": past}), "due_date")  # type: ignore[typeddict-item]
    _refused(lambda: client.v1.invoices.create({**send, "due_date": sb.now()}), "due_date")  # type: ignore[typeddict-item]
    _refused(
        lambda: client.v1.invoices.create(
            {**send, "days_until_due": 30, "auto_advance": True, "automatically_finalizes_at": past}  # type: ignore[typeddict-item]
        ),
        "automatically_finalizes_at",
    )
    draft = client.v1.invoices.create({**send, "due_date": sb.now() + DAY})  # type: ignore[typeddict-item]
    _refused(lambda: client.v1.invoices.update(draft.id, {"due_date": past}), "due_date")
    _refused(
        lambda: client.v1.invoices.update(draft.id, {"auto_advance": True, "automatically_finalizes_at": past}),
        "automatically_finalizes_at",
    )
    assert client.v1.invoices.retrieve(draft.id).due_date == sb.now() + DAY  # nothing changed

    items = [{"price": PA}]
    _refused(
        lambda: client.v1.subscriptions.create({"customer": cus.id, "items": items, "trial_end": past}), "trial_end"
    )
    _refused(
        lambda: client.v1.subscriptions.create({"customer": cus.id, "items": items, "cancel_at": past}), "cancel_at"
    )
    _refused(
        lambda: client.v1.subscriptions.create({"customer": cus.id, "items": items, "billing_cycle_anchor": past}),
        "billing_cycle_anchor",
    )
    trial = client.v1.subscriptions.create({"customer": cus.id, "items": items, "trial_end": sb.now() + DAY})
    _refused(lambda: client.v1.subscriptions.update(trial.id, {"trial_end": past}), "trial_end")
    _refused(lambda: client.v1.subscriptions.update(trial.id, {"cancel_at": past}), "cancel_at")
    assert client.v1.subscriptions.update(trial.id, {"trial_end": "now"}).status == "active"

    _refused(lambda: client.v1.coupons.create({"percent_off": 10, "redeem_by": past}), "redeem_by")
    assert client.v1.coupons.create({"percent_off": 10, "redeem_by": sb.now() + DAY}).valid

    # Subscription schedules may start in the past (backdating).
    sched = client.v1.subscription_schedules.create(
        {
            "customer": cus.id,
            "start_date": sb.now() - 5 * DAY,
            "phases": [{"items": [{"price": PA}], "duration": {"interval": "month"}}],
        }
    )
    assert sched.status == "active" and sched.phases[0].start_date == sb.now() - 5 * DAY


# ---- no card, no charge --------------------------------------------------------------------------------


def test_new_subscription_without_a_card_is_incomplete_then_expires(fresh_stripe_sandbox: StripeSandbox) -> None:
    sb = fresh_stripe_sandbox
    client = sb.client()
    cus = _customer(client)
    sub = client.v1.subscriptions.create({"customer": cus.id, "items": [{"price": PA}]})
    assert sub.status == "incomplete"
    first = client.v1.invoices.retrieve(sub.latest_invoice)
    assert first.status == "open" and first.amount_remaining == 45000 and first.next_payment_attempt is None
    assert "invoice.payment_failed" in _types(client, first.id)
    created = client.v1.events.list({"type": "customer.subscription.created"}).data[0]
    assert created.data.object.id == sub.id and created.data.object.status == "incomplete"

    sb.advance(22 * HOUR)
    assert client.v1.subscriptions.retrieve(sub.id).status == "incomplete"
    sb.advance(HOUR + 1)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "incomplete_expired" and sub.ended_at == sub.created + 23 * HOUR
    assert client.v1.invoices.retrieve(first.id).status == "void"
    assert client.v1.subscriptions.list({"customer": cus.id}).data == []
    assert client.v1.charges.list({"customer": cus.id}).data == []


def test_incomplete_subscription_becomes_active_once_paid(fresh_stripe_sandbox: StripeSandbox) -> None:
    sb = fresh_stripe_sandbox
    client = sb.client()
    cus = _customer(client)
    sub = client.v1.subscriptions.create({"customer": cus.id, "items": [{"price": PA}]})
    assert sub.status == "incomplete"
    pm = client.v1.payment_methods.attach("pm_card_visa", {"customer": cus.id})
    client.v1.customers.update(cus.id, {"invoice_settings": {"default_payment_method": pm.id}})
    assert client.v1.invoices.pay(sub.latest_invoice).status == "paid"
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"
    sb.advance(DAY)
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"  # no expiry once paid


def test_default_incomplete_waits_for_a_payment_even_with_a_card(client: stripe.StripeClient) -> None:
    cus = _carded(client)
    sub = client.v1.subscriptions.create(
        {"customer": cus.id, "items": [{"price": PA}], "payment_behavior": "default_incomplete"}
    )
    first = client.v1.invoices.retrieve(sub.latest_invoice)
    assert sub.status == "incomplete" and first.status == "open" and first.attempt_count == 0
    assert client.v1.charges.list({"customer": cus.id}).data == []
    assert client.v1.invoices.pay(first.id).status == "paid"
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.subscriptions.create(
            {"customer": cus.id, "items": [{"price": PA}], "payment_behavior": "error_if_incomplete"}
        )
    assert exc.value.param == "payment_behavior"


def test_renewal_without_a_card_goes_past_due(fresh_stripe_sandbox: StripeSandbox) -> None:
    sb = fresh_stripe_sandbox
    client = sb.client()
    cus = _carded(client)
    sub = client.v1.subscriptions.create({"customer": cus.id, "items": [{"price": PA}]})
    assert sub.status == "active"
    client.v1.payment_methods.detach(cus.invoice_settings.default_payment_method)
    end = sub["items"].data[0].current_period_end
    sb.advance(end - sb.now() + HOUR + 1)
    sub = client.v1.subscriptions.retrieve(sub.id)
    renewal = client.v1.invoices.retrieve(sub.latest_invoice)
    assert sub.status == "past_due" and renewal.status == "open" and renewal.billing_reason == "subscription_cycle"
    assert renewal.next_payment_attempt is not None  # renewals are retried
    assert "invoice.payment_failed" in _types(client, renewal.id)


def test_credit_balance_covering_the_invoice_needs_no_card(client: stripe.StripeClient) -> None:
    cus = _customer(client)
    client.v1.customers.balance_transactions.create(cus.id, {"amount": -100000, "currency": "usd"})
    sub = client.v1.subscriptions.create({"customer": cus.id, "items": [{"price": PA}]})
    assert sub.status == "active"
    inv = client.v1.invoices.retrieve(sub.latest_invoice, {"expand": ["payments"]})
    assert inv.status == "paid" and inv.amount_due == 0 and inv.payments.data == []
    assert client.v1.customers.retrieve(cus.id).balance == -55000
    assert client.v1.payment_intents.list({"customer": cus.id}).data == []


# ---- billing_mode ----------------------------------------------------------------------------------------


def test_billing_mode_flexible_by_default_classic_on_request(client: stripe.StripeClient) -> None:
    cus = _carded(client)
    sub = client.v1.subscriptions.create({"customer": cus.id, "items": [{"price": PA}]})
    assert sub.billing_mode.type == "flexible" and sub.billing_mode.flexible.proration_discounts == "included"
    classic = client.v1.subscriptions.create(
        {"customer": cus.id, "items": [{"price": PA}], "billing_mode": {"type": "classic"}}
    )
    assert classic.billing_mode.type == "classic" and classic.billing_mode.flexible is None
    sched = client.v1.subscription_schedules.create(
        {
            "customer": cus.id,
            "start_date": "now",
            "phases": [{"items": [{"price": PA}], "duration": {"interval": "month"}}],
        }
    )
    assert sched.billing_mode.type == "flexible"
    assert client.v1.subscriptions.retrieve(sched.subscription).billing_mode.type == "flexible"
    classic_sched = client.v1.subscription_schedules.create(
        {
            "customer": cus.id,
            "start_date": "now",
            "billing_mode": {"type": "classic"},
            "phases": [{"items": [{"price": PA}], "duration": {"interval": "month"}}],
        }
    )
    assert classic_sched.billing_mode.type == "classic"
    assert client.v1.subscriptions.retrieve(classic_sched.subscription).billing_mode.type == "classic"


# ---- balances ----------------------------------------------------------------------------------------------


def test_invoices_use_only_their_own_currency_balance(client: stripe.StripeClient) -> None:
    cus = _customer(client)
    client.v1.customers.balance_transactions.create(cus.id, {"amount": -5000, "currency": "usd"})
    client.v1.customers.balance_transactions.create(cus.id, {"amount": -800, "currency": "eur"})
    cus = client.v1.customers.retrieve(cus.id, {"expand": ["invoice_credit_balance"]})
    # `balance`/`currency` are the default currency's; credit shows positive in invoice_credit_balance.
    assert cus.balance == -5000 and cus.currency == "usd"
    assert cus.invoice_credit_balance.to_dict() == {"eur": 800, "usd": 5000}
    assert "invoice_credit_balance" not in client.v1.customers.retrieve(cus.id).to_dict()

    eur = client.v1.invoices.create(
        {"customer": cus.id, "currency": "eur", "collection_method": "send_invoice", "days_until_due": 30}
    )
    client.v1.invoice_items.create({"customer": cus.id, "invoice": eur.id, "amount": 3000, "currency": "eur"})
    eur = client.v1.invoices.finalize_invoice(eur.id)
    assert eur.starting_balance == -800 and eur.amount_due == 2200 and eur.ending_balance == 0
    after = client.v1.customers.retrieve(cus.id, {"expand": ["invoice_credit_balance"]})
    assert after.balance == -5000 and after.invoice_credit_balance.to_dict() == {"usd": 5000}
    applied = client.v1.customers.balance_transactions.list(cus.id).data[0]
    assert applied.type == "applied_to_invoice" and applied.currency == "eur" and applied.amount == 800


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    moves=st.lists(
        st.tuples(st.sampled_from(["usd", "eur", "gbp"]), st.integers(-50_000, 50_000).filter(bool)),
        min_size=1,
        max_size=6,
    )
)
def test_balance_per_currency_is_the_sum_of_its_transactions(
    client: stripe.StripeClient, moves: list[tuple[str, int]]
) -> None:
    cus = _customer(client)
    for cur, amount in moves:
        client.v1.customers.balance_transactions.create(cus.id, {"amount": amount, "currency": cur})
    expected: dict[str, int] = {}
    for cur, amount in moves:
        expected[cur] = expected.get(cur, 0) + amount
    got = client.v1.customers.retrieve(cus.id, {"expand": ["invoice_credit_balance"]})
    assert got.currency == moves[0][0] and got.balance == expected[moves[0][0]]
    assert got.invoice_credit_balance.to_dict() == {c: -v for c, v in expected.items() if v}
    txns = client.v1.customers.balance_transactions.list(cus.id, {"limit": 100}).data
    for cur in expected:
        newest = next(t for t in txns if t.currency == cur)
        assert newest.ending_balance == expected[cur]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(balance=st.integers(-200_000, 200_000), amount=st.integers(1, 150_000))
def test_draft_shows_the_balance_and_nets_it(client: stripe.StripeClient, balance: int, amount: int) -> None:
    cus = _customer(client)
    draft = client.v1.invoices.create({"customer": cus.id, "collection_method": "send_invoice", "days_until_due": 30})
    client.v1.invoice_items.create({"customer": cus.id, "invoice": draft.id, "amount": amount, "currency": "usd"})
    # The balance moves after the draft was made: the draft shows it as it is now.
    if balance:
        client.v1.customers.balance_transactions.create(cus.id, {"amount": balance, "currency": "usd"})
    shown = client.v1.invoices.retrieve(draft.id)
    assert shown.starting_balance == balance
    assert shown.amount_due == max(amount + balance, 0) == shown.amount_remaining
    assert client.v1.customers.retrieve(cus.id).balance == balance  # nothing applied yet
    final = client.v1.invoices.finalize_invoice(draft.id)
    assert final.starting_balance == balance and final.amount_due == shown.amount_due
    assert final.ending_balance == min(balance + amount, 0)
    assert client.v1.customers.retrieve(cus.id).balance == final.ending_balance


# ---- event types -------------------------------------------------------------------------------------------


def test_only_event_types_stripe_has(client: stripe.StripeClient) -> None:
    cus = _customer(client)
    txn = client.v1.customers.balance_transactions.create(cus.id, {"amount": -1500, "currency": "usd"})
    client.v1.customers.balance_transactions.create(cus.id, {"amount": -500, "currency": "usd"})
    draft = client.v1.invoices.create({"customer": cus.id, "collection_method": "send_invoice", "days_until_due": 30})
    item = client.v1.invoice_items.create({"customer": cus.id, "invoice": draft.id, "amount": 900, "currency": "usd"})
    client.v1.invoice_items.update(item.id, {"description": "changed", "amount": 1000})

    recent = list(client.v1.events.list({"limit": 100}).data)
    types = {e.type for e in recent}
    assert "customer_balance_transaction.created" not in types and "invoiceitem.updated" not in types
    assert not [e for e in recent if e.data.object.id in (txn.id, item.id) and e.type.endswith(".updated")]
    balance_changes = [
        e.data.previous_attributes.balance
        for e in recent
        if e.type == "customer.updated" and e.data.object.id == cus.id
    ]
    assert balance_changes == [-1500, 0]  # newest first: the old balance of each change
    assert client.v1.invoices.retrieve(draft.id).total == 1000
