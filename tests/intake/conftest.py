"""An intake stack per test: PandaDoc sandbox → web app on a real port → Temporal dev server →
a worker with the intake workflows and activities → the test's SQLite database."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from werkzeug.serving import BaseWSGIServer, make_server

from activities.intake import RowResult, build
from sandbox.pandadoc.server import SandboxHandle
from settings import Settings
from tests.fixtures.app import make_settings
from web import create_app
from web.temporal_bridge import TemporalBridge
from workflows.intake import WORKFLOWS


@dataclass
class IntakeStack:
    settings: Settings
    app: Flask
    url: str
    client: Client
    sandbox: SandboxHandle

    def complete_document(self, **overrides: Any) -> str:
        document = self.sandbox.create_document(**overrides)
        delivery = self.sandbox.complete(document["id"])
        assert delivery["webhook"]["status"] == 200, delivery
        return str(document["id"])

    async def intake_result(self, document_id: str) -> Any:
        return await self.client.get_workflow_handle(f"intake-{document_id}", result_type=RowResult).result()


@pytest.fixture
def served_app() -> Iterator[Any]:
    servers: list[tuple[BaseWSGIServer, threading.Thread]] = []

    def serve(app: Flask) -> str:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_port}"

    yield serve
    for server, thread in servers:
        server.shutdown()
        thread.join(timeout=5)


@pytest.fixture
def intake_activities() -> Callable[[Settings], list[Callable[..., Any]]]:
    """The worker's activities; a test module may override this fixture to inject a fault."""
    return build


@pytest.fixture
async def intake_stack(dev_env: WorkflowEnvironment, database_url: str, pandadoc_sandbox: SandboxHandle,
                       served_app: Any, intake_activities: Callable[[Settings], list[Callable[..., Any]]],
                       ) -> AsyncIterator[IntakeStack]:
    queue = f"intake-test-{uuid.uuid4().hex[:8]}"
    settings = make_settings(database_url, pandadoc_api_base=pandadoc_sandbox.url,
                             pandadoc_api_key=pandadoc_sandbox.api_key, temporal_task_queue=queue)
    target = dev_env.client.service_client.config.target_host
    namespace = dev_env.client.namespace
    bridge = TemporalBridge(lambda: Client.connect(target, namespace=namespace))
    app = create_app(settings, temporal=bridge)
    url = served_app(app)
    pandadoc_sandbox.configure_webhook(f"{url}/webhooks/pandadoc", settings.pandadoc_webhook_key)
    with ThreadPoolExecutor(max_workers=8) as pool:
        worker = Worker(dev_env.client, task_queue=queue, workflows=WORKFLOWS, activities=intake_activities(settings),
                        activity_executor=pool)
        async with worker:
            yield IntakeStack(settings, app, url, dev_env.client, pandadoc_sandbox)
    bridge.close()


async def eventually(check: Any, seconds: float = 10.0) -> Any:
    """Poll `check()` until it returns something truthy (for effects seen through the database)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        value = check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not true within {seconds} s: {check}")
        await asyncio.sleep(0.05)
