"""`/_sandbox/*` control routes (no API key needed): clock, webhooks, faults, reset, disputes.

  GET  /_sandbox/clock                      -> {"now": unix}
  POST /_sandbox/clock/advance              {"seconds": n} | {"to": unix} -> {"now": unix}
  GET  /_sandbox/webhooks                   -> {"enabled": bool, "deliveries": [...]}
  POST /_sandbox/webhooks                   {"enabled": bool} -> {"enabled": bool}
  POST /_sandbox/webhooks/register          {"url": ..., "secret"?: "whsec_..."} -> webhook_endpoint incl. secret
  POST /_sandbox/reset                      -> {"reset": true}
  GET  /_sandbox/faults                     -> {"seed", "rules", "injected"}
  POST /_sandbox/faults                     {"seed": 1, "rules": [...]} (see faults.py)
  DELETE /_sandbox/faults                   -> clears
  POST /_sandbox/disputes                   {"charge": "ch_...", "amount"?: n, "reason"?: "fraudulent"} -> dispute
  GET  /_sandbox/catalog                    -> the demo catalog ids (catalog.py)
  GET  /_sandbox/account                    -> {"id": "acct_...", "default_api_version": "..."}
  POST /_sandbox/account                    {"default_api_version": "2024-06-20"} -> the same
      the version events are rendered in from now on (Stripe's account setting; see versions.py)
  GET  /_sandbox/requests                   -> {"requests": n, "by_method": {...}, "first": t, "last": t}
      API requests served so far; t on the sandbox process's monotonic clock (seconds)
  DELETE /_sandbox/requests                 -> counts from zero again
Bodies may be JSON or form-encoded.
"""

from __future__ import annotations

import json
from typing import Any

from werkzeug.wrappers import Request

from . import catalog, forms, store
from .core import Sandbox
from .errors import StripeError

Result = tuple[int, dict[str, Any]]


def _body(request: Request) -> dict[str, Any]:
    raw = request.get_data(as_text=True)
    if not raw.strip():
        return {}
    if (request.mimetype or "").endswith("json") or raw.lstrip().startswith("{"):
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ValueError(f"invalid JSON body: {e}") from None
        if not isinstance(data, dict):
            raise ValueError("JSON body must be an object")
        return data
    return forms.decode(raw)


def _int(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an integer") from None


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() in ("1", "true", "yes", "on")
    return bool(value)


def register_webhook(sb: Sandbox, url: str, secret: str | None = None) -> dict[str, Any]:
    from .resources.events import create_endpoint

    with sb.lock:
        # Re-registering the same URL (a restart with a state file) reuses the endpoint.
        existing = [w for w in sb.state.all("webhook_endpoint") if w["url"] == url]
        if existing:
            we = existing[0]
            we["_secret"] = secret or we["_secret"]
            we["status"], we["enabled_events"] = "enabled", ["*"]
        else:
            we = create_endpoint(sb, {"url": url, "enabled_events": ["*"]}, secret=secret)
        sb.save()
        return {**store.render(sb.state, we), "secret": we["_secret"]}


def set_default_api_version(sb: Sandbox, version: str) -> None:
    from .versions import check_account_version

    checked = check_account_version(version)
    with sb.lock:
        sb.state.default_api_version = checked
        sb.save()


def handle_control(sb: Sandbox, request: Request) -> Result:
    path = request.path.rstrip("/")
    method = request.method
    body = _body(request) if method in ("POST", "PUT") else {}
    if path == "/_sandbox/clock" and method == "GET":
        sb.catch_up()
        return 200, {"now": sb.now()}
    if path == "/_sandbox/clock/advance" and method == "POST":
        if "to" in body:
            now = sb.advance(to=_int(body["to"], "to"))
        else:
            now = sb.advance(seconds=_int(body.get("seconds", 0), "seconds"))
        return 200, {"now": now}
    if path == "/_sandbox/webhooks":
        if method == "POST":
            with sb.lock:
                sb.state.webhooks_enabled = _bool(body.get("enabled", True))
                sb.save()
        history = [
            {"endpoint": d.endpoint_id, "event": d.event_id, "attempt": d.attempt, "status": d.status, "error": d.error}
            for d in list(sb.dispatcher.history)
        ]
        return 200, {"enabled": sb.state.webhooks_enabled, "deliveries": history}
    if path == "/_sandbox/webhooks/register" and method == "POST":
        return 200, register_webhook(sb, str(body["url"]), body.get("secret"))
    if path == "/_sandbox/reset" and method == "POST":
        sb.reset()
        return 200, {"reset": True}
    if path == "/_sandbox/faults":
        if method == "POST":
            sb.faults.configure(body)
        elif method == "DELETE":
            sb.faults.clear()
        return 200, sb.faults.describe()
    if path == "/_sandbox/disputes" and method == "POST":
        from .resources.payments import create_dispute

        with sb.lock:
            dispute = create_dispute(
                sb,
                str(body.get("charge", "")),
                amount=_int(body["amount"], "amount") if "amount" in body else None,
                reason=str(body.get("reason", "fraudulent")),
            )
            sb.save()
            return 200, store.render(sb.state, dispute)
    if path == "/_sandbox/requests" and method in ("GET", "DELETE"):
        if method == "DELETE":
            sb.requests.reset()
        return 200, sb.requests.describe()
    if path == "/_sandbox/catalog" and method == "GET":
        return 200, catalog.as_dict()
    if path == "/_sandbox/account" and method in ("GET", "POST"):
        if method == "POST" and "default_api_version" in body:
            set_default_api_version(sb, str(body["default_api_version"]))
        from .resources.accounts import ACCOUNT_ID

        return 200, {"id": ACCOUNT_ID, "default_api_version": sb.state.default_api_version}
    raise StripeError(404, f"Unrecognized sandbox control ({method}: {path}).")
