"""`POST /webhooks/stripe`: Stripe's events, verified, stored raw, deduplicated, then acted on.

The signature is `Stripe-Signature: t=<unix>,v1=<hex>[,v1=…]` with v1 = HMAC-SHA256 of
"{t}.{raw body}" under the endpoint secret; every v1 is checked in constant time and the
timestamp must be within 300 s. The raw delivery is stored before anything else, so nothing
Stripe sent is lost even when processing fails; event ids are claimed once, so a replayed
delivery does nothing twice.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from typing import Any

from flask import Blueprint, Response, jsonify, request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.webhook_setup import signing_secrets
from domain.plan_rules import InvoiceEvent
from observability.metrics import observe_webhook
from settings import Settings
from store.db import unit_of_work
from store.models import Claim, InboundEvent, Plan, utcnow
from web.context import settings as current_settings
from web.context import temporal
from workflows.plan import PlanWorkflow

bp = Blueprint("stripe_webhooks", __name__)
log = logging.getLogger(__name__)

TOLERANCE_SECONDS = 300
INVOICE_EVENTS = ("invoice.paid", "invoice.voided", "invoice.marked_uncollectible")
# Money taken back after a payment: the plan's workflow re-checks the payment before any credit.
# A subscription made or changed (also in the dashboard) may hold a startup price with `valid_days`.
SUBSCRIPTION_EVENTS = ("customer.subscription.created", "customer.subscription.updated")
MONEY_BACK_EVENTS = ("charge.refunded", "credit_note.created", "charge.dispute.created", "charge.dispute.closed")


def verify_signature(payload: bytes, header: str, secret: str, *, now: float | None = None,
                     tolerance: int = TOLERANCE_SECONDS) -> bool:
    """True when one of the header's v1 signatures matches and its timestamp is recent."""
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            signatures.append(value)
    if timestamp is None or not signatures or not secret:
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    matches = [hmac.compare_digest(expected, candidate) for candidate in signatures]  # check every one
    return any(matches)


@bp.post("/webhooks/stripe")
@observe_webhook("stripe")
def receive() -> tuple[Response, int]:
    # Authenticated by the signature, not a login: Stripe has no session or token.
    cfg = current_settings()
    payload = request.get_data()
    header = request.headers.get("Stripe-Signature", "")
    if not any(verify_signature(payload, header, secret) for secret in signing_secrets(cfg)):
        log.warning("Stripe webhook with a bad or stale signature refused")
        return jsonify({"error": "The Stripe-Signature header does not verify."}), 400
    try:
        event = json.loads(payload)
        event_id, event_type = str(event["id"]), str(event["type"])
    except (ValueError, KeyError, TypeError):
        return jsonify({"error": "The body is not a Stripe event."}), 400

    def store(status: str, claim: bool) -> int:
        with unit_of_work(cfg.database_url) as session:
            stored = InboundEvent(source="stripe", event_id=event_id, event_type=event_type, body=payload.decode(),
                                  headers={"Stripe-Signature": header}, status=status)
            session.add(stored)
            session.flush()
            if claim:  # the raw event and the claim on its id commit together, before processing
                session.add(Claim(scope="stripe_event", key=event_id, value=str(stored.id)))
            return stored.id

    try:
        stored_id = store("received", claim=True)
    except IntegrityError:
        store("duplicate", claim=False)
        return jsonify({"received": True, "duplicate": True}), 200
    try:
        outcome = process_stripe_event(cfg, event)
    except Exception as exc:
        # Give the event back so Stripe's redelivery is processed, not dropped as a duplicate.
        with unit_of_work(cfg.database_url) as session:
            claim = session.scalar(select(Claim).where(Claim.scope == "stripe_event", Claim.key == event_id))
            if claim is not None:
                session.delete(claim)
        _finish(cfg, stored_id, "failed", f"{type(exc).__name__}: {exc}")
        log.exception("Stripe event %s could not be processed", event_id)
        return jsonify({"error": "The event was stored but could not be processed; Stripe will retry."}), 500
    _finish(cfg, stored_id, outcome)
    return jsonify({"received": True, "outcome": outcome}), 200


def _finish(cfg: Settings, stored_id: int, status: str, error: str | None = None) -> None:
    with unit_of_work(cfg.database_url) as session:
        stored = session.get(InboundEvent, stored_id)
        if stored is not None:
            stored.status, stored.error, stored.processed_at = status, error, utcnow()


