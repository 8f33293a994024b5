"""Login, logout, idle expiry, CSRF and roles over real HTTP into the app."""

from __future__ import annotations

import time
from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from settings import Settings
from store.db import unit_of_work
from store.models import AuditEntry, Plan, User
from tests.fixtures.app import auth
from tests.web.conftest import csrf_from, sign_in

SignedIn = Callable[[str], tuple[FlaskClient, str]]


def test_anonymous_is_sent_to_login_and_comes_back(app: Flask) -> None:
    client = app.test_client()
    response = client.get("/plans/new")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=/plans/new")
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    response = client.post("/login", data={"email": "operator@example.com", "password": "password-operator",
                                           "csrf_token": csrf_from(page), "next": "/plans/new?"})
    assert response.headers["Location"] == "/plans/new"


def test_wrong_password_is_refused_with_a_sentence(app: Flask) -> None:
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    response = client.post("/login", data={"email": "viewer@example.com", "password": "nope-nope-nope",
                                           "csrf_token": csrf_from(page)})
    assert response.status_code == 401
    assert "do not match an active account" in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_login_is_rate_limited_per_address_and_email(app: Flask) -> None:
    client = app.test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    for _ in range(5):
        assert client.post("/login", data={"email": "admin@example.com", "password": "x" * 12,
                                           "csrf_token": token}).status_code == 401
    # Even the right password waits now.
    response = client.post("/login", data={"email": "admin@example.com", "password": "password-admin",
                                           "csrf_token": token})
    assert response.status_code == 429
    assert "Too many failed sign-ins for admin@example.com" in response.get_data(as_text=True)


def test_open_redirects_are_not_followed(app: Flask) -> None:
    client = app.test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"email": "viewer@example.com", "password": "password-viewer",
                                           "csrf_token": token, "next": "//evil.example/x"})
    assert response.headers["Location"] == "/"


def test_logout_ends_the_session(signed_in: SignedIn) -> None:
    client, token = signed_in("viewer")
    assert client.get("/").status_code == 200
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/").status_code == 302


def test_idle_session_expires_and_polling_does_not_keep_it_alive(app: Flask, signed_in: SignedIn) -> None:
    client, _ = signed_in("viewer")
    lifetime = app.permanent_session_lifetime.total_seconds()
    with client.session_transaction() as sess:
        sess["last_active"] = time.time() - lifetime + 60
    # A poll inside the window is answered but does not count as activity...
    assert client.get("/table/rows?rows=", headers={"X-Revops-Poll": "1"}).status_code == 200
    with client.session_transaction() as sess:
        assert sess["last_active"] < time.time() - lifetime + 61
        sess["last_active"] = time.time() - lifetime - 1
    # ...and once idle longer than SESSION_MINUTES, the session is gone.
    assert client.get("/").status_code == 302


def test_session_cookie_is_httponly_and_lax_and_permanent(app: Flask) -> None:
    client = app.test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"email": "viewer@example.com", "password": "password-viewer",
                                           "csrf_token": token})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Expires=" in cookie


def test_secure_cookie_flag_when_configured(settings: Settings, users: dict[str, str]) -> None:
    from dataclasses import replace

    from tests.web.conftest import NoTemporal
    from web import create_app

    app = create_app(replace(settings, secure_cookies=True), temporal=NoTemporal())
    client = app.test_client()
    response = client.get("/login")
    assert "Secure" in response.headers["Set-Cookie"]


def _counts(settings: Settings) -> tuple[int, int, list[tuple[int, str, str]]]:
    with unit_of_work(settings.database_url) as s:
        plans = s.scalar(select(func.count()).select_from(Plan)) or 0
        audit = s.scalar(select(func.count()).select_from(AuditEntry)) or 0
        rows = [(p.id, p.company_name, p.state) for p in s.scalars(select(Plan).order_by(Plan.id))]
    return plans, audit, rows


def test_post_without_csrf_token_is_refused_and_changes_nothing(
    signed_in: SignedIn, add_plan: Callable[..., int], settings: Settings
) -> None:
    plan_id = add_plan()
    client, token = signed_in("operator")
    before = _counts(settings)
    attempts = [
        ("/plans/new", {"company_name": "Sneaky", "customer_email": "a@b.example", "credit_amount": "10",
                        "price": "10", "start_date": "2030-01-01", "term_months": "12"}),
        (f"/plans/{plan_id}", {"company_name": "Renamed by a forged form"}),
        (f"/plans/{plan_id}/products", {"products": "session_replay"}),
        (f"/plans/{plan_id}/actions/create_customer", {}),
        ("/api/plans", {"company_name": "Via the API with only a cookie"}),
    ]
    for path, form in attempts:
        for data in (form, {**form, "csrf_token": "forged" + token}):
            response = client.post(path, data=data)
            assert response.status_code == 400, (path, response.status_code)
    response = client.post("/api/plans", json={"company_name": "x"})
    assert response.status_code == 400
    assert "CSRF" in response.get_json()["error"]
    assert _counts(settings) == before


def test_bearer_api_requests_and_webhooks_skip_the_csrf_check(app: Flask, users: dict[str, str]) -> None:
    client = app.test_client()
    # Whatever these routes answer, it is not the CSRF refusal.
    response = client.post("/api/plans", json={}, headers=auth(users["operator"]))
    assert response.status_code != 400 or "CSRF" not in response.get_data(as_text=True)
    response = client.post("/webhooks/stripe", data=b"{}")
    assert "CSRF" not in response.get_data(as_text=True)


def test_viewer_post_to_an_action_is_403_and_changes_nothing(
    signed_in: SignedIn, add_plan: Callable[..., int], settings: Settings
) -> None:
    plan_id = add_plan()
    client, token = signed_in("viewer")
    before = _counts(settings)
    for path, data in [
        (f"/plans/{plan_id}/actions/create_customer", {}),
        (f"/plans/{plan_id}/actions/create_invoice", {}),
        (f"/plans/{plan_id}", {"company_name": "Viewer rename"}),
        (f"/plans/{plan_id}/products", {"products": "surveys"}),
        ("/plans/new", {"company_name": "Viewer row"}),
    ]:
        response = client.post(path, data={**data, "csrf_token": token})
        assert response.status_code == 403, path
        assert "needs the operator role" in response.get_data(as_text=True)
    # The same click through the JSON API, with the session cookie and its CSRF header.
    response = client.post(f"/api/plans/{plan_id}/actions/create_customer", headers={"X-CSRF-Token": token})
    assert response.status_code == 403
    assert _counts(settings) == before


def test_only_admins_reach_the_admin_page(signed_in: SignedIn) -> None:
    for role, status in (("viewer", 403), ("operator", 403), ("admin", 200)):
        client, _ = signed_in(role)
        assert client.get("/admin/").status_code == status


def test_deactivated_user_loses_the_session(signed_in: SignedIn, settings: Settings) -> None:
    client, _ = signed_in("operator")
    with unit_of_work(settings.database_url) as s:
        user = s.scalar(select(User).where(User.email == "operator@example.com"))
        assert user is not None
        user.active = False
    assert client.get("/").status_code == 302


def test_signing_in_replaces_the_csrf_token(app: Flask) -> None:
    client = app.test_client()
    before = csrf_from(client.get("/login").get_data(as_text=True))
    after = sign_in(client, "viewer")
    assert before != after
