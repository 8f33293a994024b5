"""WSGI app, server entry points and the test harness.

`create_app()` builds the app; `serve()` blocks (used by `revops sandbox` / `make dev`);
`start_in_thread()` returns a `StripeSandbox` handle for tests.
"""

from __future__ import annotations

import base64
import binascii
import gc
import hashlib
import json
import logging
import socket
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from . import forms, params, resources, store, versions
from .core import API_VERSION, Sandbox
from .errors import StripeError, api_error, invalid, rate_limited
from .faults import FaultConfigError
from .faults import Rule as FaultRule
from .harness import StripeSandbox
from .httpserver import DROPPED, SandboxHTTPServer
from .router import ROUTES, Req, Route

log = logging.getLogger(__name__)

IDEMPOTENCY_TTL = 24 * 3600
WRITE_METHODS = frozenset({"POST", "DELETE"})

__all__ = ["StripeSandbox", "SandboxApp", "create_app", "serve", "start_in_thread"]

resources.load()


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    resp = Response(json.dumps(body), status=status, mimetype="application/json")
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


class SandboxApp:
    """The WSGI application. `sandbox` is the engine (state, clock, events, webhooks)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.url_map = Map([Rule(r.path, endpoint=i, methods=[r.method]) for i, r in enumerate(ROUTES)])
        # (api key, Idempotency-Key) of writes being processed: Stripe answers a second request with
        # the same key while the first is still running with a 409, not a wait.
        self._inflight: set[tuple[str, str]] = set()
        self._inflight_lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        response = self.dispatch(request)
        return response(environ, start_response)

    # ---- dispatch ---------------------------------------------------------------------------

    def dispatch(self, request: Request) -> Response:
        request_id = store.new_id("req_", 14)
        path = request.path
        if path.startswith("/_sandbox"):
            return self._control(request)
        self.sandbox.requests.record(request.method)
        try:
            self._authenticate(request)
            self._check_version(request)
            self._check_account(request)
        except StripeError as e:
            return self._error(e, request_id)

        method = request.method
        body = request.get_data(as_text=True) if method == "POST" else ""
        idem_key = request.headers.get("Idempotency-Key") if method == "POST" else None
        if idem_key is not None and len(idem_key) > 255:
            return self._error(
                invalid("Idempotency keys can be at most 255 characters long.", param="Idempotency-Key"), request_id
            )
        inflight = (self._api_key(request) or "", idem_key) if idem_key is not None else None
        if inflight is not None and not self._begin(inflight):
            return self._error(concurrent_key(idem_key or ""), request_id)
        try:
            write_key = None
            if method in WRITE_METHODS:
                write_key = idem_key or hashlib.sha256(f"{method} {path} {body}".encode()).hexdigest()
            decision = self.sandbox.faults.decide(method, path, write_key)
            if decision.latency_ms:
                time.sleep(decision.latency_ms / 1000)
            if decision.rate_limit is not None:
                return self._error(rate_limited(decision.rate_limit.retry_after), request_id)
            if decision.error is not None:
                err = self._fault_error(decision.error.status, decision.error.error)
                if decision.error.should_retry is not None:
                    err.headers["Stripe-Should-Retry"] = "true" if decision.error.should_retry else "false"
                return self._error(err, request_id)

            response = self._execute(request, request_id, body, idem_key, decision.server_error)
        finally:
            if inflight is not None:
                self._end(inflight)

        lose = decision.lose
        if lose is not None:
            if lose.mode == "drop":
                sock = request.environ.get("sandbox.socket") or request.environ.get("werkzeug.socket")
                request.environ[DROPPED] = True
                if isinstance(sock, socket.socket):
                    # Close without a response: the client sees a connection error, the write stands.
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                return Response(b"", status=500)
            return self._error(api_error(500), request_id)
        return response

    def _begin(self, key: tuple[str, str]) -> bool:
        """Claim an idempotency key for this request; False if another request holds it now."""
        with self._inflight_lock:
            if key in self._inflight:
                return False
            self._inflight.add(key)
            return True

    def _end(self, key: tuple[str, str]) -> None:
        with self._inflight_lock:
            self._inflight.discard(key)

    def _execute(
        self, request: Request, request_id: str, body: str, idem_key: str | None, server_error: FaultRule | None = None
    ) -> Response:
        sb = self.sandbox
        method, path = request.method, request.path
        try:
            adapter = self.url_map.bind("sandbox")
            endpoint, args = adapter.match(path, method=method)
        except (NotFound, MethodNotAllowed):
            return self._error(
                StripeError(
                    404,
                    f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can "
                    "help at https://support.stripe.com/.",
                ),
                request_id,
            )
        route = ROUTES[endpoint]
        fingerprint = f"{method} {path} {body}"
        api_key = self._api_key(request) or ""
        with sb.lock:
            if idem_key is not None:
                cached = sb.state.idempotency.get((api_key, idem_key))
                if cached is not None and cached["at"] + IDEMPOTENCY_TTL < sb.now():
                    cached = None
                if cached is not None:
                    if cached["fingerprint"] != fingerprint:
                        return self._error(
                            StripeError(
                                400,
                                "Keys for idempotent requests can only be used with the same parameters they were "
                                f"first used with. Try using a key other than '{idem_key}' if you meant to execute a "
                                "different request.",
                                type="idempotency_error",
                            ),
                            request_id,
                        )
                    headers = {**cached["headers"], "Idempotent-Replayed": "true", "Request-Id": request_id}
                    return Response(cached["body"], status=cached["status"], headers=headers)
            sb.ctx.request_id = request_id
            sb.ctx.idempotency_key = idem_key
            sb.ctx.api_key = api_key
            try:
                sb.catch_up(reading=method not in WRITE_METHODS)
                if server_error is not None:
                    # The request began executing and failed inside Stripe: nothing is written, but
                    # the 500 is the key's first response and is what every same-key retry gets.
                    status, payload, executed = 500, api_error(500).body(request_id), True
                else:
                    status, payload, executed = self._run(route, request, args, body)
            finally:
                sb.ctx.request_id = None
                sb.ctx.idempotency_key = None
                sb.ctx.api_key = None
            headers = {"Request-Id": request_id, "Stripe-Version": API_VERSION}
            if status >= 500:
                # Stripe marks a 500 from a request that ran as not worth retrying: the stored
                # response is all a same-key retry would get back.
                should_retry = server_error.should_retry if server_error is not None else None
                headers["Stripe-Should-Retry"] = "true" if should_retry else "false"
            if idem_key is not None:
                headers["Idempotency-Key"] = idem_key
            text = json.dumps(payload)
            # Stripe saves a result once the endpoint started executing; failed validation is not saved.
            if idem_key is not None and executed:
                sb.state.idempotency[(api_key, idem_key)] = {
                    "fingerprint": fingerprint,
                    "status": status,
                    "body": text,
                    "headers": {**headers, "Content-Type": "application/json"},
                    "at": sb.now(),
                }
            if method in WRITE_METHODS:
                sb.save()
        return Response(text, status=status, headers=headers, mimetype="application/json")

    def _run(self, route: Route, request: Request, args: Mapping[str, Any], body: str) -> tuple[int, Any, bool]:
        sb = self.sandbox
        try:
            raw = forms.decode(body if request.method == "POST" else request.query_string.decode())
            validated = params.validate(route.params_class, raw)
        except StripeError as e:
            return e.status, e.body(sb.ctx.request_id), False
        expand = validated.pop("expand", []) if isinstance(validated.get("expand"), list) else []
        req = Req(request.method, request.path, validated, expand)
        # Reads change nothing: objects they look at need not be compared at the next save.
        tracking = sb.state.objects.tracking
        sb.state.objects.tracking = request.method in WRITE_METHODS
        try:
            result = route.handler(sb, req, **args)
            status, obj = result if isinstance(result, tuple) else (200, result)
            if "_seq" in obj:  # a stored object: render it (with expand) as the API shows it
                obj = store.render(sb.state, obj, expand)
        except StripeError as e:
            return e.status, e.body(sb.ctx.request_id), True
        except Exception:  # a sandbox bug must still answer in Stripe's shape
            log.exception("Stripe sandbox error on %s %s", request.method, request.path)
            return 500, api_error(500).body(sb.ctx.request_id), True
        finally:
            sb.state.objects.tracking = tracking
        return status, obj, True

    # ---- auth & version ----------------------------------------------------------------------

    @staticmethod
    def _api_key(request: Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return auth[7:].strip()
        if auth.startswith("Basic "):
            try:
                decoded = base64.b64decode(auth[6:]).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None
            return decoded.split(":", 1)[0]
        return None

    def _authenticate(self, request: Request) -> None:
        key = self._api_key(request)
        if not key:
            raise StripeError(
                401,
                "You did not provide an API key. You need to provide your API key in the Authorization header, "
                "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#"
                "authentication for details, or we can help at https://support.stripe.com/.",
                headers={"WWW-Authenticate": 'Bearer realm="Stripe"'},
            )
        if not key.startswith("sk_test_") or len(key) <= len("sk_test_"):
            shown = key[:8] + "*" * max(0, len(key) - 12) + key[-4:] if len(key) > 12 else key
            raise StripeError(
                401,
                f"Invalid API Key provided: {shown}",
                headers={"WWW-Authenticate": 'Bearer realm="Stripe"'},
            )

    @staticmethod
    def _check_version(request: Request) -> None:
        # Stripe answers every published version; the sandbox serves them all in the one shape it
        # emulates (API_VERSION) and refuses, as Stripe does, what is not a published version.
        version = request.headers.get("Stripe-Version")
        if version is not None:
            versions.check_request_version(version)

    def _check_account(self, request: Request) -> None:
        account = request.headers.get("Stripe-Account")
        if account is None:
            return
        from .resources.accounts import check_access

        check_access(self.sandbox, account, self._api_key(request) or "")

    @staticmethod
    def _fault_error(status: int, override: dict[str, Any] | None) -> StripeError:
        if status == 429:
            err = rate_limited(None)
        elif status == 402:
            from .errors import card_declined

            err = card_declined()
        elif status >= 500:
            err = api_error(status)
        else:
            err = StripeError(status, "Injected fault.")
        if override:
            err.message = override.get("message", err.message)
            err.type = override.get("type", err.type)
            err.code = override.get("code", err.code)
        return err

    def _error(self, e: StripeError, request_id: str) -> Response:
        headers = {"Request-Id": request_id, "Stripe-Version": API_VERSION, **e.headers}
        return _json(e.status, e.body(request_id), headers)

    # ---- /_sandbox controls ------------------------------------------------------------------

    def _control(self, request: Request) -> Response:
        from .controls import handle_control

        try:
            status, body = handle_control(self.sandbox, request)
        except StripeError as e:
            return _json(e.status, e.body())
        except (FaultConfigError, ValueError) as e:
            return _json(400, {"error": {"type": "invalid_request_error", "message": str(e)}})
        return _json(status, body)


def concurrent_key(key: str) -> StripeError:
    return StripeError(
        409,
        "There is currently another in-progress request using this Idempotent Key (that probably means you "
        f"submitted twice, and the other request is still going through): {key}. Please try again later.",
        type="idempotency_error",
        headers={"Stripe-Should-Retry": "true"},
    )


def create_app(*, state_file: Path | None = None, seed_catalog: bool = True) -> SandboxApp:
    return SandboxApp(Sandbox(state_file=state_file, seed_catalog=seed_catalog))


def _make_server(host: str, port: int, app: SandboxApp) -> SandboxHTTPServer:
    try:
        return SandboxHTTPServer((host, port), app)
    except OSError as e:
        raise OSError(f"Stripe sandbox: cannot listen on {host}:{port}: {e.strerror or e}") from None


def serve(
    host: str = "127.0.0.1",
    port: int = 12111,
    *,
    state_file: Path | None = None,
    seed_catalog: bool = True,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
) -> None:
    """Run the sandbox until interrupted (threaded)."""
    app = create_app(state_file=state_file, seed_catalog=seed_catalog)
    # A loaded state file is hundreds of thousands of dicts that live as long as the process: out
    # of the cyclic garbage collector's sight, whose full passes over them stalled every request
    # for a few hundred milliseconds. Objects made later are collected as usual.
    gc.collect()
    gc.freeze()
    server = _make_server(host, port, app)
    if webhook_url:
        from .controls import register_webhook

        register_webhook(app.sandbox, webhook_url, webhook_secret)
    print(f"Stripe sandbox on http://{host}:{server.port} (API {API_VERSION})", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        app.sandbox.close()


def start_in_thread(
    port: int = 0,
    *,
    host: str = "127.0.0.1",
    state_file: Path | None = None,
    seed_catalog: bool = True,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
) -> StripeSandbox:
    import threading

    app = create_app(state_file=state_file, seed_catalog=seed_catalog)
    server = _make_server(host, port, app)
    if webhook_url:
        from .controls import register_webhook

        register_webhook(app.sandbox, webhook_url, webhook_secret)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return StripeSandbox(f"http://{host}:{server.port}", app, server, thread)
