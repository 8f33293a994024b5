"""The one place that talks to Stripe: the client, request options, error classification.

Plan activities and the revenue sync both go through here. Requests are built with the SDK's
typed params (`stripe.params.*`), so `mypy` refuses a parameter the current API removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

import stripe
from stripe._base_address import BaseAddresses

from observability.metrics import MeteredRequestsClient
from settings import Settings


@lru_cache(maxsize=8)
def _client(api_key: str, api_base: str, max_network_retries: int, purpose: str = "plans") -> stripe.StripeClient:
    bases: BaseAddresses = {}
    if api_base:
        bases = {"api": api_base, "files": api_base, "connect": api_base}
    # Every request is counted by endpoint and status (/metrics) and logs Stripe's request id.
    return stripe.StripeClient(api_key, base_addresses=bases, max_network_retries=max_network_retries,
                               http_client=MeteredRequestsClient(purpose))


def stripe_client(settings: Settings) -> stripe.StripeClient:
    return _client(settings.stripe_api_key, settings.stripe_api_base, settings.stripe_max_network_retries)


def sync_client(settings: Settings) -> stripe.StripeClient:
    """The revenue sync's reads: its own restricted read-only key when set (STRIPE_SYNC_API_KEY)."""
    return _client(settings.stripe_sync_api_key or settings.stripe_api_key, settings.stripe_api_base,
                   settings.stripe_max_network_retries, "revenue_sync")


def idempotency_key(*parts: object) -> str:
    """Keys read like a sentence and come from business identity only: `plan-42:create-invoice`.
    Never the attempt number or run id, so a retry or replay sends the same key."""
    key = ":".join(str(p) for p in parts)
    if len(key) > 255:
        raise ValueError("Stripe idempotency keys are at most 255 characters")
    return key


def _header(error: stripe.StripeError, name: str) -> str | None:
    for key, value in (error.headers or {}).items():
        if key.lower() == name.lower():
            return str(value)
    return None


def is_replayed_failure(error: stripe.StripeError) -> bool:
    """A 5xx Stripe says not to retry (`Stripe-Should-Retry: false`): once a request began
    executing, Stripe stores its first answer, a 500 included, and replays it for the same
    idempotency key. Sending that key again gets the same 500 forever."""
    status = error.http_status or 0
    return status >= 500 and (_header(error, "Stripe-Should-Retry") or "").lower() == "false"


def is_retryable(error: stripe.StripeError) -> bool:
    """Network trouble, 429 and 5xx are worth retrying; a 4xx means the request itself is wrong,
    and a 5xx Stripe will replay for the key (`is_replayed_failure`) cannot get better either."""
    if isinstance(error, (stripe.APIConnectionError, stripe.RateLimitError)):
        return True
    if is_replayed_failure(error):
        return False
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


# --- Reads for the revenue sync ---------------------------------------------------------------
# Owned by the revenue sync. Objects come back as plain JSON dicts (`to_dict()`), exactly what the
# warehouse stores as `raw`. The SDK's own retries are switched off per request
# (`max_network_retries: 0`): the sync retries itself so that every attempt goes through its
# token bucket and a 429's Retry-After pauses every worker, not just the one that was refused.

# Top-level objects the sync lists, in Stripe's `object` names.
LISTED_OBJECTS: tuple[str, ...] = (
    "customer", "product", "price", "subscription", "subscription_schedule", "invoice", "invoiceitem",
    "charge", "refund", "credit_note", "dispute", "balance_transaction",
)


_NO_SDK_RETRIES: stripe.RequestOptions = {"max_network_retries": 0}


@dataclass(frozen=True)
class Page:
    objects: list[dict[str, Any]]
    has_more: bool


def _page(result: Any) -> Page:
    return Page([item.to_dict(for_json=True) for item in result.data], bool(result.has_more))


