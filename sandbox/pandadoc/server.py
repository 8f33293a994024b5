"""The PandaDoc sandbox: the few PandaDoc API endpoints the project uses, plus a way to create and
complete documents that delivers signed completion webhooks like PandaDoc does.

PandaDoc API (authorised with `Authorization: API-Key …`):
  GET  /public/v1/documents/{id}/details
  GET  /public/v1/documents?status=2&completed_from=ISO   (status 2 = completed)
Sandbox controls (no auth, loopback only):
  POST /_sandbox/documents                     create from the demo order form; body = overrides
  POST /_sandbox/documents/{id}/complete       {"send_webhook": true}: mark completed, deliver webhook
  POST /_sandbox/documents/{id}/edit           {"values": {...}, "complete": true, "send_webhook": true}:
                                               edit a completed document (back to draft, changed,
                                               completed again: a second completion of the same id)
  POST /_sandbox/documents/{id}/redeliver      resend the last delivery with the same event id
  POST /_sandbox/faults                        {"fail_details": N, "status": 500}
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import string
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from sandbox.pandadoc.template import demo_values, details

_ALPHABET = string.ascii_letters + string.digits
COMPLETED = "document.completed"


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def sign(body: bytes, key: str) -> str:
    """PandaDoc's webhook signature: hex HMAC-SHA256 of the raw body with the shared key."""
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class Delivery:
    event_id: str
    body: bytes
    status: int | None = None
    error: str | None = None


