"""Startup subscriptions get their timer without an operator: through the Stripe webhook as soon
as the subscription is made, and through the revenue sync when webhooks are off. Each item is
found once: a timer an operator cancelled is not started again by the next event or sync."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from werkzeug.serving import make_server

from activities.catalog import STARTUP_TIMER_CLAIM, pending_startup_timers
from sandbox.stripe.harness import StripeSandbox
from settings import Settings
from store.catalog_audit import CatalogAuditEntry
from store.db import unit_of_work
from store.models import Claim, InboundEvent
from store.sync import sync_revenue
from tests.catalog.test_timers import subscribe, ts, until_state, worker  # noqa: F401  (ts is a fixture)
from web import create_app
from web.temporal_bridge import TemporalBridge
from workflows.catalog import StartupPlanStatus, StartupPlanWorkflow, startup_workflow_id


def _temporal_settings(settings: Settings, env: WorkflowEnvironment) -> Settings:
    return replace(settings, temporal_address=env.client.service_client.config.target_host,
                   temporal_namespace=env.client.namespace, temporal_task_queue=f"catalog-{uuid.uuid4().hex[:8]}")


async def _timer(env: WorkflowEnvironment, subscription_id: str, timeout: float = 15.0) -> Any:
    """The subscription's startup timer once it exists (it is started by another thread)."""
    handle: WorkflowHandle[Any, StartupPlanStatus] = env.client.get_workflow_handle(
        startup_workflow_id(subscription_id), result_type=StartupPlanStatus)
    for _ in range(int(timeout / 0.1)):
        try:
            await handle.describe()
            return handle
        except RPCError:
            await asyncio.sleep(0.1)
    raise AssertionError(f"no startup timer was started for {subscription_id}")


def _claimed(settings: Settings) -> dict[str, str]:
    with unit_of_work(settings.database_url) as session:
        rows = session.execute(select(Claim.key, Claim.value).where(Claim.scope == STARTUP_TIMER_CLAIM))
        return {key: str(value) for key, value in rows}


def _audited(settings: Settings) -> list[tuple[str, str, str | None]]:
    with unit_of_work(settings.database_url) as session:
        return [(e.actor, e.action, e.subscription_id)
                for e in session.scalars(select(CatalogAuditEntry).order_by(CatalogAuditEntry.id))]