def process_stripe_event(settings: Settings, event: dict[str, Any]) -> str:
    """Act on one verified, first-seen event; returns "processed" or "ignored".

    Invoice payment events go to the plan's workflow as signals (the payment gate); subscriptions
    on startup prices get their timer. Other areas (the revenue warehouse) add their call here.
    """
    from store.sync import apply_stripe_event

    try:
        apply_stripe_event(settings, event)  # revenue warehouse; a miss is repaired by the events feed
    except Exception:
        log.exception("Stripe event %s was not applied to the revenue warehouse", event.get("id"))
    event_type = str(event.get("type"))
    obj = (event.get("data") or {}).get("object") or {}
    if event_type in SUBSCRIPTION_EVENTS:
        return "processed" if _startup_timer(settings, obj) else "ignored"
    if event_type in INVOICE_EVENTS:
        plan_id = plan_for_invoice(settings, obj)
        plan_ids = [plan_id] if plan_id is not None else []
        signal = InvoiceEvent(invoice_id=str(obj.get("id")), event_type=event_type,
                              event_id=str(event.get("id")), customer_id=_customer_id(obj),
                              amount=obj.get("total") if isinstance(obj.get("total"), int) else None)
    elif event_type in MONEY_BACK_EVENTS:
        plan_ids, signal = _money_back_signal(settings, event_type, str(event.get("id")), obj)
    else:
        return "ignored"
    if not plan_ids:
        return "ignored"

    async def send(client: Client) -> bool:
        woken = False
        for plan_id in plan_ids:
            try:
                await client.get_workflow_handle(f"plan-{plan_id}").signal(PlanWorkflow.invoice_event, signal)
                woken = True
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
                # no running workflow for this row: nothing waits for the payment
        return woken

    return "processed" if temporal().run(send) else "ignored"


def _startup_timer(settings: Settings, subscription: dict[str, Any]) -> bool:
    """A subscription on a price with `valid_days` gets its startup-plan timer (issue 14), once per
    item: a timer an operator cancelled is not started again by the subscription's next update.
    Temporal being away must not lose Stripe's event: the revenue sync's hook starts it later."""
    from activities.catalog import start_startup_timers, startup_items_of, unclaimed

    items = startup_items_of(subscription)
    if not items:
        return False
    with unit_of_work(settings.database_url) as session:
        new = unclaimed(session, items)
    if not new:
        return False
    try:
        return bool(start_startup_timers(settings, {str(subscription["id"]): new}, temporal().run,
                                         found_by="stripe-webhook"))
    except Exception:
        log.warning("The startup timer of %s could not be started now; the revenue sync starts it.",
                    subscription.get("id"), exc_info=True)
        return False


def _money_back_signal(settings: Settings, event_type: str, event_id: str,
                       obj: dict[str, Any]) -> tuple[list[int], InvoiceEvent]:
    """A refund, credit note or dispute on a plan's invoice: the plans it may belong to and the signal.
    Credit notes name their invoice; charges and disputes only their customer (or charge), and a
    renewing customer has several rows: each is woken and re-checks its own invoice's money."""
    if event_type == "credit_note.created":
        invoice_id = obj.get("invoice")
        invoice = {"id": invoice_id, "customer": obj.get("customer")} if isinstance(invoice_id, str) else {}
        plan_id = plan_for_invoice(settings, invoice) if invoice else None
        plans = [plan_id] if plan_id is not None else []
        return plans, InvoiceEvent(str(invoice_id or ""), event_type, event_id, _customer_id(obj),
                                   obj.get("amount") if isinstance(obj.get("amount"), int) else None)
    customer = _customer_id(obj)
    if customer is None and event_type.startswith("charge.dispute") and isinstance(obj.get("charge"), str):
        customer = _charge_customer(settings, obj["charge"])
    plan_ids: list[int] = []
    if customer:
        with unit_of_work(settings.database_url) as session:
            plan_ids = list(session.scalars(select(Plan.id).where(Plan.stripe_customer_id == customer)
                                            .order_by(Plan.id)))
    return plan_ids, InvoiceEvent("", event_type, event_id, customer,
                                 obj.get("amount") if isinstance(obj.get("amount"), int) else None)


def _charge_customer(settings: Settings, charge_id: str) -> str | None:
    from activities.stripe_api import stripe_client

    charge = stripe_client(settings).v1.charges.retrieve(charge_id)
    customer = charge.customer
    return customer if isinstance(customer, str) or customer is None else customer.id


def plan_for_invoice(settings: Settings, invoice: dict[str, Any]) -> int | None:
    """The plan row an invoice belongs to: our metadata on the invoice or its subscription,
    else the row that recorded the invoice or the installment customer."""
    candidates = [
        (invoice.get("metadata") or {}).get("plan_id"),
        (((invoice.get("parent") or {}).get("subscription_details") or {}).get("metadata") or {}).get("plan_id"),
    ]
    for value in candidates:
        if value and str(value).isdigit():
            return int(value)
    customer = _customer_id(invoice)
    with unit_of_work(settings.database_url) as session:
        found = session.scalar(select(Plan.id).where(Plan.invoice_id == str(invoice.get("id"))))
        if found is None and customer:
            found = session.scalar(select(Plan.id).where(Plan.stripe_customer_id == customer,
                                                         Plan.payment_schedule == "monthly"))
        return found


def _customer_id(invoice: dict[str, Any]) -> str | None:
    customer = invoice.get("customer")
    if isinstance(customer, dict):
        return str(customer.get("id"))
    return str(customer) if customer else None
