"""Who is calling, and may they: bearer tokens for the API, the login session for the pages.

Every view is wrapped in `@requires(role)`; viewers read, operators act, admins manage users.
`install(app)` adds the app-wide hooks: CSRF tokens on every session-authenticated unsafe request,
and an idle session expiry that only real activity (not the table's live polling) extends.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from store.accounts import Principal, authenticate, principal_for_token
from store.models import User
from web.context import db

bp = Blueprint("auth", __name__)
F = TypeVar("F", bound=Callable[..., Any])

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
# The table's live refresh sends this header; polling must not keep an idle session alive.
POLL_HEADER = "X-Revops-Poll"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

# Failed sign-ins per (address, email) within the window, kept in this process only: enough to
# slow down guessing at a login form; a proxy or WAF does the heavy lifting in production.
LOGIN_FAILURE_LIMIT = 5
LOGIN_FAILURE_WINDOW = 300.0


def current_principal() -> Principal | None:
    if "principal" in g:
        return cast(Principal | None, g.principal)
    principal: Principal | None = None
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        with db() as s:
            principal = principal_for_token(s, header.removeprefix("Bearer ").strip())
        g.via_token = True
    elif "user_id" in session:
        with db() as s:
            user = s.get(User, session["user_id"])
            if user is not None and user.active:
                principal = Principal(user.id, user.email, user.role)
    g.principal = principal
    return principal


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def requires(role: str) -> Callable[[F], F]:
    """Refuse the view unless the caller has at least `role` (401 anonymous, 403 too low)."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            principal = current_principal()
            if principal is None:
                if wants_json():
                    return jsonify({"error": "Sign in or send an API token (Authorization: Bearer …)."}), 401
                return redirect(url_for("auth.login", next=request.full_path))
            if not principal.can(role):
                message = f"This needs the {role} role; you are a {principal.role}."
                if wants_json():
                    return jsonify({"error": message}), 403
                return render_template("error.html", title="Not allowed", message=message), 403
            return view(*args, **kwargs)

        return cast(F, wrapped)

    return decorate


# --- login and logout -------------------------------------------------------------------------

class _LoginThrottle:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: dict[tuple[str, str], list[float]] = {}

    def wait_seconds(self, key: tuple[str, str]) -> int:
        """Seconds until another attempt is allowed (0: allowed now)."""
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._failures.get(key, []) if now - t < LOGIN_FAILURE_WINDOW]
            self._failures[key] = recent
            if len(recent) < LOGIN_FAILURE_LIMIT:
                return 0
            return int(LOGIN_FAILURE_WINDOW - (now - recent[0])) + 1

    def failed(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._failures.setdefault(key, []).append(time.monotonic())

    def succeeded(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._failures.pop(key, None)


def _throttle() -> _LoginThrottle:
    return cast(_LoginThrottle, current_app.extensions["revops.login_throttle"])


def _safe_next(target: str | None) -> str:
    """Only same-site paths: a login link must not bounce the user to another site."""
    if not target:
        return url_for("table.index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith(("//", "/\\")):
        return url_for("table.index")
    return target.rstrip("?") or url_for("table.index")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    next_url = _safe_next(request.values.get("next"))
    if request.method == "GET":
        if current_principal() is not None:
            return redirect(next_url)
        return render_template("auth/login.html", email="", error=None, next=next_url)

    email = request.form.get("email", "").strip()
    password = request.form.get("password", "")
    key = (request.remote_addr or "?", email.lower())
    wait = _throttle().wait_seconds(key)
    if wait:
        minutes = max(1, round(wait / 60))
        error = f"Too many failed sign-ins for {email}. Wait about {minutes} minute(s) and try again."
        return render_template("auth/login.html", email=email, error=error, next=next_url), 429
    with db() as s:
        principal = authenticate(s, email, password)
    if principal is None:
        _throttle().failed(key)
        error = "That email and password do not match an active account. Check both and try again."
        return render_template("auth/login.html", email=email, error=error, next=next_url), 401
    _throttle().succeeded(key)
    # A fresh session on sign-in: nothing from before (a planted session id, an old CSRF token) survives.
    session.clear()
    session.permanent = True
    session["user_id"] = principal.user_id
    session["last_active"] = time.time()
    session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return redirect(next_url)


@bp.post("/logout")
def logout() -> Any:
    session.clear()
    return redirect(url_for("auth.login"))


# --- CSRF and session expiry ------------------------------------------------------------------

def csrf_token() -> str:
    """This session's CSRF token, made on first use; every form carries it."""
    token = session.get(CSRF_FIELD)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        session[CSRF_FIELD] = token
    return token


def _needs_csrf_check() -> bool:
    if request.method in SAFE_METHODS:
        return False
    if request.path.startswith("/webhooks/"):
        return False  # signed by their senders; no browser session involved
    if request.headers.get("Authorization", "").startswith("Bearer "):
        return False  # scripts with a token: a browser never adds this header by itself
    if request.path.startswith("/api/") and "user_id" not in session:
        return False  # no session to ride on; the API answers 401 itself
    return True


def _check_csrf() -> Any:
    if not _needs_csrf_check():
        return None
    expected = session.get(CSRF_FIELD)
    sent = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    if isinstance(expected, str) and expected and hmac.compare_digest(expected.encode(), sent.encode()):
        return None
    message = ("This form has expired or did not come from this site (missing or wrong CSRF token). "
               "Reload the page and submit it again.")
    if wants_json():
        return jsonify({"error": message}), 400
    return render_template("error.html", title="Form expired", message=message), 400


def _expire_idle_session() -> None:
    if "user_id" not in session:
        return
    lifetime = current_app.permanent_session_lifetime.total_seconds()
    now = time.time()
    last = session.get("last_active")
    if not isinstance(last, (int, float)) or now - last > lifetime:
        session.clear()
        return
    if not request.headers.get(POLL_HEADER):
        session["last_active"] = now


def _security_headers(response: Any) -> Any:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if response.mimetype == "text/html":
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "frame-ancestors 'none'; form-action 'self'",
        )
    return response


def install(app: Flask) -> None:
    """App-wide hooks: idle expiry, CSRF on unsafe requests, `csrf_token()` and `principal` in templates."""
    app.extensions["revops.login_throttle"] = _LoginThrottle()
    app.before_request(_expire_idle_session)
    app.before_request(_check_csrf)
    app.after_request(_security_headers)

    @app.context_processor
    def _template_globals() -> dict[str, Any]:
        return {"csrf_token": csrf_token, "principal": current_principal, "csrf_field": CSRF_FIELD}
