"""The revenue sync: Stripe objects into the warehouse, first in full, then from the events feed.

Full sync: every listed object type (activities.stripe_api.LISTED_OBJECTS) is paged, 100 per page,
newest first, by a pool of workers. Each type starts as one `created` window; a worker that finds
more pages while another worker is idle hands it the older part of its window, so several windows
of one type are paged in parallel. Every page is written together with its window's cursor in one
transaction (revenue_sync_checkpoints): a crash resumes each window after the last page it wrote,
with no gap and no duplicate. All requests share one token bucket (`STRIPE_SYNC_RATE` per second,
no burst) and a 429 pauses every worker for its Retry-After. Pages are read as raw JSON (see
`_get_json`); customers' balance transactions, one request per customer, are read in batches by
the same workers while the listing goes on.

Incremental sync: `/v1/events` since the cursor, applied oldest first, so changes to existing
objects arrive (a cancelled subscription, an invoice paid, a deleted customer). Invoices and
subscriptions whose embedded lists are truncated are re-fetched. When the cursor is older than
the 30 days Stripe keeps events, a full sync runs instead. Webhooks use the same `apply_event`.
"""

from __future__ import annotations

import contextlib
import gc
import gzip
import http.client
import json
import logging
import select as select_io
import ssl
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache, partial
from typing import Any, cast
from urllib.parse import quote, urlsplit

import requests
import stripe
from sqlalchemy import Table, select, update
from sqlalchemy.orm import Session

from activities import stripe_api
from observability.metrics import MeteredRequestsClient, count_sync_page, observe_revenue_sync
from settings import Settings
from store import revenue as revenue_store
from store.db import engine_for, unit_of_work
from store.warehouse import (
    TABLES,
    RevenueSyncCheckpoint,
    RevenueSyncCursor,
    RevenueSyncRun,
    StripeCustomer,
    StripeInvoicePayment,
    created_of,
    row_for,
    upsert,
)

log = logging.getLogger(__name__)

EVENTS_KEPT_SECONDS = 30 * 86400
# Start a full sync a little before Stripe's 30 days run out, not after.
EVENTS_SAFETY_SECONDS = 3600
EVENTS_CURSOR = "events"
# When the events were last read completely (Stripe's clock as far as we see it). Events can have
# been lost only if that is older than the 30 days Stripe keeps them; an account with no events
# for a month has an old `events` cursor but nothing to lose.
CHECKED_CURSOR = "events_checked"
MAX_ATTEMPTS = 8
RATE_LIMITED_FOR_AT_MOST = 15 * 60.0  # seconds of consecutive 429s on one request
PAGE_SIZE = 100

Progress = Callable[["SyncProgress"], None]
PageHook = Callable[[str, int], None]  # (object type, objects on the page) after each committed page


