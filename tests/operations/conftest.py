"""The web app against a fresh Stripe sandbox, and reading `/metrics` the way Prometheus does."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from settings import Settings
from web import create_app

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class NoTemporal:
    """These tests never reach Temporal; a webhook that tries to signal a workflow fails (a 500)."""

    def run(self, *_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("Temporal is not running in this test.")

    def close(self) -> None:
        pass


@pytest.fixture
def sandbox_settings(settings: Settings, fresh_stripe_sandbox: Any) -> Settings:
    return replace(settings, stripe_api_key=fresh_stripe_sandbox.api_key, stripe_api_base=fresh_stripe_sandbox.url)


@pytest.fixture
def app(sandbox_settings: Settings, users: dict[str, str]) -> Flask:
    return create_app(sandbox_settings, temporal=NoTemporal())


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    yield app.test_client()


def scrape(client: Any, base_url: str = "") -> Samples:
    """GET /metrics (Flask test client, or `requests` with a base URL) parsed as Prometheus does."""
    if base_url:
        import requests

        response = requests.get(base_url + "/metrics", timeout=10)
        assert response.status_code == 200
        text = response.text
    else:
        response = client.get("/metrics")
        assert response.status_code == 200
        assert response.content_type.startswith("text/plain")
        text = response.get_data(as_text=True)
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum over the series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)
