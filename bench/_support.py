"""What the benchmarks stand up, kept apart from the test fixtures (a benchmark must not break
when a fixture changes, nor import pytest's plugins); the worker on a thread is `worker.WorkerThread`,
which the tests use too.

- `temporal_binary`: the `temporal` CLI the venv ships;
- `dev_server_args`: its flags as `make dev` passes them (the plan search attributes);
- `serve`: a WSGI app on a real loopback port (the Stripe sandbox delivers webhooks to it);
- `settings_for`: settings from a bench's own values, never the developer's .env.
"""

from __future__ import annotations

import shutil
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cli.dev import search_attribute_flags
from settings import Settings

BASE_ENV = {
    "STRIPE_API_KEY": "sk_test_sandbox",
    "STRIPE_WEBHOOK_SECRET": "whsec_bench_secret",
    "SECRET_KEY": "bench-secret-key-not-for-production",
    "SECURE_COOKIES": "false",
    "PANDADOC_WEBHOOK_KEY": "pandadoc-bench-key",
    "PANDADOC_API_KEY": "pandadoc-bench-api-key",
}


def temporal_binary(name: str = "temporal") -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed: run `make dev`, which installs it into .venv.")
    return path


def dev_server_args() -> list[str]:
    return search_attribute_flags()


def settings_for(values: Mapping[str, str]) -> Settings:
    return Settings.load({**BASE_ENV, **values}, env_file=Path("/nonexistent"))


def serve(app: Any) -> tuple[Any, threading.Thread, int]:
    """`app` served on 127.0.0.1 and a free port: (server, thread, port); `server.shutdown()` stops it."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return server, thread, int(server.server_port)


