"""Money movement: payment methods, PaymentIntents, invoice payments, charges, balance transactions,
refunds, credit notes and disputes (what the revenue sync reads)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import billing, store
from ..core import Sandbox
from ..errors import StripeError, invalid, missing_param, no_such, state_error
from ..router import Req, route
from ..store import Obj, State
from .common import created_filter, set_fields, set_metadata
from .customers import add_balance_transaction

DISPUTE_FEE = 1500


def _balance_transaction(
    sb: Sandbox, *, amount: int, cur: str, source: str, type_: str, category: str, fee: int, description: str | None
) -> Obj:
    now = sb.now()
    return sb.state.add(
        {
            "id": store.new_id("txn_"),
            "object": "balance_transaction",
            "amount": amount,
            "available_on": now + 2 * 86400,
            "balance_type": "payments",
            "created": now,
            "currency": cur,
            "description": description,
            "exchange_rate": None,
            "fee": fee,
            "fee_details": [
                {
                    "amount": fee,
                    "application": None,
                    "currency": cur,
                    "description": "Stripe processing fees",
                    "type": "stripe_fee",
                }
            ]
            if fee
            else [],
            "net": amount - fee,
            "reporting_category": category,
            "source": source,
            "status": "pending",
            "type": type_,
        }
    )


@store.renderer("balance_transaction")
def _render_txn(state: State, txn: Obj) -> Obj:
    out = store.public(txn)
    return out


@store.renderer("charge")
def _render_charge(state: State, ch: Obj) -> Obj:
    out = store.public(ch)
    refunds = [store.public(state.objects[r]) for r in ch["_refunds"] if r in state.objects]
    out["refunds"] = store.list_object(refunds, f"/v1/charges/{ch['id']}/refunds")
    return out


def create_charge(
    sb: Sandbox,
    *,
    customer: str,
    amount: int,
    cur: str,
    description: str | None,
    payment_method: Obj,
    payment_intent: str | None = None,
) -> Obj:
    """A card charge on `payment_method`: succeeded, or failed when the card declines charges."""
    now = sb.now()
    ch_id = store.new_id("ch_")
    decline = payment_method.get("_decline")
    declined = decline is not None
    txn = None
    if not declined:
        txn = _balance_transaction(
            sb,
            amount=amount,
            cur=cur,
            source=ch_id,
            type_="charge",
            category="charge",
            fee=billing.stripe_fee(amount),
            description=description,
        )
    cus = sb.state.objects.get(customer, {})
    card = payment_method["card"]
    charge = sb.state.add(
        {
            "id": ch_id,
            "object": "charge",
            "amount": amount,
            "amount_captured": 0 if declined else amount,
            "amount_refunded": 0,
            "application": None,
            "application_fee": None,
            "application_fee_amount": None,
            "balance_transaction": txn["id"] if txn else None,
            "billing_details": {
                "address": None,
                "email": cus.get("email"),
                "name": cus.get("name"),
                "phone": None,
                "tax_id": None,
            },
            "calculated_statement_descriptor": "POSTHOG SANDBOX",
            "captured": not declined,
            "created": now,
            "currency": cur,
            "customer": customer,
            "description": description,
            "disputed": False,
            "failure_balance_transaction": None,
            "failure_code": "card_declined" if declined else None,
            "failure_message": DECLINE_MESSAGES.get(decline or "") if declined else None,
            "fraud_details": {},
            "livemode": False,
            "metadata": {},
            "on_behalf_of": None,
            "outcome": {
                "advice_code": None,
                "network_advice_code": None,
                "network_decline_code": None,
                "network_status": "declined_by_network" if declined else "approved_by_network",
                "reason": decline,
                "risk_level": "normal",
                "risk_score": 12,
                "seller_message": "The bank did not return any further details with this decline."
                if declined
                else "Payment complete.",
                "type": "issuer_declined" if declined else "authorized",
            },
            "paid": not declined,
            "payment_intent": payment_intent,
            "payment_method": payment_method["id"],
            "payment_method_details": {
                "card": {
                    "brand": card["brand"],
                    "checks": dict(card["checks"]),
                    "country": card["country"],
                    "exp_month": card["exp_month"],
                    "exp_year": card["exp_year"],
                    "fingerprint": card["fingerprint"],
                    "funding": card["funding"],
                    "last4": card["last4"],
                    "network": card["brand"],
                },
                "type": "card",
            },
            "receipt_email": cus.get("email"),
            "receipt_number": None,
            "receipt_url": f"https://pay.stripe.com/receipts/sandbox/{ch_id}",
            "refunded": False,
            "review": None,
            "shipping": None,
            "source": None,
            "source_transfer": None,
            "statement_descriptor": None,
            "statement_descriptor_suffix": None,
            "status": "failed" if declined else "succeeded",
            "transfer_data": None,
            "transfer_group": None,
            "_refunds": [],
            "_invoice": None,
        }
    )
    sb.emit("charge.failed" if declined else "charge.succeeded", charge)
    return charge


@route("GET", "/v1/charges/<id>", "ChargeRetrieveParams")
def retrieve_charge(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    return sb.state.get(id, "charge")


@route("POST", "/v1/charges/<id>", "ChargeUpdateParams")
def update_charge(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    ch = sb.state.get(id, "charge")
    with sb.tracking(ch, "charge.updated"):
        set_fields(ch, req.params, ("description", "receipt_email"))
        set_metadata(ch, req.params)
    return ch


@route("GET", "/v1/charges", "ChargeListParams")
def list_charges(sb: Sandbox, req: Req) -> Obj:
    p = req.params
    items = sb.state.all("charge")
    if "customer" in p:
        items = [c for c in items if c["customer"] == p["customer"]]
    items = created_filter(items, p.get("created"))
    return store.paginate(sb.state, items, p, "/v1/charges", req.expand)


@route("GET", "/v1/balance_transactions/<id>", "BalanceTransactionRetrieveParams")
def retrieve_txn(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    return sb.state.get(id, "balance_transaction")


@route("GET", "/v1/balance_transactions", "BalanceTransactionListParams")
def list_txns(sb: Sandbox, req: Req) -> Obj:
    p = req.params
    items = sb.state.all("balance_transaction")
    for field in ("type", "currency", "source"):
        if field in p:
            items = [t for t in items if t[field] == p[field]]
    items = created_filter(items, p.get("created"))
    return store.paginate(sb.state, items, p, "/v1/balance_transactions", req.expand)


# ---- refunds -------------------------------------------------------------------------------------------


def refund_charge(
    sb: Sandbox, ch: Obj, amount: int | None, *, reason: str | None = None, metadata: dict[str, str] | None = None
) -> Obj:
    remaining = ch["amount"] - ch["amount_refunded"]
    amount = remaining if amount is None else amount
    if amount <= 0 or amount > remaining:
        raise invalid(
            f"Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})."
            if amount > remaining
            else "Refund amount must be positive.",
            param="amount",
        )
    re_id = store.new_id("re_")
    txn = _balance_transaction(
        sb,
        amount=-amount,
        cur=ch["currency"],
        source=re_id,
        type_="refund",
        category="refund",
        fee=0,
        description="REFUND FOR CHARGE",
    )
    refund = sb.state.add(
        {
            "id": re_id,
            "object": "refund",
            "amount": amount,
            "balance_transaction": txn["id"] if txn else None,
            "charge": ch["id"],
            "created": sb.now(),
            "currency": ch["currency"],
            "description": None,
            "destination_details": {
                "card": {
                    "reference_status": "pending",
                    "reference_type": "acquirer_reference_number",
                    "type": "refund",
                },
                "type": "card",
            },
            "metadata": dict(metadata or {}),
            "payment_intent": ch["payment_intent"],
            "reason": reason,
            "receipt_number": None,
            "source_transfer_reversal": None,
            "status": "succeeded",
            "transfer_reversal": None,
        }
    )
    with sb.tracking(ch, "charge.refunded"):
        ch["amount_refunded"] += amount
        ch["refunded"] = ch["amount_refunded"] == ch["amount"]
        ch["_refunds"].append(re_id)
    sb.emit("refund.created", refund)
    return refund


@route("POST", "/v1/refunds", "RefundCreateParams")
def create_refund(sb: Sandbox, req: Req) -> Obj:
    p = req.params
    if p.get("payment_intent"):
        pi = sb.state.get(p["payment_intent"], "payment_intent", param="payment_intent")
        if pi["status"] != "succeeded" or not pi["latest_charge"]:
            raise invalid(
                f"PaymentIntent {pi['id']} has no successful charge to refund (its status is {pi['status']}).",
                param="payment_intent",
            )
        ch = sb.state.objects[pi["latest_charge"]]
    elif p.get("charge"):
        ch = sb.state.get(p["charge"], "charge", param="charge")
    else:
        raise missing_param("charge")
    return refund_charge(sb, ch, p.get("amount"), reason=p.get("reason"), metadata=p.get("metadata"))


@route("GET", "/v1/refunds/<id>", "RefundRetrieveParams")
def retrieve_refund(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    return sb.state.get(id, "refund")


@route("GET", "/v1/refunds", "RefundListParams")
def list_refunds(sb: Sandbox, req: Req) -> Obj:
    p = req.params
    items = sb.state.all("refund")
    if "charge" in p:
        items = [r for r in items if r["charge"] == p["charge"]]
    items = created_filter(items, p.get("created"))
    return store.paginate(sb.state, items, p, "/v1/refunds", req.expand)


# ---- credit notes --------------------------------------------------------------------------------------


@store.renderer("credit_note")
def _render_credit_note(state: State, cn: Obj) -> Obj:
    out = store.public(cn)
    lines = [store.public(state.objects[i]) for i in cn["_line_ids"] if i in state.objects]
    out["lines"] = store.list_object(lines, f"/v1/credit_notes/{cn['id']}/lines")
    return out


def _credit_lines(sb: Sandbox, inv: Obj, p: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for i, ln in enumerate(p.get("lines") or []):
        param = f"lines[{i}]"
        kind = ln.get("type")
        if kind == "invoice_line_item":
            if not ln.get("invoice_line_item"):
                raise missing_param(f"{param}[invoice_line_item]")
            il = sb.state.get(ln["invoice_line_item"], "line_item", param=f"{param}[invoice_line_item]")
            if il["invoice"] != inv["id"]:
                raise invalid("That line item is not on this invoice.", param=f"{param}[invoice_line_item]")
            if "amount" in ln:
                amount = ln["amount"]
            elif "quantity" in ln and il["quantity"]:
                amount = il["amount"] * ln["quantity"] // il["quantity"]
            else:
                amount = il["amount"]
            out.append(
                {
                    "type": "invoice_line_item",
                    "invoice_line_item": il["id"],
                    "amount": amount,
                    "quantity": ln.get("quantity", il["quantity"]),
                    "description": ln.get("description") or il["description"],
                    "unit_amount": None,
                }
            )
        elif kind == "custom_line_item":
            qty = ln.get("quantity", 1)
            unit = ln.get("unit_amount")
            if unit is None:
                raise missing_param(f"{param}[unit_amount]")
            out.append(
                {
                    "type": "custom_line_item",
                    "invoice_line_item": None,
                    "amount": int(unit) * qty,
                    "quantity": qty,
                    "description": ln.get("description"),
                    "unit_amount": int(unit),
                }
            )
        else:
            raise missing_param(f"{param}[type]")
    return out


@route("POST", "/v1/credit_notes", "CreditNoteCreateParams")
def create_credit_note(sb: Sandbox, req: Req) -> Obj:
    p = req.params
    if not p.get("invoice"):
        raise missing_param("invoice")
    inv = sb.state.get(p["invoice"], "invoice", param="invoice")
    if inv["status"] not in ("open", "paid"):
        raise state_error("Credit notes can only be issued for open or paid invoices.", param="invoice")
    lines = _credit_lines(sb, inv, p)
    if "amount" in p:
        amount = p["amount"]
        if lines and sum(ln["amount"] for ln in lines) != amount:
            raise invalid("The `amount` must equal the sum of the `lines`.", param="amount")
    elif lines:
        amount = sum(ln["amount"] for ln in lines)
    else:
        raise missing_param("amount")
    if amount <= 0:
        raise invalid("The credit note amount must be positive.", param="amount")
    credited = inv["pre_payment_credit_notes_amount"] + inv["post_payment_credit_notes_amount"]
    if amount > inv["total"] - credited:
        raise invalid(
            f"The credit note amount ({amount}) exceeds the invoice's remaining creditable amount "
            f"({inv['total'] - credited}).",
            param="amount",
        )
    now = sb.now()
    cn_id = store.new_id("cn_")
    cus = sb.state.objects[inv["customer"]]
    pre = inv["status"] == "open"
    refund_amount = p.get("refund_amount", 0)
    out_of_band = p.get("out_of_band_amount", 0)
    credit_amount = p.get("credit_amount", 0)
    refund_ids: list[str] = []
    cbtxn = None
    with sb.tracking(inv, "invoice.updated"):
        if pre:
            if refund_amount or credit_amount:
                raise invalid("Refunds and credits need a paid invoice; this one is open.", param="refund_amount")
            inv["pre_payment_credit_notes_amount"] += amount
            reduce = min(amount, inv["amount_remaining"])
            inv["amount_remaining"] -= reduce
            inv["amount_due"] -= reduce
        else:
            if not (refund_amount or credit_amount or out_of_band):
                credit_amount = amount  # Stripe credits the customer balance by default
            if refund_amount + credit_amount + out_of_band != amount:
                raise invalid(
                    "The sum of `refund_amount`, `credit_amount` and `out_of_band_amount` must equal the credit "
                    "note amount.",
                    param="amount",
                )
            inv["post_payment_credit_notes_amount"] += amount
    if not pre:
        if refund_amount:
            charge_id = _invoice_charge(sb, inv)
            if charge_id is None:
                raise invalid(
                    "This invoice was not paid with a charge; use `out_of_band_amount`.", param="refund_amount"
                )
            refund_ids.append(refund_charge(sb, sb.state.objects[charge_id], refund_amount)["id"])
        if credit_amount:
            cbtxn = add_balance_transaction(
                sb, cus, -credit_amount, inv["currency"], type_="credit_note", invoice=inv["id"], credit_note=cn_id
            )
    seq = sum(1 for c in sb.state.all("credit_note") if c["invoice"] == inv["id"]) + 1
    cn = {
        "id": cn_id,
        "object": "credit_note",
        "amount": amount,
        "amount_shipping": 0,
        "created": now,
        "currency": inv["currency"],
        "customer": inv["customer"],
        "customer_balance_transaction": cbtxn["id"] if cbtxn else None,
        "discount_amount": 0,
        "discount_amounts": [],
        "effective_at": now,
        "invoice": inv["id"],
        "livemode": False,
        "memo": p.get("memo"),
        "metadata": dict(p.get("metadata") or {}),
        "number": f"{inv['number']}-CN-{seq:02d}",
        "out_of_band_amount": out_of_band or None,
        "pdf": f"https://pay.stripe.com/credit_notes/sandbox/{cn_id}/pdf",
        "post_payment_amount": 0 if pre else amount,
        "pre_payment_amount": amount if pre else 0,
        "pretax_credit_amounts": [],
        "reason": p.get("reason"),
        "refunds": [
            {"amount_refunded": refund_amount, "refund": r, "type": None, "payment_record_refund": None}
            for r in refund_ids
        ],
        "shipping_cost": None,
        "status": "issued",
        "subtotal": amount,
        "subtotal_excluding_tax": amount,
        "total": amount,
        "total_excluding_tax": amount,
        "total_taxes": [],
        "type": "pre_payment" if pre else "post_payment",
        "voided_at": None,
        "_line_ids": [],
    }
    sb.state.add(cn)
    lines = lines or [
        {
            "type": "custom_line_item",
            "invoice_line_item": None,
            "amount": amount,
            "quantity": 1,
            "description": p.get("memo") or "Credit",
            "unit_amount": amount,
        }
    ]
    for ln in lines:
        cnli = sb.state.add(
            {
                "id": store.new_id("cnli_"),
                "object": "credit_note_line_item",
                "amount": ln["amount"],
                "description": ln["description"],
                "discount_amount": 0,
                "discount_amounts": [],
                "invoice_line_item": ln["invoice_line_item"],
                "livemode": False,
                "metadata": {},
                "pretax_credit_amounts": [],
                "quantity": ln["quantity"],
                "tax_rates": [],
                "taxes": [],
                "type": ln["type"],
                "unit_amount": ln["unit_amount"],
                "unit_amount_decimal": str(ln["unit_amount"]) if ln["unit_amount"] is not None else None,
            }
        )
        cn["_line_ids"].append(cnli["id"])
    sb.emit("credit_note.created", cn)
    if pre and inv["amount_remaining"] == 0 and inv["status"] == "open":
        from .invoices import _mark_paid

        _mark_paid(sb, inv, payment=None)
    return cn


def _invoice_charge(sb: Sandbox, inv: Obj) -> str | None:
    """The successful charge that paid `inv` (through its PaymentIntent), if a card paid it."""
    for pay_id in inv["_payments"]:
        payment = sb.state.objects.get(pay_id)
        if payment is None or payment["status"] != "paid":
            continue
        pi = sb.state.objects.get(payment["payment"].get("payment_intent") or "")
        if pi is not None and pi["latest_charge"]:
            return str(pi["latest_charge"])
    return None


@route("GET", "/v1/credit_notes/<id>", "CreditNoteRetrieveParams")
def retrieve_credit_note(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    return sb.state.get(id, "credit_note")


@route("GET", "/v1/credit_notes", "CreditNoteListParams")
def list_credit_notes(sb: Sandbox, req: Req) -> Obj:
    p = req.params
    items = sb.state.all("credit_note")
    for field in ("customer", "invoice"):
        if field in p:
            items = [c for c in items if c[field] == p[field]]
    items = created_filter(items, p.get("created"))
    return store.paginate(sb.state, items, p, "/v1/credit_notes", req.expand)


@route("GET", "/v1/credit_notes/<id>/lines", "CreditNoteLineItemListParams")
def list_credit_note_lines(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    cn = sb.state.get(id, "credit_note", param="credit_note")
    lines = [sb.state.objects[i] for i in cn["_line_ids"]]
    url = f"/v1/credit_notes/{id}/lines"
    return store.paginate(sb.state, lines, req.params, url, req.expand, newest_first=False)


# ---- disputes ----------------------------------------------------------------------------------------


def create_dispute(sb: Sandbox, charge_id: str, *, amount: int | None, reason: str) -> Obj:
    ch = sb.state.objects.get(charge_id)
    if ch is None or ch["object"] != "charge":
        raise no_such("charge", charge_id, "charge")
    if ch["disputed"]:
        raise state_error("This charge is already disputed.")
    amount = ch["amount"] - ch["amount_refunded"] if amount is None else amount
    now = sb.now()
    dp_id = store.new_id("dp_")
    txn = _balance_transaction(
        sb,
        amount=-amount,
        cur=ch["currency"],
        source=dp_id,
        type_="adjustment",
        category="dispute",
        fee=DISPUTE_FEE,
        description=f"Chargeback withdrawal for {ch['id']}",
    )
    dispute = sb.state.add(
        {
            "id": dp_id,
            "object": "dispute",
            "amount": amount,
            "balance_transactions": [store.public(txn)],
            "charge": ch["id"],
            "created": now,
            "currency": ch["currency"],
            "enhanced_eligibility_types": [],
            "evidence": {"customer_email_address": None, "uncategorized_text": None},
            "evidence_details": {
                "due_by": now + 7 * 86400,
                "enhanced_eligibility": {},
                "has_evidence": False,
                "past_due": False,
                "submission_count": 0,
            },
            "is_charge_refundable": False,
            "livemode": False,
            "metadata": {},
            "network_reason_code": "10.4",
            "payment_intent": ch["payment_intent"],
            "payment_method_details": {
                "card": {"brand": "visa", "case_type": "chargeback", "network_reason_code": "10.4"},
                "type": "card",
            },
            "reason": reason,
            "status": "needs_response",
        }
    )
    with sb.tracking(ch, "charge.updated"):
        ch["disputed"] = True
    sb.emit("charge.dispute.created", dispute)
    return dispute


@route("GET", "/v1/disputes/<id>", "DisputeRetrieveParams")
def retrieve_dispute(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    return sb.state.get(id, "dispute")


@route("GET", "/v1/disputes", "DisputeListParams")
def list_disputes(sb: Sandbox, req: Req) -> Obj:
    p = req.params
    items = sb.state.all("dispute")
    if "charge" in p:
        items = [d for d in items if d["charge"] == p["charge"]]
    items = created_filter(items, p.get("created"))
    return store.paginate(sb.state, items, p, "/v1/disputes", req.expand)


# ---- payment methods ---------------------------------------------------------------------------------
# Test mode's card tokens. Using one (attach, `customers.create(payment_method=…)`, `invoices.pay`)
# makes a new `pm_…` object, as Stripe does. A card whose decline happens "on attach" cannot be
# attached to a customer (Stripe verifies the card then); `pm_card_chargeCustomerFail` attaches but
# every charge on it declines, which is how a customer ends up with a default card that fails.

DECLINE_MESSAGES = {
    "generic_decline": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
}


@dataclass(frozen=True)
class TestCard:
    brand: str
    last4: str
    decline: str | None = None  # decline_code of every charge on this card
    declines_on_attach: bool = False


TEST_CARDS: dict[str, TestCard] = {
    "pm_card_visa": TestCard("visa", "4242"),
    "pm_card_mastercard": TestCard("mastercard", "4444"),
    "pm_card_amex": TestCard("amex", "8431"),
    "pm_card_chargeCustomerFail": TestCard("visa", "0341", "generic_decline"),
    "pm_card_chargeDeclined": TestCard("visa", "0002", "generic_decline", declines_on_attach=True),
    "pm_card_visa_chargeDeclined": TestCard("visa", "0002", "generic_decline", declines_on_attach=True),
    "pm_card_chargeDeclinedInsufficientFunds": TestCard("visa", "9995", "insufficient_funds", declines_on_attach=True),
    "pm_card_visa_chargeDeclinedInsufficientFunds": TestCard(
        "visa", "9995", "insufficient_funds", declines_on_attach=True
    ),
}


def declined_error(decline: str, *, param: str | None = None, charge: str | None = None) -> StripeError:
    """Stripe's 402 `card_error` for a declined card, with its `decline_code`."""
    extra: dict[str, Any] = {"decline_code": decline}
    if charge is not None:
        extra["charge"] = charge
    message = DECLINE_MESSAGES.get(decline, DECLINE_MESSAGES["generic_decline"])
    return StripeError(402, message, type="card_error", code="card_declined", param=param, extra=extra)


