"""The timers through the JSON API and their pages: the web app's Temporal bridge talks to a
time-skipping server while a worker runs in the test's loop."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from sandbox.stripe.harness import StripeSandbox
from settings import Settings
from tests.catalog.test_timers import subscribe, ts, worker  # noqa: F401  (ts is a fixture)
from tests.fixtures.app import auth
from tests.web.conftest import sign_in
from web import create_app
from web.temporal_bridge import TemporalBridge


@pytest.fixture
async def timer_app(ts: WorkflowEnvironment, catalog_settings: Settings, users: dict[str, str],  # noqa: F811
                    fresh_stripe_sandbox: StripeSandbox) -> AsyncIterator[tuple[FlaskClient, WorkflowEnvironment]]:
    queue = f"catalog-{uuid.uuid4().hex[:8]}"
    settings = replace(catalog_settings, temporal_task_queue=queue)
    target = ts.client.service_client.config.target_host
    bridge = TemporalBridge(lambda: Client.connect(target))
    app = create_app(settings, temporal=bridge)
    if "catalog" not in app.blueprints:
        from web import catalog

        app.register_blueprint(catalog.bp)
    async with worker(ts.client, queue, settings, fresh_stripe_sandbox):
        yield app.test_client(), ts
    bridge.close()


async def call(client: FlaskClient, method: str, path: str, token: str, **kw: Any) -> Any:
    """Flask's test client blocks; run it off the loop so the worker here keeps answering."""
    return await asyncio.to_thread(getattr(client, method), path, headers=auth(token), **kw)


async def test_startup_timer_api(timer_app: tuple[FlaskClient, WorkflowEnvironment], users: dict[str, str],
                                 fresh_stripe_sandbox: StripeSandbox) -> None:
    client, env = timer_app
    sub = subscribe(fresh_stripe_sandbox, "price_feature_flags_startup")
    missing = await call(client, "get", f"/api/startup-plans/{sub.id}", users["viewer"])
    assert missing.status_code == 404 and "no such timer" in missing.get_json()["error"]
    assert (await call(client, "post", f"/api/startup-plans/{sub.id}", users["viewer"])).status_code == 403
    started = await call(client, "post", f"/api/startup-plans/{sub.id}", users["operator"])
    assert started.status_code == 200 and started.get_json()["subscription"] == sub.id
    for _ in range(100):
        status = (await call(client, "get", f"/api/startup-plans/{sub.id}", users["viewer"])).get_json()
        if status["state"] == "waiting":
            break
        await asyncio.sleep(0.05)
    assert status["targets"] == ["price_feature_flags_startup → price_feature_flags_default"]
    past = await call(client, "post", f"/api/startup-plans/{sub.id}/date", users["operator"],
                      json={"expires_at": "2001-01-01"})
    assert past.status_code == 409 and past.get_json()["error"] == "The new expiry 2001-01-01 is not in the future."
    later = (await env.get_current_time() + timedelta(days=500)).date().isoformat()
    moved = await call(client, "post", f"/api/startup-plans/{sub.id}/date", users["operator"],
                       json={"expires_at": later})
    assert moved.status_code == 200 and moved.get_json()["expires_at"].startswith(later)
    page = await asyncio.to_thread(_page_as_viewer, client, f"/catalog/startup-plans/{sub.id}")
    assert f">{moved.get_json()['expires_at']}<" in page and 'id="timer-date-form"' not in page
    cancelled = await call(client, "post", f"/api/startup-plans/{sub.id}/cancel", users["operator"])
    assert cancelled.status_code == 200 and cancelled.get_json()["state"] == "cancelled"
    again = await call(client, "post", f"/api/startup-plans/{sub.id}/cancel", users["operator"])
    assert again.status_code in (404, 409)


def _page_as_viewer(client: FlaskClient, path: str) -> str:
    sign_in(client, "viewer")
    return client.get(path).get_data(as_text=True)


async def test_free_trial_api(timer_app: tuple[FlaskClient, WorkflowEnvironment], users: dict[str, str]) -> None:
    client, env = timer_app
    until = (await env.get_current_time() + timedelta(days=30)).date().isoformat()
    body = {"org": f"org-{uuid.uuid4().hex[:6]}", "until": until}
    assert (await call(client, "post", "/api/free-trials", users["viewer"], json=body)).status_code == 403
    bad = await call(client, "post", "/api/free-trials", users["operator"], json={**body, "until": "2001-01-01"})
    assert bad.status_code == 422 and "not in the future" in bad.get_json()["error"]
    started = await call(client, "post", "/api/free-trials", users["operator"], json=body)
    assert started.status_code == 201 and started.get_json()["state"] == "running"
    twice = await call(client, "post", "/api/free-trials", users["operator"], json=body)
    assert twice.status_code == 409 and "already running" in twice.get_json()["error"]
    later = (await env.get_current_time() + timedelta(days=60)).date().isoformat()
    changed = await call(client, "post", f"/api/free-trials/{body['org']}/until", users["operator"],
                         json={"until": later})
    assert changed.status_code == 200 and changed.get_json()["until"].startswith(later)
    shown = await call(client, "get", f"/api/free-trials/{body['org']}", users["viewer"])
    assert shown.get_json()["until"].startswith(later)
    cancelled = await call(client, "post", f"/api/free-trials/{body['org']}/cancel", users["operator"])
    assert cancelled.get_json()["state"] == "cancelled"
    assert (await call(client, "get", "/api/free-trials/org-unknown", users["viewer"])).status_code == 404



async def test_last_scheduled_check(dev_env: WorkflowEnvironment, catalog_settings: Settings, users: dict[str, str],
                                    fresh_stripe_sandbox: StripeSandbox) -> None:
    """The table page's banner reads the newest finished run of the `catalog-check` Schedule."""
    from workflows.catalog import CHECK_SCHEDULE_ID, ensure_catalog_check_schedule

    queue = f"catalog-{uuid.uuid4().hex[:8]}"
    settings = replace(catalog_settings, temporal_task_queue=queue)
    target = dev_env.client.service_client.config.target_host
    bridge = TemporalBridge(lambda: Client.connect(target))
    app = create_app(settings, temporal=bridge)
    if "catalog" not in app.blueprints:
        from web import catalog

        app.register_blueprint(catalog.bp)
    client = app.test_client()
    try:
        async with worker(dev_env.client, queue, settings, fresh_stripe_sandbox):
            missing = await call(client, "get", "/api/catalog/last-check", users["viewer"])
            assert missing.status_code == 404 and "revops catalog schedule" in missing.get_json()["error"]
            fresh_stripe_sandbox.client().v1.prices.update("price_surveys_default", {"active": False})
            await ensure_catalog_check_schedule(dev_env.client, queue)
            schedule = dev_env.client.get_schedule_handle(CHECK_SCHEDULE_ID)
            await schedule.trigger()
            for _ in range(100):
                found = await call(client, "get", "/api/catalog/last-check", users["viewer"])
                if found.status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert found.status_code == 200, found.get_json()
            assert [p["ids"] for p in found.get_json()["problems"]] == [["price_surveys_default"]]
    finally:
        await dev_env.client.get_schedule_handle(CHECK_SCHEDULE_ID).delete()
        bridge.close()
