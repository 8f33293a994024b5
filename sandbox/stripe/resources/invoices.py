"""Invoices, invoice items and invoice line items: lifecycle, totals, customer balance application."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from .. import billing, store
from ..core import Sandbox, timer
from ..errors import invalid, missing_param, state_error
from ..router import Req, route
from ..store import Obj, State
from .catalog import make_discounts, new_price
from .common import created_filter, currency, decimal_str, future_timestamp, require, set_fields, set_metadata
from .customers import add_balance_transaction, balance_in, check_default_payment_method, get_customer

AUTO_FINALIZE_DELAY = 3600  # Stripe finalizes auto-advancing drafts about an hour after creation
MAX_ITEMS_PER_INVOICE = 250


# ---- rendering -------------------------------------------------------------------------------------


@store.renderer("invoice")
def _render_invoice(state: State, inv: Obj) -> Obj:
    out = store.public(inv)
    if inv["status"] == "draft":
        # A draft shows the customer's balance as it is now; finalizing applies it for real.
        cus = state.objects.get(inv["customer"])
        starting = balance_in(cus, inv["currency"]) if cus and not cus.get("deleted") else 0
        out["starting_balance"] = starting
        out["amount_due"] = out["amount_remaining"] = net_due(inv["total"], starting)
    lines = [store.public(state.objects[i]) for i in inv["_line_ids"] if i in state.objects]
    out["lines"] = store.list_object(lines, f"/v1/invoices/{inv['id']}/lines")
    payments = [store.public(state.objects[i]) for i in inv["_payments"] if i in state.objects]
    out["payments"] = store.list_object(payments, f"/v1/invoice_payments?invoice={inv['id']}")
    return out


def net_due(total: int, balance: int) -> int:
    """What is left to pay of `total` after the customer's `balance` (negative = credit); never below 0."""
    if total <= 0:
        return 0
    return max(total + balance, 0)


# ---- creation ----------------------------------------------------------------------------------------


def new_invoice(
    sb: Sandbox,
    cus: Obj,
    *,
    cur: str,
    collection_method: str = "charge_automatically",
    days_until_due: int | None = None,
    due_date: int | None = None,
    auto_advance: bool = False,
    automatically_finalizes_at: int | None = None,
    billing_reason: str = "manual",
    subscription: Obj | None = None,
    description: str | None = None,
    metadata: dict[str, str] | None = None,
    period: tuple[int, int] | None = None,
) -> Obj:
    now = sb.now()
    if collection_method == "send_invoice":
        if due_date is None and days_until_due is None:
            raise invalid(
                "Invoices with `collection_method=send_invoice` need `days_until_due` or `due_date`.",
                param="days_until_due",
            )
        if due_date is None and days_until_due is not None:
            due_date = now + days_until_due * 86400
    elif due_date is not None or days_until_due is not None:
        raise invalid(
            "`days_until_due` and `due_date` are only for invoices with `collection_method=send_invoice`.",
            param="days_until_due" if days_until_due is not None else "due_date",
        )
    if auto_advance and automatically_finalizes_at is None:
        automatically_finalizes_at = now + AUTO_FINALIZE_DELAY
    inv_id = store.new_id("in_")
    parent = None
    if subscription is not None:
        parent = {
            "quote_details": None,
            "subscription_details": {
                "metadata": dict(subscription.get("metadata") or {}),
                "subscription": subscription["id"],
                "subscription_proration_date": None,
            },
            "type": "subscription_details",
        }
    inv = {
        "id": inv_id,
        "object": "invoice",
        "account_country": "US",
        "account_name": "PostHog Sandbox",
        "account_tax_ids": None,
        "amount_due": 0,
        "amount_overpaid": 0,
        "amount_paid": 0,
        "amount_paid_off_stripe": 0,
        "amount_remaining": 0,
        "amount_shipping": 0,
        "application": None,
        "attempt_count": 0,
        "attempted": False,
        "auto_advance": auto_advance,
        "automatic_tax": {
            "disabled_reason": None,
            "enabled": False,
            "liability": None,
            "provider": None,
            "status": None,
        },
        "automatically_finalizes_at": automatically_finalizes_at if auto_advance else None,
        "billing_reason": billing_reason,
        "collection_method": collection_method,
        "confirmation_secret": None,
        "created": now,
        "currency": cur,
        "custom_fields": None,
        "customer": cus["id"],
        "customer_address": cus.get("address"),
        "customer_email": cus.get("email"),
        "customer_name": cus.get("name"),
        "customer_phone": cus.get("phone"),
        "customer_shipping": cus.get("shipping"),
        "customer_tax_exempt": cus.get("tax_exempt", "none"),
        "customer_tax_ids": [],
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": description,
        "discounts": [],
        "due_date": due_date,
        "effective_at": None,
        "ending_balance": None,
        "footer": None,
        "from_invoice": None,
        "hosted_invoice_url": None,
        "invoice_pdf": None,
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "latest_revision": None,
        "livemode": False,
        "metadata": dict(metadata or {}),
        "next_payment_attempt": None,
        "number": None,
        "on_behalf_of": None,
        "parent": parent,
        "payment_settings": {"default_mandate": None, "payment_method_options": None, "payment_method_types": None},
        "period_end": period[1] if period else now,
        "period_start": period[0] if period else now,
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "rendering": None,
        "shipping_cost": None,
        "shipping_details": None,
        "starting_balance": 0,
        "statement_descriptor": None,
        "status": "draft",
        "status_transitions": {
            "finalized_at": None,
            "marked_uncollectible_at": None,
            "paid_at": None,
            "voided_at": None,
        },
        "subtotal": 0,
        "subtotal_excluding_tax": 0,
        "test_clock": None,
        "threshold_reason": None,
        "total": 0,
        "total_discount_amounts": [],
        "total_excluding_tax": 0,
        "total_pretax_credit_amounts": [],
        "total_taxes": [],
        "webhooks_delivered_at": None,
        "_line_ids": [],
        "_days_until_due": days_until_due,
        "_applied_balance": 0,
        "_overdue_sent": False,
        "_subscription": subscription["id"] if subscription else None,
        "_payments": [],
    }
    sb.state.add(inv)
    if auto_advance:
        sb.watch(inv)
    return inv


