"""Flask is synchronous and the Temporal client is async: one event loop on a daemon thread per
process holds the one `Client`; views submit coroutines to it (TEMPORAL.md, pitfall 3)."""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import TypeVar

from temporalio.client import Client

T = TypeVar("T")


class TemporalBridge:
    def __init__(self, connect: Callable[[], Awaitable[Client]]) -> None:
        self._connect = connect
        self._client: Client | None = None
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="temporal-bridge", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def run(self, make: Callable[[Client], Awaitable[T]], timeout: float = 30.0) -> T:
        """Run `make(client)` on the bridge loop and wait for its result."""

        async def call() -> T:
            return await make(await self.client())

        future: Future[T] = asyncio.run_coroutine_threadsafe(call(), self._loop)
        return future.result(timeout=timeout)

    async def client(self) -> Client:
        if self._client is None:
            self._client = await self._connect()
        return self._client

    def close(self) -> None:
        # Stop the loop before interpreter exit so the SDK's threads are not torn down mid-call.
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
