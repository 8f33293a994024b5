"""`StripeSandbox`: a running sandbox server (from `start_in_thread`) plus test conveniences."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import stripe

if TYPE_CHECKING:
    from .server import SandboxApp


class StripeSandbox:
    api_key = "sk_test_sandbox"

    def __init__(self, url: str, app: SandboxApp, server: Any, thread: threading.Thread) -> None:
        self.url = url
        self.app = app
        self._server = server
        self._thread = thread

    @property
    def engine(self) -> Any:
        return self.app.sandbox

    def client(self, **kw: Any) -> stripe.StripeClient:
        """A real SDK client pointed at this sandbox (`max_network_retries=2` unless given)."""
        kw.setdefault("max_network_retries", 2)
        api_key = kw.pop("api_key", self.api_key)
        base = {"api": self.url, "files": self.url, "connect": self.url, "meter_events": self.url}
        return stripe.StripeClient(api_key, base_addresses=base, **kw)  # type: ignore[arg-type]

    def advance(self, seconds: int) -> int:
        return int(self.engine.advance(seconds=seconds))

    def advance_to(self, when: int) -> int:
        return int(self.engine.advance(to=when))

    def now(self) -> int:
        return int(self.engine.now())

    def set_faults(self, config: dict[str, Any]) -> None:
        self.engine.faults.configure(config)

    def clear_faults(self) -> None:
        self.engine.faults.clear()

    def webhooks_enabled(self, enabled: bool) -> None:
        with self.engine.lock:
            self.engine.state.webhooks_enabled = enabled

    def register_webhook(self, url: str, secret: str | None = None) -> str:
        from .controls import register_webhook

        return str(register_webhook(self.engine, url, secret)["secret"])

    def wait_for_webhooks(self, timeout: float = 10.0) -> bool:
        """Block until queued deliveries were attempted (retries scheduled later are not awaited)."""
        return bool(self.engine.dispatcher.wait_idle(timeout))

    def set_default_api_version(self, version: str) -> None:
        """The account's default API version: events created from now on render in it."""
        from .controls import set_default_api_version

        set_default_api_version(self.engine, version)

    def reset(self) -> None:
        self.engine.reset()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self.engine.close()

    def __enter__(self) -> StripeSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