def add_line(
    sb: Sandbox,
    inv: Obj,
    *,
    amount: int,
    quantity: int,
    price: Obj | None,
    unit_amount_decimal: Decimal | None,
    description: str | None,
    period: dict[str, int],
    discounts: list[str],
    metadata: dict[str, str],
    invoice_item: str | None = None,
    subscription: str | None = None,
    subscription_item: str | None = None,
    discountable: bool = True,
) -> Obj:
    if len(inv["_line_ids"]) >= MAX_ITEMS_PER_INVOICE:
        raise invalid(f"An invoice can have at most {MAX_ITEMS_PER_INVOICE} items.", param="invoice")
    if subscription_item:
        parent = {
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": None,
                "proration": False,
                "proration_details": {"credited_items": None},
                "subscription": subscription,
                "subscription_item": subscription_item,
            },
            "type": "subscription_item_details",
        }
    else:
        parent = {
            "invoice_item_details": {
                "invoice_item": invoice_item,
                "proration": False,
                "proration_details": {"credited_items": None},
                "subscription": subscription,
            },
            "subscription_item_details": None,
            "type": "invoice_item_details",
        }
    line = sb.state.add(
        {
            "id": store.new_id("il_"),
            "object": "line_item",
            "amount": amount,
            "currency": inv["currency"],
            "description": description,
            "discount_amounts": [],
            "discountable": discountable,
            "discounts": list(discounts),
            "invoice": inv["id"],
            "livemode": False,
            "metadata": dict(metadata),
            "parent": parent,
            "period": dict(period),
            "pretax_credit_amounts": [],
            "pricing": {
                "price_details": {"price": price["id"], "product": price["product"]} if price else None,
                "type": "price_details",
                "unit_amount_decimal": decimal_str(unit_amount_decimal) if unit_amount_decimal is not None else None,
            },
            "quantity": quantity,
            "subscription": subscription,
            "subtotal": amount,
            "taxes": [],
            "_invoice_item": invoice_item,
        }
    )
    inv["_line_ids"].append(line["id"])
    return line


def recalc(sb: Sandbox, inv: Obj) -> None:
    """Totals of a draft from its lines and discounts (balance is applied at finalization)."""
    lines = [sb.state.objects[i] for i in inv["_line_ids"]]
    cur = inv["currency"]
    per_discount: dict[str, int] = {}
    net: dict[str, int] = {}
    for line in lines:
        remaining = line["amount"]
        line["discount_amounts"] = []
        for did in line["discounts"] if line["discountable"] else []:
            coupon = _coupon_of(sb, did)
            off = billing.coupon_discount(coupon, remaining, cur) if coupon else 0
            remaining -= off
            line["discount_amounts"].append({"amount": off, "discount": did})
            per_discount[did] = per_discount.get(did, 0) + off
        net[line["id"]] = remaining
    # Invoice-level discounts apply to what is left of discountable lines, spread by line amount.
    for did in inv["discounts"]:
        coupon = _coupon_of(sb, did)
        eligible = [ln for ln in lines if ln["discountable"] and net[ln["id"]] > 0]
        base = sum(net[ln["id"]] for ln in eligible)
        off_total = billing.coupon_discount(coupon, base, cur) if coupon else 0
        left = off_total
        for i, ln in enumerate(eligible):
            share = left if i == len(eligible) - 1 else off_total * net[ln["id"]] // base
            left -= share
            net[ln["id"]] -= share
            ln["discount_amounts"].append({"amount": share, "discount": did})
        per_discount[did] = per_discount.get(did, 0) + off_total
    subtotal = sum(ln["amount"] for ln in lines)
    discount_total = sum(per_discount.values())
    total = subtotal - discount_total
    inv["subtotal"] = inv["subtotal_excluding_tax"] = subtotal
    inv["total"] = inv["total_excluding_tax"] = total
    inv["total_discount_amounts"] = [{"amount": a, "discount": d} for d, a in per_discount.items()]
    if inv["status"] == "draft":
        cus = sb.state.objects[inv["customer"]]
        inv["starting_balance"] = balance_in(cus, cur) if not cus.get("deleted") else 0
        inv["amount_due"] = net_due(total, inv["starting_balance"])
        inv["amount_remaining"] = inv["amount_due"]


