"""The billing catalog: its problems (page and `GET /api/catalog/problems`), the billing-limit
calculator (`GET /api/catalog/billing-limit`), and bespoke prices (form and
`POST /api/catalog/prices`).

Viewers read; every Stripe write is an operator's. Reads go to Stripe each time: the catalog is
small, and a cached answer would hide the fix an operator just made in the dashboard.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import stripe
from flask import Blueprint, flash, jsonify, redirect, render_template, request, url_for

from activities.catalog import BespokeResult, CatalogCheckResult, create_bespoke_price, read_catalog, run_catalog_check
from activities.stripe_api import dashboard_url, stripe_client
from domain.billing_config import BillingConfig, load_billing_config
from domain.billing_limit import BillingLimitAnswer, BillingLimitError, usage_allowed
from domain.catalog_check import BespokePrice, BespokeRefused, CatalogSnapshot, parse_tier_rows, product_for
from domain.money import MoneyError, check_currency, parse_amount
from web.auth import current_principal, requires
from web.context import settings

bp = Blueprint("catalog", __name__)


class CatalogUnavailable(Exception):
    """Stripe could not be read; the message says so in a sentence."""


@bp.errorhandler(CatalogUnavailable)
def _unavailable(exc: CatalogUnavailable) -> Any:
    if request.path.startswith("/api/"):
        return jsonify({"error": str(exc)}), 502
    return render_template("error.html", title="Stripe is not answering", message=str(exc)), 502


def _client() -> stripe.StripeClient:
    return stripe_client(settings())


def _config() -> BillingConfig:
    return load_billing_config(settings().billing_config)


def _check() -> CatalogCheckResult:
    try:
        return run_catalog_check(_client(), _config())
    except stripe.StripeError as exc:
        raise CatalogUnavailable(
            f"The Stripe catalog could not be read ({exc.user_message or exc}); try again in a minute.") from None


def _billing_limit(args: Any) -> BillingLimitAnswer:
    """`limit` (major units, e.g. "200.00"), `discount` (percent, e.g. "20"), `currency` (default usd)."""
    currency = (args.get("currency") or "usd").strip().lower()
    limit_text = (args.get("limit") or "").strip()
    discount_text = (args.get("discount") or "0").strip().removesuffix("%").strip()
    if not limit_text:
        raise BillingLimitError("Give the billing limit as `limit`, e.g. limit=200.00.")
    try:
        limit = parse_amount(limit_text, currency)
    except MoneyError as exc:
        raise BillingLimitError(str(exc)) from None
    try:
        discount = Decimal(discount_text)
    except InvalidOperation:
        raise BillingLimitError(f"The discount {discount_text!r} is not a number of percent, e.g. 20.") from None
    return usage_allowed(limit, discount, currency)


@bp.get("/catalog")
@requires("viewer")
def page() -> Any:
    result = _check()
    limit_answer: BillingLimitAnswer | None = None
    limit_error: str | None = None
    if request.args.get("limit"):
        try:
            limit_answer = _billing_limit(request.args)
        except (BillingLimitError, MoneyError) as exc:
            limit_error = str(exc)
    return render_template("catalog/index.html", result=result, link=lambda i: dashboard_url(settings(), i),
                           limit_answer=limit_answer, limit_error=limit_error, form=request.args)


@bp.get("/api/catalog/problems")
@requires("viewer")
def problems() -> Any:
    result = _check()
    return jsonify({"problems": [p.to_json() for p in result.problems], "count": len(result.problems),
                    "products": result.products, "prices": result.prices, "meters": result.meters})


@bp.get("/api/catalog/billing-limit")
@requires("viewer")
def billing_limit() -> Any:
    try:
        answer = _billing_limit(request.args)
    except (BillingLimitError, MoneyError) as exc:
        return jsonify({"error": str(exc)}), 400
    return jsonify(answer.to_json())


# ---- bespoke prices --------------------------------------------------------------------------

FORM_TIER_ROWS = 8


def _actor() -> str:
    principal = current_principal()
    assert principal is not None  # guaranteed by @requires
    return principal.email


def _bespoke_request(data: Mapping[str, Any]) -> BespokePrice:
    """Build the request from JSON or form fields; every problem with the input is listed."""
    problems: list[str] = []
    product = str(data.get("product") or "").strip()
    if not product:
        problems.append("choose the product the price goes on")
    currency = str(data.get("currency") or "usd").strip().lower()
    try:
        currency = check_currency(currency)
    except MoneyError as exc:
        problems.append(str(exc))
        currency = "usd"
    rows = data.get("tiers")
    if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
        problems.append("`tiers` must be a list of rows with up_to, unit_amount and optional flat_amount")
        rows = []
    tiers, tier_problems = parse_tier_rows(
        [{k: ("" if v is None else str(v)) for k, v in r.items()} for r in rows], currency)
    problems.extend(tier_problems)
    metadata = data.get("metadata") or {}
    if not isinstance(metadata, Mapping) or not all(isinstance(v, str) for v in metadata.values()):
        problems.append("`metadata` must map names to text")
        metadata = {}
    meter = str(data.get("meter") or "").strip() or None
    if problems:
        raise BespokeRefused(problems)
    return BespokePrice(product=product, tiers=tiers, currency=currency,
                        interval=str(data.get("interval") or "month"), meter=meter, metadata=dict(metadata))


def _create_bespoke(data: Mapping[str, Any]) -> BespokeResult:
    bespoke = _bespoke_request(data)
    try:
        return create_bespoke_price(_client(), _config(), bespoke, actor=_actor(), today=datetime.now(UTC).date())
    except stripe.StripeError as exc:
        raise BespokeRefused([f"Stripe answered with an error ({exc.user_message or exc}); sending the same "
                              "request again is safe, it makes the price at most once"]) from None


def _result_json(result: BespokeResult) -> dict[str, Any]:
    return {"price": result.price_id, "created": result.created, "meter": result.meter, "nickname": result.nickname,
            "dashboard_url": dashboard_url(settings(), result.price_id)}


@bp.post("/api/catalog/prices")
@requires("operator")
def create_price_api() -> Any:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        return jsonify({"error": "Send the price as a JSON object (product, tiers, …)."}), 400
    try:
        result = _create_bespoke(data)
    except BespokeRefused as refused:
        return jsonify({"error": str(refused), "problems": refused.problems}), 422
    return jsonify(_result_json(result)), 201 if result.created else 200


def _products(snapshot: CatalogSnapshot, config: BillingConfig) -> list[dict[str, str]]:
    out = []
    for key, product_config in sorted(config.products.items()):
        product = product_for(snapshot, config, key)
        if product is not None:
            out.append({"id": product.id, "name": product.name, "key": key,
                        "addon_of": product_config.addon_of or ""})
    return out


def _form_rows(snapshot: CatalogSnapshot, config: BillingConfig, product_id: str) -> list[dict[str, str]]:
    """Spare rows, with the volumes of the product's family filled in (they must match anyway)."""
    from domain.catalog_check import reference_price

    rows = [{"up_to": "", "unit_amount": "", "flat_amount": ""} for _ in range(FORM_TIER_ROWS)]
    product = snapshot.product(product_id)
    if product is None or product.key not in config.products:
        return rows
    main_key = config.products[product.key].addon_of if product.key else None
    main = product_for(snapshot, config, main_key) if main_key else product
    reference = reference_price(snapshot.tiered_prices(main.id)) if main else None
    for row, volume in zip(rows, reference.volumes if reference else (), strict=False):
        row["up_to"] = "" if volume is None else str(volume)
    return rows


