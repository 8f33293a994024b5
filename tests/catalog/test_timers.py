"""Startup plans and free trials on durable Temporal timers (time-skipping server) against the
Stripe sandbox: the three startup outcomes with a worker restart while the timer waits, moving
and cancelling a timer, and a free trial's end with and without a subscription begun meanwhile."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from activities.catalog import build
from activities.plan.billing_service import signature_header
from sandbox.stripe.harness import StripeSandbox
from settings import Settings
from workflows.catalog import (
    WORKFLOWS,
    FreeTrialInput,
    FreeTrialWorkflow,
    StartupPlanWorkflow,
    ensure_startup_timer,
    startup_workflow_id,
)

DAY = 86400


@pytest.fixture
async def ts() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server of its own: its clock starts at the sandbox's (now), untouched by
    other tests' skipped months."""
    path = shutil.which("temporal-test-server", path=str(Path(sys.executable).parent))
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=path)
    try:
        yield env
    finally:
        await env.shutdown()


def worker(client: Client, queue: str, settings: Settings, sandbox: StripeSandbox) -> Worker:
    assert settings.stripe_api_base == sandbox.url
    return Worker(client, task_queue=queue, workflows=WORKFLOWS, activities=build(settings),
                  activity_executor=ThreadPoolExecutor(2),
                  # No workflow cache, so no sticky task queue: a stopped worker's sticky queue is never
                  # timed out by the time-skipping server, and a restarted process has no cache anyway.
                  max_cached_workflows=0)


async def until_state(handle: WorkflowHandle[Any, Any], state: str, query: Any = StartupPlanWorkflow.status) -> Any:
    for _ in range(200):
        status = await handle.query(query)
        if status.state == state:
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"the workflow never reached {state}: {status}")


def startup_price(sandbox: StripeSandbox, metadata: dict[str, str]) -> str:
    return sandbox.client().v1.prices.create({"currency": "usd", "product": "prod_product_analytics",
                                              "unit_amount": 0, "recurring": {"interval": "month"},
                                              "metadata": metadata}).id


def subscribe(sandbox: StripeSandbox, *prices: str) -> Any:
    client = sandbox.client()
    customer = client.v1.customers.create({"email": "startup@example.com"})
    return client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": p} for p in prices]})


async def run_with_restart(ts: WorkflowEnvironment, settings: Settings, sandbox: StripeSandbox,
                           subscription_id: str) -> tuple[Any, Any]:
    """Start the timer with one worker, stop it while the timer waits, let the sandbox clock reach
    the expiry, then finish on a new worker. Returns (status while waiting, final status)."""
    queue = f"catalog-{uuid.uuid4().hex[:8]}"
    async with worker(ts.client, queue, settings, sandbox):
        handle = await ensure_startup_timer(ts.client, queue, subscription_id)
        waiting = await until_state(handle, "waiting")
    # No worker now: the timer is Temporal's, it waits in the server.
    sandbox.advance_to(int(datetime.fromisoformat(waiting.expires_at).timestamp()) + 60)
    async with worker(ts.client, queue, settings, sandbox):
        final = await handle.result()
    return waiting, final


async def test_startup_price_moves_to_its_move_to_price_and_the_shortest_validity_wins(
        ts: WorkflowEnvironment, catalog_settings: Settings, fresh_stripe_sandbox: StripeSandbox) -> None:
    thirty = startup_price(fresh_stripe_sandbox, {"plan": "startup", "valid_days": "30",
                                                  "move_to_price_id": "price_product_analytics_tiered"})
    sub = subscribe(fresh_stripe_sandbox, thirty, "price_session_replay_startup")  # 365 days
    created = {i.price.id: i.created for i in sub["items"].data}
    waiting, final = await run_with_restart(ts, catalog_settings, fresh_stripe_sandbox, sub.id)
    assert waiting.expires_at == datetime.fromtimestamp(created[thirty] + 30 * DAY, UTC).isoformat()
    assert sorted(waiting.targets) == sorted([f"{thirty} → price_product_analytics_tiered",
                                              "price_session_replay_startup → price_session_replay_default"])
    assert final.state == "moved"
    after = fresh_stripe_sandbox.client().v1.subscriptions.retrieve(sub.id)
    assert sorted(i.price.id for i in after["items"].data) == ["price_product_analytics_tiered",
                                                               "price_session_replay_default"]
    # The next invoice bills the paid prices, with no proration line.
    fresh_stripe_sandbox.advance_to(after["items"].data[0].current_period_end + 2 * 3600)
    latest = fresh_stripe_sandbox.client().v1.invoices.retrieve(
        fresh_stripe_sandbox.client().v1.subscriptions.retrieve(sub.id).latest_invoice)
    assert latest.subtotal == 30000  # session replay's flat 300.00; analytics' first tier is free


