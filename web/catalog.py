"""The billing catalog: its problems (page and `GET /api/catalog/problems`) and the billing-limit
calculator (`GET /api/catalog/billing-limit`).

Viewers read; every Stripe write is an operator's. Reads go to Stripe each time: the catalog is
small, and a cached answer would hide the fix an operator just made in the dashboard.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import stripe
from flask import Blueprint, jsonify, render_template, request

from activities.catalog import CatalogCheckResult, run_catalog_check
from activities.stripe_api import dashboard_url, stripe_client
from domain.billing_config import BillingConfig, load_billing_config
from domain.billing_limit import BillingLimitAnswer, BillingLimitError, usage_allowed
from domain.money import MoneyError, parse_amount
from web.auth import requires
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
