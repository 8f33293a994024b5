"""The Stripe webhook set-up page (admins): register our endpoint on the Stripe account in one click,
and see both sides' status — ours (last event received, failures, lag) and Stripe's (endpoint
status, enabled events). The same as JSON under `/api/stripe/webhook` for scripts."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

import stripe
from flask import Blueprint, flash, jsonify, redirect, render_template, url_for

from activities.webhook_setup import WEBHOOK_EVENTS, WebhookSetupError, register_endpoint, webhook_status
from web.auth import current_principal, requires
from web.context import settings

bp = Blueprint("stripe_setup", __name__)


def _actor() -> str:
    principal = current_principal()
    return principal.email if principal is not None else "unknown"


def _register() -> tuple[str, bool]:
    """(sentence for the admin, whether it worked)."""
    try:
        return register_endpoint(settings(), actor=_actor()).message, True
    except WebhookSetupError as exc:
        return str(exc), False
    except stripe.StripeError as exc:
        return (f"Stripe refused to register the webhook endpoint: {exc.user_message or exc} "
                "Check STRIPE_API_KEY (it needs write access to webhook endpoints) and PUBLIC_URL."), False


@bp.get("/admin/stripe/webhook")
@requires("admin")
def page() -> Any:
    return render_template("stripe_setup/webhook.html", status=webhook_status(settings()), events=WEBHOOK_EVENTS,
                           sync_key=bool(settings().stripe_sync_api_key))


@bp.post("/admin/stripe/webhook")
@requires("admin")
def register() -> Any:
    message, ok = _register()
    flash(message, "ok" if ok else "error")
    return redirect(url_for("stripe_setup.page"))


def _json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json(v) for v in value]
    return value.isoformat() if isinstance(value, datetime) else value


@bp.get("/api/stripe/webhook")
@requires("admin")
def status_json() -> Any:
    return jsonify(_json(asdict(webhook_status(settings()))))


@bp.post("/api/stripe/webhook")
@requires("admin")
def register_json() -> Any:
    message, ok = _register()
    if not ok:
        return jsonify({"error": message}), 409
    return jsonify({"message": message, **_json(asdict(webhook_status(settings())))})
