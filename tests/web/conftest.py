"""The web app over a migrated database, signed-in clients per role, and plan rows to look at."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from settings import Settings
from store.db import unit_of_work
from store.plans import create_plan
from web import create_app

VALID_PLAN = {
    "company_name": "Acme Analytics",
    "customer_email": "billing@acme.example",
    "credit_amount": "120000.00",
    "discount": "20",
    "price": "96000.00",
    "start_date": "2030-12-01",
    "term_months": "12 months",
    "posthog_org_id": "org-acme",
    "pandadoc_id": "pd-acme-1",
}


class NoTemporal:
    """The pages under test never talk to Temporal; anything that tries fails loudly."""

    def run(self, *_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("A page rendered from the database called Temporal.")


@pytest.fixture
def app(settings: Settings, users: dict[str, str]) -> Flask:
    return create_app(settings, temporal=NoTemporal())


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def sign_in(client: FlaskClient, role: str) -> str:
    """Sign in as `<role>@example.com`; returns the session's CSRF token."""
    page = client.get("/login").get_data(as_text=True)
    response = client.post("/login", data={"email": f"{role}@example.com", "password": f"password-{role}",
                                           "csrf_token": csrf_from(page)})
    assert response.status_code == 302, response.get_data(as_text=True)
    return csrf_from(client.get("/").get_data(as_text=True))


@pytest.fixture
def signed_in(app: Flask) -> Callable[[str], tuple[FlaskClient, str]]:
    def make(role: str) -> tuple[FlaskClient, str]:
        client = app.test_client()
        return client, sign_in(client, role)

    return make


@pytest.fixture
def add_plan(settings: Settings) -> Callable[..., int]:
    def make(**overrides: Any) -> int:
        with unit_of_work(settings.database_url) as s:
            plan, checked = create_plan(s, {**VALID_PLAN, **overrides}, actor="test@example.com")
            assert plan is not None, checked.errors
            return plan.id

    return make


@pytest.fixture
def fresh_stripe_sandbox() -> Iterator[Any]:
    """`live_stack` takes the sandbox itself (the shared fixture is a factory); same as tests/plans."""
    from sandbox.stripe.server import start_in_thread

    sandbox = start_in_thread()
    try:
        yield sandbox
    finally:
        sandbox.stop()