def _coupon_of(sb: Sandbox, discount_id: str) -> Obj | None:
    disc = sb.state.objects.get(discount_id)
    if disc is None:
        return None
    return sb.state.objects.get(disc["source"]["coupon"])


def include_pending_items(sb: Sandbox, inv: Obj, subscription: str | None = None) -> None:
    for ii in sb.state.all("invoiceitem"):
        if ii.get("deleted") or ii["invoice"] is not None or ii["customer"] != inv["customer"]:
            continue
        if ii["currency"] != inv["currency"]:
            continue
        ii_sub = (ii.get("parent") or {}).get("subscription_details", {}) or {}
        if ii_sub.get("subscription") not in (None, subscription):
            continue
        attach_item(sb, inv, ii)


def attach_item(sb: Sandbox, inv: Obj, ii: Obj) -> None:
    ii["invoice"] = inv["id"]
    price = sb.state.objects.get(ii["pricing"]["price_details"]["price"]) if ii["pricing"]["price_details"] else None
    sub = ((ii.get("parent") or {}).get("subscription_details") or {}).get("subscription")
    add_line(
        sb,
        inv,
        amount=ii["amount"],
        quantity=ii["quantity"],
        price=price,
        unit_amount_decimal=Decimal(ii["pricing"]["unit_amount_decimal"])
        if ii["pricing"]["unit_amount_decimal"] is not None
        else None,
        description=ii["description"],
        period=ii["period"],
        discounts=ii["discounts"],
        metadata=ii["metadata"],
        invoice_item=ii["id"],
        subscription=sub,
        discountable=ii["discountable"],
    )


# ---- lifecycle -------------------------------------------------------------------------------------


def finalize(sb: Sandbox, inv: Obj, *, auto: bool = False, collect: bool = True) -> None:
    """Draft -> open, applying the customer's balance in the invoice currency. `collect`: then let an
    auto-advancing invoice charge (charge_automatically) or send itself (send_invoice)."""
    if inv["status"] != "draft":
        raise state_error(f"Invoice {inv['id']} is already finalized.")
    cus = sb.state.objects[inv["customer"]]
    if cus.get("deleted"):
        raise state_error("You cannot finalize an invoice for a deleted customer.")
    now = sb.now()
    recalc(sb, inv)
    with sb.tracking(inv, None):
        seq = cus["next_invoice_sequence"]
        cus["next_invoice_sequence"] = seq + 1
        inv["number"] = f"{cus['invoice_prefix']}-{seq:04d}"
        total = inv["total"]
        starting = balance_in(cus, inv["currency"])
        inv["starting_balance"] = starting
        # The customer balance pays (credit, negative) or adds to (debit, positive) this invoice.
        if total < 0:
            applied = total
            amount_due = 0
        elif starting < 0:
            applied = min(-starting, total)
            amount_due = total - applied
        else:
            applied = -starting
            amount_due = total + starting
        if applied:
            add_balance_transaction(
                sb,
                cus,
                applied,
                inv["currency"],
                type_="applied_to_invoice",
                invoice=inv["id"],
            )
        inv["_applied_balance"] = applied
        inv["ending_balance"] = balance_in(cus, inv["currency"])
        inv["amount_due"] = amount_due
        inv["amount_remaining"] = amount_due
        inv["status"] = "open"
        inv["status_transitions"]["finalized_at"] = now
        inv["effective_at"] = now
        inv["automatically_finalizes_at"] = None
        inv["hosted_invoice_url"] = f"https://invoice.stripe.com/i/sandbox/{inv['id']}"
        inv["invoice_pdf"] = f"https://pay.stripe.com/invoice/sandbox/{inv['id']}/pdf"
        if inv["collection_method"] == "send_invoice" and inv["_days_until_due"] is not None:
            inv["due_date"] = now + inv["_days_until_due"] * 86400
        if inv["collection_method"] == "charge_automatically" and inv["auto_advance"] and collect:
            inv["next_payment_attempt"] = now
    for ii_line in inv["_line_ids"]:
        line = sb.state.objects[ii_line]
        if line.get("_invoice_item") and line["_invoice_item"] in sb.state.objects:
            sb.state.objects[line["_invoice_item"]]["_locked"] = True
    sb.emit("invoice.finalized", inv)
    if amount_due == 0:
        _mark_paid(sb, inv, payment=None)  # the balance covered it: no card needed
        return
    sb.watch(inv)
    if inv["auto_advance"] and collect:
        if inv["collection_method"] == "charge_automatically":
            pay(sb, inv, automatic=True)
        else:
            send(sb, inv)


