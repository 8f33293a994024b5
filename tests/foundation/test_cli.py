"""The `revops` console script: users, tokens, database, run as an operator would run it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from settings import PROJECT_ROOT
from store.accounts import principal_for_token
from store.db import unit_of_work
from tests.fixtures.app import make_settings
from web import create_app


class Revops:
    def __init__(self, database_url: str, home: Path) -> None:
        self.env = {**os.environ, "DATABASE_URL": database_url, "HOME": str(home)}

    def __call__(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", "from cli import main; main()", *args], input=stdin,
                              env=self.env, capture_output=True, text=True, timeout=60, cwd=PROJECT_ROOT)


@pytest.fixture
def revops(tmp_path: Path) -> Revops:
    cli = Revops(f"sqlite:///{tmp_path / 'cli.db'}", tmp_path)
    assert cli("db", "upgrade").returncode == 0
    return cli


def test_db_upgrade_on_an_empty_database(tmp_path: Path) -> None:
    result = Revops(f"sqlite:///{tmp_path / 'new.db'}", tmp_path)("db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout


def test_users_add_reads_the_password_from_stdin(revops: Revops) -> None:
    result = revops("users", "add", "Ana@Example.com", "--role", "operator", stdin="correct horse battery\n")
    assert result.returncode == 0, result.stderr
    assert "Added ana@example.com as operator." in result.stdout
    assert "correct horse" not in result.stdout + result.stderr


def test_users_add_with_a_wrong_role_is_one_clear_line(revops: Revops) -> None:
    result = revops("users", "add", "bo@example.com", "--role", "superuser", stdin="long enough password\n")
    assert result.returncode == 2
    assert result.stderr.strip() == "revops: Unknown role 'superuser': use one of viewer, operator, admin."


def test_duplicate_user_is_refused_clearly(revops: Revops) -> None:
    assert revops("users", "add", "cy@example.com", "--role", "viewer", stdin="long enough password\n").returncode == 0
    result = revops("users", "add", "CY@example.com", "--role", "admin", stdin="another long password\n")
    assert result.returncode == 2
    assert result.stderr.strip() == "revops: A user with the email cy@example.com already exists."


def test_short_password_is_refused(revops: Revops) -> None:
    result = revops("users", "add", "dee@example.com", "--role", "viewer", stdin="short\n")
    assert result.returncode == 2
    assert "at least 10 characters" in result.stderr


def test_token_works_once_created_and_fails_after_revoke(revops: Revops) -> None:
    assert revops("users", "add", "ed@example.com", "--role", "viewer", stdin="long enough password\n").returncode == 0
    created = revops("tokens", "create", "ed@example.com")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("rvo_") and len(token) > 40
    assert "shown once" in created.stderr

    app = create_app(make_settings(revops.env["DATABASE_URL"]), temporal=object())
    client: FlaskClient = app.test_client()

    def status(bearer: str) -> int:
        return client.get("/api/plans", headers={"Authorization": f"Bearer {bearer}"}).status_code

    assert status(token) == 200
    assert status("rvo_never-existed") == 401
    with unit_of_work(revops.env["DATABASE_URL"]) as session:
        principal = principal_for_token(session, token)
        assert principal is not None and principal.email == "ed@example.com"
        from sqlalchemy import select

        from store.models import ApiToken

        token_id = session.scalar(select(ApiToken.id))
    revoked = revops("tokens", "revoke", str(token_id))
    assert revoked.returncode == 0, revoked.stderr
    assert status(token) == 401


def test_token_for_unknown_user_is_refused(revops: Revops) -> None:
    result = revops("tokens", "create", "nobody@example.com")
    assert result.returncode == 2
    assert "No user with the email nobody@example.com" in result.stderr


def test_only_a_hash_of_the_token_is_stored(revops: Revops, tmp_path: Path) -> None:
    revops("users", "add", "fi@example.com", "--role", "viewer", stdin="long enough password\n")
    token = revops("tokens", "create", "fi@example.com").stdout.strip()
    raw = Path(revops.env["DATABASE_URL"].removeprefix("sqlite:///")).read_bytes()
    assert token.encode() not in raw


def test_users_sign_out_ends_every_session_of_that_user(revops: Revops) -> None:
    from tests.web.conftest import NoTemporal, sign_in

    assert revops("users", "add", "ops@example.com", "--role", "operator", stdin="password-operator\n").returncode == 0
    assert revops("users", "add", "viewer@example.com", "--role", "viewer", stdin="password-viewer\n").returncode == 0
    app = create_app(make_settings(revops.env["DATABASE_URL"]), temporal=NoTemporal())
    ops, viewer = app.test_client(), app.test_client()
    page = ops.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token
    assert ops.post("/login", data={"email": "ops@example.com", "password": "password-operator",
                                    "csrf_token": token.group(1)}).status_code == 302
    sign_in(viewer, "viewer")
    result = revops("users", "sign-out", "OPS@example.com")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ops@example.com is signed out everywhere (1 session ended)."
    assert ops.get("/").status_code == 302 and viewer.get("/").status_code == 200
    missing = revops("users", "sign-out", "nobody@example.com")
    assert missing.returncode == 2 and "No user with the email nobody@example.com" in missing.stderr
