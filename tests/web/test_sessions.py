"""Issue 11 defect 13 (web part): sessions the server can end, a sign-in throttle every web
process shares, and one redirect check that no `next=` can slip past."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from settings import Settings
from store.accounts import LOGIN_LIMITS, LoginLimit, login_wait_seconds
from store.db import unit_of_work
from store.models import LoginFailure, User, WebSession, utcnow
from tests.web.conftest import NoTemporal, csrf_from, sign_in
from web import create_app
from web.redirects import local_path

SignedIn = Callable[[str], tuple[FlaskClient, str]]


def _copy_of(client: FlaskClient, app: Flask) -> FlaskClient:
    """Another browser holding a copy of `client`'s session cookie (a stolen cookie)."""
    thief = app.test_client()
    cookie = client.get_cookie("session")
    assert cookie is not None
    thief.set_cookie("session", cookie.value)
    return thief


# --- logout and revocation ------------------------------------------------------------------------

def test_logout_revokes_a_copied_session_cookie(app: Flask, signed_in: SignedIn) -> None:
    client, token = signed_in("operator")
    thief = _copy_of(client, app)
    assert thief.get("/").status_code == 200  # the copy works while the session lives...
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/").status_code == 302
    assert thief.get("/").status_code == 302  # ...and not after logout: the server ended it
    assert thief.get("/api/plans").status_code == 401


def test_an_admin_signs_a_user_out_everywhere(app: Flask, signed_in: SignedIn, settings: Settings) -> None:
    laptop, _ = signed_in("operator")
    phone, _ = signed_in("operator")
    other, _ = signed_in("viewer")
    admin, admin_token = signed_in("admin")
    with unit_of_work(settings.database_url) as s:
        operator_id = s.scalar(select(User.id).where(User.email == "operator@example.com"))
    page = admin.get("/admin/").get_data(as_text=True)
    assert f'action="/admin/users/{operator_id}/sessions/revoke"' in page and "2 open" in page
    response = admin.post(f"/admin/users/{operator_id}/sessions/revoke", data={"csrf_token": admin_token},
                          follow_redirects=True)
    assert "operator@example.com is signed out everywhere (2 sessions ended)." in response.get_data(as_text=True)
    assert laptop.get("/").status_code == 302 and phone.get("/").status_code == 302
    assert other.get("/").status_code == 200 and admin.get("/").status_code == 200
    # Signing in again opens a fresh session.
    assert sign_in(laptop, "operator")
    assert laptop.get("/").status_code == 200


def test_deactivating_a_user_revokes_their_sessions(signed_in: SignedIn, settings: Settings) -> None:
    client, _ = signed_in("operator")
    admin, admin_token = signed_in("admin")
    with unit_of_work(settings.database_url) as s:
        operator_id = s.scalar(select(User.id).where(User.email == "operator@example.com"))
    admin.post(f"/admin/users/{operator_id}/active", data={"active": "0", "csrf_token": admin_token})
    assert client.get("/").status_code == 302
    with unit_of_work(settings.database_url) as s:
        open_sessions = s.scalar(select(func.count()).select_from(WebSession).where(
            WebSession.user_id == operator_id, WebSession.revoked_at.is_(None)))
    assert open_sessions == 0  # reactivating the account does not bring an old cookie back


def test_a_session_works_in_every_web_process(settings: Settings, users: dict[str, str]) -> None:
    """Two app instances over one database stand for two web processes behind a load balancer."""
    first = create_app(settings, temporal=NoTemporal())
    second = create_app(settings, temporal=NoTemporal())
    client = first.test_client()
    token = sign_in(client, "viewer")
    elsewhere = _copy_of(client, second)
    assert elsewhere.get("/").status_code == 200
    client.post("/logout", data={"csrf_token": token})
    assert elsewhere.get("/").status_code == 302  # logged out in one process, out in all


