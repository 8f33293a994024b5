"""Every Prometheus metric of the server, defined once (docs/operations.md lists them with alerts).

Two kinds:

- **Events**, counted where they happen: button clicks and step durations (the plan service),
  Stripe requests (the SDK's HTTP client, `MeteredRequestsClient`), webhook deliveries (the
  receivers, `observe_webhook`), revenue sync pages, objects and runs. They go to
  `prometheus_client`'s registry, which the web app serves at `/metrics`, and — in the worker,
  where plan steps and the revenue sync make most Stripe calls — also to the Temporal SDK's
  metric meter, so they appear on the worker's own metrics port beside Temporal's metrics
  (`install_worker_metrics`), under the same names.
- **State**, read from the database at scrape time (`DatabaseCollector`): plans by state, the
  last webhook received, the revenue sync's events cursor, when the warehouse the reports read
  last changed. Every web process reports the same numbers, however many there are.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

import prometheus_client
import stripe
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

if TYPE_CHECKING:
    from temporalio.common import MetricMeter

    from settings import Settings

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

# --- two sinks: prometheus_client always, the Temporal runtime's meter in the worker ------------

_meter: MetricMeter | None = None
_meter_lock = threading.Lock()


def attach_temporal_meter(meter: MetricMeter | None) -> None:
    """From now on every event is also recorded on `meter` (None detaches)."""
    global _meter
    with _meter_lock:
        _meter = meter
        for metric in _ALL:
            metric._temporal = None


def _labels(labels: Mapping[str, str]) -> dict[str, str | int | float | bool]:
    return dict(labels)


class _Metric:
    def __init__(self, name: str, doc: str, labels: Sequence[str]) -> None:
        self.name, self.doc, self.label_names = name, doc, tuple(labels)
        self._temporal: Any = None
        _ALL.append(self)

    def _check(self, labels: Mapping[str, str]) -> None:
        if set(labels) != set(self.label_names):
            raise ValueError(f"{self.name} takes the labels {self.label_names}, not {tuple(labels)}.")

    def _on_meter(self) -> Any:
        if _meter is None:
            return None
        if self._temporal is None:
            with _meter_lock:
                if self._temporal is None and _meter is not None:
                    self._temporal = self._create(_meter)
        return self._temporal

    def _create(self, meter: MetricMeter) -> Any:
        raise NotImplementedError


_ALL: list[_Metric] = []


class Counter(_Metric):
    """Exposed as `<name>_total` by both sinks."""

    def __init__(self, name: str, doc: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, doc, labels)
        self.prom = prometheus_client.Counter(name, doc, self.label_names)

    def _create(self, meter: MetricMeter) -> Any:
        return meter.create_counter(self.name, self.doc)

    def inc(self, amount: int = 1, **labels: str) -> None:
        self._check(labels)
        (self.prom.labels(**labels) if labels else self.prom).inc(amount)
        temporal = self._on_meter()
        if temporal is not None:
            temporal.add(amount, _labels(labels))


class Histogram(_Metric):
    def __init__(self, name: str, doc: str, labels: Sequence[str], buckets: Sequence[float]) -> None:
        super().__init__(name, doc, labels)
        self.buckets = tuple(buckets)
        self.prom = prometheus_client.Histogram(name, doc, self.label_names, buckets=self.buckets)

    def _create(self, meter: MetricMeter) -> Any:
        return meter.create_histogram_float(self.name, self.doc)

    def observe(self, value: float, **labels: str) -> None:
        self._check(labels)
        (self.prom.labels(**labels) if labels else self.prom).observe(value)
        temporal = self._on_meter()
        if temporal is not None:
            temporal.record(value, _labels(labels))


class Gauge(_Metric):
    def __init__(self, name: str, doc: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, doc, labels)
        self.prom = prometheus_client.Gauge(name, doc, self.label_names)

    def _create(self, meter: MetricMeter) -> Any:
        return meter.create_gauge_float(self.name, self.doc)

    def set(self, value: float, **labels: str) -> None:
        self._check(labels)
        (self.prom.labels(**labels) if labels else self.prom).set(value)
        temporal = self._on_meter()
        if temporal is not None:
            temporal.set(value, _labels(labels))


# --- the metrics ---------------------------------------------------------------------------------

BUTTON_CLICKS = Counter(
    "revops_button_clicks", "Plan button clicks (table and API) by action and outcome: done, refused "
    "(not allowed now), failed (the step failed), unavailable (Temporal or a timeout), forbidden, not_found.",
    ["action", "outcome"])
STEP_DURATION = Histogram(
    "revops_step_duration_seconds", "From a click to its step finished (done or failed), by action.",
    ["action"], buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60))
STRIPE_REQUESTS = Counter(
    "revops_stripe_requests", "HTTP requests to Stripe by method, endpoint (ids collapsed to {id}) and status "
    "code (`network_error` when no response came). Each SDK retry is one more request.",
    ["method", "endpoint", "status"])
STRIPE_REQUEST_DURATION = Histogram(
    "revops_stripe_request_duration_seconds", "Time to an answer from Stripe, by method and endpoint.",
    ["method", "endpoint"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))
WEBHOOK_DELIVERIES = Counter(
    "revops_webhook_deliveries", "Webhook deliveries by source (stripe, pandadoc) and outcome: received (every "
    "delivery), rejected (signature or body), duplicate, processed, ignored (nothing to do), failed "
    "(stored, will be delivered again).", ["source", "outcome"])
WEBHOOK_LAG = Histogram(
    "revops_webhook_processing_lag_seconds", "From the event's creation at the source to our processing done.",
    ["source"], buckets=(0.5, 1, 5, 15, 60, 300, 900, 3600, 6 * 3600, 86400))
SYNC_PAGES = Counter(
    "revops_revenue_sync_pages", "List pages the revenue sync read from Stripe, by endpoint.", ["endpoint"])
SYNC_OBJECTS = Counter(
    "revops_revenue_sync_objects", "Objects on the list pages the revenue sync read, by endpoint.", ["endpoint"])
SYNC_RUNS = Counter(
    "revops_revenue_sync_runs", "Revenue sync runs by outcome (succeeded, failed).", ["outcome"])
SYNC_LAST_SUCCESS = Gauge(
    "revops_revenue_sync_last_success_timestamp_seconds", "Unix time the last revenue sync run finished well, "
    "by kind (full, incremental).", ["kind"])
SYNC_LAG = Gauge(
    "revops_revenue_sync_lag_seconds", "At the end of the last successful run: how far the warehouse's events "
    "cursor is behind the newest Stripe event the sync saw.")

WORKER_HISTOGRAMS: dict[str, Sequence[float]] = {
    m.name: m.buckets for m in _ALL if isinstance(m, Histogram)}


# --- button clicks -------------------------------------------------------------------------------

_CLICK_OUTCOMES = {409: "refused", 502: "failed", 503: "unavailable", 504: "unavailable", 403: "forbidden",
                   404: "not_found"}


def observe_click(actions: Iterable[str]) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorates `PlanService.perform_action(self, plan_id, action, principal, params)`: counts the
    click by action and outcome (from the refusal's HTTP status) and times steps that ran."""
    known = frozenset(actions)

    def decorate(perform: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(perform)
        def observed(*args: P.args, **kwargs: P.kwargs) -> R:
            raw = kwargs.get("action", args[2] if len(args) > 2 else "")
            # Unknown names would make a new time series per typo.
            action = raw if isinstance(raw, str) and raw in known else "unknown"
            started = time.perf_counter()
            outcome = "done"
            try:
                return perform(*args, **kwargs)
            except Exception as exc:
                outcome = _CLICK_OUTCOMES.get(getattr(exc, "status", 0), "error")
                raise
            finally:
                BUTTON_CLICKS.inc(action=action, outcome=outcome)
                if outcome in ("done", "failed"):
                    STEP_DURATION.observe(time.perf_counter() - started, action=action)

        return observed

    return decorate


# --- Stripe requests -----------------------------------------------------------------------------

_ID_SEGMENT = re.compile(r"[A-Za-z0-9_]*[0-9A-Z][A-Za-z0-9_]*")  # has a digit or a capital: an id, not a name


def stripe_endpoint(url: str) -> str:
    """The path template of a Stripe URL: `/v1/customers/cus_9s6XKzkNRiz8i3/balance_transactions`
    → `/v1/customers/{id}/balance_transactions`. Resource and action names are lowercase words
    (`line_items`, `finalize`); Stripe ids always carry digits or capitals."""
    path = urlsplit(url).path or "/"
    segments = path.split("/")
    return "/".join("{id}" if i > 1 and _ID_SEGMENT.fullmatch(s) else s for i, s in enumerate(segments))


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return str(value)
    return None


_newest_event_lock = threading.Lock()
_newest_event_seen = 0  # `created` of the newest Stripe event any sync request returned


class MeteredRequestsClient(stripe.RequestsClient):
    """The SDK's default HTTP client, counting and timing each attempt (so a 429 the SDK retries is
    still counted), and putting Stripe's `Request-Id` on the log records that follow.

    The sync's pages and objects are counted by the sync itself (`count_sync_page`)."""

    def __init__(self, purpose: str = "plans", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.purpose = purpose

    def request(  # type: ignore[override]  # RequestsClient answers bytes, its base class says str
            self, method: str, url: str, headers: Mapping[str, str] | None,
            post_data: Any = None) -> tuple[bytes, int, Mapping[str, str]]:
        from observability.logging import stripe_request_id

        endpoint = stripe_endpoint(url)
        verb = method.upper()
        started = time.perf_counter()
        try:
            body, status, response_headers = super().request(method, url, headers, post_data)
        except stripe.APIConnectionError:
            STRIPE_REQUESTS.inc(method=verb, endpoint=endpoint, status="network_error")
            log.warning("Stripe %s %s got no answer (network error).", verb, endpoint)
            raise
        seconds = time.perf_counter() - started
        STRIPE_REQUESTS.inc(method=verb, endpoint=endpoint, status=str(status))
        STRIPE_REQUEST_DURATION.observe(seconds, method=verb, endpoint=endpoint)
        request_id = _header(response_headers, "request-id")
        stripe_request_id.set(request_id)
        if status in (401, 403, 429) or status >= 500:  # a key without permission, a limit, Stripe down
            log.warning("Stripe %s %s answered %d (request %s).", verb, endpoint, status, request_id)
        else:
            log.debug("Stripe %s %s answered %d in %.0f ms (request %s).", verb, endpoint, status,
                      seconds * 1000, request_id)
        return body, status, response_headers


def count_sync_page(path: str, page: Mapping[str, Any]) -> None:
    """A list page the revenue sync read (parsed once, by the sync: counting it here used to parse
    every page a second time): pages and objects per endpoint, and the newest event seen."""
    global _newest_event_seen
    if page.get("object") != "list":
        return
    endpoint = stripe_endpoint(path)
    data = page.get("data") or []
    SYNC_PAGES.inc(endpoint=endpoint)
    SYNC_OBJECTS.inc(len(data), endpoint=endpoint)
    if endpoint == "/v1/events" and data:
        newest = max(int(e.get("created") or 0) for e in data)
        with _newest_event_lock:
            _newest_event_seen = max(_newest_event_seen, newest)


# --- webhook deliveries --------------------------------------------------------------------------

def observe_webhook(source: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorates a webhook receiver view: every delivery counts as received, then as rejected
    (4xx), failed (5xx), duplicate, ignored or processed (from the JSON answer), with the lag from
    the event's `created` (Stripe events carry one) to now for handled events."""

    def decorate(view: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(view)
        def observed(*args: P.args, **kwargs: P.kwargs) -> R:
            from flask import make_response, request

            WEBHOOK_DELIVERIES.inc(source=source, outcome="received")
            result = view(*args, **kwargs)
            response = make_response(result)
            body = response.get_json(silent=True) if response.is_json else None
            body = body if isinstance(body, dict) else {}
            if response.status_code >= 500:
                outcome = "failed"
            elif response.status_code >= 400:
                outcome = "rejected"
            elif body.get("duplicate") or body.get("status") == "duplicate":
                outcome = "duplicate"
            elif body.get("outcome") == "ignored" or body.get("documents") == []:
                outcome = "ignored"
            else:
                outcome = "processed"
            WEBHOOK_DELIVERIES.inc(source=source, outcome=outcome)
            if outcome in ("processed", "ignored"):
                created = _event_created(request.get_data(cache=True))
                if created is not None:
                    WEBHOOK_LAG.observe(max(time.time() - created, 0.0), source=source)
            return result

        return observed

    return decorate


def _event_created(body: bytes) -> int | None:
    try:
        event = json.loads(body) if body else None
    except ValueError:
        return None
    created = event.get("created") if isinstance(event, dict) else None
    return created if isinstance(created, int) else None


# --- revenue sync ----------------------------------------------------------------------------------

def observe_revenue_sync(run: Callable[P, R]) -> Callable[P, R]:
    """Decorates `sync_revenue(settings, ...)`: runs by outcome, the time of the last success by
    kind, and the lag of the events cursor behind the newest event the run saw."""

    @functools.wraps(run)
    def observed(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            report = run(*args, **kwargs)
        except BaseException:
            SYNC_RUNS.inc(outcome="failed")
            raise
        SYNC_RUNS.inc(outcome="succeeded")
        SYNC_LAST_SUCCESS.set(time.time(), kind=str(getattr(report, "kind", "unknown")))
        settings = args[0] if args else kwargs.get("settings")
        database_url = getattr(settings, "database_url", None)
        cursor = _events_cursor(database_url) if isinstance(database_url, str) else None
        with _newest_event_lock:
            newest = _newest_event_seen
        if cursor is not None and newest:
            SYNC_LAG.set(max(newest - cursor, 0))
        return report

    return observed


def _events_cursor(database_url: str) -> int | None:
    from store.db import unit_of_work
    from store.warehouse import RevenueSyncCursor

    with unit_of_work(database_url) as session:
        cursor = session.get(RevenueSyncCursor, "events")
        return None if cursor is None else int(cursor.value)


# --- state read from the database at scrape time ------------------------------------------------

def _timestamp(value: datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite gives the stored UTC time back without its offset
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


class DatabaseCollector(Collector):
    """Gauges computed from the database on each scrape."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from sqlalchemy import func, select

        from store.db import unit_of_work
        from store.models import InboundEvent, Plan
        from store.warehouse import WAREHOUSE_VERSION, RevenueSyncCursor

        up = GaugeMetricFamily("revops_metrics_database_up", "1 when /metrics could read the database.")
        try:
            with unit_of_work(self.database_url) as session:
                states = session.execute(select(Plan.state, func.count()).group_by(Plan.state)).all()
                received = session.execute(select(InboundEvent.source, func.max(InboundEvent.received_at))
                                           .group_by(InboundEvent.source)).all()
                events = session.get(RevenueSyncCursor, "events")
                version = session.get(RevenueSyncCursor, WAREHOUSE_VERSION)
                cursor_value = None if events is None else int(events.value)
                warehouse_changed = None if version is None or not version.value else _timestamp(version.updated_at)
        except Exception:  # noqa: BLE001 - a scrape must answer; the gauge below says the DB is unreadable
            log.exception("Metrics could not read the database.")
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        plans = GaugeMetricFamily("revops_plans", "Plan rows by state.", labels=["state"])
        for state, count in states:
            plans.add_metric([str(state)], count)
        yield plans
        last = GaugeMetricFamily("revops_webhook_last_received_timestamp_seconds",
                                 "Unix time the last webhook delivery was stored, by source.", labels=["source"])
        for source, at in received:
            stamp = _timestamp(at)
            if stamp is not None:
                last.add_metric([str(source)], stamp)
        yield last
        if cursor_value is not None:
            yield GaugeMetricFamily("revops_revenue_sync_cursor_timestamp_seconds",
                                    "`created` of the newest Stripe event the revenue sync applied from the "
                                    "events feed.", value=cursor_value)
        if warehouse_changed is not None:
            yield GaugeMetricFamily("revops_revenue_reports_data_timestamp_seconds",
                                    "Unix time the warehouse the revenue reports read last changed (reports "
                                    "are cached on it): their freshness is time() minus this.",
                                    value=warehouse_changed)


def exposition(database_url: str) -> bytes:
    """What `/metrics` serves: the process's counters and the database's state."""
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(DatabaseCollector(database_url))
    return prometheus_client.generate_latest() + prometheus_client.generate_latest(scrape)


CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST


# --- the worker: Temporal's own metrics, and ours beside them -----------------------------------

def install_worker_metrics(settings: Settings) -> bool:
    """Serve the Temporal SDK's metrics (and ours, through its meter) at `WORKER_METRICS_ADDRESS`.
    Must run before the worker connects: a client takes the runtime that is the default then."""
    address = getattr(settings, "worker_metrics_address", "")
    if not address:
        return False
    from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

    runtime = Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(
        bind_address=address, counters_total_suffix=True, durations_as_seconds=True,
        histogram_bucket_overrides={name: list(buckets) for name, buckets in WORKER_HISTOGRAMS.items()})))
    Runtime.set_default(runtime, error_if_already_set=False)
    attach_temporal_meter(runtime.metric_meter)
    log.info("Worker metrics (Temporal SDK and revops) are served at http://%s/metrics", address)
    return True
