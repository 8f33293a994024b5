"""Helpers for sandbox tests: raw HTTP for `/_sandbox/*` and error shapes, a webhook receiver."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

from sandbox.stripe.harness import StripeSandbox

AUTH = {"Authorization": "Bearer sk_test_sandbox"}


def control(sb: StripeSandbox, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    resp = requests.request(method, sb.url + path, json=body, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def raw(sb: StripeSandbox, method: str, path: str, data: Any = None, **kw: Any) -> requests.Response:
    headers = {**AUTH, **kw.pop("headers", {})}
    return requests.request(method, sb.url + path, data=data, headers=headers, timeout=10, **kw)


@dataclass
class Receiver:
    url: str
    received: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    attempts: int = 0
    fail_first: int = 0  # answer 500 to this many attempts before accepting

    def wait_for(self, pred: Callable[[list[tuple[bytes, dict[str, str]]]], bool], timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred(self.received):
                return
            time.sleep(0.02)
        raise AssertionError(f"webhook condition not met; got {len(self.received)} deliveries")

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for body, _ in self.received]


@contextmanager
def webhook_receiver(fail_first: int = 0) -> Iterator[Receiver]:
    receiver = Receiver("", fail_first=fail_first)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server API
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            receiver.attempts += 1
            if receiver.attempts <= receiver.fail_first:
                self.send_response(500)
                self.end_headers()
                return
            receiver.received.append((body, {k: v for k, v in self.headers.items()}))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/webhooks/stripe"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