class TokenBucket:
    """`rate` requests per second shared by all threads, burst of one; `None` means no limit.

    A 429 calls `pause(seconds)`: nobody sends until then, which is what Retry-After asks."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self._next = time.monotonic()
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next, self._paused_until)
            self._next = slot + self.interval
        delay = slot - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def binding(self) -> bool:
        """Whether the limit is what sets the pace right now (the next free slot is still ahead)."""
        with self._lock:
            return self._next > time.monotonic()

    def pause(self, seconds: float) -> None:
        with self._lock:
            until = time.monotonic() + seconds
            self._paused_until = max(self._paused_until, until)
            self._next = max(self._next, until)


@dataclass
class SyncProgress:
    kind: str
    objects: int = 0
    requests: int = 0
    rate_limited: int = 0
    started: float = field(default_factory=time.monotonic)
    by_type: dict[str, int] = field(default_factory=dict)
    first_request: float | None = None  # monotonic time of the first request sent
    last_page: float | None = None  # monotonic time the last listed page was committed

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started


@dataclass(frozen=True)
class SyncReport:
    kind: str  # full | incremental
    run_id: int | None
    objects: int
    requests: int
    rate_limited: int
    seconds: float
    events: int = 0
    resumed: bool = False
    by_type_objects: dict[str, int] = field(default_factory=dict)
    # From the first request to the last page written: the part the rate limit paces (without
    # rebuilding the revenue schedule and persons afterwards).
    paging_seconds: float = 0.0


class SyncError(RuntimeError):
    """The sync could not finish; the message says what Stripe answered and that it will resume."""


class _Caller:
    """Sends one Stripe read through the bucket, retrying what is worth retrying."""

    def __init__(self, bucket: TokenBucket, progress: SyncProgress, lock: threading.Lock) -> None:
        self.bucket = bucket
        self.progress = progress
        self.lock = lock

    def __call__(self, fn: Callable[[], Any]) -> Any:
        failures = 0  # 5xx and network errors: a few tries, then the run stops (and resumes later)
        limited_since: float | None = None  # 429s only slow the sync, up to RATE_LIMITED_FOR_AT_MOST
        while True:
            self.bucket.acquire()
            with self.lock:
                self.progress.requests += 1
                if self.progress.first_request is None:
                    self.progress.first_request = time.monotonic()
            try:
                return fn()
            except stripe.RateLimitError as exc:
                now = time.monotonic()
                limited_since = limited_since if limited_since is not None else now
                with self.lock:
                    self.progress.rate_limited += 1
                if now - limited_since > RATE_LIMITED_FOR_AT_MOST:
                    raise SyncError(f"Stripe kept answering 429 for {now - limited_since:.0f} s; the sync stopped "
                                    "and will resume from its checkpoints on the next run.") from exc
                wait = stripe_api.retry_after_seconds(exc)
                streak = self.progress.rate_limited
                self.bucket.pause(wait if wait is not None else min(0.5 * 2 ** min(streak, 6), 30.0))
            except stripe.StripeError as exc:
                failures += 1
                if not stripe_api.is_retryable(exc) or failures >= MAX_ATTEMPTS:
                    raise
                time.sleep(min(0.25 * 2 ** failures, 10.0))


# --- reads: list pages as raw JSON ---------------------------------------------------------------
# A page is read through the SDK's own requestor and the metered HTTP client (the API key, base
# address, Stripe-Version, the request metrics of observability.metrics, and the SDK's typed errors
# for 4xx/5xx, which _Caller retries on; the client's transport is `_KeptAliveClient`, below), but
# its body is parsed once with the stdlib json into plain
# dicts: exactly what the warehouse stores as `raw`. Through `client.v1.<resource>.list` each
# object became a StripeObject and then a dict again (`to_dict`), which cost more than storing it
# (an invoice page of 100: ~125 ms against ~5 ms). `StripeClient.raw_request` parses the body into
# OrderedDicts, slower again than plain json.loads, so the requestor under it is called directly
# (a private part of the SDK, pinned by pyproject: stripe~=16.1).

REFETCHABLE = frozenset({"invoice", "subscription", "customer", "charge", "price"})

# Top-level list endpoints by object type: the path, the SDK's typed parameters of that list (a
# test checks every parameter the sync sends against them, as mypy did for `client.v1` calls) and
# what each must always ask for.
LIST_PATHS: dict[str, tuple[str, type, dict[str, Any]]] = {
    "customer": ("/v1/customers", stripe.params.CustomerListParams, {}),
    "product": ("/v1/products", stripe.params.ProductListParams, {}),
    # Prices with their `tiers` (only returned when expanded): MRR of a tiered price needs them.
    "price": ("/v1/prices", stripe.params.PriceListParams, {"expand": ["data.tiers"]}),
    # Without status=all Stripe leaves cancelled subscriptions out; MRR needs the coupon terms.
    "subscription": ("/v1/subscriptions", stripe.params.SubscriptionListParams,
                     {"status": "all", "expand": ["data.discounts.source.coupon"]}),
    "subscription_schedule": ("/v1/subscription_schedules", stripe.params.SubscriptionScheduleListParams, {}),
    # Invoices with their `payments`: Stripe's own record of which charge paid which invoice
    # (charges stopped naming their invoice in 2025).
    "invoice": ("/v1/invoices", stripe.params.InvoiceListParams, {"expand": ["data.payments"]}),
    "invoiceitem": ("/v1/invoiceitems", stripe.params.InvoiceItemListParams, {}),
    "charge": ("/v1/charges", stripe.params.ChargeListParams, {}),
    "refund": ("/v1/refunds", stripe.params.RefundListParams, {}),
    "credit_note": ("/v1/credit_notes", stripe.params.CreditNoteListParams, {}),
    "dispute": ("/v1/disputes", stripe.params.DisputeListParams, {}),
    "balance_transaction": ("/v1/balance_transactions", stripe.params.BalanceTransactionListParams, {}),
    "event": ("/v1/events", stripe.params.EventListParams, {}),
}
# Nested lists: parameters (besides limit and starting_after) and their typed parameters.
CHILD_LIST_PARAMS: dict[str, type] = {
    "line_item": stripe.params.InvoiceLineItemListParams,
    "subscription_item": stripe.params.SubscriptionItemListParams,
    "customer_balance_transaction": stripe.params.CustomerBalanceTransactionListParams,
}


class _KeptAliveClient(MeteredRequestsClient):
    """The metered HTTP client of the SDK (every request still counted, timed and its Request-Id
    logged) sending through one kept-alive `http.client` connection per thread and host.

    Through `requests` a page read cost ~0.6 ms of the sync's CPU besides parsing, most of it
    `requests` looking up proxies, netrc and CA bundles in the environment and merging settings
    on every call; this way ~0.2 ms. A full sync of 50,000 objects is ~2,900 requests (one per
    customer with a balance), on the one core its threads share. When a proxy is configured (the
    client's own or the environment's, looked up once per host), or for a streamed body, the
    SDK's `requests` path is used as before."""

    def __init__(self, purpose: str) -> None:
        super().__init__(purpose)
        self._local = threading.local()
        self._direct: dict[str, bool] = {}
        self._ssl: ssl.SSLContext | None = None

    def _goes_direct(self, scheme: str, netloc: str) -> bool:
        key = f"{scheme}://{netloc}"
        if key not in self._direct:
            self._direct[key] = scheme in ("http", "https") and not self._proxy and not (
                requests.utils.get_environ_proxies(key + "/"))
        return self._direct[key]

    def _connection(self, scheme: str, host: str, port: int | None) -> http.client.HTTPConnection:
        connections: dict[tuple[str, str, int | None], http.client.HTTPConnection] = \
            self._local.__dict__.setdefault("connections", {})
        conn = connections.get((scheme, host, port))
        # A kept-alive connection the server closed meanwhile reads as ready (EOF): open a new one
        # rather than fail the request on it (what urllib3 checks too).
        if conn is not None and conn.sock is not None:
            idle = select_io.poll()  # poll, not select: a busy process's descriptors pass 1024
            idle.register(conn.sock, select_io.POLLIN)
            if idle.poll(0):
                conn.close()
        if conn is None:
            timeout = self._timeout if isinstance(self._timeout, (int, float)) else max(self._timeout)
            if scheme == "https":
                if self._ssl is None:
                    self._ssl = ssl.create_default_context(cafile=stripe.ca_bundle_path)
                    if not self._verify_ssl_certs:
                        self._ssl.check_hostname = False
                        self._ssl.verify_mode = ssl.CERT_NONE
                conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=self._ssl)
            else:
                conn = http.client.HTTPConnection(host, port, timeout=timeout)
            connections[(scheme, host, port)] = conn
        return conn

    def _request_internal(self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any,
                          is_streaming: bool) -> tuple[Any, int, Mapping[str, str]]:
        parts = urlsplit(url)
        if is_streaming or not self._goes_direct(parts.scheme, parts.netloc):
            return super()._request_internal(method, url, headers, post_data, is_streaming)  # type: ignore[call-overload,no-any-return]
        conn = self._connection(parts.scheme, parts.hostname or "", parts.port)
        target = f"{parts.path}?{parts.query}" if parts.query else parts.path
        try:
            # gzip as `requests` asked for it: Stripe compresses a page of 100 objects several times.
            conn.request(method.upper(), target or "/", body=post_data,
                         headers={"Accept-Encoding": "gzip", **(headers or {})})
            response = conn.getresponse()
            body = response.read()
            if (response.getheader("Content-Encoding") or "").lower() == "gzip":
                body = gzip.decompress(body)
        except (OSError, EOFError, zlib.error, http.client.HTTPException) as exc:
            conn.close()
            # Like the SDK's own client: a certificate refused is not worth retrying, the rest is.
            retry = not isinstance(exc, ssl.SSLCertVerificationError)
            raise stripe.APIConnectionError(  # type: ignore[no-untyped-call]
                f"Stripe could not be reached at {parts.scheme}://{parts.netloc} ({type(exc).__name__}: {exc}).",
                should_retry=retry) from exc
        return body, response.status, requests.structures.CaseInsensitiveDict(response.getheaders())


