"""Signed webhook deliveries on a background thread, retried with backoff when the receiver fails."""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

log = logging.getLogger(__name__)

# Real Stripe retries for days; the sandbox keeps the same shape at test speed (seconds).
DEFAULT_BACKOFF = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


def sign(payload: str, secret: str, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def matches(enabled_events: list[str], event_type: str) -> bool:
    return "*" in enabled_events or event_type in enabled_events


@dataclass(order=True)
class _Delivery:
    due: float
    n: int
    endpoint_id: str = field(compare=False)
    event_id: str = field(compare=False)
    attempt: int = field(compare=False, default=1)


@dataclass
class DeliveryRecord:
    endpoint_id: str
    event_id: str
    attempt: int
    status: int | None
    error: str | None
    at: float


class Dispatcher:
    """One worker thread; `lookup` returns (url, secret, payload json, timestamp) or None if gone."""

    def __init__(
        self,
        lookup: Callable[[str, str], tuple[str, str, str, int] | None],
        on_done: Callable[[str, bool], None],
        backoff: tuple[float, ...] = DEFAULT_BACKOFF,
        timeout: float = 5.0,
    ) -> None:
        self._lookup = lookup
        self._on_done = on_done
        self.backoff = backoff
        self.timeout = timeout
        self._queue: list[_Delivery] = []
        self._cv = threading.Condition()
        self._counter = itertools.count()
        self._stopped = False
        self._inflight = 0
        self.history: list[DeliveryRecord] = []
        self._session = requests.Session()
        self._thread = threading.Thread(target=self._run, name="stripe-sandbox-webhooks", daemon=True)
        self._thread.start()

    def enqueue(self, endpoint_id: str, event_id: str) -> None:
        with self._cv:
            heapq.heappush(self._queue, _Delivery(time.monotonic(), next(self._counter), endpoint_id, event_id))
            self._cv.notify()

    def clear(self) -> None:
        with self._cv:
            self._queue.clear()
            self.history.clear()

    def idle(self) -> bool:
        with self._cv:
            return not self._queue and self._inflight == 0

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is queued for immediate delivery (retries later in time still count)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.idle():
                return True
            time.sleep(0.01)
        return False

    def stop(self) -> None:
        with self._cv:
            self._stopped = True
            self._cv.notify_all()
        self._thread.join(timeout=2)
        self._session.close()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._stopped and (not self._queue or self._queue[0].due > time.monotonic()):
                    wait = None if not self._queue else max(0.0, self._queue[0].due - time.monotonic())
                    self._cv.wait(wait)
                if self._stopped:
                    return
                item = heapq.heappop(self._queue)
                self._inflight += 1
            try:
                self._deliver(item)
            finally:
                with self._cv:
                    self._inflight -= 1

    def _deliver(self, item: _Delivery) -> None:
        found = self._lookup(item.endpoint_id, item.event_id)
        if found is None:
            return
        url, secret, payload, _ = found
        ts = int(time.time())  # signatures are checked against the receiver's real clock
        status: int | None = None
        error: str | None = None
        try:
            resp = self._session.post(
                url,
                data=payload.encode(),
                headers={
                    "Content-Type": "application/json; charset=utf-8",
                    "Stripe-Signature": sign(payload, secret, ts),
                    "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                },
                timeout=self.timeout,
            )
            status = resp.status_code
            ok = 200 <= status < 300
        except requests.RequestException as e:
            ok = False
            error = type(e).__name__
        with self._cv:
            record = DeliveryRecord(item.endpoint_id, item.event_id, item.attempt, status, error, time.time())
            self.history.append(record)
            del self.history[:-1000]
        if ok or item.attempt > len(self.backoff):
            self._on_done(item.event_id, ok)
            if not ok:
                log.warning("webhook %s to %s gave up after %d attempts", item.event_id, url, item.attempt)
            return
        delay = self.backoff[item.attempt - 1]
        with self._cv:
            heapq.heappush(
                self._queue,
                _Delivery(
                    time.monotonic() + delay, next(self._counter), item.endpoint_id, item.event_id, item.attempt + 1
                ),
            )
            self._cv.notify()


def event_payload(event: dict[str, Any]) -> str:
    return json.dumps(event, indent=2)
