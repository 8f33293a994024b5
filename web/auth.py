"""Who is calling, and may they: bearer tokens for the API, the login session for the pages.

Every view is wrapped in `@requires(role)`; viewers read, operators act, admins manage users.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from flask import Blueprint, Flask, g, jsonify, redirect, request, session, url_for

from store.accounts import Principal, principal_for_token
from store.models import User
from web.context import db

bp = Blueprint("auth", __name__)
F = TypeVar("F", bound=Callable[..., Any])


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
                return message, 403
            return view(*args, **kwargs)

        return cast(F, wrapped)

    return decorate


@bp.get("/login")
def login() -> Any:
    return "Login page is not built yet.", 501


def install(app: Flask) -> None:
    """App-wide hooks (CSRF, session refresh); extended by the web table's login work."""
