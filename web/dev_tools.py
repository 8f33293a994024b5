"""Development-only actions (`/dev`): sign a demo order form, pay a plan's invoice.

They act on the sandboxes, never on a real account, so the whole blueprint answers 404 unless the
server runs against a loopback Stripe sandbox with a test key (what `make dev` sets up): a
production server does not even show that the page exists.

- "Sign a demo order form": the PandaDoc sandbox completes a new order form and posts the signed
  `document_state_changed` webhook here; the intake makes the row as it would for a real one.
- "Pay this invoice": the plan's open invoice is paid in the Stripe sandbox (out of band); its
  `invoice.paid` webhook moves the plan's workflow past the payment gate.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for

from settings import Settings
from web.auth import requires
from web.context import plans

bp = Blueprint("dev_tools", __name__, url_prefix="/dev")

PAYABLE_STATES = ("awaiting_payment", "overdue")


def in_development(settings: Settings) -> bool:
    """True only against the Stripe sandbox: a test key and a loopback STRIPE_API_BASE."""
    if not settings.stripe_api_key.startswith("sk_test_") or not settings.stripe_api_base:
        return False
    host = urlsplit(settings.stripe_api_base).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _settings() -> Settings:
    settings: Settings = current_app.extensions["revops.settings"]
    return settings


@bp.app_context_processor
def _template_helpers() -> dict[str, Any]:
    # Lets the shared templates show the /dev link and a row's "Pay this invoice" only where
    # those URLs exist.
    return {"dev_tools_enabled": lambda: in_development(_settings())}


@bp.before_request
def _only_in_development() -> None:
    if not in_development(_settings()):
        abort(404)


@bp.get("/")
@requires("operator")
def index() -> Any:
    payable = [plan for state in PAYABLE_STATES for plan in plans().list_page(state=state, limit=100, offset=0)[0]]
    return render_template("dev_tools/index.html", payable=payable,
                           pandadoc=bool(_settings().pandadoc_api_base))


@bp.post("/order-forms")
@requires("operator")
def sign_order_form() -> Any:
    from cli.demo import sign_demo_order_form

    company = (request.form.get("company_name") or "").strip() or None
    try:
        document_id = sign_demo_order_form(_settings(), company)
    except (OSError, RuntimeError, ValueError) as err:
        flash(f"The PandaDoc sandbox could not sign an order form: {err}", "error")
        return redirect(url_for("dev_tools.index"))
    flash(f"Order form {document_id} signed in the PandaDoc sandbox; its completion webhook makes the row "
          f"in a moment.", "info")
    return redirect(url_for("table.index"))


@bp.post("/plans/<int:plan_id>/pay")
@requires("operator")
def pay(plan_id: int) -> Any:
    from activities.stripe_api import stripe_client
    from cli.demo import pay_invoice

    plan = plans().get(plan_id)
    invoice_id = plan.get("invoice_id")
    if not invoice_id or plan.get("state") not in PAYABLE_STATES:
        flash(f"Plan {plan_id} has no sent invoice waiting for payment (it is {plan.get('state')!r}).", "error")
    elif pay_invoice(stripe_client(_settings()), str(invoice_id)):
        flash(f"Invoice {invoice_id} paid in the Stripe sandbox; the invoice.paid webhook moves plan {plan_id} "
              f"on.", "info")
    else:
        flash(f"Invoice {invoice_id} is not open in the Stripe sandbox; nothing was paid.", "error")
    return redirect(url_for("table.show_plan", plan_id=plan_id))