def test_a_cookie_from_before_session_records_is_signed_out(app: Flask, signed_in: SignedIn,
                                                           settings: Settings) -> None:
    client, _ = signed_in("viewer")
    with client.session_transaction() as sess:
        del sess["sid"]
        sess["user_id"] = 1  # what the old code trusted on its own
    assert client.get("/").status_code == 302


# --- the sign-in throttle -------------------------------------------------------------------------

def _attempt(client: FlaskClient, email: str, password: str, address: str) -> int:
    token = csrf_from(client.get("/login", environ_base={"REMOTE_ADDR": address}).get_data(as_text=True))
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token},
                       environ_base={"REMOTE_ADDR": address}).status_code


def test_one_account_is_limited_across_addresses_and_processes(settings: Settings, users: dict[str, str]) -> None:
    apps = [create_app(settings, temporal=NoTemporal()) for _ in range(2)]
    per_account = next(limit for limit in LOGIN_LIMITS if limit.key == "email")
    # Each guess from a new address, alternating between the two processes: no per-address or
    # per-process count ever fills up, the per-account one does.
    for attempt in range(per_account.failures):
        client = apps[attempt % 2].test_client()
        assert _attempt(client, "admin@example.com", "wrong-password", f"10.0.0.{attempt + 1}") == 401
    blocked = _attempt(apps[0].test_client(), "admin@example.com", "password-admin", "10.0.1.1")
    assert blocked == 429  # even the right password waits now, from a fresh address
    # Another account is not affected.
    assert _attempt(apps[1].test_client(), "viewer@example.com", "password-viewer", "10.0.1.1") == 302


@pytest.fixture
def small_address_limit(monkeypatch: pytest.MonkeyPatch) -> LoginLimit:
    """The per-address limit lowered for speed (each failed sign-in costs an Argon2 hash)."""
    import store.accounts

    limit = LoginLimit("address", 6, timedelta(minutes=15))
    monkeypatch.setattr(store.accounts, "LOGIN_LIMITS",
                        tuple(limit if x.key == "address" else x for x in store.accounts.LOGIN_LIMITS))
    return limit


def test_one_address_is_limited_across_accounts(settings: Settings, users: dict[str, str],
                                                small_address_limit: LoginLimit) -> None:
    app = create_app(settings, temporal=NoTemporal())
    per_address = small_address_limit
    client = app.test_client()
    for attempt in range(per_address.failures):
        assert _attempt(client, f"nobody{attempt}@example.com", "whatever-it-is", "192.0.2.7") == 401
    assert _attempt(client, "viewer@example.com", "password-viewer", "192.0.2.7") == 429
    assert _attempt(client, "viewer@example.com", "password-viewer", "192.0.2.8") == 302


def test_failures_age_out_of_the_window(settings: Settings, users: dict[str, str]) -> None:
    per_pair = next(limit for limit in LOGIN_LIMITS if limit.key == "address+email")
    now = utcnow()
    with unit_of_work(settings.database_url) as s:
        for i in range(per_pair.failures):
            s.add(LoginFailure(email="admin@example.com", address="198.51.100.1",
                               at=now - per_pair.window + timedelta(seconds=30 + i)))
    with unit_of_work(settings.database_url) as s:
        wait = login_wait_seconds(s, "198.51.100.1", "Admin@Example.com", now=now)
        assert 30 <= wait <= 32  # the oldest failure leaves the window in 30 s
        assert login_wait_seconds(s, "198.51.100.1", "admin@example.com", now=now + timedelta(seconds=31)) == 0
        assert login_wait_seconds(s, "198.51.100.2", "admin@example.com", now=now) == 0


def test_a_good_sign_in_clears_only_its_own_address(settings: Settings, users: dict[str, str]) -> None:
    app = create_app(settings, temporal=NoTemporal())
    client = app.test_client()
    for address in ("203.0.113.1", "203.0.113.2"):
        assert _attempt(client, "viewer@example.com", "not-the-password", address) == 401
    assert _attempt(app.test_client(), "viewer@example.com", "password-viewer", "203.0.113.1") == 302
    with unit_of_work(settings.database_url) as s:
        left = s.scalars(select(LoginFailure.address).where(LoginFailure.email == "viewer@example.com")).all()
    assert left == ["203.0.113.2"]


