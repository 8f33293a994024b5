"""Structured logs: JSON lines off a terminal, text on one; plan id, workflow id and Stripe request
id on the record when known; never a secret."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from observability.logging import REDACTED, Redactor, configure_logging, log_context, stripe_request_id
from settings import PROJECT_ROOT, Settings


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def capture(settings: Settings) -> Iterator[tuple[io.StringIO, logging.Logger]]:
    stream = io.StringIO()
    handler = configure_logging(settings, stream=stream)
    try:
        yield stream, logging.getLogger("tests.operations")
    finally:
        logging.getLogger().removeHandler(handler)


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_when_stderr_is_not_a_terminal(capture: tuple[io.StringIO, logging.Logger]) -> None:
    stream, log = capture
    log.info("Plan %s moved to %s.", 42, "awaiting_payment")
    [line] = _lines(stream)
    assert line["level"] == "INFO" and line["logger"] == "tests.operations"
    assert line["message"] == "Plan 42 moved to awaiting_payment."
    assert line["time"].endswith("+00:00")
    assert "plan_id" not in line  # unknown here, so absent rather than null


def test_readable_text_on_a_terminal(settings: Settings) -> None:
    stream = Terminal()
    handler = configure_logging(settings, stream=stream)
    try:
        with log_context(plan_id=7, workflow_id="plan-7"):
            logging.getLogger("tests.operations").warning("Invoice overdue.")
    finally:
        logging.getLogger().removeHandler(handler)
    text = stream.getvalue()
    assert text.rstrip().endswith("WARNING tests.operations: Invoice overdue. [plan 7, workflow plan-7]")
    with pytest.raises(ValueError):
        json.loads(text)


def test_configuring_twice_keeps_one_handler(settings: Settings) -> None:
    first = configure_logging(settings, stream=io.StringIO())
    second = configure_logging(settings, stream=io.StringIO())
    try:
        ours = [h for h in logging.getLogger().handlers if h.get_name() == "revops"]
        assert ours == [second] and first not in logging.getLogger().handlers
    finally:
        logging.getLogger().removeHandler(second)


def test_ids_from_context_and_the_plan_workflow_id(capture: tuple[io.StringIO, logging.Logger]) -> None:
    stream, log = capture
    with log_context(workflow_id="plan-42"):
        log.info("inside")
    log.info("outside")
    inside, outside = _lines(stream)
    assert (inside["plan_id"], inside["workflow_id"]) == (42, "plan-42")
    assert "workflow_id" not in outside and "plan_id" not in outside


def test_the_stripe_request_id_of_the_last_call(capture: tuple[io.StringIO, logging.Logger],
                                                sandbox_settings: Settings) -> None:
    from activities.stripe_api import stripe_client

    stream, log = capture
    stripe_client(sandbox_settings).v1.customers.create({"email": "logs@example.com"})
    log.info("Customer created.")
    line = _lines(stream)[-1]
    assert line["message"] == "Customer created."
    assert str(line["stripe_request_id"]).startswith("req_")
    assert line["stripe_request_id"] == stripe_request_id.get()


def test_the_route_plan_id_in_a_web_request(capture: tuple[io.StringIO, logging.Logger], client: Any,
                                            users: dict[str, str]) -> None:
    from tests.fixtures.app import auth

    stream, _ = capture
    # Any route with a `plan_id` in its path: a probe route that logs, on the real app.
    app = client.application

    @app.get("/plans-log-test/<int:plan_id>")
    def _probe(plan_id: int) -> str:
        logging.getLogger("web.test").info("Looked at the row.")
        return "ok"

    assert client.get("/plans-log-test/31", headers=auth(users["viewer"])).status_code == 200
    [line] = [entry for entry in _lines(stream) if entry["logger"] == "web.test"]
    assert line["plan_id"] == 31


def test_secrets_never_reach_the_output(capture: tuple[io.StringIO, logging.Logger], settings: Settings) -> None:
    stream, log = capture
    log.info("Key %s, secret %s, session key %s", "sk_live_51HxYzAbCdEf0123456789", settings.stripe_webhook_secret,
             settings.secret_key)
    log.warning("Connecting to postgresql+psycopg://revops:hunter2-long@db.internal/revops")
    log.info("Header Authorization: Bearer rvo_abcdefghijklmnop")
    try:
        raise RuntimeError(f"Stripe refused rk_test_{'9' * 24} and {settings.pandadoc_webhook_key}")
    except RuntimeError:
        log.exception("Step failed")
    out = stream.getvalue()
    for secret in ("sk_live_51HxYzAbCdEf0123456789", settings.stripe_webhook_secret, settings.secret_key,
                   "hunter2-long", "rvo_abcdefghijklmnop", "rk_test_" + "9" * 24, settings.pandadoc_webhook_key):
        assert secret not in out, secret
    lines = _lines(stream)
    assert lines[0]["message"] == f"Key {REDACTED}, secret {REDACTED}, session key {REDACTED}"
    assert "revops:" + REDACTED + "@db.internal" in lines[1]["message"]
    assert "RuntimeError" in lines[3]["exception"] and REDACTED in lines[3]["exception"]


TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=8, max_size=40)


@given(st.sampled_from(["sk_test_", "sk_live_", "rk_test_", "rk_live_", "whsec_"]), TOKEN, st.text(max_size=30),
       st.text(max_size=30))
def test_any_stripe_secret_shape_is_redacted(prefix: str, token: str, before: str, after: str) -> None:
    secret = prefix + token
    redacted = Redactor()(f"{before} {secret} {after}")
    assert secret not in redacted and REDACTED in redacted


def test_the_worker_entry_point_logs_json_without_secrets(settings: Settings, tmp_path: Any) -> None:
    """`revops worker` (worker.run) configures logging first: with Temporal unreachable the
    failure is reported, and nothing it logs on the way carries a secret."""
    env = {**os.environ, **replace(settings, temporal_address="127.0.0.1:1").as_env()}
    code = ("import asyncio, logging, worker; from settings import Settings\n"
            "s = Settings.load()\n"
            "try:\n    asyncio.run(worker.run(s))\n"
            "except Exception as exc:\n    logging.getLogger('worker').error('Worker stopped: %s %s', exc, "
            "s.stripe_api_key)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                            timeout=60, stdin=subprocess.DEVNULL)
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    stopped = [line for line in lines if line["message"].startswith("Worker stopped")]
    assert stopped, result.stderr
    assert settings.stripe_api_key not in result.stderr and REDACTED in stopped[0]["message"]