@lru_cache(maxsize=8)
def _reader(api_key: str, api_base: str, max_network_retries: int) -> stripe.StripeClient:
    bases: dict[str, str] = {}
    if api_base:
        bases = {"api": api_base, "files": api_base, "connect": api_base}
    return stripe.StripeClient(api_key, base_addresses=cast(Any, bases), max_network_retries=max_network_retries,
                               http_client=_KeptAliveClient("revenue_sync"))


def sync_client(settings: Settings) -> stripe.StripeClient:
    """The sync's reads: the key, base address and retries of activities.stripe_api.sync_client
    (its own read-only key when STRIPE_SYNC_API_KEY is set), through `_KeptAliveClient`."""
    return _reader(settings.stripe_sync_api_key or settings.stripe_api_key, settings.stripe_api_base,
                   settings.stripe_max_network_retries)


def _get_json(client: stripe.StripeClient, path: str, params: dict[str, Any]) -> dict[str, Any]:
    """GET `path` through the SDK's requestor (no SDK retries: _Caller retries through the bucket);
    a non-2xx answer raises the SDK's error for it (RateLimitError with its headers, ...)."""
    requestor = client._requestor
    body, status, headers = requestor.request_raw("get", path, params, {"max_network_retries": 0},
                                                  base_address="api", api_mode="V1", usage=["revenue_sync"])
    if not 200 <= status < 300:
        requestor._interpret_response(body, status, headers, "V1")  # raises
        raise stripe.APIError(f"Stripe answered {status} to GET {path} without an error body.",
                              http_status=status)
    try:
        page = json.loads(cast(bytes, body))
    except ValueError as exc:
        raise stripe.APIError(f"Stripe answered GET {path} with a body that is not JSON ({exc}).",
                              http_status=status) from exc
    if not isinstance(page, dict):
        raise stripe.APIError(f"Stripe answered GET {path} with JSON that is not an object.", http_status=status)
    count_sync_page(path, page)
    return page


def _page_of(body: dict[str, Any]) -> stripe_api.Page:
    return stripe_api.Page(list(body.get("data") or []), bool(body.get("has_more")))


def list_page(client: stripe.StripeClient, kind: str, *, created_gte: int | None = None,
              created_lt: int | None = None, starting_after: str | None = None,
              limit: int = PAGE_SIZE) -> stripe_api.Page:
    """One page (newest first) of a top-level list, optionally within a `created` window."""
    if kind not in LIST_PATHS:
        raise ValueError(f"The revenue sync does not list {kind!r} objects.")
    path, _, fixed = LIST_PATHS[kind]
    params: dict[str, Any] = {"limit": limit, **fixed}
    created: dict[str, int] = {}
    if created_gte is not None:
        created["gte"] = created_gte
    if created_lt is not None:
        created["lt"] = created_lt
    if created:
        params["created"] = created
    if starting_after:
        params["starting_after"] = starting_after
    return _page_of(_get_json(client, path, params))


def list_children_page(client: stripe.StripeClient, kind: str, parent_id: str, *,
                       starting_after: str | None = None, limit: int = PAGE_SIZE) -> stripe_api.Page:
    """One page of an invoice's lines, a subscription's items or a customer's balance
    transactions (nested lists with no global endpoint)."""
    params: dict[str, Any] = {"limit": limit}
    if starting_after:
        params["starting_after"] = starting_after
    match kind:
        case "line_item":
            path = f"/v1/invoices/{quote(parent_id, safe='')}/lines"
        case "subscription_item":
            path = "/v1/subscription_items"
            params["subscription"] = parent_id
        case "customer_balance_transaction":
            path = f"/v1/customers/{quote(parent_id, safe='')}/balance_transactions"
        case _:
            raise ValueError(f"The revenue sync does not list {kind!r} under a parent.")
    return _page_of(_get_json(client, path, params))


def _retrieve(client: stripe.StripeClient, kind: str, object_id: str) -> dict[str, Any]:
    if kind == "price":
        return client.v1.prices.retrieve(object_id, {"expand": ["tiers"]},
                                         {"max_network_retries": 0}).to_dict(for_json=True)
    if kind != "invoice":
        return stripe_api.retrieve_object(client, kind, object_id)
    return client.v1.invoices.retrieve(object_id, {"expand": ["payments"]},
                                       {"max_network_retries": 0}).to_dict(for_json=True)


# --- writing Stripe objects ------------------------------------------------------------------

