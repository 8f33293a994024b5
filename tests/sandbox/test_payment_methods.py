"""Payment methods, PaymentIntents and invoice payments through the SDK: no card, no charge."""

from __future__ import annotations

import uuid

import pytest
import stripe

from sandbox.stripe.harness import StripeSandbox


@pytest.fixture
def client(stripe_sandbox: StripeSandbox) -> stripe.StripeClient:
    return stripe_sandbox.client()


def _customer(client: stripe.StripeClient, **extra: object) -> stripe.Customer:
    return client.v1.customers.create({"email": f"{uuid.uuid4().hex[:8]}@example.com", **extra})  # type: ignore[typeddict-item]


def _open_invoice(client: stripe.StripeClient, cus: str, amount: int, **extra: object) -> stripe.Invoice:
    inv = client.v1.invoices.create({"customer": cus, **extra})  # type: ignore[typeddict-item]
    client.v1.invoice_items.create({"customer": cus, "invoice": inv.id, "amount": amount, "currency": "usd"})
    return client.v1.invoices.finalize_invoice(inv.id)


def _event_types(client: stripe.StripeClient, obj_id: str) -> list[str]:
    return [e.type for e in client.v1.events.list({"limit": 100}).data if e.data.object.id == obj_id]


def test_customer_made_through_the_api_has_no_payment_method(client: stripe.StripeClient) -> None:
    cus = _customer(client)
    assert cus.invoice_settings.default_payment_method is None
    assert client.v1.payment_methods.list({"customer": cus.id}).data == []
    inv = _open_invoice(client, cus.id, 2500)  # charge_automatically, auto_advance off
    assert inv.status == "open" and inv.amount_due == 2500
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.invoices.pay(inv.id)
    assert "no attached payment source or default payment method" in str(exc.value.user_message)
    inv = client.v1.invoices.retrieve(inv.id, {"expand": ["payments"]})
    assert inv.status == "open" and inv.amount_paid == 0 and inv.attempt_count == 1
    assert "invoice.payment_failed" in _event_types(client, inv.id)
    [payment] = inv.payments.data
    assert payment.status == "open" and payment.amount_paid is None and payment.amount_requested == 2500
    intent = client.v1.payment_intents.retrieve(payment.payment.payment_intent)
    assert intent.status == "requires_payment_method" and intent.latest_charge is None
    assert client.v1.charges.list({"customer": cus.id}).data == []


def test_attach_list_default_and_detach(client: stripe.StripeClient) -> None:
    cus = _customer(client)
    visa = client.v1.payment_methods.attach("pm_card_visa", {"customer": cus.id})
    master = client.v1.payment_methods.attach("pm_card_mastercard", {"customer": cus.id})
    assert visa.id.startswith("pm_") and visa.id != "pm_card_visa" and visa.customer == cus.id
    assert (visa.type, visa.card.brand, visa.card.last4) == ("card", "visa", "4242")
    assert (master.card.brand, master.card.last4) == ("mastercard", "4444")
    assert [pm.id for pm in client.v1.payment_methods.list({"customer": cus.id, "type": "card"}).data] == [
        master.id,
        visa.id,
    ]
    assert [pm.id for pm in client.v1.customers.payment_methods.list(cus.id).data] == [master.id, visa.id]
    assert client.v1.payment_methods.retrieve(visa.id).card.exp_year > 2026
    assert client.v1.customers.payment_methods.retrieve(cus.id, master.id).card.last4 == "4444"

    # The default must be one of the customer's own payment methods.
    other = client.v1.payment_methods.attach("pm_card_visa", {"customer": _customer(client).id})
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.customers.update(cus.id, {"invoice_settings": {"default_payment_method": other.id}})
    assert exc.value.param == "invoice_settings[default_payment_method]"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payment_methods.attach(other.id, {"customer": cus.id})  # attached to someone else
    updated = client.v1.customers.update(cus.id, {"invoice_settings": {"default_payment_method": master.id}})
    assert updated.invoice_settings.default_payment_method == master.id

    detached = client.v1.payment_methods.detach(master.id)
    assert detached.customer is None
    assert client.v1.customers.retrieve(cus.id).invoice_settings.default_payment_method is None
    assert [pm.id for pm in client.v1.payment_methods.list({"customer": cus.id}).data] == [visa.id]
    assert _event_types(client, master.id)[:2] == ["payment_method.detached", "payment_method.attached"]


def test_customer_create_with_payment_method_attaches_it(client: stripe.StripeClient) -> None:
    attached_only = _customer(client, payment_method="pm_card_visa")
    assert attached_only.invoice_settings.default_payment_method is None
    assert len(client.v1.payment_methods.list({"customer": attached_only.id}).data) == 1

    carded = _customer(
        client, payment_method="pm_card_visa", invoice_settings={"default_payment_method": "pm_card_visa"}
    )
    [pm] = client.v1.payment_methods.list({"customer": carded.id}).data
    assert carded.invoice_settings.default_payment_method == pm.id