@dataclass
class SandboxState:
    webhook_url: str | None = None
    webhook_key: str | None = None
    api_key: str | None = None
    state_file: str | None = None
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    deliveries: dict[str, Delivery] = field(default_factory=dict)
    fail_details: int = 0
    fail_status: int = 500
    details_requests: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)

    # ---- documents ---------------------------------------------------------------------------
    def create_document(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        values = {**demo_values(_now().date()), **(overrides or {})}
        document_id = "".join(secrets.choice(_ALPHABET) for _ in range(22))
        now = _iso(_now())
        with self.lock:
            self.documents[document_id] = {"id": document_id, "values": values, "status": "document.draft",
                                           "date_created": now, "date_modified": now, "date_completed": None}
            self._save()
        return self.details(document_id)

    def details(self, document_id: str) -> dict[str, Any]:
        with self.lock:
            doc = self.documents[document_id]
            return details(document_id, doc["values"], status=doc["status"], created=doc["date_created"],
                           modified=doc["date_modified"], completed=doc["date_completed"])

    def complete(self, document_id: str, *, send_webhook: bool = True) -> dict[str, Any]:
        now = _iso(_now())
        with self.lock:
            doc = self.documents[document_id]
            doc.update(status=COMPLETED, date_modified=now, date_completed=doc["date_completed"] or now)
            self._save()
        result: dict[str, Any] = {"document": self.details(document_id), "webhook": None}
        if send_webhook:
            result["webhook"] = self.deliver(document_id)
        return result

    def edit(self, document_id: str, overrides: dict[str, Any], *, complete: bool = True,
             send_webhook: bool = True) -> dict[str, Any]:
        """Edit a document after it was completed, as PandaDoc allows: it returns to draft (the
        signatures no longer hold), takes the changes and, signed again, completes a second time
        under the same id with a new completion date and a new webhook delivery."""
        now = _iso(_now())
        with self.lock:
            doc = self.documents[document_id]
            doc["values"] = {**doc["values"], **overrides}
            doc.update(status="document.draft", date_modified=now, date_completed=None)
            self._save()
        if not complete:
            return {"document": self.details(document_id), "webhook": None}
        return self.complete(document_id, send_webhook=send_webhook)

    def list_documents(self, status: str | None, completed_from: str | None) -> list[dict[str, Any]]:
        since = _parse_time(completed_from) if completed_from else None
        wanted = {"2": COMPLETED}.get(status or "", status)
        out = []
        with self.lock:
            for doc in self.documents.values():
                if wanted and doc["status"] != wanted:
                    continue
                if since is not None and (doc["date_completed"] is None or _parse_time(doc["date_completed"]) < since):
                    continue
                out.append({"id": doc["id"], "name": doc["values"]["name"], "status": doc["status"],
                            "date_created": doc["date_created"], "date_modified": doc["date_modified"],
                            "date_completed": doc["date_completed"], "expiration_date": None, "version": "2"})
        return out

    # ---- webhooks ----------------------------------------------------------------------------
    def deliver(self, document_id: str) -> dict[str, Any]:
        """Send a signed `document_state_changed` delivery for the document's current status."""
        info = self.details(document_id)
        data = {k: info[k] for k in ("id", "name", "status", "date_created", "date_modified", "metadata")}
        body = json.dumps([{"event": "document_state_changed", "data": data}]).encode()
        delivery = Delivery(event_id=str(uuid.uuid4()), body=body)
        with self.lock:
            self.deliveries[document_id] = delivery
        return self._post(delivery)

    def redeliver(self, document_id: str) -> dict[str, Any]:
        """PandaDoc retries with the same body and the same `X-PandaDoc-Webhook-Event-Id`."""
        with self.lock:
            delivery = self.deliveries[document_id]
        return self._post(delivery)

    def _post(self, delivery: Delivery) -> dict[str, Any]:
        if not self.webhook_url or not self.webhook_key:
            delivery.error = "No webhook URL or key is configured."
            return {"event_id": delivery.event_id, "status": None, "error": delivery.error}
        url = f"{self.webhook_url}?signature={sign(delivery.body, self.webhook_key)}"
        try:
            response = requests.post(url, data=delivery.body, timeout=20, headers={
                "Content-Type": "application/json", "X-PandaDoc-Webhook-Event-Id": delivery.event_id})
            delivery.status, delivery.error = response.status_code, None
        except requests.RequestException as exc:
            delivery.status, delivery.error = None, str(exc)
        return {"event_id": delivery.event_id, "status": delivery.status, "error": delivery.error}

    # ---- faults and persistence --------------------------------------------------------------
    def take_fault(self) -> int | None:
        with self.lock:
            self.details_requests += 1
            if self.fail_details > 0:
                self.fail_details -= 1
                return self.fail_status
        return None

    def _save(self) -> None:
        if self.state_file:
            Path(self.state_file).write_text(json.dumps({"documents": self.documents}))

    def load(self) -> None:
        if self.state_file and Path(self.state_file).is_file():
            self.documents = json.loads(Path(self.state_file).read_text()).get("documents", {})


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _handler(state: SandboxState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "PandaDocSandbox/1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass

        def _send(self, status: int, payload: Any) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json_body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            if not length:
                return {}
            value = json.loads(self.rfile.read(length) or b"{}")
            return value if isinstance(value, dict) else {}

        def _authorised(self) -> bool:
            header = self.headers.get("Authorization", "")
            if not header.startswith("API-Key "):
                self._send(401, {"type": "authentication_error",
                                 "detail": "Authentication credentials were not provided."})
                return False
            given = header.removeprefix("API-Key ").strip()
            if not given or (state.api_key and not hmac.compare_digest(given, state.api_key)):
                self._send(401, {"type": "authentication_error", "detail": "Invalid API key."})
                return False
            return True

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            parts = urlsplit(self.path)
            segments = [s for s in parts.path.split("/") if s]
            if segments[:3] != ["public", "v1", "documents"]:
                self._send(404, {"type": "not_found", "detail": "Not found."})
                return
            if not self._authorised():
                return
            if len(segments) == 3:
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                results = state.list_documents(query.get("status"), query.get("completed_from"))
                count = max(1, min(100, int(query.get("count") or 50)))
                page = max(1, int(query.get("page") or 1))
                self._send(200, {"results": results[(page - 1) * count: page * count]})
                return
            if len(segments) == 5 and segments[4] == "details":
                fault = state.take_fault()
                if fault is not None:
                    self._send(fault, {"type": "server_error", "detail": "Injected sandbox fault."})
                    return
                if segments[3] not in state.documents:
                    self._send(404, {"type": "not_found", "detail": f"Document {segments[3]} not found."})
                    return
                self._send(200, state.details(segments[3]))
                return
            self._send(404, {"type": "not_found", "detail": "Not found."})

        def do_POST(self) -> None:  # noqa: N802 - http.server naming
            segments = [s for s in urlsplit(self.path).path.split("/") if s]
            try:
                body = self._json_body()
            except ValueError:
                self._send(400, {"detail": "The body is not JSON."})
                return
            if segments == ["_sandbox", "documents"]:
                self._send(201, state.create_document(body))
                return
            if segments == ["_sandbox", "faults"]:
                with state.lock:
                    state.fail_details = int(body.get("fail_details", 0))
                    state.fail_status = int(body.get("status", 500))
                self._send(200, {"fail_details": state.fail_details})
                return
            if len(segments) == 4 and segments[:2] == ["_sandbox", "documents"]:
                document_id, action = segments[2], segments[3]
                if document_id not in state.documents:
                    self._send(404, {"detail": f"Document {document_id} not found."})
                    return
                if action == "edit":
                    values = body.get("values")
                    if not isinstance(values, dict):
                        self._send(400, {"detail": "The body needs \"values\": an object of changes."})
                        return
                    self._send(200, state.edit(document_id, values, complete=bool(body.get("complete", True)),
                                               send_webhook=bool(body.get("send_webhook", True))))
                    return
                if action == "complete":
                    self._send(200, state.complete(document_id, send_webhook=bool(body.get("send_webhook", True))))
                    return
                if action == "redeliver" and document_id in state.deliveries:
                    self._send(200, state.redeliver(document_id))
                    return
            self._send(404, {"detail": "Not found."})

    return Handler


def _make_server(host: str, port: int, state: SandboxState) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), _handler(state))
    server.daemon_threads = True
    return server