def _new_payment_method(sb: Sandbox, token: str, card: TestCard) -> Obj:
    return sb.state.add(
        {
            "id": store.new_id("pm_"),
            "object": "payment_method",
            "allow_redisplay": "unspecified",
            "billing_details": {
                "address": {
                    "city": None,
                    "country": None,
                    "line1": None,
                    "line2": None,
                    "postal_code": None,
                    "state": None,
                },
                "email": None,
                "name": None,
                "phone": None,
                "tax_id": None,
            },
            "card": {
                "brand": card.brand,
                "checks": {"address_line1_check": None, "address_postal_code_check": None, "cvc_check": "pass"},
                "country": "US",
                "display_brand": card.brand,
                "exp_month": 12,
                "exp_year": 2034,
                "fingerprint": f"sandbox{card.brand}{card.last4}",
                "funding": "credit",
                "generated_from": None,
                "last4": card.last4,
                "networks": {"available": [card.brand], "preferred": None},
                "regulated_status": "unregulated",
                "three_d_secure_usage": {"supported": True},
                "wallet": None,
            },
            "created": sb.now(),
            "customer": None,
            "customer_account": None,
            "livemode": False,
            "metadata": {},
            "type": "card",
            "_decline": card.decline,
            "_token": token,
        }
    )


def resolve_payment_method(sb: Sandbox, value: Any, param: str) -> Obj:
    """A stored `pm_…`, or a new one made from a test token."""
    card = TEST_CARDS.get(value) if isinstance(value, str) else None
    if card is not None:
        return _new_payment_method(sb, value, card)
    pm = sb.state.find(value)
    if pm is None or pm.get("object") != "payment_method":
        raise no_such("PaymentMethod", str(value), param)
    return pm