def _render_form(form: Mapping[str, Any], rows: list[dict[str, str]], problems: list[str], status: int = 200) -> Any:
    try:
        snapshot = read_catalog(_client())
    except stripe.StripeError as exc:
        raise CatalogUnavailable(f"The Stripe catalog could not be read ({exc.user_message or exc}).") from None
    return render_template("catalog/new_price.html", products=_products(snapshot, _config()), form=form, rows=rows,
                           problems=problems), status


@bp.get("/catalog/prices/new")
@requires("operator")
def new_price() -> Any:
    product = request.args.get("product", "")
    try:
        snapshot = read_catalog(_client())
    except stripe.StripeError as exc:
        raise CatalogUnavailable(f"The Stripe catalog could not be read ({exc.user_message or exc}).") from None
    rows = _form_rows(snapshot, _config(), product)
    return render_template("catalog/new_price.html", products=_products(snapshot, _config()),
                           form={"product": product, "currency": "usd", "interval": "month"}, rows=rows, problems=[])


def _metadata_lines(text: str) -> tuple[dict[str, str], list[str]]:
    metadata: dict[str, str] = {}
    problems = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            problems.append(f"metadata line {n} ({line.strip()!r}) must read name=value")
        else:
            metadata[name.strip()] = value.strip()
    return metadata, problems


@bp.post("/catalog/prices")
@requires("operator")
def create_price_form() -> Any:
    form = request.form
    rows = [{"up_to": form.get(f"up_to_{i}", ""), "unit_amount": form.get(f"unit_amount_{i}", ""),
             "flat_amount": form.get(f"flat_amount_{i}", "")} for i in range(FORM_TIER_ROWS)]
    metadata, problems = _metadata_lines(form.get("metadata", ""))
    if problems:
        return _render_form(form, rows, problems, 422)
    data = {"product": form.get("product"), "currency": form.get("currency"), "interval": form.get("interval"),
            "meter": form.get("meter"), "tiers": rows, "metadata": metadata}
    try:
        result = _create_bespoke(data)
    except BespokeRefused as refused:
        return _render_form(form, rows, refused.problems, 422)
    verb = "Created" if result.created else "Already made earlier:"
    flash(f"{verb} price {result.price_id} ({result.nickname}) on meter {result.meter}.", "ok")
    return redirect(url_for("catalog.page"))