def list_page(client: stripe.StripeClient, object_type: str, *, created_gte: int | None = None,
              created_lt: int | None = None, starting_after: str | None = None, limit: int = 100) -> Page:
    """One page (newest first) of a top-level list endpoint, optionally within a `created` window."""
    created: dict[str, int] = {}
    if created_gte is not None:
        created["gte"] = created_gte
    if created_lt is not None:
        created["lt"] = created_lt
    params: dict[str, Any] = {"limit": limit}
    if created:
        params["created"] = created
    if starting_after:
        params["starting_after"] = starting_after
    v1, P = client.v1, stripe.params  # noqa: N806
    match object_type:
        case "customer":
            return _page(v1.customers.list(cast(P.CustomerListParams, params), _NO_SDK_RETRIES))
        case "product":
            return _page(v1.products.list(cast(P.ProductListParams, params), _NO_SDK_RETRIES))
        case "price":
            return _page(v1.prices.list(cast(P.PriceListParams, params), _NO_SDK_RETRIES))
        case "subscription":
            # Without status=all Stripe leaves cancelled subscriptions out of the list.
            sub_params = cast(P.SubscriptionListParams, params)
            sub_params["status"] = "all"
            sub_params["expand"] = ["data.discounts.source.coupon"]  # MRR needs the coupon terms
            return _page(v1.subscriptions.list(sub_params, _NO_SDK_RETRIES))
        case "subscription_schedule":
            schedule_params = cast(P.SubscriptionScheduleListParams, params)
            return _page(v1.subscription_schedules.list(schedule_params, _NO_SDK_RETRIES))
        case "invoice":
            return _page(v1.invoices.list(cast(P.InvoiceListParams, params), _NO_SDK_RETRIES))
        case "invoiceitem":
            return _page(v1.invoice_items.list(cast(P.InvoiceItemListParams, params), _NO_SDK_RETRIES))
        case "charge":
            return _page(v1.charges.list(cast(P.ChargeListParams, params), _NO_SDK_RETRIES))
        case "refund":
            return _page(v1.refunds.list(cast(P.RefundListParams, params), _NO_SDK_RETRIES))
        case "credit_note":
            return _page(v1.credit_notes.list(cast(P.CreditNoteListParams, params), _NO_SDK_RETRIES))
        case "dispute":
            return _page(v1.disputes.list(cast(P.DisputeListParams, params), _NO_SDK_RETRIES))
        case "balance_transaction":
            return _page(v1.balance_transactions.list(cast(P.BalanceTransactionListParams, params), _NO_SDK_RETRIES))
        case "event":
            return _page(v1.events.list(cast(P.EventListParams, params), _NO_SDK_RETRIES))
    raise ValueError(f"The revenue sync does not list {object_type!r} objects.")


def list_children_page(client: stripe.StripeClient, object_type: str, parent_id: str, *,
                       starting_after: str | None = None, limit: int = 100) -> Page:
    """One page of the lines of an invoice, the items of a subscription, or a customer's
    balance transactions (nested lists with no global endpoint)."""
    options: stripe.RequestOptions = {"max_network_retries": 0}
    v1 = client.v1
    match object_type:
        case "line_item":
            line_params: stripe.params.InvoiceLineItemListParams = {"limit": limit}
            if starting_after:
                line_params["starting_after"] = starting_after
            return _page(v1.invoices.line_items.list(parent_id, line_params, options))
        case "subscription_item":
            item_params: stripe.params.SubscriptionItemListParams = {"subscription": parent_id, "limit": limit}
            if starting_after:
                item_params["starting_after"] = starting_after
            return _page(v1.subscription_items.list(item_params, options))
        case "customer_balance_transaction":
            cbt_params: stripe.params.CustomerBalanceTransactionListParams = {"limit": limit}
            if starting_after:
                cbt_params["starting_after"] = starting_after
            return _page(v1.customers.balance_transactions.list(parent_id, cbt_params, options))
    raise ValueError(f"The revenue sync does not list {object_type!r} under a parent.")


def retrieve_object(client: stripe.StripeClient, object_type: str, object_id: str) -> dict[str, Any]:
    """The current state of one object, for events whose payload is not enough."""
    options: stripe.RequestOptions = {"max_network_retries": 0}
    v1 = client.v1
    match object_type:
        case "invoice":
            return v1.invoices.retrieve(object_id, options=options).to_dict(for_json=True)
        case "subscription":
            return v1.subscriptions.retrieve(object_id, {"expand": ["discounts.source.coupon"]},
                                             options).to_dict(for_json=True)
        case "customer":
            return v1.customers.retrieve(object_id, options=options).to_dict(for_json=True)
        case "charge":
            return v1.charges.retrieve(object_id, options=options).to_dict(for_json=True)
    raise ValueError(f"The revenue sync does not re-fetch {object_type!r} objects.")


def retry_after_seconds(error: stripe.StripeError) -> float | None:
    """Stripe's hint on a 429 (`Retry-After`, seconds), when it sent one."""
    headers = error.headers or {}
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return max(float(value), 0.0)
            except (TypeError, ValueError):
                return None
    return None