async def test_startup_price_without_move_to_goes_to_the_config_default(
        ts: WorkflowEnvironment, catalog_settings: Settings, fresh_stripe_sandbox: StripeSandbox) -> None:
    sub = subscribe(fresh_stripe_sandbox, "price_product_analytics_startup")  # demo: 365 days
    waiting, final = await run_with_restart(ts, catalog_settings, fresh_stripe_sandbox, sub.id)
    assert waiting.outcome == "move" and "the config's default price" in waiting.reason
    assert final.state == "moved"
    after = fresh_stripe_sandbox.client().v1.subscriptions.retrieve(sub.id)
    assert [i.price.id for i in after["items"].data] == ["price_product_analytics_default"]


async def test_valid_days_without_plan_startup_goes_to_the_free_plans(
        ts: WorkflowEnvironment, catalog_settings: Settings, fresh_stripe_sandbox: StripeSandbox) -> None:
    sub = subscribe(fresh_stripe_sandbox, startup_price(fresh_stripe_sandbox, {"valid_days": "14"}))
    waiting, final = await run_with_restart(ts, catalog_settings, fresh_stripe_sandbox, sub.id)
    assert waiting.outcome == "free_plans" and "free plans" in waiting.reason
    assert final.state == "free_plans"
    assert fresh_stripe_sandbox.client().v1.subscriptions.retrieve(sub.id).status == "canceled"


async def test_an_operator_moves_or_cancels_the_timer(
        ts: WorkflowEnvironment, catalog_settings: Settings, fresh_stripe_sandbox: StripeSandbox) -> None:
    sub = subscribe(fresh_stripe_sandbox, "price_product_analytics_startup")
    other = subscribe(fresh_stripe_sandbox, "price_surveys_startup")
    plain = subscribe(fresh_stripe_sandbox, "price_surveys_default")
    queue = f"catalog-{uuid.uuid4().hex[:8]}"
    async with worker(ts.client, queue, catalog_settings, fresh_stripe_sandbox):
        handle = await ensure_startup_timer(ts.client, queue, sub.id)
        cancelled = await ensure_startup_timer(ts.client, queue, other.id)
        await until_state(handle, "waiting")
        await until_state(cancelled, "waiting")
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(StartupPlanWorkflow.move_date, "2001-01-01")
        assert "is not in the future" in str(refused.value.cause)
        sooner = (await ts.get_current_time() + timedelta(days=3)).replace(microsecond=0).isoformat()
        moved = await handle.execute_update(StartupPlanWorkflow.move_date, sooner)
        assert moved.expires_at == sooner
        # Cancelled: its subscription keeps the startup price.
        await cancelled.execute_update(StartupPlanWorkflow.cancel)
        assert (await cancelled.result()).state == "cancelled"
        with pytest.raises((WorkflowUpdateFailedError, RPCError)):  # a closed workflow takes no update
            await cancelled.execute_update(StartupPlanWorkflow.cancel)
        assert (await handle.result()).state == "moved"
        # The sync or a webhook finding the subscription again after the move starts a new run,
        # which finds no startup price left: nothing moves twice.
        again = await ensure_startup_timer(ts.client, queue, sub.id)
        assert again.id == startup_workflow_id(sub.id) and (await again.result()).state == "not_startup"
        after = fresh_stripe_sandbox.client().v1.subscriptions.retrieve(sub.id)
        assert [i.price.id for i in after["items"].data] == ["price_product_analytics_default"]
        none = await ensure_startup_timer(ts.client, queue, plain.id)
        assert (await none.result()).state == "not_startup"
    untouched = fresh_stripe_sandbox.client().v1.subscriptions.retrieve(other.id)
    assert [i.price.id for i in untouched["items"].data] == ["price_surveys_startup"]