def attach_payment_method(sb: Sandbox, value: Any, cus: Obj, *, param: str = "id", emit: bool = True) -> Obj:
    if isinstance(value, str) and TEST_CARDS.get(value, TestCard("", "")).declines_on_attach:
        raise declined_error(TEST_CARDS[value].decline or "generic_decline", param=param)
    pm = resolve_payment_method(sb, value, param)
    if pm["customer"] not in (None, cus["id"]):
        raise invalid(
            f"The payment method you provided ({pm['id']}) has already been attached to another customer.",
            param=param,
        )
    if pm["customer"] == cus["id"]:
        return pm
    pm["customer"] = cus["id"]
    if emit:
        sb.emit("payment_method.attached", pm)
    return pm


@route("GET", "/v1/payment_methods/<id>", "PaymentMethodRetrieveParams")
def retrieve_payment_method(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    return sb.state.get(id, "payment_method")


@route("POST", "/v1/payment_methods/<id>", "PaymentMethodUpdateParams")
def update_payment_method(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    pm = sb.state.get(id, "payment_method")
    with sb.tracking(pm, "payment_method.updated"):
        set_metadata(pm, req.params)
        if isinstance(req.get("billing_details"), dict):
            pm["billing_details"].update(req.params["billing_details"])
        if "allow_redisplay" in req.params:
            pm["allow_redisplay"] = req.params["allow_redisplay"]
    return pm


@route("GET", "/v1/payment_methods", "PaymentMethodListParams")
def list_payment_methods(sb: Sandbox, req: Req) -> Obj:
    p = req.params
    items = [pm for pm in sb.state.all("payment_method") if pm["customer"] is not None]
    if "customer" in p:
        customer = sb.state.get(p["customer"], "customer", param="customer")
        items = [pm for pm in items if pm["customer"] == customer["id"]]
    if "type" in p:
        items = [pm for pm in items if pm["type"] == p["type"]]
    return store.paginate(sb.state, items, p, "/v1/payment_methods", req.expand)


@route("GET", "/v1/customers/<customer>/payment_methods", "CustomerListPaymentMethodsParams")
def list_customer_payment_methods(sb: Sandbox, req: Req, customer: str) -> Obj:
    cus = sb.state.get(customer, "customer", param="customer")
    items = [pm for pm in sb.state.all("payment_method") if pm["customer"] == cus["id"]]
    if "type" in req.params:
        items = [pm for pm in items if pm["type"] == req.params["type"]]
    return store.paginate(sb.state, items, req.params, f"/v1/customers/{cus['id']}/payment_methods", req.expand)


@route("GET", "/v1/customers/<customer>/payment_methods/<id>", "CustomerRetrievePaymentMethodParams")
def retrieve_customer_payment_method(sb: Sandbox, req: Req, customer: str, id: str) -> Obj:  # noqa: A002
    cus = sb.state.get(customer, "customer", param="customer")
    pm = sb.state.get(id, "payment_method")
    if pm["customer"] != cus["id"]:
        raise no_such("PaymentMethod", id, "payment_method")
    return pm


@route("POST", "/v1/payment_methods/<id>/attach", "PaymentMethodAttachParams")
def attach_route(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    if not req.get("customer"):
        raise missing_param("customer")
    cus = sb.state.get(req.params["customer"], "customer", param="customer")
    return attach_payment_method(sb, id, cus)


@route("POST", "/v1/payment_methods/<id>/detach", "PaymentMethodDetachParams")
def detach_route(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    pm = sb.state.get(id, "payment_method")
    if pm["customer"] is None:
        raise invalid(f"The payment method {pm['id']} is not attached to a customer.", param="payment_method")
    cus = sb.state.objects.get(pm["customer"])
    if cus is not None and (cus.get("invoice_settings") or {}).get("default_payment_method") == pm["id"]:
        # Detaching the default leaves the customer with no default, as on Stripe.
        with sb.tracking(cus, "customer.updated"):
            cus["invoice_settings"]["default_payment_method"] = None
    pm["customer"] = None
    sb.emit("payment_method.detached", pm, {"customer": cus["id"] if cus else None})
    return pm


# ---- payment intents and invoice payments ------------------------------------------------------------
# An invoice collected by card gets one PaymentIntent (reused by every attempt) and one default
# `invoice_payment` pointing at it; paying out of band records an `out_of_band_payment` instead.


def _new_payment_intent(sb: Sandbox, inv: Obj, amount: int) -> Obj:
    pi_id = store.new_id("pi_")
    pi = sb.state.add(
        {
            "id": pi_id,
            "object": "payment_intent",
            "allowed_payment_method_types": None,
            "amount": amount,
            "amount_capturable": 0,
            "amount_details": {"tip": {}},
            "amount_received": 0,
            "application": None,
            "application_fee_amount": None,
            "automatic_payment_methods": None,
            "canceled_at": None,
            "cancellation_reason": None,
            "capture_method": "automatic",
            "client_secret": f"{pi_id}_secret_{store.random_token(25)}",
            "confirmation_method": "automatic",
            "created": sb.now(),
            "currency": inv["currency"],
            "customer": inv["customer"],
            "customer_account": None,
            "description": "Subscription creation"
            if inv["billing_reason"] == "subscription_create"
            else "Payment for Invoice",
            "excluded_payment_method_types": None,
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": {},
            "next_action": None,
            "on_behalf_of": None,
            "payment_method": None,
            "payment_method_configuration_details": None,
            "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
            "payment_method_types": ["card"],
            "processing": None,
            "receipt_email": None,
            "review": None,
            "setup_future_usage": None,
            "shipping": None,
            "source": None,
            "statement_descriptor": None,
            "statement_descriptor_suffix": None,
            "status": "requires_payment_method",
            "transfer_data": None,
            "transfer_group": None,
        }
    )
    sb.emit("payment_intent.created", pi)
    return pi


def _new_invoice_payment(sb: Sandbox, inv: Obj, payment: dict[str, Any], amount: int, *, is_default: bool) -> Obj:
    ip = sb.state.add(
        {
            "id": store.new_id("inpay_"),
            "object": "invoice_payment",
            "amount_paid": None,
            "amount_requested": amount,
            "created": sb.now(),
            "currency": inv["currency"],
            "invoice": inv["id"],
            "is_default": is_default,
            "livemode": False,
            "payment": payment,
            "status": "open",
            "status_transitions": {"canceled_at": None, "paid_at": None},
        }
    )
    inv["_payments"].append(ip["id"])
    return ip


def _open_default_payment(sb: Sandbox, inv: Obj) -> Obj | None:
    for ip_id in inv["_payments"]:
        ip = sb.state.objects.get(ip_id)
        if ip is not None and ip["is_default"] and ip["status"] == "open":
            return ip
    return None


def _settle(sb: Sandbox, ip: Obj, amount: int) -> None:
    now = sb.now()
    ip["status"] = "paid"
    ip["amount_paid"] = amount
    ip["status_transitions"]["paid_at"] = now
    sb.emit("invoice_payment.paid", ip)


@dataclass
class Attempt:
    """The outcome of collecting an invoice by card."""

    invoice_payment: Obj
    charge: Obj | None  # None: there was no payment method to charge
    error: str | None  # None: paid; else the decline code, or "no_payment_method"


def collect_by_card(sb: Sandbox, inv: Obj, pm: Obj | None, amount: int) -> Attempt:
    """Charge `amount` of `inv` to `pm` through the invoice's PaymentIntent."""
    ip = _open_default_payment(sb, inv)
    if ip is None:
        pi = _new_payment_intent(sb, inv, amount)
        payment = {"payment_intent": pi["id"], "type": "payment_intent"}
        ip = _new_invoice_payment(sb, inv, payment, amount, is_default=True)
    pi = sb.state.objects[ip["payment"]["payment_intent"]]
    if pi["amount"] != amount:
        pi["amount"] = ip["amount_requested"] = amount
    if pm is None:
        return Attempt(ip, None, "no_payment_method")
    charge = create_charge(
        sb,
        customer=inv["customer"],
        amount=amount,
        cur=inv["currency"],
        description=pi["description"],
        payment_method=pm,
        payment_intent=pi["id"],
    )
    pi["payment_method"] = pm["id"]
    pi["latest_charge"] = charge["id"]
    if charge["status"] != "succeeded":
        decline = str(charge["outcome"]["reason"] or "generic_decline")
        pi["status"] = "requires_payment_method"
        pi["last_payment_error"] = {
            "charge": charge["id"],
            "code": "card_declined",
            "decline_code": decline,
            "doc_url": "https://stripe.com/docs/error-codes/card-declined",
            "message": DECLINE_MESSAGES.get(decline, DECLINE_MESSAGES["generic_decline"]),
            "payment_method": store.public(pm),
            "type": "card_error",
        }
        sb.emit("payment_intent.payment_failed", pi)
        return Attempt(ip, charge, decline)
    pi["status"] = "succeeded"
    pi["amount_received"] = amount
    pi["last_payment_error"] = None
    charge["_invoice"] = inv["id"]
    sb.emit("payment_intent.succeeded", pi)
    _settle(sb, ip, amount)
    return Attempt(ip, charge, None)


def record_out_of_band(sb: Sandbox, inv: Obj, amount: int) -> Obj:
    """`paid_out_of_band=true`: an open card payment is canceled, an out-of-band payment recorded."""
    now = sb.now()
    open_ip = _open_default_payment(sb, inv)
    if open_ip is not None:
        open_ip["status"] = "canceled"
        open_ip["is_default"] = False
        open_ip["status_transitions"]["canceled_at"] = now
        pi = sb.state.objects.get(open_ip["payment"].get("payment_intent") or "")
        if pi is not None and pi["status"] != "succeeded":
            pi["status"] = "canceled"
            pi["canceled_at"] = now
            sb.emit("payment_intent.canceled", pi)
    ip = _new_invoice_payment(sb, inv, {"type": "out_of_band_payment"}, amount, is_default=True)
    _settle(sb, ip, amount)
    return ip


@route("GET", "/v1/payment_intents/<id>", "PaymentIntentRetrieveParams")
def retrieve_payment_intent(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    return sb.state.get(id, "payment_intent")


@route("GET", "/v1/payment_intents", "PaymentIntentListParams")
def list_payment_intents(sb: Sandbox, req: Req) -> Obj:
    p = req.params
    items = sb.state.all("payment_intent")
    if "customer" in p:
        items = [pi for pi in items if pi["customer"] == p["customer"]]
    items = created_filter(items, p.get("created"))
    return store.paginate(sb.state, items, p, "/v1/payment_intents", req.expand)


@route("GET", "/v1/invoice_payments/<id>", "InvoicePaymentRetrieveParams")
def retrieve_invoice_payment(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    return sb.state.get(id, "invoice_payment")


@route("GET", "/v1/invoice_payments", "InvoicePaymentListParams")
def list_invoice_payments(sb: Sandbox, req: Req) -> Obj:
    p = req.params
    items = sb.state.all("invoice_payment")
    if "invoice" in p:
        items = [ip for ip in items if ip["invoice"] == p["invoice"]]
    if "status" in p:
        items = [ip for ip in items if ip["status"] == p["status"]]
    if isinstance(p.get("payment"), dict):
        want = p["payment"]
        items = [ip for ip in items if all(ip["payment"].get(k) == v for k, v in want.items())]
    items = created_filter(items, p.get("created"))
    url = "/v1/invoice_payments"
    return store.paginate(sb.state, items, p, url, req.expand)
