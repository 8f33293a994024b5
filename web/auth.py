"""Who is calling, and may they: bearer tokens for the API, the login session for the pages.

Every view is wrapped in `@requires(role)`; viewers read, operators act, admins manage users.
`install(app)` adds the app-wide hooks: CSRF tokens on every session-authenticated unsafe request,
and an idle session expiry that only real activity (not the table's live polling) extends.

The session cookie carries a random session token whose record lives in the database
(`store.accounts`), checked on every request: logging out, an admin's "sign out everywhere" or
deactivating the user ends the session even for someone holding a copy of the cookie. Failed
sign-ins are counted in the database too, so every web process enforces the same limits.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

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

from store.accounts import (
    Principal,
    authenticate,
    clear_login_failures,
    login_wait_seconds,
    open_web_session,
    principal_for_token,
    principal_for_web_session,
    record_login_failure,
    revoke_web_session,
)
from web.context import db
from web.redirects import local_path

bp = Blueprint("auth", __name__)
F = TypeVar("F", bound=Callable[..., Any])

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
# The table's live refresh sends this header; polling must not keep an idle session alive.
POLL_HEADER = "X-Revops-Poll"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

SESSION_KEY = "sid"  # the session record's token in the signed cookie


def current_principal() -> Principal | None:
    if "principal" in g:
        return cast(Principal | None, g.principal)
    principal: Principal | None = None
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        with db() as s:
            principal = principal_for_token(s, header.removeprefix("Bearer ").strip())
        g.via_token = True
    elif isinstance(session.get(SESSION_KEY), str):
        with db() as s:
            principal = principal_for_web_session(s, session[SESSION_KEY])
        if principal is None:
            session.clear()  # revoked, or its user deactivated: the cookie is worth nothing now
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

def _safe_next(target: str | None) -> str:
    """Only same-site paths: a login link must not bounce the user to another site."""
    path = local_path(target)
    return (path.rstrip("?") if path else "") or url_for("table.index")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    next_url = _safe_next(request.values.get("next"))
    if request.method == "GET":
        if current_principal() is not None:
            return redirect(next_url)
        return render_template("auth/login.html", email="", error=None, next=next_url)

    email = request.form.get("email", "").strip()
    password = request.form.get("password", "")
    address = request.remote_addr or "?"
    with db() as s:
        wait = login_wait_seconds(s, address, email)
    if wait:
        minutes = max(1, round(wait / 60))
        error = (f"Too many failed sign-ins for {email} or from your network. Wait about {minutes} minute(s) "
                 f"and try again, or ask an admin if you keep being refused.")
        return render_template("auth/login.html", email=email, error=error, next=next_url), 429
    with db() as s:
        principal = authenticate(s, email, password)
        if principal is None:
            record_login_failure(s, address, email)
        else:
            clear_login_failures(s, address, email)
            token = open_web_session(s, principal.user_id, address)
    if principal is None:
        error = "That email and password do not match an active account. Check both and try again."
        return render_template("auth/login.html", email=email, error=error, next=next_url), 401
    # A fresh session on sign-in: nothing from before (a planted session id, an old CSRF token) survives.
    session.clear()
    session.permanent = True
    session[SESSION_KEY] = token
    session["last_active"] = time.time()
    session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return redirect(next_url)


@bp.post("/logout")
def logout() -> Any:
    _end_session()
    return redirect(url_for("auth.login"))


def _end_session() -> None:
    """Revoke the session's record (a copy of the cookie stops working too), then forget it."""
    token = session.get(SESSION_KEY)
    if isinstance(token, str):
        with db() as s:
            revoke_web_session(s, token)
    session.clear()


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
    if request.path.startswith("/api/") and SESSION_KEY not in session:
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
    if SESSION_KEY not in session:
        if "user_id" in session:
            session.clear()  # a cookie from before sessions were recorded: sign in again
        return
    lifetime = current_app.permanent_session_lifetime.total_seconds()
    now = time.time()
    last = session.get("last_active")
    if not isinstance(last, (int, float)) or now - last > lifetime:
        _end_session()
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
    app.before_request(_expire_idle_session)
    app.before_request(_check_csrf)
    app.after_request(_security_headers)

    @app.context_processor
    def _template_globals() -> dict[str, Any]:
        return {"csrf_token": csrf_token, "principal": current_principal, "csrf_field": CSRF_FIELD}
