"""Shared fixtures live in tests/fixtures/, one module per thing they stand up."""

pytest_plugins = [
    "tests.fixtures.temporal",
    "tests.fixtures.app",
    "tests.fixtures.stripe_sandbox",
    "tests.fixtures.pandadoc",
    "tests.fixtures.sheets",
    "tests.fixtures.stack",
    "tests.fixtures.postgres",
]
