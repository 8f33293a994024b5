"""Logging for `revops web` and `revops worker`: JSON lines when stderr is not a terminal (a log
collector reads them), readable text when it is; each record carries the plan id, workflow id and
Stripe request id when known; no secret ever reaches the output.

Where the ids come from:
- inside a Temporal activity, the activity's workflow id (`plan-42` gives plan 42); inside a
  workflow, Temporal's `workflow.logger` puts the workflow's details on the record;
- in a web request, the route's `plan_id`;
- `stripe_request_id`: set by the Stripe HTTP client (observability.metrics) after each answer;
- `log_context(plan_id=…)` for anything else.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from settings import Settings

plan_id_var: ContextVar[int | None] = ContextVar("revops_plan_id", default=None)
workflow_id_var: ContextVar[str | None] = ContextVar("revops_workflow_id", default=None)
stripe_request_id: ContextVar[str | None] = ContextVar("revops_stripe_request_id", default=None)

REDACTED = "[redacted]"
# Stripe secret and restricted keys, webhook signing secrets, bearer tokens, passwords in URLs.
SECRET_PATTERNS = (
    re.compile(r"\b(?:sk|rk)_(?:test|live)_[A-Za-z0-9]+"),
    re.compile(r"\bwhsec_[A-Za-z0-9+/=]+"),
    re.compile(r"(?i)(?<=bearer )[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?<=://)([^:/@\s]+):[^@/\s]+(?=@)"),
)
_PLAN_WORKFLOW = re.compile(r"plan-(\d+)$")


def forget_stripe_request() -> None:
    """A new unit of work on a reused thread (a web request on a waitress thread) starts without
    the last one's Stripe request id."""
    stripe_request_id.set(None)


@contextlib.contextmanager
def log_context(*, plan_id: int | None = None, workflow_id: str | None = None) -> Iterator[None]:
    """Records logged inside the block carry these ids; a block is its own unit of work, so the
    Stripe request id of whatever ran before it on this thread is not carried in."""
    plan_token = plan_id_var.set(plan_id) if plan_id is not None else None
    workflow_token = workflow_id_var.set(workflow_id) if workflow_id is not None else None
    request_token = stripe_request_id.set(None)
    try:
        yield
    finally:
        stripe_request_id.reset(request_token)
        if workflow_token is not None:
            workflow_id_var.reset(workflow_token)
        if plan_token is not None:
            plan_id_var.reset(plan_token)


class Redactor:
    """Replaces known secret values and secret-shaped strings."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret containing another is replaced whole. Very short values
        # (a test's "x") would shred ordinary words; real secrets are long.
        self.secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        for pattern in SECRET_PATTERNS:
            text = pattern.sub(lambda m: f"{m.group(1)}:{REDACTED}" if m.groups() else REDACTED, text)
        return text


def secret_values(settings: Settings) -> list[str]:
    """The values of every setting declared secret (settings.SETTINGS)."""
    from settings import SETTINGS

    values = []
    for setting in SETTINGS:
        if setting.secret:
            value = getattr(settings, setting.name.lower(), "")
            if isinstance(value, str) and value:
                values.append(value)
    return values


class ContextFilter(logging.Filter):
    """Puts plan id, workflow id and Stripe request id on each record, and redacts secrets from
    its message and traceback before any handler formats it."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        workflow_id = workflow_id_var.get() or _temporal_workflow_id(record)
        plan_id = plan_id_var.get()
        if plan_id is None:
            plan_id = _web_plan_id()
        if plan_id is None and workflow_id:
            match = _PLAN_WORKFLOW.match(workflow_id)
            plan_id = int(match.group(1)) if match else None
        record.plan_id = plan_id
        record.workflow_id = workflow_id
        record.stripe_request_id = stripe_request_id.get()
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def _temporal_workflow_id(record: logging.LogRecord) -> str | None:
    for key in ("temporal_activity", "temporal_workflow"):
        details = getattr(record, key, None)
        if isinstance(details, dict) and details.get("workflow_id"):
            return str(details["workflow_id"])
    try:
        from temporalio import activity

        if activity.in_activity():
            return activity.info().workflow_id
    except Exception:  # noqa: BLE001 - outside an activity, or an SDK without it: no id
        return None
    return None


def _web_plan_id() -> int | None:
    try:
        from flask import has_request_context, request
    except ImportError:  # pragma: no cover - flask is a dependency
        return None
    if not has_request_context():
        return None
    value = (request.view_args or {}).get("plan_id")
    return value if isinstance(value, int) else None


_CONTEXT_FIELDS = ("plan_id", "workflow_id", "stripe_request_id")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the ids that are known, exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_text:
            line["exception"] = record.exc_text
        elif record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """`12:00:01 INFO web.x: message [plan 42 plan-42 req_…]` for a person at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s%(context)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        parts = [f"{name.removesuffix('_id').replace('_', ' ')} {getattr(record, name)}"
                 for name in _CONTEXT_FIELDS if getattr(record, name, None) is not None]
        record.context = f" [{', '.join(parts)}]" if parts else ""
        return super().format(record)


_HANDLER_NAME = "revops"


def configure_logging(settings: Settings | None = None, *, stream: IO[str] | None = None,
                      json_lines: bool | None = None, level: int = logging.INFO) -> logging.Handler:
    """Send every logger's records to `stream` (stderr) through the context and redaction filter.
    Calling it again replaces the handler it installed, so it is safe at every start-up."""
    stream = stream if stream is not None else sys.stderr
    if json_lines is None:
        json_lines = not (hasattr(stream, "isatty") and stream.isatty())
    handler = logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(ContextFilter(Redactor(secret_values(settings) if settings is not None else ())))
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # The Stripe SDK logs each request at INFO when its own logger is enabled; our client logs them.
    logging.getLogger("stripe").setLevel(logging.WARNING)
    return handler
