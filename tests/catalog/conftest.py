"""A Stripe sandbox with the demo catalog, settings pointing at it, and the web app with the
catalog blueprint (registered here until `web/__init__.py` does it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from sandbox.stripe.harness import StripeSandbox
from settings import Settings
from tests.web.conftest import NoTemporal, sign_in
from web import create_app


@pytest.fixture
def catalog_settings(settings: Settings, fresh_stripe_sandbox: StripeSandbox) -> Settings:
    return replace(settings, stripe_api_base=fresh_stripe_sandbox.url, stripe_max_network_retries=0)


def build_app(settings: Settings) -> Flask:
    app = create_app(settings, temporal=NoTemporal())
    if "catalog" not in app.blueprints:
        from web import catalog

        app.register_blueprint(catalog.bp)
    return app


@pytest.fixture
def catalog_app(catalog_settings: Settings, users: dict[str, str]) -> Flask:
    return build_app(catalog_settings)


@pytest.fixture
def browser_of(catalog_app: Flask) -> Callable[[str], tuple[FlaskClient, str]]:
    def make(role: str) -> tuple[FlaskClient, str]:
        client = catalog_app.test_client()
        return client, sign_in(client, role)

    return make


def tiers(*rows: tuple[Any, str]) -> list[dict[str, Any]]:
    return [{"up_to": up_to, "unit_amount_decimal": unit} for up_to, unit in rows]
