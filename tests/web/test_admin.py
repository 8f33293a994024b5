"""The admin page: users, roles, deactivation, API tokens — admins only, CSRF like every form."""

from __future__ import annotations

import re
from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from settings import Settings
from store.db import unit_of_work
from store.models import ApiToken, User
from tests.fixtures.app import auth

SignedIn = Callable[[str], tuple[FlaskClient, str]]


def _user(settings: Settings, email: str) -> User:
    with unit_of_work(settings.database_url) as s:
        user = s.scalar(select(User).where(User.email == email))
        assert user is not None
        return user


def test_admin_adds_a_user_who_can_sign_in(signed_in: SignedIn, app: Flask, settings: Settings) -> None:
    client, token = signed_in("admin")
    bad = client.post("/admin/users", data={"email": "new@example.com", "password": "short", "role": "operator",
                                           "csrf_token": token})
    assert bad.status_code == 422
    html = bad.get_data(as_text=True)
    assert "at least 10 characters" in html and 'value="new@example.com"' in html
    ok = client.post("/admin/users", data={"email": "new@example.com", "password": "a-long-password",
                                          "role": "operator", "csrf_token": token}, follow_redirects=True)
    assert "Added new@example.com as operator." in ok.get_data(as_text=True)
    assert _user(settings, "new@example.com").role == "operator"
    other = app.test_client()
    page = other.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf
    response = other.post("/login", data={"email": "new@example.com", "password": "a-long-password",
                                          "csrf_token": csrf.group(1)})
    assert response.status_code == 302


def test_admin_changes_a_role_and_it_applies_at_once(signed_in: SignedIn, settings: Settings) -> None:
    viewer, viewer_token = signed_in("viewer")
    admin, token = signed_in("admin")
    viewer_id = _user(settings, "viewer@example.com").id
    assert viewer.get("/plans/new").status_code == 403
    admin.post(f"/admin/users/{viewer_id}/role", data={"role": "operator", "csrf_token": token})
    assert _user(settings, "viewer@example.com").role == "operator"
    assert viewer.get("/plans/new").status_code == 200
    bad = admin.post(f"/admin/users/{viewer_id}/role", data={"role": "owner", "csrf_token": token})
    assert bad.status_code == 422 and "Unknown role" in bad.get_data(as_text=True)


def test_admin_cannot_demote_or_deactivate_themselves(signed_in: SignedIn, settings: Settings) -> None:
    admin, token = signed_in("admin")
    admin_id = _user(settings, "admin@example.com").id
    for path, data in ((f"/admin/users/{admin_id}/role", {"role": "viewer"}),
                       (f"/admin/users/{admin_id}/active", {"active": "0"})):
        response = admin.post(path, data={**data, "csrf_token": token})
        assert response.status_code == 422 and "your own account" in response.get_data(as_text=True)
    user = _user(settings, "admin@example.com")
    assert (user.role, user.active) == ("admin", True)


def test_deactivating_stops_sessions_and_tokens(
    signed_in: SignedIn, app: Flask, settings: Settings, users: dict[str, str]
) -> None:
    operator, _ = signed_in("operator")
    admin, token = signed_in("admin")
    operator_id = _user(settings, "operator@example.com").id
    admin.post(f"/admin/users/{operator_id}/active", data={"active": "0", "csrf_token": token})
    assert operator.get("/").status_code == 302
    assert app.test_client().get("/", headers={**auth(users["operator"]), "Accept": "application/json"}
                                 ).status_code == 401
    admin.post(f"/admin/users/{operator_id}/active", data={"active": "1", "csrf_token": token})
    assert _user(settings, "operator@example.com").active is True


def test_tokens_are_listed_shown_once_and_revocable(
    signed_in: SignedIn, app: Flask, settings: Settings, users: dict[str, str]
) -> None:
    admin, token = signed_in("admin")
    page = admin.get("/admin/").get_data(as_text=True)
    assert users["viewer"][:10] + "…" in page and users["viewer"] not in page  # prefix only
    viewer_id = _user(settings, "viewer@example.com").id
    made = admin.post(f"/admin/users/{viewer_id}/tokens", data={"csrf_token": token})
    assert made.status_code == 201
    new = re.search(r'id="new-token" readonly size="60" value="(rvo_[^"]+)"', made.get_data(as_text=True))
    assert new
    fresh = new.group(1)
    api = app.test_client()
    headers = {**auth(fresh), "Accept": "application/json"}
    assert api.get("/", headers=headers).status_code == 200
    assert fresh not in admin.get("/admin/").get_data(as_text=True)
    with unit_of_work(settings.database_url) as s:
        token_id = s.scalar(select(ApiToken.id).where(ApiToken.prefix == fresh[:10]))
    admin.post(f"/admin/tokens/{token_id}/revoke", data={"csrf_token": token})
    assert api.get("/", headers=headers).status_code == 401
    assert "revoked" in admin.get("/admin/").get_data(as_text=True)
