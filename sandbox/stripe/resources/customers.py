"""Customers and customer balance transactions."""

from __future__ import annotations

from typing import Any

from .. import store
from ..core import Sandbox
from ..errors import invalid
from ..router import Req, route
from ..store import Obj
from .common import created_filter, currency, require, set_fields, set_metadata

SIMPLE_FIELDS = ("email", "name", "description", "phone", "address", "shipping", "preferred_locales", "tax_exempt")


def get_customer(sb: Sandbox, customer_id: Any, param: str = "customer") -> Obj:
    return sb.state.get(customer_id, "customer", param=param)


@route("POST", "/v1/customers", "CustomerCreateParams")
def create(sb: Sandbox, req: Req) -> Obj:
    p = req.params
    cus: Obj = {
        "id": store.new_id("cus_", 14),
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": sb.now(),
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": None,
        "discount": None,
        "email": None,
        "invoice_prefix": store.random_token(8).upper(),
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": {},
        "name": None,
        "next_invoice_sequence": 1,
        "phone": None,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }
    set_fields(cus, p, SIMPLE_FIELDS)
    set_metadata(cus, p)
    if p.get("invoice_prefix"):
        cus["invoice_prefix"] = p["invoice_prefix"]
    if isinstance(p.get("invoice_settings"), dict):
        cus["invoice_settings"].update({k: v for k, v in p["invoice_settings"].items() if k in cus["invoice_settings"]})
    if p.get("balance"):
        cus["balance"] = p["balance"]
    sb.state.add(cus)
    sb.emit("customer.created", cus)
    return cus