MAX_PAYMENT_ATTEMPTS = 4
RETRY_DELAY = 3 * 86400  # between automatic payment attempts after a decline


def payment_method_for(sb: Sandbox, inv: Obj) -> Obj | None:
    """What Stripe charges: the invoice's default payment method, else the subscription's, else the
    customer's `invoice_settings.default_payment_method`. A customer made through the API has none."""
    from .customers import default_payment_method

    cus = sb.state.objects[inv["customer"]]
    sub = sb.state.objects.get(inv["_subscription"]) if inv["_subscription"] else None
    for candidate in (inv.get("default_payment_method"), (sub or {}).get("default_payment_method")):
        pm = sb.state.find(candidate)
        if pm is not None and pm.get("customer") == cus["id"]:
            return pm
    return default_payment_method(sb, cus)


def pay(
    sb: Sandbox,
    inv: Obj,
    *,
    paid_out_of_band: bool = False,
    automatic: bool = False,
    payment_method: str | None = None,
) -> None:
    """Pay an open invoice (finalizing a draft first). `automatic`: Stripe's own collection attempt,
    which leaves the invoice open on failure; a requested payment (`/pay`) answers the error."""
    from .payments import collect_by_card, declined_error, record_out_of_band, resolve_payment_method

    if inv["status"] == "draft":
        finalize(sb, inv, collect=False)
        if inv["status"] == "paid":
            return
    if inv["status"] == "paid":
        raise state_error(f"Invoice {inv['id']} is already paid.")
    if inv["status"] == "void":
        raise state_error(f"Invoice {inv['id']} has been voided and can no longer be paid.")
    amount = inv["amount_remaining"]
    if amount == 0:
        _mark_paid(sb, inv, payment=None)
        return
    if paid_out_of_band:
        _mark_paid(sb, inv, payment=record_out_of_band(sb, inv, amount))
        return
    if payment_method is not None:
        # A stored payment method must be the invoice customer's own; a test token makes a new one
        # for this payment only (charging a card does not attach it to the customer).
        pm: Obj | None = resolve_payment_method(sb, payment_method, "payment_method")
        if pm is not None and pm.get("_token") != payment_method and pm["customer"] != inv["customer"]:
            raise invalid(
                f"The PaymentMethod {payment_method} does not belong to customer {inv['customer']} of invoice "
                f"{inv['id']}; attach it to the customer first.",
                param="payment_method",
            )
    else:
        pm = payment_method_for(sb, inv)
    attempt = collect_by_card(sb, inv, pm, amount)
    if attempt.error is None:
        _mark_paid(sb, inv, payment=attempt.invoice_payment)
        return
    _payment_failed(sb, inv, automatic=automatic)
    if automatic:
        return
    if attempt.charge is None:
        raise state_error(
            f"Invoice {inv['id']} cannot be paid: customer {inv['customer']} has no attached payment source or "
            "default payment method. Attach one (or pass `payment_method`), or pay it out of band."
        )
    raise declined_error(attempt.error, charge=attempt.charge["id"])


def _payment_failed(sb: Sandbox, inv: Obj, *, automatic: bool) -> None:
    now = sb.now()
    with sb.tracking(inv, None):
        inv["attempted"] = True
        inv["attempt_count"] += 1
        # A manual attempt leaves Stripe's automatic retry schedule as it was. A new subscription's
        # first invoice is not retried: the subscription stays incomplete until it is paid.
        if automatic and inv["collection_method"] == "charge_automatically":
            more = inv["attempt_count"] < MAX_PAYMENT_ATTEMPTS and inv["billing_reason"] != "subscription_create"
            inv["next_payment_attempt"] = now + RETRY_DELAY if more else None
        inv["last_finalization_error"] = None
    if inv["next_payment_attempt"]:
        sb.watch(inv)
    sb.emit("invoice.payment_failed", inv)
    if inv["_subscription"]:
        from .subscriptions import on_payment_failed

        on_payment_failed(sb, inv, final=inv["next_payment_attempt"] is None and automatic)