_sqlite_writers: dict[str, threading.Lock] = {}
_sqlite_writers_guard = threading.Lock()


@contextlib.contextmanager
def _writing(settings: Settings, session: Session | None = None) -> Iterator[Session]:
    """A unit of work for one of the sync's worker threads: in `session` when given (a window
    writes all its pages through one session, so one pooled connection, checked out and pinged
    once rather than for every page), else in a new one. SQLite takes one writer at a time and
    makes the others wait in its busy handler, which sleeps in steps of up to 100 ms whatever
    happens meanwhile; on SQLite the workers queue on a lock of this process instead, handed to
    the next one the moment a transaction ends. PostgreSQL takes the transactions side by side."""
    url = settings.database_url
    lock: threading.Lock | contextlib.nullcontext[None] = contextlib.nullcontext()
    if url.startswith("sqlite"):
        with _sqlite_writers_guard:
            lock = _sqlite_writers.setdefault(url, threading.Lock())
    with lock:
        if session is None:
            with unit_of_work(url) as own:
                yield own
        else:
            with session.begin():
                yield session


# --- writing Stripe objects ------------------------------------------------------------------

@dataclass
class Dirty:
    """What a batch of changes touched, so derived rows are rebuilt for exactly those."""

    invoices: set[str] = field(default_factory=set)
    charges: set[str] = field(default_factory=set)
    customers: set[str] = field(default_factory=set)
    balance_customers: set[str] = field(default_factory=set)

    def merge(self, other: Dirty) -> None:
        self.invoices |= other.invoices
        self.charges |= other.charges
        self.customers |= other.customers
        self.balance_customers |= other.balance_customers


def _store_objects(session: Session, objects: list[dict[str, Any]], call: _Caller, client: stripe.StripeClient,
                   dirty: Dirty, *, event_created: int | None = None) -> int:
    """Upsert objects of one type, their embedded lists (fetching truncated ones) and mark dirt.

    A page's children (invoice lines, subscription items, invoice payments) are written together
    in one statement per table, not one per parent: a page of 100 invoices was 400 statements."""
    if not objects:
        return 0
    kind = objects[0]["object"]
    model, _ = TABLES[kind]
    upsert(session, model, [row_for(o, event_created=event_created) for o in objects])
    count = len(objects)
    if kind == "invoice":
        count += _store_children(session, objects, "lines", "line_item", call, client)
        # The same rows as store.revenue.link_invoice_payments, for the whole page at once.
        upsert(session, StripeInvoicePayment, [
            row_for({**p, "object": "invoice_payment", "invoice": o["id"]})
            for o in objects for p in ((o.get("payments") or {}).get("data") or [])
            if isinstance(p, dict) and p.get("id")])
    elif kind == "subscription":
        count += _store_children(session, objects, "items", "subscription_item", call, client)
    elif kind == "invoice_payment":
        # Stripe's link between an invoice and the charge that paid it: the charge stops
        # being a one-off, the invoice's money is dated by the payment.
        dirty.charges.update(revenue_store.payment_charges(session, [o["id"] for o in objects]))
    for o in objects:
        customer = o.get("customer")
        customer_id = customer.get("id") if isinstance(customer, dict) else customer
        if kind == "invoice":
            dirty.charges.update(p["payment"]["charge"] for p in (o.get("payments") or {}).get("data") or []
                                 if isinstance((p.get("payment") or {}).get("charge"), str))
            dirty.invoices.add(o["id"])
            if o.get("starting_balance") != o.get("ending_balance") and customer_id:
                dirty.balance_customers.add(customer_id)
        elif kind in ("invoice_payment", "charge"):
            if kind == "charge":
                dirty.charges.add(o["id"])
            if o.get("invoice"):
                dirty.invoices.add(o["invoice"] if isinstance(o["invoice"], str) else o["invoice"]["id"])
        elif kind in ("refund", "dispute"):
            charge = o.get("charge")
            if charge:
                dirty.charges.add(charge if isinstance(charge, str) else charge["id"])
        elif kind == "credit_note" and o.get("invoice"):
            dirty.invoices.add(o["invoice"] if isinstance(o["invoice"], str) else o["invoice"]["id"])
        elif kind == "customer":
            customer_id = o["id"]
            if o.get("balance"):
                dirty.balance_customers.add(o["id"])
        if customer_id and kind in ("customer", "subscription", "charge", "invoice"):
            dirty.customers.add(customer_id)
    return count


def _store_children(session: Session, parents: list[dict[str, Any]], field_name: str, kind: str, call: _Caller,
                    client: stripe.StripeClient) -> int:
    """The embedded lists of a page of parents (invoice lines, subscription items): stored, and
    paged on when truncated. Children that left their parent's list (a removed subscription item)
    are soft-deleted."""
    parent_key, parent_field = ("invoice_id", "invoice") if kind == "line_item" else ("subscription_id", "subscription")
    rows = []
    seen: set[str] = set()
    for parent in parents:
        embedded = parent.get(field_name) or {}
        children = list(embedded.get("data") or [])
        has_more = bool(embedded.get("has_more"))
        while has_more:
            after = children[-1]["id"] if children else None
            page = call(partial(list_children_page, client, kind, parent["id"], starting_after=after))
            children.extend(page.objects)
            has_more = page.has_more and bool(page.objects)
        for child in children:
            child = {**child, "object": kind}
            child.setdefault(parent_field, parent["id"])
            rows.append(row_for(child, event_created=None, **{parent_key: parent["id"]}))
            seen.add(child["id"])
    model, _ = TABLES[kind]
    upsert(session, model, rows)
    table = model.__table__  # type: ignore[attr-defined]
    # Which stored children are no longer listed: read first (nothing, on a first sync), so the
    # update names only those rows rather than every id the page listed.
    stored = session.scalars(select(table.c.id).where(table.c[parent_key].in_([p["id"] for p in parents]),
                                                      table.c.deleted_at.is_(None))).all()
    gone = [child_id for child_id in stored if child_id not in seen]
    if gone:
        now = datetime.now(UTC)
        session.execute(update(table).where(table.c.id.in_(gone)).values(deleted_at=now, synced_at=now))
    return len(rows)