@route("GET", "/v1/customers/<id>", "CustomerRetrieveParams")
def retrieve(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    cus = sb.state.get(id, "customer", allow_deleted=True)
    if cus.get("deleted"):
        return {"id": cus["id"], "object": "customer", "deleted": True}
    return cus


@route("POST", "/v1/customers/<id>", "CustomerUpdateParams")
def update(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    cus = sb.state.get(id, "customer")
    p = req.params
    with sb.tracking(cus, "customer.updated"):
        set_fields(cus, p, SIMPLE_FIELDS)
        set_metadata(cus, p)
        if "balance" in p:
            cus["balance"] = p["balance"]
        if isinstance(p.get("invoice_settings"), dict):
            cus["invoice_settings"].update(
                {k: v for k, v in p["invoice_settings"].items() if k in cus["invoice_settings"]}
            )
    return cus


@route("DELETE", "/v1/customers/<id>", "CustomerDeleteParams")
def delete(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    cus = sb.state.get(id, "customer")
    from .subscriptions import end_subscription

    for sub in sb.state.all("subscription"):
        if sub["customer"] == cus["id"] and sub["status"] not in ("canceled", "incomplete_expired"):
            end_subscription(sb, sub, reason="cancellation_requested")
    before = dict(cus)
    sb.emit("customer.deleted", {**before, "_seq": before["_seq"]})
    # Keep a stub so later retrieves answer `{"id", "object", "deleted": true}` like Stripe.
    for key in list(cus):
        if key not in ("id", "object", "_seq", "created"):
            del cus[key]
    cus["deleted"] = True
    return {"id": cus["id"], "object": "customer", "deleted": True}


@route("GET", "/v1/customers", "CustomerListParams")
def list_(sb: Sandbox, req: Req) -> Obj:
    items = [c for c in sb.state.all("customer") if not c.get("deleted")]
    if "email" in req.params:
        items = [c for c in items if c.get("email") == req.params["email"]]
    items = created_filter(items, req.get("created"))
    return store.paginate(sb.state, items, req.params, "/v1/customers", req.expand)


# ---- balance transactions ------------------------------------------------------------------------


def add_balance_transaction(
    sb: Sandbox,
    cus: Obj,
    amount: int,
    cur: str,
    *,
    type_: str = "adjustment",
    description: str | None = None,
    metadata: dict[str, str] | None = None,
    invoice: str | None = None,
    credit_note: str | None = None,
) -> Obj:
    """Move the customer's balance (negative = credit the customer can spend) and record it."""
    if cus.get("currency") and cus["currency"] != cur:
        raise invalid(
            f"Customer {cus['id']} has a balance in {cus['currency']}; this transaction is in {cur}.",
            param="currency",
        )
    with sb.tracking(cus, "customer.updated"):
        cus["currency"] = cur
        cus["balance"] += amount
    txn = sb.state.add(
        {
            "id": store.new_id("cbtxn_"),
            "object": "customer_balance_transaction",
            "amount": amount,
            "checkout_session": None,
            "created": sb.now(),
            "credit_note": credit_note,
            "currency": cur,
            "customer": cus["id"],
            "description": description,
            "ending_balance": cus["balance"],
            "invoice": invoice,
            "livemode": False,
            "metadata": metadata or {},
            "type": type_,
        }
    )
    sb.emit("customer_balance_transaction.created", txn)
    return txn


@route("POST", "/v1/customers/<customer>/balance_transactions", "CustomerBalanceTransactionCreateParams")
def create_balance_transaction(sb: Sandbox, req: Req, customer: str) -> Obj:
    cus = get_customer(sb, customer, "customer")
    require(req.params, "amount", "currency")
    return add_balance_transaction(
        sb,
        cus,
        req.params["amount"],
        currency(req.params["currency"]),
        description=req.get("description"),
        metadata=req.get("metadata") or {},
    )


@route("GET", "/v1/customers/<customer>/balance_transactions", "CustomerBalanceTransactionListParams")
def list_balance_transactions(sb: Sandbox, req: Req, customer: str) -> Obj:
    cus = get_customer(sb, customer, "customer")
    items = [t for t in sb.state.all("customer_balance_transaction") if t["customer"] == cus["id"]]
    items = created_filter(items, req.get("created"))
    url = f"/v1/customers/{cus['id']}/balance_transactions"
    return store.paginate(sb.state, items, req.params, url, req.expand)


@route("GET", "/v1/customers/<customer>/balance_transactions/<id>", "CustomerBalanceTransactionRetrieveParams")
def retrieve_balance_transaction(sb: Sandbox, req: Req, customer: str, id: str) -> Obj:  # noqa: A002
    txn = sb.state.get(id, "customer_balance_transaction")
    if txn["customer"] != customer:
        raise invalid(f"No such customer balance transaction: '{id}'")
    return txn


@route("POST", "/v1/customers/<customer>/balance_transactions/<id>", "CustomerBalanceTransactionUpdateParams")
def update_balance_transaction(sb: Sandbox, req: Req, customer: str, id: str) -> Obj:  # noqa: A002
    txn = sb.state.get(id, "customer_balance_transaction")
    if txn["customer"] != customer:
        raise invalid(f"No such customer balance transaction: '{id}'")
    set_fields(txn, req.params, ("description",))
    set_metadata(txn, req.params)
    return txn


# ---- tax ids (what an invoice should carry; the upfront checks read them) -----------------------


@route("POST", "/v1/customers/<customer>/tax_ids", "CustomerTaxIdCreateParams")
def create_tax_id(sb: Sandbox, req: Req, customer: str) -> Obj:
    cus = get_customer(sb, customer, "customer")
    require(req.params, "type", "value")
    tax_id: Obj = {
        "id": store.new_id("txi_", 24),
        "object": "tax_id",
        "country": str(req.params["type"]).split("_")[0].upper(),
        "created": sb.now(),
        "customer": cus["id"],
        "livemode": False,
        "owner": {"type": "customer", "customer": cus["id"]},
        "type": req.params["type"],
        "value": req.params["value"],
        "verification": {"status": "unavailable", "verified_address": None, "verified_name": None},
    }
    sb.state.add(tax_id)
    sb.emit("customer.tax_id.created", tax_id)
    return tax_id


@route("GET", "/v1/customers/<customer>/tax_ids", "CustomerTaxIdListParams")
def list_tax_ids(sb: Sandbox, req: Req, customer: str) -> Obj:
    cus = get_customer(sb, customer, "customer")
    items = [t for t in sb.state.all("tax_id") if t["customer"] == cus["id"] and not t.get("deleted")]
    return store.paginate(sb.state, items, req.params, f"/v1/customers/{cus['id']}/tax_ids", req.expand)
