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
    ids = sb.state.grouped("customer_balance_transaction", "customer").get(cus["id"], [])
    items = [sb.state.objects[i] for i in ids]
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


# ---- funding instructions (bank transfers) --------------------------------------------------------

# Stripe's bank transfer types, the one currency each takes, and where its account lives.
BANK_TRANSFER_TYPES = {
    "us_bank_transfer": ("usd", "US"),
    "gb_bank_transfer": ("gbp", "GB"),
    "eu_bank_transfer": ("eur", None),  # the country is asked for: DE, FR, IE or NL
    "jp_bank_transfer": ("jpy", "JP"),
    "mx_bank_transfer": ("mxn", "MX"),
}
EU_COUNTRIES = ("DE", "FR", "IE", "NL")


def _digits(seed: str, count: int) -> str:
    """Deterministic fake account digits: the same customer and currency always get the same
    virtual account, as on Stripe (one virtual account per customer and currency)."""
    import hashlib

    return str(int(hashlib.sha256(seed.encode()).hexdigest(), 16))[:count].rjust(count, "0")


def _financial_addresses(kind: str, seed: str, country: str) -> list[Obj]:
    if kind == "us_bank_transfer":
        return [
            {"type": "aba", "supported_networks": ["ach", "domestic_wire_us"],
             "aba": {"account_holder_name": "Sandbox Payments Inc.", "account_number": _digits(seed, 12),
                     "account_type": "checking", "bank_name": "Sandbox Test Bank", "routing_number": "110000000"}},
            {"type": "swift", "supported_networks": ["swift"],
             "swift": {"account_holder_name": "Sandbox Payments Inc.", "account_number": _digits(seed, 12),
                       "account_type": "checking", "bank_name": "Sandbox Test Bank", "swift_code": "TSTEUS33"}},
        ]
    if kind == "gb_bank_transfer":
        return [{"type": "sort_code", "supported_networks": ["bacs", "fps"],
                 "sort_code": {"account_holder_name": "Sandbox Payments Ltd", "account_number": _digits(seed, 8),
                               "sort_code": "108800"}}]
    if kind == "eu_bank_transfer":
        return [{"type": "iban", "supported_networks": ["sepa"],
                 "iban": {"account_holder_name": "Sandbox Payments Europe", "bic": "SBXTIE2D", "country": country,
                          "iban": f"{country}00SBXT{_digits(seed, 14)}"}}]
    if kind == "jp_bank_transfer":
        return [{"type": "zengin", "supported_networks": ["zengin"],
                 "zengin": {"account_holder_name": "サンドボックス", "account_number": _digits(seed, 7),
                            "account_type": "futsu", "bank_code": "0001", "bank_name": "Sandbox Bank",
                            "branch_code": "001", "branch_name": "Sandbox"}}]
    return [{"type": "spei", "supported_networks": ["spei"],
             "spei": {"bank_code": "002", "bank_name": "Sandbox Banco", "clabe": "002" + _digits(seed, 15)}}]


@route("POST", "/v1/customers/<customer>/funding_instructions", "CustomerFundingInstructionsCreateParams")
def create_funding_instructions(sb: Sandbox, req: Req, customer: str) -> Obj:
    """The customer's virtual bank account for a currency (made on first request, the same after)."""
    p = req.params
    cus = get_customer(sb, customer)
    require(p, "currency", "funding_type", "bank_transfer")
    cur = currency(p["currency"])
    if p["funding_type"] != "bank_transfer":
        raise invalid(f"Invalid funding_type: {p['funding_type']}; must be bank_transfer.", param="funding_type")
    transfer = p["bank_transfer"] if isinstance(p["bank_transfer"], dict) else {}
    kind = transfer.get("type")
    if kind not in BANK_TRANSFER_TYPES:
        raise invalid(f"Invalid bank_transfer[type]: {kind}; must be one of {', '.join(BANK_TRANSFER_TYPES)}.",
                      param="bank_transfer[type]")
    expected, country = BANK_TRANSFER_TYPES[kind]
    if cur != expected:
        raise invalid(f"The currency {cur} is not supported by {kind}; it takes {expected}.", param="currency")
    if kind == "eu_bank_transfer":
        eu = transfer.get("eu_bank_transfer")
        country = str((eu if isinstance(eu, dict) else {}).get("country") or "").upper()
        if country not in EU_COUNTRIES:
            raise invalid(f"Invalid bank_transfer[eu_bank_transfer][country]: {country or 'missing'}; must be one "
                          f"of {', '.join(EU_COUNTRIES)}.", param="bank_transfer[eu_bank_transfer][country]")
    assert country is not None
    addresses = _financial_addresses(kind, f"{cus['id']}:{cur}", country)
    wanted = transfer.get("requested_address_types")
    if isinstance(wanted, list) and wanted:
        addresses = [a for a in addresses if a["type"] in wanted]
    return {"object": "funding_instructions", "funding_type": "bank_transfer", "currency": cur, "livemode": False,
            "bank_transfer": {"country": country, "type": kind, "financial_addresses": addresses}}