def _balance_transactions_of(customer_id: str, call: _Caller, client: stripe.StripeClient) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        try:
            page = call(partial(list_children_page, client, "customer_balance_transaction",
                                customer_id, starting_after=after))
        except stripe.InvalidRequestError:
            return objects  # the customer was deleted meanwhile
        objects.extend(page.objects)
        if not page.has_more or not page.objects:
            return objects
        after = page.objects[-1]["id"]


# Customers whose balance transactions one thread reads before writing them in one transaction.
BALANCE_CUSTOMERS_PER_BATCH = 50


def _balance_batch(settings: Settings, customers: list[str], call: _Caller, client: stripe.StripeClient) -> int:
    model, _ = TABLES["customer_balance_transaction"]
    rows = [row_for(o) for customer_id in customers for o in _balance_transactions_of(customer_id, call, client)]
    if rows:
        with _writing(settings) as session:
            upsert(session, model, rows)
    return len(rows)


def _sync_balance_transactions(settings: Settings, customer_ids: set[str], call: _Caller,
                               client: stripe.StripeClient, session: Session | None = None) -> int:
    """Customer balance transactions have no global list: read them per customer that has some
    (a non-zero balance, an invoice that used the balance, or a balance change in an event).
    In `session` when given (an incremental batch commits them with its events)."""
    ordered = sorted(customer_ids)
    if session is None:
        return sum(_balance_batch(settings, ordered[i:i + BALANCE_CUSTOMERS_PER_BATCH], call, client)
                   for i in range(0, len(ordered), BALANCE_CUSTOMERS_PER_BATCH))
    model, _ = TABLES["customer_balance_transaction"]
    count = 0
    for customer_id in ordered:
        objects = _balance_transactions_of(customer_id, call, client)
        upsert(session, model, [row_for(o) for o in objects])
        count += len(objects)
    return count


def _rebuild(settings: Settings, dirty: Dirty | None, session: Session | None = None) -> None:
    """Rebuild the revenue schedule and person/group resolution for what changed (all if None),
    in `session` when given (so it commits with the events it covers)."""
    if session is None:
        with unit_of_work(settings.database_url) as own:
            _rebuild(settings, dirty, own)
        return
    policy = settings.revenue_recognition
    revenue_store.set_reporting_currency(session, settings.reporting_currency)
    if dirty is None:
        revenue_store.rebuild_all(session, policy)
        revenue_store.resolve_customers(session, revenue_store.all_customer_ids(session))
        return
    revenue_store.rebuild(session, invoices=dirty.invoices, charges=dirty.charges,
                          customers=dirty.customers | dirty.balance_customers, policy=policy)
    revenue_store.resolve_customers(session, sorted(dirty.customers))


# --- full sync ---------------------------------------------------------------------------------

Task = int | Callable[[], None]  # a window's checkpoint id, or other work (a batch of balance reads)


class _Windows:
    """The work queue of a full run: windows (checkpoint ids) and other tasks (batches of balance
    reads) waiting for a worker, and who is idle. Windows go first, so every object type is being
    listed early (and a long one can be split when a worker is idle); tasks fill the gaps."""

    def __init__(self, pending: list[int], workers: int) -> None:
        # Taken from the end: the first window (customers, whose pages queue the balance reads,
        # one request per customer) is taken first.
        self.windows: list[int] = list(reversed(pending))
        self.tasks: deque[Callable[[], None]] = deque()
        self.workers = workers
        self.busy = 0
        self.cond = threading.Condition()
        self.failed: BaseException | None = None

    def take(self) -> Task | None:
        with self.cond:
            while not self.windows and not self.tasks and self.busy and self.failed is None:
                self.cond.wait()
            if (not self.windows and not self.tasks) or self.failed is not None:
                self.cond.notify_all()
                return None
            self.busy += 1
            return self.windows.pop() if self.windows else self.tasks.popleft()

    def done(self) -> None:
        with self.cond:
            self.busy -= 1
            self.cond.notify_all()

    def someone_idle(self) -> bool:
        with self.cond:
            return not self.windows and not self.tasks and self.busy < self.workers

    def add(self, task: Task) -> None:
        with self.cond:
            if isinstance(task, int):
                self.windows.append(task)
            else:
                self.tasks.append(task)
            self.cond.notify_all()

    def fail(self, exc: BaseException) -> None:
        with self.cond:
            self.failed = self.failed or exc
            self.cond.notify_all()


def _stripe_now(client: stripe.StripeClient, call: _Caller) -> int:
    """Stripe's idea of now, as far as we can see it: the newest event, or our clock if later."""
    page = call(lambda: list_page(client, "event", limit=1))
    newest = int(page.objects[0]["created"]) if page.objects else 0
    return max(newest, int(time.time()))


def _newest_event(client: stripe.StripeClient, call: _Caller) -> int:
    page = call(lambda: list_page(client, "event", limit=1))
    return int(page.objects[0]["created"]) if page.objects else 0


_frozen_runs = 0
_frozen_lock = threading.Lock()
_gc_threshold: tuple[int, int, int] | None = None
# Allocations between two collections of the youngest generation while a full sync runs (Python's
# default: 700). A parsed page is tens of thousands of dicts and lists that live until the page
# is written: collecting every 700 of them cost ~15% of the sync's CPU.
SYNC_GC_THRESHOLD0 = 50_000


