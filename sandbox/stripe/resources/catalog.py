"""Products, prices, billing meters and coupons (and the discount objects coupons turn into)."""

from __future__ import annotations

import importlib
import sys
import types
from decimal import Decimal
from typing import Any

from .. import store
from ..core import Sandbox
from ..errors import invalid, missing_param, no_such
from ..router import Req, route
from ..store import Obj
from .common import created_filter, currency, decimal_str, future_timestamp, require, set_fields, set_metadata

# ---- products --------------------------------------------------------------------------------------


def new_product(sb: Sandbox, p: dict[str, Any], product_id: str | None = None) -> Obj:
    now = sb.now()
    pid = p.get("id") or product_id or store.new_id("prod_", 14)
    if pid in sb.state.objects:
        raise invalid("Product already exists.", param="id")
    prod = {
        "id": pid,
        "object": "product",
        "active": p.get("active", True),
        "created": now,
        "default_price": None,
        "description": p.get("description"),
        "images": p.get("images", []),
        "livemode": False,
        "marketing_features": p.get("marketing_features", []),
        "metadata": {},
        "name": p["name"],
        "package_dimensions": None,
        "shippable": p.get("shippable"),
        "statement_descriptor": p.get("statement_descriptor"),
        "tax_code": p.get("tax_code"),
        "type": "service",
        "unit_label": p.get("unit_label"),
        "updated": now,
        "url": p.get("url"),
    }
    set_metadata(prod, p)
    return sb.state.add(prod)


@route("POST", "/v1/products", "ProductCreateParams")
def create_product(sb: Sandbox, req: Req) -> Obj:
    require(req.params, "name")
    prod = new_product(sb, req.params)
    sb.emit("product.created", prod)
    if "default_price_data" in req.params:
        price = new_price(sb, {**req.params["default_price_data"], "product": prod["id"]})
        sb.emit("price.created", price)
        prod["default_price"] = price["id"]
    return prod


