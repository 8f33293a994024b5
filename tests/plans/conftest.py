"""Until tests/fixtures/stripe_sandbox.py lands: a fresh sandbox per test, started the same way."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def fresh_stripe_sandbox() -> Iterator[Any]:
    from sandbox.stripe.server import start_in_thread

    sandbox = start_in_thread()
    try:
        yield sandbox
    finally:
        sandbox.stop()
