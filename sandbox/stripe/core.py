"""The sandbox engine: state + lock + clock + events + webhook dispatch + persistence.

Handlers run under one lock: the sandbox is a test double, so simple serial consistency beats
throughput (and it is what makes "exactly one object after a lost response" easy to guarantee).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import stripe

from . import store, versions
from .clock import Clock
from .faults import Faults
from .store import Disk, Obj, State
from .webhooks import Dispatcher, event_payload, matches

log = logging.getLogger(__name__)

API_VERSION: str = stripe.api_version
EVENT_RETENTION = 30 * 86400
IDEMPOTENCY_TTL = 24 * 3600

DueFn = Callable[["Sandbox", Obj], int | None]
ProcessFn = Callable[["Sandbox", Obj, int], None]
# object type -> (priority, when it next has work, do the work). Lower priority runs first at an
# instant: schedules move subscriptions before those renew, and renewals make invoices.
_timers: dict[str, tuple[int, DueFn, ProcessFn]] = {}


def timer(kind: str, priority: int, due: DueFn) -> Callable[[ProcessFn], ProcessFn]:
    """Register time-driven behaviour for objects of `kind` that are in `state.watch`."""

    def deco(fn: ProcessFn) -> ProcessFn:
        _timers[kind] = (priority, due, fn)
        return fn

    return deco


class RequestCounter:
    """API requests served (not `/_sandbox` controls), with when the first and last arrived, on
    this process's monotonic clock: how a test or benchmark sees the pace a client really kept,
    on the server's side of the wire (`GET /_sandbox/requests`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.count = 0
            self.by_method: dict[str, int] = {}
            self.first: float | None = None
            self.last: float | None = None

    def record(self, method: str) -> None:
        now = time.monotonic()
        with self._lock:
            self.count += 1
            self.by_method[method] = self.by_method.get(method, 0) + 1
            if self.first is None:
                self.first = now
            self.last = now

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {"requests": self.count, "by_method": dict(self.by_method), "first": self.first,
                    "last": self.last}


