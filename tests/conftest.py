"""Shared fixtures live in tests/fixtures/, one module per thing they stand up."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = [
    "tests.fixtures.temporal",
    "tests.fixtures.app",
    "tests.fixtures.stripe_sandbox",
    "tests.fixtures.pandadoc",
    "tests.fixtures.sheets",
    "tests.fixtures.stack",
    "tests.fixtures.postgres",
]

TESTS = Path(__file__).parent
# Where unique claims, concurrent webhooks, row locks and revenue SQL matter, a test that takes a
# database runs on SQLite (the default for `make dev`) and on PostgreSQL (production).
BOTH_DATABASES = ("plans", "intake", "revenue", "web/test_stripe_webhooks.py")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "database_url" not in metafunc.fixturenames:
        return
    where = metafunc.definition.path.relative_to(TESTS).as_posix()
    if where.startswith(BOTH_DATABASES):
        metafunc.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
