"""Money movement the revenue sync reads: charges, balance transactions, refunds, credit notes, disputes."""

from __future__ import annotations

from typing import Any

from .. import billing, store
from ..core import Sandbox
from ..errors import invalid, missing_param, no_such, state_error
from ..router import Req, route
from ..store import Obj, State
from .common import created_filter, set_fields, set_metadata
from .customers import add_balance_transaction

CARD = {
    "brand": "visa",
    "checks": {"address_line1_check": None, "address_postal_code_check": None, "cvc_check": "pass"},
    "country": "US",
    "exp_month": 12,
    "exp_year": 2034,
    "fingerprint": "sandboxFingerprint",
    "funding": "credit",
    "last4": "4242",
    "network": "visa",
}
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
    sb: Sandbox, *, customer: str, amount: int, cur: str, description: str | None, declined: bool = False
) -> Obj:
    """A card charge on the sandbox's fake default payment method (succeeded, or failed if `declined`)."""
    now = sb.now()
    ch_id = store.new_id("ch_")
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
            "failure_message": "Your card was declined." if declined else None,
            "fraud_details": {},
            "livemode": False,
            "metadata": {},
            "on_behalf_of": None,
            "outcome": {
                "advice_code": None,
                "network_advice_code": None,
                "network_decline_code": None,
                "network_status": "declined_by_network" if declined else "approved_by_network",
                "reason": "generic_decline" if declined else None,
                "risk_level": "normal",
                "risk_score": 12,
                "seller_message": "The bank did not return any further details with this decline."
                if declined
                else "Payment complete.",
                "type": "issuer_declined" if declined else "authorized",
            },
            "paid": not declined,
            "payment_intent": None,
            "payment_method": "pm_card_visa",
            "payment_method_details": {"card": dict(CARD), "type": "card"},
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
            "payment_intent": None,
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
        raise invalid("Payment intents are not emulated by the sandbox; refund the `charge`.", param="payment_intent")
    if not p.get("charge"):
        raise missing_param("charge")
    ch = sb.state.get(p["charge"], "charge", param="charge")
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

        _mark_paid(sb, inv, out_of_band=False, charge=None)
    return cn


def _invoice_charge(sb: Sandbox, inv: Obj) -> str | None:
    for pay_id in inv["_payments"]:
        payment = sb.state.objects.get(pay_id)
        if payment and payment["payment"].get("charge"):
            return str(payment["payment"]["charge"])
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
            "payment_intent": None,
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