def _mark_paid(sb: Sandbox, inv: Obj, *, payment: Obj | None) -> None:
    """Mark `inv` paid by `payment` (an invoice_payment), or by its balance/credit notes when None."""
    now = sb.now()
    out_of_band = payment is not None and payment["payment"]["type"] == "out_of_band_payment"
    by_card = payment is not None and not out_of_band
    with sb.tracking(inv, None):
        amount = inv["amount_remaining"]
        inv["amount_paid"] += amount
        if out_of_band:
            inv["amount_paid_off_stripe"] += amount
        inv["amount_remaining"] = 0
        inv["status"] = "paid"
        inv["status_transitions"]["paid_at"] = now
        inv["next_payment_attempt"] = None
        if by_card:
            inv["attempted"] = True
            inv["attempt_count"] += 1
    sb.state.watch.discard(inv["id"])
    sb.emit("invoice.paid", inv)
    if by_card:
        sb.emit("invoice.payment_succeeded", inv)
    if inv["_subscription"]:
        from .subscriptions import on_invoice_paid

        on_invoice_paid(sb, inv)


def send(sb: Sandbox, inv: Obj) -> None:
    if inv["collection_method"] != "send_invoice":
        raise state_error("You can only manually send an invoice if its collection method is 'send_invoice'.")
    if inv["status"] == "draft":
        finalize(sb, inv)
        if inv["auto_advance"]:
            return  # finalize already sent it
    if inv["status"] not in ("open", "paid", "uncollectible"):
        raise state_error(f"You can't send an invoice with status {inv['status']}.")
    inv["_sent"] = True
    sb.emit("invoice.sent", inv)


def void(sb: Sandbox, inv: Obj) -> None:
    if inv["status"] not in ("open", "uncollectible"):
        raise state_error(f"You can only void open or uncollectible invoices (this one is {inv['status']}).")
    with sb.tracking(inv, None):
        inv["status"] = "void"
        inv["status_transitions"]["voided_at"] = sb.now()
        inv["amount_remaining"] = 0
        inv["next_payment_attempt"] = None
    applied = inv["_applied_balance"]
    if applied:
        # Voiding gives the customer back the balance the invoice consumed.
        cus = sb.state.objects[inv["customer"]]
        add_balance_transaction(sb, cus, -applied, inv["currency"], type_="unapplied_from_invoice", invoice=inv["id"])
        inv["_applied_balance"] = 0
    sb.state.watch.discard(inv["id"])
    sb.emit("invoice.voided", inv)


def mark_uncollectible(sb: Sandbox, inv: Obj) -> None:
    if inv["status"] != "open":
        raise state_error(f"You can only mark open invoices uncollectible (this one is {inv['status']}).")
    inv["status"] = "uncollectible"
    inv["status_transitions"]["marked_uncollectible_at"] = sb.now()
    sb.emit("invoice.marked_uncollectible", inv)


def _invoice_due(sb: Sandbox, inv: Obj) -> int | None:
    if inv["status"] == "draft" and inv["auto_advance"] and inv["automatically_finalizes_at"]:
        return int(inv["automatically_finalizes_at"])
    times = []
    if inv["status"] == "open" and inv["due_date"] and not inv["_overdue_sent"]:
        times.append(int(inv["due_date"]))
    if inv["status"] == "open" and inv["collection_method"] == "charge_automatically" and inv["next_payment_attempt"]:
        times.append(int(inv["next_payment_attempt"]))
    return min(times, default=None)


@timer("invoice", 30, _invoice_due)
def _invoice_tick(sb: Sandbox, inv: Obj, now: int) -> None:
    if inv["status"] == "draft":
        finalize(sb, inv, auto=True)
    elif (
        inv["collection_method"] == "charge_automatically"
        and inv["next_payment_attempt"]
        and inv["next_payment_attempt"] <= now
    ):
        pay(sb, inv, automatic=True)  # a retry after a decline
    elif inv["status"] == "open":
        inv["_overdue_sent"] = True
        sb.emit("invoice.overdue", inv)
        if inv["_subscription"]:
            from .subscriptions import on_invoice_overdue

            on_invoice_overdue(sb, inv)


# ---- routes: invoices ------------------------------------------------------------------------------


def _get(sb: Sandbox, invoice_id: str, param: str = "id") -> Obj:
    return sb.state.get(invoice_id, "invoice", param=param)