# --- redirects --------------------------------------------------------------------------------

HOSTILE = ["/\t/evil.example", "/\n/evil.example", "/\r\n/evil.example", "/\\evil.example", "/\\/evil.example",
           "//evil.example", "///evil.example", "https://evil.example/", "javascript:alert(1)", " /x",
           "/\x00/evil.example", "/\u2028/evil.example", "evil.example", "", "/ok/\\..\\evil"]


def test_the_table_and_the_login_refuse_every_way_off_the_site(signed_in: SignedIn, app: Flask,
                                                                add_plan: Callable[..., int]) -> None:
    plan_id = add_plan()
    client, token = signed_in("operator")
    for target in HOSTILE:
        response = client.post(f"/plans/{plan_id}/products", data={"products": ["surveys"], "csrf_token": token,
                                                                   "next": target})
        assert response.headers["Location"] == f"/plans/{plan_id}", repr(target)
        rows = client.get("/table/rows", query_string={"rows": f"{plan_id}:0", "back": target}).get_json()
        assert 'name="next" value="/"' in rows["html"], repr(target)
        anonymous = app.test_client()
        page = anonymous.get("/login").get_data(as_text=True)
        login = anonymous.post("/login", data={"email": "viewer@example.com", "password": "password-viewer",
                                               "csrf_token": csrf_from(page), "next": target})
        assert login.headers["Location"] == "/", repr(target)
    kept = client.post(f"/plans/{plan_id}/products", data={"csrf_token": token, "next": "/?q=acme&page=2"})
    assert kept.headers["Location"] == f"/?q=acme&page=2#plan-{plan_id}"  # the same page, at the row


def _as_a_browser_reads_it(target: str) -> str:
    # WHATWG URL parsing: leading/trailing C0 controls and spaces are trimmed, tabs and newlines
    # removed anywhere, and a backslash is a slash in http(s) URLs.
    cleaned = target.strip("".join(map(chr, range(0x21))))
    return "".join(ch for ch in cleaned if ch not in "\t\n\r").replace("\\", "/")


@hypothesis_settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("/\\\t\n\r .:@%?#ae") + ["\x00", "\x0b", "\u2028", "\u200b"]),
               max_size=12))
def test_an_accepted_path_stays_on_the_site_however_a_browser_reads_it(target: str) -> None:
    path = local_path(target)
    if path is None:
        return
    seen = _as_a_browser_reads_it(path)
    assert seen.startswith("/") and not seen.startswith("//"), repr(target)
    assert not urlsplit(seen).netloc and not urlsplit(seen).scheme, repr(target)


def test_behind_a_proxy_the_throttle_counts_the_client_address(settings: Settings, users: dict[str, str],
                                                               small_address_limit: LoginLimit) -> None:
    from dataclasses import replace

    app = create_app(replace(settings, trusted_proxies=1), temporal=NoTemporal())
    per_address = small_address_limit
    client = app.test_client()

    def attempt(email: str, password: str, client_address: str) -> int:
        headers = {"X-Forwarded-For": client_address}
        page = client.get("/login", headers=headers, environ_base={"REMOTE_ADDR": "10.9.9.9"})
        return client.post("/login", headers=headers, environ_base={"REMOTE_ADDR": "10.9.9.9"}, data={
            "email": email, "password": password, "csrf_token": csrf_from(page.get_data(as_text=True))}).status_code

    for n in range(per_address.failures):
        assert attempt(f"guess{n}@example.com", "wrong-password", "198.18.0.1") == 401
    assert attempt("viewer@example.com", "password-viewer", "198.18.0.1") == 429
    # Everyone else behind the same proxy still signs in.
    assert attempt("viewer@example.com", "password-viewer", "198.18.0.2") == 302
    with unit_of_work(settings.database_url) as s:
        assert set(s.scalars(select(LoginFailure.address))) == {"198.18.0.1"}