@pytest.fixture
def live_webhooks(catalog_settings: Settings, ts: WorkflowEnvironment,  # noqa: F811
                  fresh_stripe_sandbox: StripeSandbox) -> Iterator[Settings]:
    """The web app served over HTTP, its Temporal bridge on the test server, registered as the
    sandbox's webhook endpoint."""
    settings = _temporal_settings(catalog_settings, ts)
    target = settings.temporal_address
    bridge = TemporalBridge(lambda: Client.connect(target))
    server = make_server("127.0.0.1", 0, create_app(settings, temporal=bridge), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fresh_stripe_sandbox.register_webhook(f"http://127.0.0.1:{server.server_port}/webhooks/stripe",
                                          settings.stripe_webhook_secret)
    try:
        yield settings
    finally:
        server.shutdown()
        thread.join(5)
        bridge.close()


async def test_a_startup_subscription_gets_its_timer_through_the_webhook(
        ts: WorkflowEnvironment, live_webhooks: Settings,  # noqa: F811
        fresh_stripe_sandbox: StripeSandbox) -> None:
    settings = live_webhooks
    async with worker(ts.client, settings.temporal_task_queue, settings, fresh_stripe_sandbox):
        sub = subscribe(fresh_stripe_sandbox, "price_product_analytics_startup")
        plain = subscribe(fresh_stripe_sandbox, "price_surveys_default")
        handle = await _timer(ts, sub.id)
        status = await until_state(handle, "waiting")
        assert status.targets == ["price_product_analytics_startup → price_product_analytics_default"]
        assert _claimed(settings) == {sub["items"].data[0].id: sub.id}
        assert _audited(settings) == [("stripe-webhook", "startup_timer_started", sub.id)]
        # The operator cancels it; the subscription's next update does not bring it back.
        await handle.execute_update(StartupPlanWorkflow.cancel)
        assert (await handle.result()).state == "cancelled"
        first_run = (await handle.describe()).run_id
        fresh_stripe_sandbox.client().v1.subscriptions.update(sub.id, {"metadata": {"note": "renewal call"}})
        await asyncio.to_thread(fresh_stripe_sandbox.wait_for_webhooks)
    with unit_of_work(settings.database_url) as session:
        outcomes = sorted((json.loads(e.body)["data"]["object"]["id"] == sub.id, e.event_type, e.status)
                          for e in session.scalars(select(InboundEvent).where(
                              InboundEvent.event_type.like("customer.subscription.%"))))
    assert outcomes == [(False, "customer.subscription.created", "ignored"),
                        (True, "customer.subscription.created", "processed"),
                        (True, "customer.subscription.updated", "ignored")]
    assert (await handle.describe()).run_id == first_run
    with pytest.raises(RPCError):  # the plain subscription has no timer
        await ts.client.get_workflow_handle(startup_workflow_id(plain.id)).describe()


async def test_the_revenue_sync_starts_timers_when_webhooks_are_off(
        ts: WorkflowEnvironment, catalog_settings: Settings,  # noqa: F811
        fresh_stripe_sandbox: StripeSandbox) -> None:
    settings = _temporal_settings(catalog_settings, ts)
    fresh_stripe_sandbox.webhooks_enabled(False)
    short = subscribe(fresh_stripe_sandbox, "price_session_replay_startup", "price_product_analytics_tiered")
    plain = subscribe(fresh_stripe_sandbox, "price_product_analytics_tiered")
    assert (short.status, plain.status) == ("active", "active")
    async with worker(ts.client, settings.temporal_task_queue, settings, fresh_stripe_sandbox):
        await asyncio.to_thread(sync_revenue, settings, full=True, rate=None)
        handle = await _timer(ts, short.id, timeout=2)
        waiting = await until_state(handle, "waiting")
        assert waiting.targets == ["price_session_replay_startup → price_session_replay_default"]
        startup_item = next(i.id for i in short["items"].data if i.price.id == "price_session_replay_startup")
        assert _claimed(settings) == {startup_item: short.id}
        assert _audited(settings) == [("revenue-sync", "startup_timer_started", short.id)]
        with unit_of_work(settings.database_url) as session:
            assert pending_startup_timers(session) == {}  # nothing left for the next run
        await handle.execute_update(StartupPlanWorkflow.cancel)
        assert (await handle.result()).state == "cancelled"
        # A later sync (the subscription changed meanwhile) leaves the cancelled timer alone, and
        # a new startup subscription gets its own.
        fresh_stripe_sandbox.client().v1.subscriptions.update(short.id, {"metadata": {"note": "called"}})
        later = subscribe(fresh_stripe_sandbox, "price_feature_flags_startup")
        await asyncio.to_thread(sync_revenue, settings, rate=None)
        assert (await handle.query(StartupPlanWorkflow.status)).state == "cancelled"
        await until_state(await _timer(ts, later.id, timeout=2), "waiting")
    with pytest.raises(RPCError):
        await ts.client.get_workflow_handle(startup_workflow_id(plain.id)).describe()


def test_the_sync_without_temporal_claims_nothing_and_tries_again(
        catalog_settings: Settings, fresh_stripe_sandbox: StripeSandbox) -> None:
    settings = replace(catalog_settings, temporal_address="127.0.0.1:1")  # nothing listens there
    fresh_stripe_sandbox.webhooks_enabled(False)
    sub = subscribe(fresh_stripe_sandbox, "price_surveys_startup")
    sync_revenue(settings, full=True, rate=None)
    assert _claimed(settings) == {}
    with unit_of_work(settings.database_url) as session:
        assert list(pending_startup_timers(session)) == [sub.id]