@pytest.mark.parametrize(
    ("token", "decline_code"),
    [
        ("pm_card_chargeDeclined", "generic_decline"),
        ("pm_card_visa_chargeDeclined", "generic_decline"),
        ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds"),
    ],
)
def test_decline_cards(client: stripe.StripeClient, token: str, decline_code: str) -> None:
    cus = _customer(client)
    # Stripe checks a card when it is attached: these fail there already.
    with pytest.raises(stripe.CardError) as exc:
        client.v1.payment_methods.attach(token, {"customer": cus.id})
    assert exc.value.http_status == 402 and exc.value.code == "card_declined"
    assert exc.value.error is not None and exc.value.error.decline_code == decline_code
    assert client.v1.payment_methods.list({"customer": cus.id}).data == []

    # Paying an invoice with one makes a real payment method, a failed charge, and leaves it open.
    inv = _open_invoice(client, cus.id, 1200)
    with pytest.raises(stripe.CardError) as paid:
        client.v1.invoices.pay(inv.id, {"payment_method": token})
    assert paid.value.error is not None and paid.value.error.decline_code == decline_code
    [charge] = client.v1.charges.list({"customer": cus.id}).data
    assert charge.status == "failed" and charge.failure_code == "card_declined" and charge.payment_intent
    assert client.v1.payment_methods.retrieve(charge.payment_method).id.startswith("pm_")
    intent = client.v1.payment_intents.retrieve(charge.payment_intent)
    assert intent.status == "requires_payment_method" and intent.last_payment_error.decline_code == decline_code
    assert client.v1.invoices.retrieve(inv.id).status == "open"
    assert client.v1.payment_methods.list({"customer": cus.id}).data == []  # charging does not attach


def test_paying_with_another_customers_card_is_refused(client: stripe.StripeClient) -> None:
    cus = _customer(client)
    theirs = client.v1.payment_methods.attach("pm_card_visa", {"customer": _customer(client).id})
    inv = _open_invoice(client, cus.id, 900)
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.invoices.pay(inv.id, {"payment_method": theirs.id})
    assert exc.value.param == "payment_method"
    mine = client.v1.payment_methods.attach("pm_card_mastercard", {"customer": cus.id})
    paid = client.v1.invoices.pay(inv.id, {"payment_method": mine.id})
    assert paid.status == "paid"
    assert client.v1.charges.list({"customer": cus.id}).data[0].payment_method == mine.id


def test_charge_automatically_invoice_paid_at_finalize_through_a_payment_intent(client: stripe.StripeClient) -> None:
    cus = _customer(client, payment_method="pm_card_visa", invoice_settings={"default_payment_method": "pm_card_visa"})
    inv = _open_invoice(client, cus.id, 7300, auto_advance=True)
    assert inv.status == "paid" and inv.amount_paid == 7300

    [payment] = client.v1.invoice_payments.list({"invoice": inv.id}).data
    assert payment.object == "invoice_payment" and payment.is_default and payment.status == "paid"
    assert payment.amount_paid == payment.amount_requested == 7300 and payment.currency == "usd"
    assert payment.status_transitions.paid_at == inv.status_transitions.paid_at
    assert payment.payment.type == "payment_intent"
    assert client.v1.invoice_payments.retrieve(payment.id).invoice == inv.id
    # (The sandbox needs `payments` named too: its includable-field check matches whole paths only.)
    expand = ["payments", "payments.data.payment.payment_intent"]
    expanded = client.v1.invoices.retrieve(inv.id, {"expand": expand})
    intent = expanded.payments.data[0].payment.payment_intent
    assert intent.object == "payment_intent" and intent.status == "succeeded" and intent.amount_received == 7300
    assert intent.payment_method == cus.invoice_settings.default_payment_method
    assert intent.id in [pi.id for pi in client.v1.payment_intents.list({"customer": cus.id}).data]
    assert "payments" not in client.v1.invoices.retrieve(inv.id).to_dict()  # only when expanded

    charge = client.v1.charges.retrieve(intent.latest_charge)
    assert charge.payment_intent == intent.id and charge.amount == 7300 and charge.status == "succeeded"
    assert charge.payment_method_details.card.last4 == "4242"
    assert {"payment_intent.succeeded", "invoice.payment_succeeded", "invoice.paid"} <= {
        e.type for e in client.v1.events.list({"limit": 100}).data if e.data.object.id in (intent.id, inv.id)
    }

    # Refunding by PaymentIntent refunds its charge.
    refund = client.v1.refunds.create({"payment_intent": intent.id, "amount": 300})
    assert refund.charge == charge.id and refund.payment_intent == intent.id
    assert client.v1.charges.retrieve(charge.id).amount_refunded == 300


def test_out_of_band_payment_cancels_the_open_card_payment(client: stripe.StripeClient) -> None:
    cus = _customer(client)
    inv = _open_invoice(client, cus.id, 4000)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.pay(inv.id)  # no card: the PaymentIntent waits for a payment method
    inv = client.v1.invoices.pay(inv.id, {"paid_out_of_band": True})
    assert inv.status == "paid" and inv.amount_paid == 4000 and inv.amount_paid_off_stripe == 4000
    payments = client.v1.invoice_payments.list({"invoice": inv.id}).data
    by_type = {p.payment.type: p for p in payments}
    assert set(by_type) == {"payment_intent", "out_of_band_payment"}
    assert by_type["out_of_band_payment"].status == "paid" and by_type["out_of_band_payment"].is_default
    assert by_type["payment_intent"].status == "canceled" and not by_type["payment_intent"].is_default
    intent = client.v1.payment_intents.retrieve(by_type["payment_intent"].payment.payment_intent)
    assert intent.status == "canceled"
    assert [p.id for p in client.v1.invoice_payments.list({"invoice": inv.id, "status": "paid"}).data] == [
        by_type["out_of_band_payment"].id
    ]
