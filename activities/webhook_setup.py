"""The Stripe webhook endpoint in one click (seed 001, "Setting up webhooks"): register this server's
`/webhooks/stripe` on the Stripe account, keep its signing secret, and report both sides' status.

Stripe shows an endpoint's signing secret only in the answer that creates it, so the secret is
stored here (`stripe_webhook_endpoints`) the moment it arrives; the receiver accepts deliveries
signed with it or with `STRIPE_WEBHOOK_SECRET` (`signing_secrets`). Registering looks before it
creates — an endpoint with our URL and our installation in its metadata is ours — and the create
carries a deterministic idempotency key, so a second click, a double click or a retry never makes
a second endpoint.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import stripe
from sqlalchemy import Boolean, String, Text, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from activities.stripe_api import idempotency_key, stripe_client
from settings import Settings
from store.db import unit_of_work
from store.models import Base, InboundEvent, utcnow

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/stripe"

# Every event type the server acts on, in one place: the plan workflows' payment gate and
# money-back checks (web/stripe_webhooks.py) and the revenue warehouse's objects (store/sync.py),
# whose changes to existing objects only events can tell. There is no
# `customer_balance_transaction.*` event: balance changes arrive as `customer.updated`.
WEBHOOK_EVENTS: tuple[str, ...] = (
    # the payment gate and money taken back after a payment
    "invoice.paid", "invoice.voided", "invoice.marked_uncollectible",
    "charge.refunded", "credit_note.created", "charge.dispute.created", "charge.dispute.closed",
    # the revenue warehouse
    "customer.created", "customer.updated", "customer.deleted",
    "product.created", "product.updated", "product.deleted",
    "price.created", "price.updated", "price.deleted",
    "customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted",
    "customer.subscription.paused", "customer.subscription.resumed",
    "customer.subscription.pending_update_applied", "customer.subscription.pending_update_expired",
    "subscription_schedule.created", "subscription_schedule.updated", "subscription_schedule.canceled",
    "subscription_schedule.released", "subscription_schedule.completed", "subscription_schedule.aborted",
    "invoice.created", "invoice.finalized", "invoice.updated", "invoice.deleted", "invoice.sent",
    "invoice.payment_succeeded", "invoice.payment_failed", "invoice.overdue", "invoice_payment.paid",
    "invoiceitem.created", "invoiceitem.deleted",
    "charge.succeeded", "charge.failed", "charge.captured", "charge.updated", "charge.expired", "charge.pending",
    "charge.dispute.updated", "charge.dispute.funds_withdrawn", "charge.dispute.funds_reinstated",
    "refund.created", "refund.updated", "refund.failed",
    "credit_note.updated", "credit_note.voided",
)


class StripeWebhookEndpoint(Base):
    """An endpoint this server registered on Stripe, with the signing secret Stripe showed once."""

    __tablename__ = "stripe_webhook_endpoints"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)  # we_…
    url: Mapped[str] = mapped_column(String(2048))
    api_version: Mapped[str] = mapped_column(String(64))
    enabled_events: Mapped[list[Any]] = mapped_column(default=list)
    secret: Mapped[str] = mapped_column(Text)
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookSetupError(Exception):
    """The endpoint cannot be set up as asked; the message says why and what to do."""


def endpoint_url(settings: Settings) -> str:
    return settings.public_url + WEBHOOK_PATH


def endpoint_metadata(settings: Settings) -> dict[str, str]:
    # Our URL alone is not enough to call an endpoint ours: staging and production may share a
    # Stripe account (and, behind one proxy, a URL). The installation id tells them apart.
    return {"managed_by": "revops", "installation_id": settings.installation_id}


@dataclass(frozen=True)
class SetupResult:
    endpoint_id: str
    created: bool
    events_updated: bool

    @property
    def message(self) -> str:
        if self.created:
            return f"Registered the Stripe webhook endpoint {self.endpoint_id} and stored its signing secret."
        if self.events_updated:
            return f"The Stripe webhook endpoint {self.endpoint_id} now sends the events this server needs."
        return f"The Stripe webhook endpoint {self.endpoint_id} was already registered; nothing changed."


def _is_ours(endpoint: Any, settings: Settings) -> bool:
    metadata = endpoint.metadata.to_dict() if endpoint.metadata is not None else {}
    return bool(endpoint.url == endpoint_url(settings)
                and metadata.get("installation_id") == settings.installation_id)


def find_registered(client: stripe.StripeClient, settings: Settings) -> Any | None:
    """Our endpoint on the Stripe account, if there is one (all pages are read: accounts keep at
    most 16 endpoints, but look anyway)."""
    page = client.v1.webhook_endpoints.list({"limit": 100})
    for endpoint in page.auto_paging_iter():
        if _is_ours(endpoint, settings):
            return endpoint
    return None


def register_endpoint(settings: Settings, *, actor: str) -> SetupResult:
    """Register our endpoint on Stripe (once) and store its signing secret."""
    client = stripe_client(settings)
    url = endpoint_url(settings)
    existing = find_registered(client, settings)
    if existing is not None:
        with unit_of_work(settings.database_url) as session:
            stored = session.get(StripeWebhookEndpoint, existing.id)
        if stored is None:
            raise WebhookSetupError(
                f"Stripe already has our webhook endpoint {existing.id} for {url}, but its signing secret is not "
                "stored here, and Stripe shows a secret only when it creates an endpoint. Delete that endpoint in "
                "the Stripe dashboard (Developers → Webhooks) and click again, or set STRIPE_WEBHOOK_SECRET to its "
                "secret.")
        if set(existing.enabled_events or []) == set(WEBHOOK_EVENTS):
            return SetupResult(existing.id, created=False, events_updated=False)
        # The server needs other events than when the endpoint was made (a newer release).
        update: stripe.params.WebhookEndpointUpdateParams = {
            "enabled_events": cast(Any, list(WEBHOOK_EVENTS))}
        client.v1.webhook_endpoints.update(existing.id, update)
        with unit_of_work(settings.database_url) as session:
            row = session.get(StripeWebhookEndpoint, existing.id)
            if row is not None:
                row.enabled_events = list(WEBHOOK_EVENTS)
        log.info("Stripe webhook endpoint %s now has %d events (by %s).", existing.id, len(WEBHOOK_EVENTS), actor)
        return SetupResult(existing.id, created=False, events_updated=True)

    params: stripe.params.WebhookEndpointCreateParams = {
        "url": url,
        "enabled_events": cast(Any, list(WEBHOOK_EVENTS)),
        # Deliveries are rendered in this version: the one the SDK and our parsers are written for.
        "api_version": cast(Any, stripe.api_version),
        "description": f"RevOps server ({settings.installation_id}): plan payments and the revenue warehouse",
        "metadata": endpoint_metadata(settings),
    }
    # Same URL, version and events → same key: a double click or a retry gets Stripe's first answer
    # (with the secret) back instead of a second endpoint.
    fingerprint = hashlib.sha256("|".join((url, stripe.api_version, *WEBHOOK_EVENTS)).encode()).hexdigest()[:16]
    key = idempotency_key(settings.installation_id, "register-webhook-endpoint", fingerprint)
    created = client.v1.webhook_endpoints.create(params, {"idempotency_key": key})
    secret = created.secret
    if not secret:
        raise WebhookSetupError(f"Stripe created the webhook endpoint {created.id} but sent no signing secret; "
                                "delete it in the Stripe dashboard and click again.")
    try:
        with unit_of_work(settings.database_url) as session:
            session.add(StripeWebhookEndpoint(
                id=created.id, url=url, api_version=created.api_version or stripe.api_version,
                enabled_events=list(created.enabled_events or WEBHOOK_EVENTS), secret=secret,
                livemode=bool(created.livemode), created_by=actor))
    except IntegrityError:
        pass  # a concurrent click stored the same endpoint (same idempotency key, same secret)
    log.info("Registered Stripe webhook endpoint %s for %s (by %s).", created.id, url, actor)
    return SetupResult(created.id, created=True, events_updated=False)


def signing_secrets(settings: Settings) -> list[str]:
    """Every secret a Stripe delivery may be signed with: STRIPE_WEBHOOK_SECRET and the stored ones."""
    with unit_of_work(settings.database_url) as session:
        stored = list(session.scalars(select(StripeWebhookEndpoint.secret).order_by(
            StripeWebhookEndpoint.created_at.desc())))
    secrets = [settings.stripe_webhook_secret, *stored]
    return [s for i, s in enumerate(secrets) if s and s not in secrets[:i]]


# --- status: ours and Stripe's -------------------------------------------------------------------

@dataclass(frozen=True)
class OurSide:
    """What this server saw of Stripe's deliveries."""

    last_received_at: datetime | None
    last_event_type: str | None
    received_24h: int
    failed_24h: int
    rejected_since_start: int  # bad signatures are not stored; this process counted them
    last_lag_seconds: float | None  # event created → processed, for the last processed event