@route("GET", "/v1/products/<id>", "ProductRetrieveParams")
def retrieve_product(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    return sb.state.get(id, "product")


@route("POST", "/v1/products/<id>", "ProductUpdateParams")
def update_product(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    prod = sb.state.get(id, "product")
    with sb.tracking(prod, "product.updated"):
        set_fields(
            prod,
            req.params,
            ("active", "description", "images", "name", "statement_descriptor", "tax_code", "unit_label", "url"),
        )
        if "default_price" in req.params:
            sb.state.get(req.params["default_price"], "price", param="default_price")
            prod["default_price"] = req.params["default_price"]
        set_metadata(prod, req.params)
        prod["updated"] = sb.now()
    return prod


@route("DELETE", "/v1/products/<id>", "ProductDeleteParams")
def delete_product(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    prod = sb.state.get(id, "product")
    if any(p["product"] == id for p in sb.state.all("price")):
        raise invalid("This product cannot be deleted because it has one or more user-created prices.")
    sb.emit("product.deleted", prod)
    sb.state.remove(id)
    return {"id": id, "object": "product", "deleted": True}


@route("GET", "/v1/products", "ProductListParams")
def list_products(sb: Sandbox, req: Req) -> Obj:
    items = sb.state.all("product")
    if "active" in req.params:
        items = [p for p in items if p["active"] == req.params["active"]]
    if "ids" in req.params:
        items = [p for p in items if p["id"] in req.params["ids"]]
    items = created_filter(items, req.get("created"))
    return store.paginate(sb.state, items, req.params, "/v1/products", req.expand)


# ---- prices ---------------------------------------------------------------------------------------


def _int_or_none(value: Any) -> int | None:
    """Integer amounts also show as `unit_amount`; fractional ones only as `unit_amount_decimal`."""
    if value is None:
        return None
    d = Decimal(str(value))
    return int(d) if d == d.to_integral_value() else None


def _tiers(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    tiers = []
    for i, t in enumerate(raw):
        up_to = t.get("up_to")
        if up_to is None:
            raise missing_param(f"tiers[{i}][up_to]")
        unit = t.get("unit_amount_decimal", t.get("unit_amount"))
        flat = t.get("flat_amount_decimal", t.get("flat_amount"))
        tiers.append(
            {
                "flat_amount": _int_or_none(flat),
                "flat_amount_decimal": decimal_str(flat) if flat is not None else None,
                "unit_amount": _int_or_none(unit),
                "unit_amount_decimal": decimal_str(unit) if unit is not None else None,
                "up_to": None if up_to == "inf" else int(up_to),
            }
        )
    if tiers and tiers[-1]["up_to"] is not None:
        raise invalid("The last tier must have `up_to` set to `inf`.", param=f"tiers[{len(tiers) - 1}][up_to]")
    return tiers


def new_price(sb: Sandbox, p: dict[str, Any], price_id: str | None = None) -> Obj:
    require(p, "currency")
    if "product" not in p and "product_data" not in p:
        raise missing_param("product")
    if "product_data" in p:
        prod = new_product(sb, p["product_data"])
        sb.emit("product.created", prod)
        product_id = prod["id"]
    else:
        product_id = sb.state.get(p["product"], "product", param="product")["id"]
    scheme = p.get("billing_scheme", "tiered" if "tiers" in p else "per_unit")
    unit = p.get("unit_amount_decimal", p.get("unit_amount"))
    if scheme == "per_unit" and unit is None and "custom_unit_amount" not in p:
        raise missing_param("unit_amount")
    tiers = None
    if scheme == "tiered":
        if not p.get("tiers"):
            raise missing_param("tiers")
        if not p.get("tiers_mode"):
            raise missing_param("tiers_mode")
        tiers = _tiers(p["tiers"])
    recurring = None
    if "recurring" in p:
        r = p["recurring"]
        require(r, "interval")
        count = r.get("interval_count", 1)
        max_count = {"day": 1095, "week": 156, "month": 36, "year": 3}[r["interval"]]
        if not 1 <= count <= max_count:
            raise invalid(
                "The maximum billing frequency is 3 years (interval_count too large).",
                param="recurring[interval_count]",
            )
        if r.get("usage_type") == "metered" and not r.get("meter"):
            raise missing_param("recurring[meter]")
        if r.get("meter"):
            # Since meters replaced usage records, a metered price names an existing, active meter,
            # and only metered prices may name one.
            if r.get("usage_type") != "metered":
                raise invalid(
                    "`recurring[meter]` can only be set when `recurring[usage_type]` is `metered`.",
                    param="recurring[meter]",
                )
            meter = sb.state.find(r["meter"])
            if meter is None or meter["object"] != "billing.meter":
                raise no_such("billing meter", str(r["meter"]), "recurring[meter]")
            if meter["status"] != "active":
                raise invalid(f"The billing meter {meter['id']} is inactive.", param="recurring[meter]")
        recurring = {
            "interval": r["interval"],
            "interval_count": count,
            "meter": r.get("meter"),
            "trial_period_days": r.get("trial_period_days"),
            "usage_type": r.get("usage_type", "licensed"),
        }
    lookup_key = p.get("lookup_key")
    if lookup_key:
        for other in sb.state.all("price"):
            if other.get("lookup_key") == lookup_key:
                if not p.get("transfer_lookup_key"):
                    raise invalid(f"A price (`{other['id']}`) already uses that lookup key.", param="lookup_key")
                other["lookup_key"] = None
    price = {
        "id": price_id or store.new_id("price_"),
        "object": "price",
        "active": p.get("active", True),
        "billing_scheme": scheme,
        "created": sb.now(),
        "currency": currency(p["currency"]),
        "custom_unit_amount": None,
        "livemode": False,
        "lookup_key": lookup_key,
        "metadata": {},
        "nickname": p.get("nickname"),
        "product": product_id,
        "recurring": recurring,
        "tax_behavior": p.get("tax_behavior", "unspecified"),
        "tiers": tiers,
        "tiers_mode": p.get("tiers_mode") if scheme == "tiered" else None,
        "transform_quantity": p.get("transform_quantity"),
        "type": "recurring" if recurring else "one_time",
        "unit_amount": _int_or_none(unit),
        "unit_amount_decimal": decimal_str(unit) if unit is not None else None,
    }
    set_metadata(price, p)
    return sb.state.add(price)


@route("POST", "/v1/prices", "PriceCreateParams")
def create_price(sb: Sandbox, req: Req) -> Obj:
    price = new_price(sb, req.params)
    sb.emit("price.created", price)
    return price


@route("GET", "/v1/prices/<id>", "PriceRetrieveParams")
def retrieve_price(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    return sb.state.get(id, "price")


@route("POST", "/v1/prices/<id>", "PriceUpdateParams")
def update_price(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    price = sb.state.get(id, "price")
    with sb.tracking(price, "price.updated"):
        set_fields(price, req.params, ("active", "nickname", "tax_behavior"))
        if "lookup_key" in req.params:
            key = req.params["lookup_key"] or None
            for other in sb.state.all("price"):
                if key and other is not price and other.get("lookup_key") == key:
                    if not req.get("transfer_lookup_key"):
                        raise invalid(f"A price (`{other['id']}`) already uses that lookup key.", param="lookup_key")
                    other["lookup_key"] = None
            price["lookup_key"] = key
        set_metadata(price, req.params)
    return price


@route("GET", "/v1/prices", "PriceListParams")
def list_prices(sb: Sandbox, req: Req) -> Obj:
    p = req.params
    items = sb.state.all("price")
    if "active" in p:
        items = [x for x in items if x["active"] == p["active"]]
    if "product" in p:
        items = [x for x in items if x["product"] == p["product"]]
    if "currency" in p:
        items = [x for x in items if x["currency"] == p["currency"]]
    if "type" in p:
        items = [x for x in items if x["type"] == p["type"]]
    if "lookup_keys" in p:
        items = [x for x in items if x.get("lookup_key") in p["lookup_keys"]]
    if "recurring" in p and isinstance(p["recurring"], dict):
        for k, v in p["recurring"].items():
            items = [x for x in items if x["recurring"] and x["recurring"].get(k) == v]
    items = created_filter(items, p.get("created"))
    return store.paginate(sb.state, items, p, "/v1/prices", req.expand)


# ---- billing meters -------------------------------------------------------------------------------


def _alias_billing_params(*names: str) -> None:
    """The route table names a `stripe.params` class and `params.schema` looks it up in
    `stripe.params._<snake name>`; the meter params live in `stripe.params.billing`, so expose
    each as `Billing<Name>` in a small alias module where `schema` looks."""
    for name in names:
        snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")
        real = importlib.import_module(f"stripe.params.billing._{snake}")
        alias = f"stripe.params._billing_{snake}"
        if alias not in sys.modules:
            module = types.ModuleType(alias)
            setattr(module, f"Billing{name}", getattr(real, name))
            sys.modules[alias] = module


_alias_billing_params("MeterCreateParams", "MeterRetrieveParams", "MeterListParams", "MeterUpdateParams",
                      "MeterDeactivateParams", "MeterReactivateParams")


@route("POST", "/v1/billing/meters", "BillingMeterCreateParams")
def create_meter(sb: Sandbox, req: Req) -> Obj:
    p = req.params
    event_name = p["event_name"]
    if any(m["event_name"] == event_name and m["status"] == "active" for m in sb.state.all("billing.meter")):
        raise invalid(f"An active meter with event_name `{event_name}` already exists.", param="event_name")
    now = sb.now()
    mapping = p.get("customer_mapping") or {}
    meter = {
        "id": store.new_id("mtr_test_"),
        "object": "billing.meter",
        "created": now,
        "customer_mapping": {
            "event_payload_key": mapping.get("event_payload_key", "stripe_customer_id"),
            "type": mapping.get("type", "by_id"),
        },
        "default_aggregation": {"formula": p["default_aggregation"]["formula"]},
        "display_name": p["display_name"],
        "event_name": event_name,
        "event_time_window": p.get("event_time_window"),
        "livemode": False,
        "status": "active",
        "status_transitions": {"deactivated_at": None},
        "updated": now,
        "value_settings": {"event_payload_key": (p.get("value_settings") or {}).get("event_payload_key", "value")},
    }
    return sb.state.add(meter)


@route("GET", "/v1/billing/meters/<id>", "BillingMeterRetrieveParams")
def retrieve_meter(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    return sb.state.get(id, "billing.meter")


@route("POST", "/v1/billing/meters/<id>", "BillingMeterUpdateParams")
def update_meter(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    meter = sb.state.get(id, "billing.meter")
    set_fields(meter, req.params, ("display_name",))
    meter["updated"] = sb.now()
    return meter


def _meter_status(sb: Sandbox, id: str, status: str) -> Obj:  # noqa: A002
    meter = sb.state.get(id, "billing.meter")
    meter["status"] = status
    meter["status_transitions"]["deactivated_at"] = sb.now() if status == "inactive" else None
    meter["updated"] = sb.now()
    return meter


@route("POST", "/v1/billing/meters/<id>/deactivate", "BillingMeterDeactivateParams")
def deactivate_meter(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    return _meter_status(sb, id, "inactive")


@route("POST", "/v1/billing/meters/<id>/reactivate", "BillingMeterReactivateParams")
def reactivate_meter(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    return _meter_status(sb, id, "active")


@route("GET", "/v1/billing/meters", "BillingMeterListParams")
def list_meters(sb: Sandbox, req: Req) -> Obj:
    items = sb.state.all("billing.meter")
    if "status" in req.params:
        items = [m for m in items if m["status"] == req.params["status"]]
    return store.paginate(sb.state, items, req.params, "/v1/billing/meters", req.expand)


# ---- coupons & discounts ---------------------------------------------------------------------------


@route("POST", "/v1/coupons", "CouponCreateParams")
def create_coupon(sb: Sandbox, req: Req) -> Obj:
    p = req.params
    if ("percent_off" in p) == ("amount_off" in p):
        raise invalid("You must pass exactly one of `percent_off` or `amount_off`.")
    if "amount_off" in p:
        require(p, "currency")
    duration = p.get("duration", "once")
    if duration == "repeating":
        require(p, "duration_in_months")
    future_timestamp(p.get("redeem_by"), sb.now(), "redeem_by")
    cid = p.get("id") or store.random_token(8)
    if cid in sb.state.objects:
        raise invalid("Coupon already exists.", param="id")
    pct = p.get("percent_off")
    if pct is not None and not (0 < pct <= 100):
        raise invalid("Invalid percent_off: must be between 0 and 100", param="percent_off")
    coupon = {
        "id": cid,
        "object": "coupon",
        "amount_off": p.get("amount_off"),
        "applies_to": {"products": p["applies_to"]["products"]} if "applies_to" in p else None,
        "created": sb.now(),
        "currency": currency(p["currency"]) if "currency" in p else None,
        "duration": duration,
        "duration_in_months": p.get("duration_in_months"),
        "livemode": False,
        "max_redemptions": p.get("max_redemptions"),
        "metadata": {},
        "name": p.get("name"),
        # Stripe returns percent_off as a JSON number; keep the exact decimal internally.
        "percent_off": float(pct) if pct is not None else None,
        "_percent_off": str(pct) if pct is not None else None,
        "redeem_by": p.get("redeem_by"),
        "times_redeemed": 0,
        "valid": True,
    }
    set_metadata(coupon, p)
    sb.state.add(coupon)
    sb.emit("coupon.created", coupon)
    return coupon


@route("GET", "/v1/coupons/<id>", "CouponRetrieveParams")
def retrieve_coupon(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    return sb.state.get(id, "coupon")


@route("POST", "/v1/coupons/<id>", "CouponUpdateParams")
def update_coupon(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    coupon = sb.state.get(id, "coupon")
    with sb.tracking(coupon, "coupon.updated"):
        set_fields(coupon, req.params, ("name",))
        set_metadata(coupon, req.params)
    return coupon


@route("DELETE", "/v1/coupons/<id>", "CouponDeleteParams")
def delete_coupon(sb: Sandbox, req: Req, id: str) -> Obj:  # noqa: A002
    coupon = sb.state.get(id, "coupon")
    sb.emit("coupon.deleted", coupon)
    sb.state.remove(id)
    return {"id": id, "object": "coupon", "deleted": True}


@route("GET", "/v1/coupons", "CouponListParams")
def list_coupons(sb: Sandbox, req: Req) -> Obj:
    items = created_filter(sb.state.all("coupon"), req.get("created"))
    return store.paginate(sb.state, items, req.params, "/v1/coupons", req.expand)


def make_discounts(sb: Sandbox, raw: Any, param: str, *, customer: str | None, **links: str | None) -> list[str]:
    """Turn `discounts: [{coupon}|{discount}]` params into discount object ids."""
    if raw in (None, ""):
        return []
    ids: list[str] = []
    for i, d in enumerate(raw):
        if d.get("discount"):
            ids.append(sb.state.get(d["discount"], "discount", param=f"{param}[{i}][discount]")["id"])
            continue
        if not d.get("coupon"):
            raise invalid("Each discount needs a `coupon` or `discount`.", param=f"{param}[{i}]")
        coupon = sb.state.get(d["coupon"], "coupon", param=f"{param}[{i}][coupon]")
        if not coupon["valid"]:
            raise invalid(f"Coupon {coupon['id']} is no longer valid.", param=f"{param}[{i}][coupon]")
        if coupon["max_redemptions"] is not None and coupon["times_redeemed"] >= coupon["max_redemptions"]:
            raise invalid(f"Coupon {coupon['id']} has been redeemed the maximum number of times.")
        coupon["times_redeemed"] += 1
        now = sb.now()
        end = None
        if coupon["duration"] == "repeating":
            from ..clock import add_interval

            end = add_interval(now, "month", coupon["duration_in_months"])
        disc = sb.state.add(
            {
                "id": store.new_id("di_"),
                "object": "discount",
                "checkout_session": None,
                "customer": customer,
                "end": end,
                "invoice": links.get("invoice"),
                "invoice_item": links.get("invoice_item"),
                "promotion_code": None,
                "source": {"coupon": coupon["id"], "type": "coupon"},
                "start": now,
                "subscription": links.get("subscription"),
                "subscription_item": None,
                "_uses": 0,
            }
        )
        ids.append(disc["id"])
    return ids
