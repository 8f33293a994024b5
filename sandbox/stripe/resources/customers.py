"""Customers and customer balance transactions."""

from __future__ import annotations

from typing import Any

from .. import store
from ..core import Sandbox
from ..errors import invalid, no_such
from ..router import Req, route
from ..store import Obj
from .common import created_filter, currency, require, set_fields, set_metadata

SIMPLE_FIELDS = ("email", "name", "description", "phone", "address", "shipping", "preferred_locales", "tax_exempt")

# Stripe returns a customer's multi-currency balances only when asked (`expand[]=invoice_credit_balance`).
store.INCLUDABLE["customer"] = frozenset({"invoice_credit_balance"})


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
        "invoice_credit_balance": {},
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
        "_other_balances": {},  # currency -> balance, for currencies other than `currency`
    }
    set_fields(cus, p, SIMPLE_FIELDS)
    set_metadata(cus, p)
    if p.get("invoice_prefix"):
        cus["invoice_prefix"] = p["invoice_prefix"]
    settings = dict(p["invoice_settings"]) if isinstance(p.get("invoice_settings"), dict) else {}
    default_pm = settings.pop("default_payment_method", None)
    cus["invoice_settings"].update({k: v for k, v in settings.items() if k in cus["invoice_settings"]})
    if p.get("balance"):
        cus["balance"] = p["balance"]
    sb.state.add(cus)
    attached = None
    if p.get("payment_method"):
        from .payments import attach_payment_method

        # `payment_method` on create attaches; it becomes the default only when also named in
        # `invoice_settings[default_payment_method]` (a test token there means the one just attached).
        attached = attach_payment_method(sb, p["payment_method"], cus, param="payment_method", emit=False)
    if default_pm:
        if attached is not None and default_pm == p["payment_method"]:
            default_pm = attached["id"]
        cus["invoice_settings"]["default_payment_method"] = check_default_payment_method(sb, cus, default_pm)
    sb.emit("customer.created", cus)
    if attached is not None:
        sb.emit("payment_method.attached", attached)
    return cus


def check_default_payment_method(
    sb: Sandbox, cus: Obj, value: Any, param: str = "invoice_settings[default_payment_method]"
) -> str | None:
    """A default payment method must be a payment method attached to this customer."""
    if value in (None, ""):
        return None
    pm = sb.state.find(value)
    if pm is None or pm.get("object") != "payment_method":
        raise no_such("PaymentMethod", str(value), param)
    if pm["customer"] != cus["id"]:
        raise invalid(
            f"The customer does not have a payment method with the ID {value}. The payment method must be attached "
            "to the customer.",
            param=param,
        )
    return str(value)


def default_payment_method(sb: Sandbox, cus: Obj) -> Obj | None:
    """The customer's `invoice_settings.default_payment_method`, if it is still attached."""
    pm_id = (cus.get("invoice_settings") or {}).get("default_payment_method")
    pm = sb.state.find(pm_id)
    if pm is None or pm.get("customer") != cus["id"]:
        return None
    return pm


# ---- per-currency balances ---------------------------------------------------------------------------
# `balance` is the balance in the customer's default `currency` (negative = credit the customer can
# spend); balances in other currencies live beside it. `invoice_credit_balance` shows them all with
# Stripe's opposite sign there (positive = credit).


def balance_in(cus: Obj, cur: str) -> int:
    """The customer's balance in `cur` (negative = credit). Before the customer has a currency, its
    `balance` belongs to whichever currency it is first billed in."""
    if cus.get("currency") in (None, cur):
        return int(cus.get("balance") or 0)
    return int((cus.get("_other_balances") or {}).get(cur, 0))


def _set_balance(cus: Obj, cur: str, value: int) -> None:
    if cus.get("currency") is None:
        cus["currency"] = cur
    if cus["currency"] == cur:
        cus["balance"] = value
    else:
        cus.setdefault("_other_balances", {})[cur] = value
    _refresh_credit_balance(cus)


def _refresh_credit_balance(cus: Obj) -> None:
    balances = dict(cus.get("_other_balances") or {})
    if cus.get("currency"):
        balances[cus["currency"]] = int(cus.get("balance") or 0)
    cus["invoice_credit_balance"] = {c: -v for c, v in sorted(balances.items()) if v}


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
            _refresh_credit_balance(cus)
        if isinstance(p.get("invoice_settings"), dict):
            settings = dict(p["invoice_settings"])
            if "default_payment_method" in settings:
                settings["default_payment_method"] = check_default_payment_method(
                    sb, cus, settings["default_payment_method"]
                )
            cus["invoice_settings"].update({k: v for k, v in settings.items() if k in cus["invoice_settings"]})
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
    """Move the customer's balance in `cur` (negative = credit the customer can spend) and record it.

    Stripe has no event for the transaction itself: the change arrives as `customer.updated` with the
    old `balance` (default currency) or `invoice_credit_balance` (any currency) in `previous_attributes`.
    """
    before = {k: cus.get(k) for k in ("balance", "currency")}
    before_credit = dict(cus.get("invoice_credit_balance") or {})
    _set_balance(cus, cur, balance_in(cus, cur) + amount)
    previous: dict[str, Any] = {k: v for k, v in before.items() if cus.get(k) != v}
    if cus["invoice_credit_balance"] != before_credit:
        previous["invoice_credit_balance"] = before_credit
    if previous:
        sb.emit("customer.updated", cus, previous)
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
            "ending_balance": balance_in(cus, cur),
            "invoice": invoice,
            "livemode": False,
            "metadata": metadata or {},
            "type": type_,
        }
    )
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
