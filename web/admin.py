"""Users, API tokens and sessions: add users, change roles, deactivate, create and revoke tokens,
sign a user out everywhere. Admins only."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from store.accounts import (
    ROLES,
    AccountError,
    active_session_counts,
    add_user,
    check_role,
    create_token,
    revoke_token,
    revoke_user_sessions,
)
from store.models import ApiToken, User
from web.auth import current_principal, requires
from web.context import db

bp = Blueprint("admin", __name__, url_prefix="/admin")


def _page(status: int = 200, *, new_token: tuple[str, str] | None = None, form: dict[str, str] | None = None,
          error: str | None = None) -> Any:
    with db() as s:
        users = s.scalars(select(User).options(selectinload(User.tokens)).order_by(User.email)).all()
        sessions = active_session_counts(s)
        rows = [
            {"id": u.id, "email": u.email, "role": u.role, "active": u.active, "created_at": u.created_at,
             "sessions": sessions.get(u.id, 0),
             "tokens": [{"id": t.id, "prefix": t.prefix, "created_at": t.created_at, "last_used_at": t.last_used_at,
                         "revoked_at": t.revoked_at} for t in sorted(u.tokens, key=lambda t: t.id)]}
            for u in users
        ]
    return render_template("admin/index.html", users=rows, roles=ROLES, new_token=new_token,
                           form=form or {"email": "", "role": "viewer"}, error=error), status


@bp.get("/")
@requires("admin")
def index() -> Any:
    return _page()


@bp.post("/users")
@requires("admin")
def create_user() -> Any:
    form = {"email": request.form.get("email", "").strip(), "role": request.form.get("role", "viewer")}
    try:
        with db() as s:
            user = add_user(s, form["email"], request.form.get("password", ""), form["role"])
            email = user.email
    except AccountError as exc:
        return _page(422, form=form, error=str(exc))
    flash(f"Added {email} as {form['role']}.", "ok")
    return redirect(url_for("admin.index"))


def _user(s: Any, user_id: int) -> User:
    user: User | None = s.get(User, user_id)
    if user is None:
        abort(404)
    return user


def _not_self(user_id: int, what: str) -> None:
    principal = current_principal()
    if principal is not None and principal.user_id == user_id:
        raise AccountError(f"You cannot {what} your own account; ask another admin.")


@bp.post("/users/<int:user_id>/role")
@requires("admin")
def change_role(user_id: int) -> Any:
    role = request.form.get("role", "")
    try:
        check_role(role)
        _not_self(user_id, "change the role of")
        with db() as s:
            user = _user(s, user_id)
            user.role = role
            email = user.email
    except AccountError as exc:
        return _page(422, error=str(exc))
    flash(f"{email} is now {role}.", "ok")
    return redirect(url_for("admin.index"))


@bp.post("/users/<int:user_id>/active")
@requires("admin")
def set_active(user_id: int) -> Any:
    active = request.form.get("active") == "1"
    try:
        if not active:
            _not_self(user_id, "deactivate")
        with db() as s:
            user = _user(s, user_id)
            user.active = active
            email = user.email
            if not active:
                revoke_user_sessions(s, user_id)
    except AccountError as exc:
        return _page(422, error=str(exc))
    flash(f"{email} {'can sign in again' if active else 'is deactivated: sessions and tokens stop working'}.", "ok")
    return redirect(url_for("admin.index"))


@bp.post("/users/<int:user_id>/sessions/revoke")
@requires("admin")
def sign_out_everywhere(user_id: int) -> Any:
    """End every browser session of the user, e.g. after a lost laptop or a leaked cookie."""
    with db() as s:
        email = _user(s, user_id).email
        ended = revoke_user_sessions(s, user_id)
    flash(f"{email} is signed out everywhere ({ended} session{'s' if ended != 1 else ''} ended).", "ok")
    return redirect(url_for("admin.index"))


@bp.post("/users/<int:user_id>/tokens")
@requires("admin")
def new_token(user_id: int) -> Any:
    with db() as s:
        email = _user(s, user_id).email
        token = create_token(s, email)
    # Shown once in this response, never stored in clear or put in a cookie.
    return _page(201, new_token=(email, token))


@bp.post("/tokens/<int:token_id>/revoke")
@requires("admin")
def revoke(token_id: int) -> Any:
    try:
        with db() as s:
            revoke_token(s, token_id)
            row = s.get(ApiToken, token_id)
            prefix = row.prefix if row else str(token_id)
    except AccountError as exc:
        return _page(404, error=str(exc))
    flash(f"Token {prefix}… revoked.", "ok")
    return redirect(url_for("admin.index"))