def serve(host: str, port: int, *, state_file: str | None = None, webhook_url: str | None = None,
          webhook_key: str | None = None, api_key: str | None = None) -> None:
    """Serve until interrupted (what `revops sandbox pandadoc` runs). The API key defaults to
    `PANDADOC_API_KEY` from the environment; without one any non-empty key is accepted."""
    state = SandboxState(webhook_url=webhook_url, webhook_key=webhook_key,
                         api_key=api_key or os.environ.get("PANDADOC_API_KEY") or None, state_file=state_file)
    state.load()
    server = _make_server(host, port, state)
    print(f"PandaDoc sandbox on http://{host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


class SandboxHandle:
    """A sandbox running on a thread of this process, with helpers for tests."""

    def __init__(self, server: ThreadingHTTPServer, state: SandboxState, thread: threading.Thread) -> None:
        self._server, self.state, self._thread = server, state, thread
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        self.api_key = state.api_key or ""

    def create_document(self, **overrides: Any) -> dict[str, Any]:
        return self.state.create_document(overrides)

    def complete(self, document_id: str, *, send_webhook: bool = True) -> dict[str, Any]:
        return self.state.complete(document_id, send_webhook=send_webhook)

    def redeliver(self, document_id: str) -> dict[str, Any]:
        return self.state.redeliver(document_id)

    def edit_document(self, document_id: str, *, complete: bool = True, send_webhook: bool = True,
                      **overrides: Any) -> dict[str, Any]:
        return self.state.edit(document_id, overrides, complete=complete, send_webhook=send_webhook)

    def fail_next_details(self, times: int, status: int = 500) -> None:
        with self.state.lock:
            self.state.fail_details, self.state.fail_status = times, status

    @property
    def details_requests(self) -> int:
        return self.state.details_requests

    def configure_webhook(self, url: str | None, key: str | None) -> None:
        self.state.webhook_url, self.state.webhook_key = url, key

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def start_in_thread(port: int = 0, *, host: str = "127.0.0.1", api_key: str | None = None,
                    webhook_url: str | None = None, webhook_key: str | None = None,
                    state_file: str | None = None) -> SandboxHandle:
    state = SandboxState(webhook_url=webhook_url, webhook_key=webhook_key,
                         api_key=api_key or "pd_" + secrets.token_hex(16), state_file=state_file)
    state.load()
    server = _make_server(host, port, state)
    thread = threading.Thread(target=server.serve_forever, name="pandadoc-sandbox", daemon=True)
    thread.start()
    return SandboxHandle(server, state, thread)
