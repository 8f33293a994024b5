"""Seeded, reproducible fault injection (`POST /_sandbox/faults`).

Rules (JSON), each optionally scoped by `method` (exact) and `path` (prefix) or `path_regex`:
  {"error_rate": 0.5, "status": 500}          fail before the request runs (nothing stored, so a
                                              same-key retry runs it); optional "should_retry"
                                              true/false sets `Stripe-Should-Retry`
  {"server_error": "first" | 0.3}             the request began executing and failed: nothing is
                                              written, the 500 is stored as the Idempotency-Key's
                                              first response and replayed to every same-key retry,
                                              with `Stripe-Should-Retry: false` (or "should_retry")
  {"rate_limit": true, "retry_after": 1}      429 rate_limit with Retry-After (optional "rate")
  {"latency_ms": 200}                         delay the response (optional "rate")
  {"lost_response": "first" | 0.3, "mode": "500" | "drop"}
      the write happens and its response is stored for idempotent replay, but the client sees a
      500 (mode "500") or a closed connection (mode "drop"). "first" loses the first attempt of
      each distinct write (per Idempotency-Key); a number loses that fraction of writes.
Draws come from one `random.Random(seed)` in request order, so a run is reproducible.
"""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass, field
from typing import Any

WRITE_METHODS = frozenset({"POST", "DELETE"})


class FaultConfigError(ValueError):
    pass


@dataclass
class Rule:
    method: str | None = None
    path: str | None = None
    path_regex: re.Pattern[str] | None = None
    error_rate: float = 0.0
    status: int = 500
    error: dict[str, Any] | None = None
    rate_limit: bool = False
    retry_after: float | None = None
    latency_ms: int = 0
    rate: float = 1.0
    lost_response: str | float | None = None
    mode: str = "500"
    server_error: str | float | None = None
    should_retry: bool | None = None

    def applies(self, method: str, path: str) -> bool:
        if self.method and self.method.upper() != method:
            return False
        if self.path and not path.startswith(self.path):
            return False
        return not (self.path_regex and not self.path_regex.search(path))

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Rule:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(raw) - known
        if unknown:
            raise FaultConfigError(f"unknown fault rule keys: {sorted(unknown)}")
        data = dict(raw)
        if data.get("path_regex") is not None:
            data["path_regex"] = re.compile(data["path_regex"])
        rule = cls(**data)
        if rule.mode not in ("500", "drop"):
            raise FaultConfigError("mode must be '500' or 'drop'")
        for name in ("lost_response", "server_error"):
            value = getattr(rule, name)
            if isinstance(value, str) and value != "first":
                raise FaultConfigError(f"{name} must be 'first' or a rate between 0 and 1, not {value!r}")
        return rule


@dataclass
class Decision:
    latency_ms: int = 0
    rate_limit: Rule | None = None
    error: Rule | None = None
    lose: Rule | None = None
    server_error: Rule | None = None


@dataclass
class Faults:
    seed: int | None = None
    rules: list[Rule] = field(default_factory=list)
    _rng: random.Random = field(default_factory=random.Random)
    _seen_writes: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    injected: int = 0

    def configure(self, body: dict[str, Any]) -> None:
        rules = [Rule.parse(r) for r in body.get("rules", [])]
        with self._lock:
            self.seed = body.get("seed")
            self.rules = rules
            self._rng = random.Random(self.seed)
            self._seen_writes = set()
            self.injected = 0

    def clear(self) -> None:
        self.configure({})

    def describe(self) -> dict[str, Any]:
        return {"seed": self.seed, "rules": len(self.rules), "injected": self.injected}

    def decide(self, method: str, path: str, write_key: str | None) -> Decision:
        """What happens to this request before it runs (latency, 429, error) and after (loss)."""
        d = Decision()
        if not self.rules:
            return d
        with self._lock:
            for rule in self.rules:
                if not rule.applies(method, path):
                    continue
                if rule.latency_ms and self._hit(rule.rate):
                    d.latency_ms += rule.latency_ms
                if rule.rate_limit and d.rate_limit is None and self._hit(rule.rate):
                    d.rate_limit = rule
                if rule.error_rate and d.error is None and self._hit(rule.error_rate):
                    d.error = rule
            # Only a request that will actually run can fail while running or have its response lost.
            for rule in self.rules if not (d.rate_limit or d.error) else ():
                if not rule.applies(method, path) or method not in WRITE_METHODS:
                    continue
                if rule.server_error is not None and d.server_error is None:
                    if self._draw(rule.server_error, write_key, "server_error"):
                        d.server_error = rule
                if rule.lost_response is not None and d.lose is None and d.server_error is None:
                    if self._draw(rule.lost_response, write_key, "lost_response"):
                        d.lose = rule
            if d.rate_limit or d.error or d.lose or d.server_error:
                self.injected += 1
        return d

    def _draw(self, value: str | float, write_key: str | None, kind: str) -> bool:
        """"first": the first attempt of each distinct write (per key and fault kind); else a rate."""
        if value == "first":
            seen = f"{kind}:{write_key}"
            if write_key is None or seen in self._seen_writes:
                return False
            self._seen_writes.add(seen)
            return True
        return self._hit(float(value))

    def _hit(self, rate: float) -> bool:
        return rate >= 1.0 or self._rng.random() < rate
