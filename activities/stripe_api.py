"""The one place that talks to Stripe: the client, request options, error classification.

Plan activities and the revenue sync both go through here. Requests are built with the SDK's
typed params (`stripe.params.*`), so `mypy` refuses a parameter the current API removed.
"""

from __future__ import annotations

from functools import lru_cache

import stripe
from stripe._base_address import BaseAddresses

from settings import Settings


@lru_cache(maxsize=8)
def _client(api_key: str, api_base: str, max_network_retries: int) -> stripe.StripeClient:
    bases: BaseAddresses = {}
    if api_base:
        bases = {"api": api_base, "files": api_base, "connect": api_base}
    return stripe.StripeClient(api_key, base_addresses=bases, max_network_retries=max_network_retries)


def stripe_client(settings: Settings) -> stripe.StripeClient:
    return _client(settings.stripe_api_key, settings.stripe_api_base, settings.stripe_max_network_retries)


def idempotency_key(*parts: object) -> str:
    """Keys read like a sentence and come from business identity only: `plan-42:create-invoice`.
    Never the attempt number or run id, so a retry or replay sends the same key."""
    key = ":".join(str(p) for p in parts)
    if len(key) > 255:
        raise ValueError("Stripe idempotency keys are at most 255 characters")
    return key


def is_retryable(error: stripe.StripeError) -> bool:
    """Network trouble, 429 and 5xx are worth retrying; a 4xx means the request itself is wrong."""
    if isinstance(error, (stripe.APIConnectionError, stripe.RateLimitError)):
        return True
    status = error.http_status or 0
    return status >= 500 or status in (409, 429)


def dashboard_url(settings: Settings, object_id: str) -> str:
    """Where a person finds a Stripe object in the dashboard (test or live by the key)."""
    prefix = "" if settings.stripe_is_live else "test/"
    paths = {
        "cus_": "customers", "in_": "invoices", "sub_sched_": "subscription_schedules",
        "sub_": "subscriptions", "price_": "prices", "prod_": "products", "ch_": "payments",
        "cbtxn_": "customers",
    }
    for id_prefix, path in paths.items():
        if object_id.startswith(id_prefix):
            return f"https://dashboard.stripe.com/{prefix}{path}/{object_id}"
    return f"https://dashboard.stripe.com/{prefix}search?query={object_id}"