@contextlib.contextmanager
def _old_objects_out_of_gc_sight() -> Iterator[None]:
    """While a full sync runs, what the process held before it (modules, the SDK's classes,
    SQLAlchemy's metadata: ~350,000 objects) is left out of the cyclic garbage collector's full
    passes (`gc.freeze`), and young objects are collected less often (SYNC_GC_THRESHOLD0); both
    are given back afterwards (`gc.unfreeze`, the thresholds as they were). Each page parsed makes
    tens of thousands of objects, which set off full passes; one over everything stopped every
    worker for ~0.35 s (the GIL is held throughout), several times a run. Runs side by side share
    one freeze."""
    global _frozen_runs, _gc_threshold
    with _frozen_lock:
        if _frozen_runs == 0:
            gc.freeze()
            _gc_threshold = gc.get_threshold()
            gc.set_threshold(max(SYNC_GC_THRESHOLD0, _gc_threshold[0]), *_gc_threshold[1:])
        _frozen_runs += 1
    try:
        yield
    finally:
        with _frozen_lock:
            _frozen_runs -= 1
            if _frozen_runs == 0:
                if _gc_threshold is not None:
                    gc.set_threshold(*_gc_threshold)
                gc.unfreeze()


def full_sync(settings: Settings, *, rate: float | None = -1, workers: int = 8, progress: Progress | None = None,
              on_page: PageHook | None = None, object_types: tuple[str, ...] | None = None) -> SyncReport:
    """List everything into the warehouse, resuming an unfinished full run if there is one.

    `rate` requests per second (default: settings.stripe_sync_rate; None: unlimited). `on_page`
    runs after each committed page (tests use it to crash mid-way)."""
    with _old_objects_out_of_gc_sight():
        return _full_sync(settings, rate=rate, workers=workers, progress=progress, on_page=on_page,
                          object_types=object_types)