@route("POST", "/v1/invoices", "InvoiceCreateParams")
def create(sb: Sandbox, req: Req) -> Obj:
    p = req.params
    require(p, "customer")
    cus = get_customer(sb, p["customer"])
    if p.get("subscription"):
        raise invalid("Use the subscription's own billing to invoice a subscription.", param="subscription")
    cur = currency(p["currency"]) if p.get("currency") else (cus.get("currency") or "usd")
    now = sb.now()
    future_timestamp(p.get("due_date"), now, "due_date")
    future_timestamp(p.get("automatically_finalizes_at"), now, "automatically_finalizes_at")
    inv = new_invoice(
        sb,
        cus,
        cur=cur,
        collection_method=p.get("collection_method", "charge_automatically"),
        days_until_due=p.get("days_until_due"),
        due_date=p.get("due_date"),
        auto_advance=p.get("auto_advance", False),
        automatically_finalizes_at=p.get("automatically_finalizes_at"),
        description=p.get("description"),
        metadata=p.get("metadata") or {},
    )
    inv["discounts"] = make_discounts(sb, p.get("discounts"), "discounts", customer=cus["id"], invoice=inv["id"])
    set_fields(inv, p, ("footer", "statement_descriptor", "custom_fields", "rendering"))
    if p.get("default_payment_method"):
        inv["default_payment_method"] = check_default_payment_method(
            sb, cus, p["default_payment_method"], "default_payment_method"
        )
    if p.get("pending_invoice_items_behavior") == "include":
        include_pending_items(sb, inv)
    recalc(sb, inv)
    sb.emit("invoice.created", inv)
    return inv