@pytest.fixture
def billing_service() -> Iterator[tuple[str, list[tuple[dict[str, Any], dict[str, str]]]]]:
    received: list[tuple[dict[str, Any], dict[str, str]]] = []

    @Request.application  # type: ignore[misc]
    def app(request: Request) -> Response:
        received.append((json.loads(request.get_data()), dict(request.headers)))
        return Response("{}", status=200, content_type="application/json")

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/free-trials", received
    finally:
        server.shutdown()
        thread.join(timeout=5)


async def test_free_trial_ends_back_to_free_unless_subscribed(
        ts: WorkflowEnvironment, catalog_settings: Settings, fresh_stripe_sandbox: StripeSandbox,
        billing_service: tuple[str, list[tuple[dict[str, Any], dict[str, str]]]]) -> None:
    url, received = billing_service
    settings = replace(catalog_settings, billing_service_url=url, billing_service_secret="trial-secret")
    client = fresh_stripe_sandbox.client()
    lapsed = client.v1.customers.create({"email": "lapsed@example.com"})
    keeper = client.v1.customers.create({"email": "keeper@example.com"})
    granted = fresh_stripe_sandbox.now()
    until = (datetime.now(UTC) + timedelta(days=14)).date().isoformat()
    queue = f"catalog-{uuid.uuid4().hex[:8]}"
    async with worker(ts.client, queue, settings, fresh_stripe_sandbox):
        trials = {}
        for org, customer in (("org-lapsed", lapsed.id), ("org-keeper", keeper.id)):
            trials[org] = await ts.client.start_workflow(
                FreeTrialWorkflow.run, FreeTrialInput(org, until, customer, granted_at=granted),
                id=f"free-trial-{org}-{queue}", task_queue=queue)
            await until_state(trials[org], "running", FreeTrialWorkflow.status)
        later = (datetime.now(UTC) + timedelta(days=20)).date().isoformat()
        assert (await trials["org-keeper"].execute_update(FreeTrialWorkflow.set_until, later)).until.startswith(later)
        fresh_stripe_sandbox.advance(3 * DAY)
        sub = client.v1.subscriptions.create({"customer": keeper.id, "items": [{"price": "price_surveys_startup"}]})
        lapsed_end = await trials["org-lapsed"].result()
        keeper_end = await trials["org-keeper"].result()
    assert (lapsed_end.state, lapsed_end.delivered) == ("back_to_free", "yes: HTTP 200")
    assert (keeper_end.state, keeper_end.subscription) == ("subscribed", sub.id)
    [(body, headers)] = received  # only the lapsed org is told
    assert body == {"posthog_org_id": "org-lapsed", "plan": "free", "free_trial_until": None}
    timestamp = int(headers["X-Revops-Signature"].split(",")[0].removeprefix("t="))
    raw = json.dumps(body, sort_keys=True).encode()
    assert headers["X-Revops-Signature"] == signature_header("trial-secret", raw, timestamp)


async def test_catalog_check_workflow_and_its_schedule(ts: WorkflowEnvironment, dev_env: WorkflowEnvironment,
                                                       catalog_settings: Settings,
                                                       fresh_stripe_sandbox: StripeSandbox) -> None:
    from workflows.catalog import CHECK_SCHEDULE_ID, CatalogCheckWorkflow, ensure_catalog_check_schedule

    queue = f"catalog-{uuid.uuid4().hex[:8]}"
    async with worker(ts.client, queue, catalog_settings, fresh_stripe_sandbox):
        clean = await ts.client.execute_workflow(CatalogCheckWorkflow.run, id=f"check-{queue}", task_queue=queue)
        fresh_stripe_sandbox.client().v1.prices.update("price_surveys_default", {"active": False})
        broken = await ts.client.execute_workflow(CatalogCheckWorkflow.run, id=f"check2-{queue}", task_queue=queue)
    assert clean.problems == [] and clean.products == 7
    assert [(p.kind, p.ids) for p in broken.problems] == [("default_price_unusable", ("price_surveys_default",))]
    assert await ensure_catalog_check_schedule(dev_env.client, queue) == CHECK_SCHEDULE_ID
    assert await ensure_catalog_check_schedule(dev_env.client, queue) == CHECK_SCHEDULE_ID  # idempotent
    described = await dev_env.client.get_schedule_handle(CHECK_SCHEDULE_ID).describe()
    assert described.schedule.spec.intervals[0].every == timedelta(hours=6)
    await dev_env.client.get_schedule_handle(CHECK_SCHEDULE_ID).delete()