class Sandbox:
    def __init__(self, *, state_file: Path | None = None, seed_catalog: bool = True) -> None:
        self.lock = threading.RLock()
        self.state_file = Path(state_file) if state_file else None
        self.seed_catalog = seed_catalog
        self.disk = Disk(self.state_file) if self.state_file else None
        self.state = self._load() or State()
        self.clock = Clock(self.state.clock_offset)
        self.faults = Faults()
        self.requests = RequestCounter()
        self._saves = 0
        self._settled: tuple[int, int, int, int, int] | None = None  # _state_mark() when last settled
        self._next_due = 0  # the earliest instant anything watched was due then
        self.ctx = threading.local()
        self.dispatcher = Dispatcher(self._delivery_lookup, self._delivery_done)
        if seed_catalog:
            self._seed()

    # ---- time ---------------------------------------------------------------------------------

    def now(self) -> int:
        return self.clock.now()

    def catch_up(self, *, reading: bool = False) -> None:
        """Run whatever became due as real time passed (called before each request).

        Finding what is due asks every watched object (thousands of subscriptions and invoices in
        a seeded sandbox) for its next instant. A read between two writes would find the same
        answers, so for reads (`reading=True`) the earliest instant found last time is kept: while
        nothing was saved since and the clock has not reached it, there is nothing to run."""
        with self.lock:
            now = self.now()
            if reading and self._settled == self._state_mark() and now < self._next_due:
                return
            self.run_until(now)

    def _state_mark(self) -> tuple[int, int, int, int, int]:
        """Changes whenever something may have changed what is due: a save (every write ends with
        one), a new or removed object, a moved clock, a reset."""
        return (id(self.state), self.state.seq, dict.__len__(self.state.objects), self.clock.offset, self._saves)

    def advance(self, *, seconds: int | None = None, to: int | None = None) -> int:
        with self.lock:
            now = self.now()
            target = to if to is not None else now + int(seconds or 0)
            if target < now:
                raise ValueError("the sandbox clock only moves forward")
            self.run_until(target)
            self.clock.set_to(target)
            self.state.clock_offset = self.clock.offset
            self.save()
            return target

    def _due(self) -> list[tuple[int, int, int, str]]:
        out = []
        objects = self.state.objects
        # Due functions only read: what they look at need not be compared at the next save.
        tracking, objects.tracking = objects.tracking, False
        try:
            for obj_id in list(self.state.watch):
                obj = objects.peek(obj_id)
                timer_ = _timers.get(obj["object"]) if obj else None
                when = timer_[1](self, obj) if timer_ and obj else None
                if when is None or timer_ is None or obj is None:
                    self.state.watch.discard(obj_id)
                    continue
                out.append((when, timer_[0], obj["_seq"], obj_id))
        finally:
            objects.tracking = tracking
        return out

    def run_until(self, target: int) -> None:
        # Step from one due instant to the next so each renewal/finalization sees its own "now".
        for _ in range(100_000):
            every = self._due()
            due = [d for d in every if d[0] <= target]
            if not due:
                later = min((d[0] for d in every), default=None)
                break
            instant = min(d[0] for d in due)
            self.clock.frozen = instant
            try:
                for _when, _prio, _seq, obj_id in sorted(d for d in due if d[0] <= instant):
                    obj = self.state.objects.get(obj_id)
                    if obj is None:
                        continue
                    _prio_, due_fn, process = _timers[obj["object"]]
                    when = self._untracked(due_fn, obj)
                    if when is not None and when <= instant:
                        process(self, obj, instant)
            finally:
                self.clock.frozen = None
        else:  # pragma: no cover - a bug guard, not a behaviour
            raise RuntimeError("sandbox scheduler did not settle")
        self._prune_events(target)
        self._next_due = later if later is not None else 2**62
        self._settled = self._state_mark()

    def _untracked(self, due_fn: DueFn, obj: Obj) -> int | None:
        objects = self.state.objects
        tracking, objects.tracking = objects.tracking, False
        try:
            return due_fn(self, obj)
        finally:
            objects.tracking = tracking

    def watch(self, obj: Obj) -> None:
        self.state.watch.add(obj["id"])

    def _prune_events(self, now: int) -> None:
        ids = self.state.order.get("event", [])
        cutoff = now - EVENT_RETENTION
        n = 0
        while n < len(ids) and self.state.objects.peek(ids[n])["created"] < cutoff:  # type: ignore[index]
            n += 1
        if n:
            for eid in ids[:n]:
                self.state.objects.pop(eid, None)
            del ids[:n]

    # ---- events -------------------------------------------------------------------------------

    def emit(self, event_type: str, obj: Obj, previous: dict[str, Any] | None = None) -> Obj:
        # Stored in the current shape; rendered in older versions when read (versions.py).
        data: dict[str, Any] = {"object": store.render(self.state, obj)}
        if previous is not None:
            data["previous_attributes"] = previous
        endpoints = [
            we
            for we in self.state.all("webhook_endpoint")
            if not we.get("deleted") and we["status"] == "enabled" and matches(we["enabled_events"], event_type)
        ]
        deliver = self.state.webhooks_enabled and bool(endpoints)
        event = self.state.add(
            {
                "id": store.new_id("evt_"),
                "object": "event",
                # The account's default version now: the version this event renders in.
                "api_version": self.state.default_api_version,
                "created": self.now(),
                "data": data,
                "livemode": False,
                "pending_webhooks": len(endpoints) if deliver else 0,
                "request": {
                    "id": getattr(self.ctx, "request_id", None),
                    "idempotency_key": getattr(self.ctx, "idempotency_key", None),
                },
                "type": event_type,
            }
        )
        if deliver:
            for we in endpoints:
                self.dispatcher.enqueue(we["id"], event["id"])
        return event

    @contextlib.contextmanager
    def tracking(self, obj: Obj, event_type: str | None) -> Iterator[None]:
        """Emit `event_type` with `previous_attributes` if the body changed the object."""
        before = store.render(self.state, obj)
        yield
        if event_type is None:
            return
        after = store.render(self.state, obj)
        previous = diff(before, after)
        if previous:
            self.emit(event_type, obj, previous)

    def _delivery_lookup(self, endpoint_id: str, event_id: str) -> tuple[str, str, str, int] | None:
        with self.lock:
            we = self.state.objects.peek(endpoint_id)
            ev = self.state.objects.peek(event_id)
            if we is None or ev is None or we.get("deleted"):
                return None
            # An endpoint without its own api_version gets the event's (the account default then).
            payload = versions.render_event(self.state, ev, we.get("api_version"))
            return we["url"], we["_secret"], event_payload(payload), ev["created"]

    def _delivery_done(self, event_id: str, ok: bool) -> None:
        with self.lock:
            ev = self.state.objects.get(event_id)
            if ev is not None and ev["pending_webhooks"] > 0:
                ev["pending_webhooks"] -= 1

    # ---- persistence & lifecycle -----------------------------------------------------------------

    def _load(self) -> State | None:
        if self.disk is None:
            return None
        try:
            state = self.disk.load()
        except (sqlite3.DatabaseError, ValueError, KeyError, TypeError) as e:
            log.warning("ignoring unreadable sandbox state file %s: %s", self.disk.path, e)
            return None
        if state is not None:
            self._forget_expired_keys(state)
        return state

    def _forget_expired_keys(self, state: State) -> None:
        # Stripe may forget keys after 24 h; dropping them on start keeps the table from growing.
        now = Clock(state.clock_offset).now()
        expired = [k for k, v in state.idempotency.items() if v["at"] + IDEMPOTENCY_TTL < now]
        for key in expired:
            del state.idempotency[key]
        if expired and self.disk is not None:
            self.disk.forget_idempotency(expired)

    def save(self) -> None:
        """Write what this request changed (one SQLite transaction); see store.Disk."""
        self._saves += 1
        if self.disk is None:
            self.state.objects.touched.clear()
            self.state.objects.removed.clear()
            self.state.idempotency.added.clear()
            return
        self.state.clock_offset = self.clock.offset
        self.disk.save(self.state)

    def _seed(self) -> None:
        from .seed import load_catalog

        with self.lock:
            load_catalog(self)
            self.save()

    def reset(self) -> None:
        with self.lock:
            self.dispatcher.clear()
            self.state = State()
            self.clock = Clock(0)
            self.faults.clear()
            if self.disk is not None:
                self.disk.replace(self.state)
            if self.seed_catalog:
                self._seed()
            self.save()

    def close(self) -> None:
        self.dispatcher.stop()
        with self.lock:
            self.save()
            if self.disk is not None:
                self.disk.close()
                self.disk = None


def diff(before: Any, after: Any) -> dict[str, Any]:
    """Stripe's `previous_attributes`: old values of what changed (nested into hashes like metadata)."""
    out: dict[str, Any] = {}
    for key in set(before) | set(after):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict) and old.get("object") != "list":
            out[key] = diff(old, new) or old
            # A key absent before shows as "" in Stripe's previous_attributes for hashes.
            for k in set(new) - set(old):
                out[key][k] = ""
        else:
            out[key] = old
    return out
