"""What the benchmarks stand up, kept apart from the test fixtures (a benchmark must not break
when a fixture changes, nor import pytest's plugins).

- `temporal_binary`: the `temporal` CLI the venv ships;
- `dev_server_args`: its flags as `make dev` passes them (the plan search attributes);
- `serve`: a WSGI app on a real loopback port (the Stripe sandbox delivers webhooks to it);
- `WorkerThread`: the project's worker on its own thread and event loop, like a separate process;
- `settings_for`: settings from a bench's own values, never the developer's .env.
"""

from __future__ import annotations

import asyncio
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


class WorkerThread:
    """`worker.build_worker` running on a private event loop in a daemon thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: Any = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> None:
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._main, name="bench-worker", daemon=True).start()
        if not self._ready.wait(30):
            raise RuntimeError("The benchmark's worker did not start within 30 s.")
        if self._error is not None:
            raise RuntimeError(f"The benchmark's worker failed to start: {self._error!r}")

    def _main(self) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._run())
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            self._error = exc
            self._ready.set()

    async def _run(self) -> None:
        from temporal_client import connect
        from worker import build_worker

        client = await connect(self.settings)
        self._worker = build_worker(client, self.settings)
        self._ready.set()
        await self._worker.run()

    def stop(self) -> None:
        """Begin a graceful shutdown without waiting for it (the dev server holds long polls)."""
        if self._loop is not None and self._worker is not None:
            asyncio.run_coroutine_threadsafe(self._worker.shutdown(), self._loop)
        self._loop = self._worker = None