@dataclass(frozen=True)
class StripeSide:
    endpoint_id: str | None
    status: str  # enabled | disabled | not registered | deleted on Stripe | unreachable
    url: str | None = None
    api_version: str | None = None
    enabled_events: list[str] = field(default_factory=list)
    missing_events: list[str] = field(default_factory=list)
    secret_stored: bool = False
    error: str | None = None


@dataclass(frozen=True)
class WebhookStatus:
    endpoint_url: str
    ours: OurSide
    stripe: StripeSide


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def our_side(settings: Settings) -> OurSide:
    import json

    import prometheus_client

    since = datetime.now(UTC) - timedelta(hours=24)
    with unit_of_work(settings.database_url) as session:
        stripe_events = InboundEvent.source == "stripe"
        last = session.scalars(select(InboundEvent).where(stripe_events)
                               .order_by(InboundEvent.received_at.desc(), InboundEvent.id.desc()).limit(1)).first()
        received = session.scalar(select(func.count()).select_from(InboundEvent).where(
            stripe_events, InboundEvent.received_at >= since)) or 0
        failed = session.scalar(select(func.count()).select_from(InboundEvent).where(
            stripe_events, InboundEvent.received_at >= since, InboundEvent.status == "failed")) or 0
        processed = session.scalars(select(InboundEvent).where(
            stripe_events, InboundEvent.status.in_(("processed", "ignored")), InboundEvent.processed_at.is_not(None))
            .order_by(InboundEvent.processed_at.desc()).limit(1)).first()
        lag: float | None = None
        if processed is not None and processed.processed_at is not None:
            try:
                created = json.loads(processed.body).get("created")
            except (ValueError, AttributeError):
                created = None
            done = _aware(processed.processed_at)
            if isinstance(created, int) and done is not None:
                lag = max(done.timestamp() - created, 0.0)
        last_at, last_type = (_aware(last.received_at), last.event_type) if last is not None else (None, None)
    rejected = prometheus_client.REGISTRY.get_sample_value(
        "revops_webhook_deliveries_total", {"source": "stripe", "outcome": "rejected"}) or 0
    return OurSide(last_at, last_type, int(received), int(failed), int(rejected), lag)


def stripe_side(settings: Settings) -> StripeSide:
    with unit_of_work(settings.database_url) as session:
        stored = {row.id for row in session.scalars(select(StripeWebhookEndpoint))}
    try:
        endpoint = find_registered(stripe_client(settings), settings)
    except stripe.StripeError as exc:
        return StripeSide(None, "unreachable", error=f"Stripe did not answer: {exc.user_message or exc}",
                          secret_stored=bool(stored))
    if endpoint is None:
        return StripeSide(None, "deleted on Stripe" if stored else "not registered", url=endpoint_url(settings))
    events = sorted(endpoint.enabled_events or [])
    missing = [] if "*" in events else sorted(set(WEBHOOK_EVENTS) - set(events))
    return StripeSide(endpoint.id, str(endpoint.status), url=endpoint.url, api_version=endpoint.api_version,
                      enabled_events=events, missing_events=missing, secret_stored=endpoint.id in stored)


def webhook_status(settings: Settings) -> WebhookStatus:
    return WebhookStatus(endpoint_url(settings), our_side(settings), stripe_side(settings))