@route("GET", "/v1/invoices/<id>", "InvoiceRetrieveParams")
def retrieve(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    return _get(sb, id)


@route("POST", "/v1/invoices/<id>", "InvoiceUpdateParams")
def update(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    inv = _get(sb, id)
    p = req.params
    draft_only = {
        "collection_method",
        "days_until_due",
        "due_date",
        "discounts",
        "currency",
        "automatically_finalizes_at",
    }
    if inv["status"] != "draft":
        bad = sorted(draft_only & set(p))
        if bad:
            raise state_error(f"Finalized invoices can't be updated in this way ({bad[0]}).", param=bad[0])
    future_timestamp(p.get("due_date"), sb.now(), "due_date")
    future_timestamp(p.get("automatically_finalizes_at"), sb.now(), "automatically_finalizes_at")
    with sb.tracking(inv, "invoice.updated"):
        set_fields(inv, p, ("description", "footer", "statement_descriptor", "custom_fields"))
        set_metadata(inv, p)
        if "auto_advance" in p:
            inv["auto_advance"] = p["auto_advance"]
            if inv["status"] == "draft":
                inv["automatically_finalizes_at"] = (
                    p.get("automatically_finalizes_at") or inv["created"] + AUTO_FINALIZE_DELAY
                    if p["auto_advance"]
                    else None
                )
                if p["auto_advance"]:
                    sb.watch(inv)
        if "automatically_finalizes_at" in p and inv["auto_advance"]:
            inv["automatically_finalizes_at"] = p["automatically_finalizes_at"]
        if "collection_method" in p:
            inv["collection_method"] = p["collection_method"]
        if "default_payment_method" in p:
            cus = sb.state.objects[inv["customer"]]
            inv["default_payment_method"] = check_default_payment_method(
                sb, cus, p["default_payment_method"], "default_payment_method"
            )
        if "days_until_due" in p:
            inv["_days_until_due"] = p["days_until_due"]
            inv["due_date"] = sb.now() + p["days_until_due"] * 86400
        if "due_date" in p:
            inv["due_date"] = p["due_date"]
            inv["_days_until_due"] = None
        if inv["collection_method"] == "send_invoice" and inv["due_date"] is None:
            raise invalid("Invoices with `collection_method=send_invoice` need `days_until_due` or `due_date`.")
        if "discounts" in p:
            inv["discounts"] = make_discounts(sb, p["discounts"], "discounts", customer=inv["customer"], invoice=id)
        if inv["status"] == "draft":
            recalc(sb, inv)
    return inv


@route("DELETE", "/v1/invoices/<id>", "InvoiceDeleteParams")
def delete(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    inv = _get(sb, id)
    if inv["status"] != "draft":
        raise state_error("You can only delete draft invoices.")
    sb.emit("invoice.deleted", inv)
    for line_id in inv["_line_ids"]:
        line = sb.state.objects.get(line_id)
        if line and line.get("_invoice_item") in sb.state.objects:
            sb.state.objects[line["_invoice_item"]]["invoice"] = None  # back to pending
        sb.state.remove(line_id)
    sb.state.watch.discard(id)
    sb.state.remove(id)
    return {"id": id, "object": "invoice", "deleted": True}


@route("GET", "/v1/invoices", "InvoiceListParams")
def list_(sb: Sandbox, req: Req) -> Obj:
    p = req.params
    items = sb.state.all("invoice")
    if "customer" in p:
        items = [i for i in items if i["customer"] == p["customer"]]
    if "status" in p:
        items = [i for i in items if i["status"] == p["status"]]
    if "subscription" in p:
        items = [i for i in items if i["_subscription"] == p["subscription"]]
    if "collection_method" in p:
        items = [i for i in items if i["collection_method"] == p["collection_method"]]
    items = created_filter(items, p.get("created"))
    items = created_filter(items, p.get("due_date"), "due_date")
    return store.paginate(sb.state, items, p, "/v1/invoices", req.expand)


@route("GET", "/v1/invoices/<id>/lines", "InvoiceLineItemListParams")
def list_lines(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    inv = _get(sb, id, "invoice")
    lines = [sb.state.objects[i] for i in inv["_line_ids"]]
    return store.paginate(sb.state, lines, req.params, f"/v1/invoices/{id}/lines", req.expand, newest_first=False)


@route("POST", "/v1/invoices/<id>/finalize", "InvoiceFinalizeInvoiceParams")
def finalize_route(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    inv = _get(sb, id, "invoice")
    if "auto_advance" in req.params:
        inv["auto_advance"] = req.params["auto_advance"]
    finalize(sb, inv)
    return inv


@route("POST", "/v1/invoices/<id>/send", "InvoiceSendInvoiceParams")
def send_route(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    inv = _get(sb, id, "invoice")
    send(sb, inv)
    return inv


@route("POST", "/v1/invoices/<id>/pay", "InvoicePayParams")
def pay_route(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    inv = _get(sb, id, "invoice")
    pay(sb, inv, paid_out_of_band=bool(req.get("paid_out_of_band", False)), payment_method=req.get("payment_method"))
    return inv


@route("POST", "/v1/invoices/<id>/void", "InvoiceVoidInvoiceParams")
def void_route(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    inv = _get(sb, id, "invoice")
    void(sb, inv)
    return inv


@route("POST", "/v1/invoices/<id>/mark_uncollectible", "InvoiceMarkUncollectibleParams")
def mark_uncollectible_route(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    inv = _get(sb, id, "invoice")
    mark_uncollectible(sb, inv)
    return inv


# ---- routes: invoice items -------------------------------------------------------------------------


def _item_amount(sb: Sandbox, p: dict[str, Any]) -> tuple[int, int, Obj | None, Decimal | None, str]:
    """(amount, quantity, price, unit_amount_decimal, currency) from the three ways to price an item."""
    quantity = p.get("quantity", 1)
    if p.get("pricing") and p["pricing"].get("price"):
        price = sb.state.get(p["pricing"]["price"], "price", param="pricing[price]")
        amount = billing.price_amount(price, quantity)
        unit = billing.unit_amount_decimal(price)
        return amount, quantity, price, unit, price["currency"]
    if p.get("price_data"):
        pd = p["price_data"]
        price = new_price(sb, {**pd, "active": False})
        amount = billing.price_amount(price, quantity)
        return amount, quantity, price, billing.unit_amount_decimal(price), price["currency"]
    if "amount" in p:
        require(p, "currency")
        unit = Decimal(p["amount"]) / quantity if quantity else None
        return p["amount"], quantity, None, unit, currency(p["currency"])
    raise missing_param("amount")


@route("POST", "/v1/invoiceitems", "InvoiceItemCreateParams")
def create_item(sb: Sandbox, req: Req) -> Obj:
    p = req.params
    inv = _get(sb, p["invoice"], "invoice") if p.get("invoice") else None
    if not p.get("customer") and inv is None:
        raise missing_param("customer")
    cus = get_customer(sb, p.get("customer") or inv["customer"])  # type: ignore[index]
    if inv is not None:
        if inv["customer"] != cus["id"]:
            raise invalid("The invoice belongs to a different customer.", param="invoice")
        if inv["status"] != "draft":
            raise state_error(
                f"Invoice {inv['id']} is not a draft: items can only be added to drafts.", param="invoice"
            )
    amount, quantity, price, unit, cur = _item_amount(sb, p)
    if inv is not None and inv["currency"] != cur:
        raise invalid(f"The invoice is in {inv['currency']}; this item is in {cur}.", param="currency")
    now = sb.now()
    sub = sb.state.get(p["subscription"], "subscription", param="subscription") if p.get("subscription") else None
    ii_id = store.new_id("ii_")
    period = p.get("period") or {"start": now, "end": now}
    ii = {
        "id": ii_id,
        "object": "invoiceitem",
        "amount": amount,
        "currency": cur,
        "customer": cus["id"],
        "date": now,
        "description": p.get("description") or (sb.state.objects[price["product"]]["name"] if price else None),
        "discountable": p.get("discountable", amount > 0),
        "discounts": [],
        "invoice": None,
        "livemode": False,
        "metadata": {},
        "net_amount": amount,
        "parent": {
            "subscription_details": {"subscription": sub["id"], "subscription_item": None},
            "type": "subscription_details",
        }
        if sub
        else None,
        "period": {"start": period["start"], "end": period["end"]},
        "pricing": {
            "price_details": {"price": price["id"], "product": price["product"]} if price else None,
            "type": "price_details",
            "unit_amount_decimal": decimal_str(unit) if unit is not None else None,
        },
        "proration": False,
        "proration_details": {"credited_items": None},
        "quantity": quantity,
        "tax_rates": [],
        "test_clock": None,
    }
    set_metadata(ii, p)
    sb.state.add(ii)
    ii["discounts"] = make_discounts(sb, p.get("discounts"), "discounts", customer=cus["id"], invoice_item=ii_id)
    if inv is not None:
        attach_item(sb, inv, ii)
        recalc(sb, inv)
    sb.emit("invoiceitem.created", ii)
    return ii


@route("GET", "/v1/invoiceitems/<id>", "InvoiceItemRetrieveParams")
def retrieve_item(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    return sb.state.get(id, "invoiceitem")


@route("POST", "/v1/invoiceitems/<id>", "InvoiceItemUpdateParams")
def update_item(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    ii = sb.state.get(id, "invoiceitem")
    if ii.get("_locked"):
        raise state_error("This invoice item is on a finalized invoice and can no longer be changed.")
    p = req.params
    # Stripe has no `invoiceitem.updated` event: an item change shows on its draft invoice only.
    with sb.tracking(ii, None):
        set_fields(ii, p, ("description", "discountable"))
        set_metadata(ii, p)
        if "period" in p:
            ii["period"] = dict(p["period"])
        if any(k in p for k in ("amount", "pricing", "price_data", "quantity")):
            merged = {"quantity": ii["quantity"], "currency": ii["currency"], **p}
            if not any(k in p for k in ("amount", "pricing", "price_data")):
                if ii["pricing"]["price_details"]:
                    merged["pricing"] = {"price": ii["pricing"]["price_details"]["price"]}
                else:
                    merged["amount"] = ii["amount"]
            amount, quantity, price, unit, cur = _item_amount(sb, merged)
            ii.update({"amount": amount, "net_amount": amount, "quantity": quantity, "currency": cur})
            ii["pricing"] = {
                "price_details": {"price": price["id"], "product": price["product"]} if price else None,
                "type": "price_details",
                "unit_amount_decimal": decimal_str(unit) if unit is not None else None,
            }
        if "discounts" in p:
            ii["discounts"] = make_discounts(sb, p["discounts"], "discounts", customer=ii["customer"], invoice_item=id)
    if ii["invoice"]:
        inv = sb.state.objects[ii["invoice"]]
        for line_id in list(inv["_line_ids"]):
            if sb.state.objects[line_id].get("_invoice_item") == id:
                inv["_line_ids"].remove(line_id)
                sb.state.remove(line_id)
        attach_item(sb, inv, ii)
        recalc(sb, inv)
    return ii


@route("DELETE", "/v1/invoiceitems/<id>", "InvoiceItemDeleteParams")
def delete_item(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    ii = sb.state.get(id, "invoiceitem")
    if ii.get("_locked"):
        raise state_error("This invoice item is on a finalized invoice and can no longer be deleted.")
    if ii["invoice"]:
        inv = sb.state.objects[ii["invoice"]]
        for line_id in list(inv["_line_ids"]):
            if sb.state.objects[line_id].get("_invoice_item") == id:
                inv["_line_ids"].remove(line_id)
                sb.state.remove(line_id)
        recalc(sb, inv)
    sb.emit("invoiceitem.deleted", ii)
    sb.state.remove(id)
    return {"id": id, "object": "invoiceitem", "deleted": True}


@route("GET", "/v1/invoiceitems", "InvoiceItemListParams")
def list_items(sb: Sandbox, req: Req) -> Obj:
    p = req.params
    items = sb.state.all("invoiceitem")
    if "customer" in p:
        items = [i for i in items if i["customer"] == p["customer"]]
    if "invoice" in p:
        items = [i for i in items if i["invoice"] == p["invoice"]]
    if "pending" in p:
        items = [i for i in items if (i["invoice"] is None) == p["pending"]]
    items = created_filter(items, p.get("created"), "date")
    return store.paginate(sb.state, items, p, "/v1/invoiceitems", req.expand)