def _full_sync(settings: Settings, *, rate: float | None, workers: int, progress: Progress | None,
               on_page: PageHook | None, object_types: tuple[str, ...] | None) -> SyncReport:
    rate = settings.stripe_sync_rate if rate == -1 else rate
    client = sync_client(settings)
    state = SyncProgress("full")
    lock = threading.Lock()
    call = _Caller(TokenBucket(rate), state, lock)
    types = object_types or stripe_api.LISTED_OBJECTS

    with unit_of_work(settings.database_url) as session:
        run = session.scalars(select(RevenueSyncRun).where(RevenueSyncRun.kind == "full",
                                                           RevenueSyncRun.finished_at.is_(None))
                              .order_by(RevenueSyncRun.id.desc())).first()
        resumed = run is not None
        if run is None:
            # Events from this moment on are applied by the next incremental run; objects listed
            # meanwhile may be newer already, which replaying their events cannot make wrong.
            run = RevenueSyncRun(kind="full", upper_bound=_newest_event(client, call))
            session.add(run)
            session.flush()
            for kind in types:
                session.add(RevenueSyncCheckpoint(run_id=run.id, object_type=kind, created_gte=0,
                                                  created_lt=2**62))
        run_id, events_from = run.id, run.upper_bound
        pending = list(session.scalars(select(RevenueSyncCheckpoint.id).where(
            RevenueSyncCheckpoint.run_id == run_id, RevenueSyncCheckpoint.done.is_(False))
            .order_by(RevenueSyncCheckpoint.id)))
        run_started = run.started_at

    windows = _Windows(pending, workers)
    # Customers' balance transactions (one request per customer) are read in batches by the same
    # workers, queued as soon as a listed page names a customer that has some: they overlap the
    # listing, and whoever runs out of windows reads balances rather than waiting.
    balance_queued: set[str] = set()
    balance_waiting: list[str] = []

    def read_balances(customers: list[str]) -> None:
        stored = _balance_batch(settings, customers, call, client)
        with lock:
            state.objects += stored

    def queue_balances(customers: Iterable[str], *, flush: bool = False) -> None:
        with lock:
            new = sorted(set(customers) - balance_queued)
            balance_queued.update(new)
            balance_waiting.extend(new)
            batches = []
            while len(balance_waiting) >= BALANCE_CUSTOMERS_PER_BATCH or (flush and balance_waiting):
                batches.append(balance_waiting[:BALANCE_CUSTOMERS_PER_BATCH])
                del balance_waiting[:BALANCE_CUSTOMERS_PER_BATCH]
        for batch in batches:
            windows.add(partial(read_balances, batch))

    def report() -> None:
        if progress is not None:
            progress(state)

    def page_window(checkpoint_id: int) -> None:
        # One connection for all the window's pages (a session releases its connection at each
        # commit, and PostgreSQL's pool pings it at each checkout).
        with engine_for(settings.database_url).connect() as connection, \
                Session(bind=connection, expire_on_commit=False) as session:
            page_window_in(session, checkpoint_id)

    def page_window_in(session: Session, checkpoint_id: int) -> None:
        with session.begin():
            cp = session.get(RevenueSyncCheckpoint, checkpoint_id)
            assert cp is not None
            kind, gte, lt, after = cp.object_type, cp.created_gte, cp.created_lt, cp.starting_after
        checkpoint = cast(Table, RevenueSyncCheckpoint.__table__)
        while True:
            try:
                page = call(partial(list_page, client, kind, created_gte=gte or None,
                                    created_lt=None if lt >= 2**62 else lt, starting_after=after))
            except stripe.InvalidRequestError as exc:
                if exc.http_status != 404 or after is not None:
                    raise
                # An API without this list (an emulator, a restricted key): say so, sync the rest.
                log.warning("Stripe has no list of %s objects here (%s); skipping them.", kind, exc.user_message)
                page = stripe_api.Page([], False)
            dirty = Dirty()
            new_window: int | None = None
            with _writing(settings, session):
                stored = _store_objects(session, page.objects, call, client, dirty)
                # The window's cursor moves in the page's own transaction, by one statement (the
                # worker knows the window; nobody else writes it).
                moved: dict[str, Any] = {"pages": checkpoint.c.pages + 1, "objects": checkpoint.c.objects + stored}
                if page.objects:
                    after = moved["starting_after"] = page.objects[-1]["id"]
                if not page.has_more or not page.objects:
                    moved["done"] = True
                elif windows.someone_idle() and not call.bucket.binding():
                    oldest = created_of(page.objects[-1]) or gte
                    span = max((created_of(page.objects[0]) or oldest) - oldest, 1)
                    split = max(gte + 1, oldest - 4 * span)
                    if gte < split <= oldest:
                        # The older part [gte, split) goes to an idle worker; this one keeps
                        # [split, lt) and its cursor, whose object is still inside that window.
                        other = RevenueSyncCheckpoint(run_id=run_id, object_type=kind, created_gte=gte,
                                                      created_lt=split)
                        session.add(other)
                        session.flush()
                        new_window = other.id
                        gte = moved["created_gte"] = split
                session.execute(update(checkpoint).where(checkpoint.c.id == checkpoint_id).values(moved))
            with lock:
                state.objects += stored
                state.by_type[kind] = state.by_type.get(kind, 0) + stored
                state.last_page = time.monotonic()
            if new_window is not None:
                windows.add(new_window)
            queue_balances(dirty.balance_customers)
            if on_page is not None:
                on_page(kind, len(page.objects))
            report()
            if not page.has_more or not page.objects or windows.failed is not None:
                return

    def worker() -> None:
        while True:
            task = windows.take()
            if task is None:
                return
            try:
                if isinstance(task, int):
                    page_window(task)
                else:
                    task()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                windows.fail(exc)
            finally:
                windows.done()

    def run_workers() -> None:
        threads = [threading.Thread(target=worker, name=f"revenue-sync-{i}", daemon=True) for i in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if windows.failed is not None:
            with unit_of_work(settings.database_url) as session:
                failed_run = session.get(RevenueSyncRun, run_id)
                if failed_run is not None:
                    failed_run.error = str(windows.failed)
            raise windows.failed

    run_workers()
    # The last customers named, and those with a balance listed in an earlier attempt of a
    # resumed run (every listed one was queued already).
    with unit_of_work(settings.database_url) as session:
        with_balance = set(session.scalars(
            select(StripeCustomer.id).where(StripeCustomer.deleted_at.is_(None),
                                            StripeCustomer.raw["balance"].as_integer() != 0)))
    queue_balances(with_balance, flush=True)
    run_workers()

    with unit_of_work(settings.database_url) as session:
        # Whatever a complete listing did not return is gone from Stripe (deleted customers,
        # products, draft invoices): soft-deleted, never removed.
        now = datetime.now(UTC)
        for kind in types:
            model, _ = TABLES[kind]
            table = model.__table__  # type: ignore[attr-defined]
            session.execute(update(table).where(table.c.synced_at < run_started, table.c.deleted_at.is_(None))
                            .values(deleted_at=now))
    _rebuild(settings, None)
    with unit_of_work(settings.database_url) as session:
        _set_cursor(session, events_from)
        _set_cursor(session, max(events_from, int(run_started.replace(tzinfo=run_started.tzinfo or UTC).timestamp())),
                    CHECKED_CURSOR)
        done = session.get(RevenueSyncRun, run_id)
        assert done is not None
        done.finished_at = datetime.now(UTC)
        done.objects += state.objects
        done.requests += state.requests
        done.error = None
    report()
    return SyncReport("full", run_id, state.objects, state.requests, state.rate_limited, state.seconds,
                      resumed=resumed, by_type_objects=dict(state.by_type),
                      paging_seconds=(state.last_page or 0.0) - (state.first_request or 0.0))


def _set_cursor(session: Session, value: int, name: str = EVENTS_CURSOR) -> None:
    cursor = session.get(RevenueSyncCursor, name)
    if cursor is None:
        session.add(RevenueSyncCursor(name=name, value=value))
    else:
        cursor.value = max(cursor.value, value)


def events_cursor(settings: Settings, name: str = EVENTS_CURSOR) -> int | None:
    with unit_of_work(settings.database_url) as session:
        cursor = session.get(RevenueSyncCursor, name)
        return None if cursor is None else cursor.value


# --- incremental sync --------------------------------------------------------------------------

def apply_event(session: Session, client: stripe.StripeClient, call: _Caller, event: dict[str, Any]) -> Dirty:
    """Apply one Stripe event to the warehouse (idempotent; an older event never wins)."""
    dirty = Dirty()
    obj = dict((event.get("data") or {}).get("object") or {})
    kind = obj.get("object")
    if kind not in TABLES or "id" not in obj:
        return dirty
    created = int(event.get("created") or 0)
    event_type = str(event.get("type") or "")
    if event_type.endswith(".deleted") and kind in ("customer", "product", "price", "invoiceitem", "invoice"):
        obj["deleted"] = True
    model, _ = TABLES[kind]
    stored = session.scalar(select(model.event_created).where(model.id == obj["id"]))
    if stored is not None and stored > created:
        return dirty  # an older event never wins: not the object, nor its lines or items
    refetch = False
    if stored is not None and stored == created and not obj.get("deleted"):
        # Same second as the event already applied: their order is unknown (a late
        # invoice.finalized after invoice.paid), so ask Stripe for the object as it is now.
        refetch = kind in REFETCHABLE
    # Truncated embedded lists and missing ones: re-fetch the object as it is now.
    if kind in ("invoice", "subscription") and not obj.get("deleted"):
        embedded = obj.get("lines" if kind == "invoice" else "items")
        # Discounts arrive as bare ids in events; MRR needs their coupon terms.
        bare_discounts = any(isinstance(d, str) for d in obj.get("discounts") or []) and kind == "subscription"
        # An invoice that took money names the charges that paid it only when expanded.
        unlinked = kind == "invoice" and bool(obj.get("amount_paid")) and not isinstance(obj.get("payments"), dict)
        refetch = refetch or not isinstance(embedded, dict) or bare_discounts or unlinked
    if kind == "price" and obj.get("billing_scheme") == "tiered" and not obj.get("tiers") and not obj.get("deleted"):
        refetch = True  # events carry no tiers
    if refetch:
        try:
            obj = call(lambda: _retrieve(client, kind, obj["id"]))
        except stripe.InvalidRequestError:
            pass
    _store_objects(session, [obj], call, client, dirty, event_created=created)
    if kind == "customer":
        previous = (event.get("data") or {}).get("previous_attributes") or {}
        # Balance changes come only this way (there is no customer_balance_transaction event);
        # a balance in a second currency shows in `invoice_credit_balance`.
        if "balance" in previous or "invoice_credit_balance" in previous:
            dirty.balance_customers.add(obj["id"])
    return dirty


def incremental_sync(settings: Settings, *, rate: float | None = -1, progress: Progress | None = None) -> SyncReport:
    """Apply `/v1/events` since the cursor; a full sync instead when there is no usable cursor."""
    rate = settings.stripe_sync_rate if rate == -1 else rate
    cursor = events_cursor(settings)
    client = sync_client(settings)
    state = SyncProgress("incremental")
    lock = threading.Lock()
    call = _Caller(TokenBucket(rate), state, lock)
    checked = events_cursor(settings, CHECKED_CURSOR)
    started = _stripe_now(client, call)
    if cursor is None or max(cursor, checked or 0) < started - EVENTS_KEPT_SECONDS + EVENTS_SAFETY_SECONDS:
        log.info("Events were last read at %s, longer ago than Stripe keeps them: running a full sync.",
                 checked or cursor)
        return full_sync(settings, rate=rate, progress=progress)

    # Events come newest first; collect the ids since the cursor, then apply oldest first.
    events: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        page = call(partial(list_page, client, "event", created_gte=cursor, starting_after=after))
        events.extend(page.objects)
        if not page.has_more or not page.objects:
            break
        after = page.objects[-1]["id"]
    # Oldest first. Within one second only Stripe's own order tells which came first (ids are
    # random), so reverse the newest-first list and sort stably by time.
    events.reverse()
    events.sort(key=lambda e: int(e["created"]))
    for start in range(0, len(events), 100):
        batch = events[start:start + 100]
        # The cursor moves only together with the rebuild of what its events changed: a run that
        # fails half-way leaves the cursor before the batch, and the next run applies it again.
        with unit_of_work(settings.database_url) as session:
            dirty = Dirty()
            for event in batch:
                dirty.merge(apply_event(session, client, call, event))
            state.objects += _sync_balance_transactions(settings, dirty.balance_customers, call, client, session)
            _rebuild(settings, dirty, session)
            _set_cursor(session, int(batch[-1]["created"]))
        state.objects += len(batch)
        if progress is not None:
            progress(state)
    dirty = Dirty()
    # Balance transactions have no events but never change once made: list the new ones.
    after = None
    while True:
        page = call(partial(list_page, client, "balance_transaction",
                            created_gte=max(cursor - EVENTS_SAFETY_SECONDS, 0), starting_after=after))
        with unit_of_work(settings.database_url) as session:
            state.objects += _store_objects(session, page.objects, call, client, dirty)
        if not page.has_more or not page.objects:
            break
        after = page.objects[-1]["id"]
    _rebuild(settings, dirty)
    with unit_of_work(settings.database_url) as session:
        _set_cursor(session, started, CHECKED_CURSOR)
    return SyncReport("incremental", None, state.objects, state.requests, state.rate_limited, state.seconds,
                      events=len(events))


@observe_revenue_sync
def sync_revenue(settings: Settings, *, full: bool = False, rate: float | None = -1,
                 progress: Progress | None = None) -> SyncReport:
    """What `revops sync revenue [--full]` and the schedule run: resume an unfinished full run,
    else a full run when asked or needed, else an incremental one."""
    with unit_of_work(settings.database_url) as session:
        unfinished = session.scalars(select(RevenueSyncRun.id).where(
            RevenueSyncRun.kind == "full", RevenueSyncRun.finished_at.is_(None))).first()
    if full or unfinished is not None:
        report = full_sync(settings, rate=rate, progress=progress)
    else:
        report = incremental_sync(settings, rate=rate, progress=progress)
    # Subscriptions on startup prices the sync wrote get their timer (issue 14): one query, and
    # only timers not started before; Temporal being away is a log line, retried next run.
    from activities.catalog import start_timers_after_sync

    start_timers_after_sync(settings)
    return report


def rebuild_schedule(settings: Settings) -> int:
    """The revenue schedule again from the warehouse, no Stripe request: after changing
    REVENUE_RECOGNITION or REPORTING_CURRENCY. Returns the rows written."""
    with unit_of_work(settings.database_url) as session:
        revenue_store.set_reporting_currency(session, settings.reporting_currency)
        written = revenue_store.rebuild_all(session, settings.revenue_recognition)
        revenue_store.resolve_customers(session, revenue_store.all_customer_ids(session))
    return written


def apply_stripe_event(settings: Settings, event: dict[str, Any]) -> None:
    """A webhook's event, applied within the request's seconds (same rules as the events feed)."""
    client = sync_client(settings)
    state = SyncProgress("webhook")
    call = _Caller(TokenBucket(None), state, threading.Lock())
    with unit_of_work(settings.database_url) as session:
        dirty = apply_event(session, client, call, event)
    if dirty.balance_customers:
        _sync_balance_transactions(settings, dirty.balance_customers, call, client)
    _rebuild(settings, dirty)
